package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"

	"github.com/fathom-llm/fathom/sampling"
)

// maxN is the largest n (choices per request) the API accepts.
const maxN = 128

// commonRequest holds the parameters that chat and text completions share.
type commonRequest struct {
	Model             string             `json:"model"`
	Temperature       *float64           `json:"temperature"`
	TopP              *float64           `json:"top_p"`
	MinP              *float64           `json:"min_p"`
	TopK              *int               `json:"top_k"`
	PresencePenalty   *float64           `json:"presence_penalty"`
	FrequencyPenalty  *float64           `json:"frequency_penalty"`
	RepetitionPenalty *float64           `json:"repetition_penalty"`
	LogitBias         map[string]float64 `json:"logit_bias"`
	Seed              *int64             `json:"seed"`
	MaxTokens         *int               `json:"max_tokens"`
	Stop              stopList           `json:"stop"`
	N                 *int               `json:"n"`
	User              string             `json:"user"`
	Stream            bool               `json:"stream"`
	StreamOptions     *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	ResponseFormat *responseFormat `json:"response_format"`
}

// stopList is the "stop" parameter: null, one string, or an array of strings.
type stopList []string

// UnmarshalJSON accepts null, a string or an array of strings.
func (s *stopList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*s = nil
		return nil
	case len(b) > 0 && b[0] == '"':
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*s = stopList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return &fieldError{"stop", "Invalid type for 'stop': expected a string or an array of strings."}
	}
	*s = many
	return nil
}

// choices returns n, checking its range.
func (c *commonRequest) choices() (int, *apiError) {
	if c.N == nil {
		return 1, nil
	}
	if *c.N < 1 || *c.N > maxN {
		return 0, invalid("n", "Invalid 'n': %d; it must be between 1 and %d.", *c.N, maxN)
	}
	return *c.N, nil
}

// streamCheck checks that stream_options comes only with stream.
func (c *commonRequest) streamCheck() *apiError {
	if c.StreamOptions != nil && !c.Stream {
		return invalid("stream_options", "The 'stream_options' parameter is only allowed when 'stream' is enabled.")
	}
	return nil
}

// includeUsage reports whether a stream ends with a usage chunk.
func (c *commonRequest) includeUsage() bool {
	return c.StreamOptions != nil && c.StreamOptions.IncludeUsage
}

// explicitCheck refuses explicit values that the sampling parameters would read as "unset"
// or that the API's ranges exclude: a seed below 0, top_p 0, repetition_penalty 0, top_k
// below 0. Absent fields take their defaults.
func (c *commonRequest) explicitCheck() *apiError {
	switch {
	case c.Seed != nil && *c.Seed < 0:
		return invalid("seed", "Invalid 'seed': %d; it must be at least 0.", *c.Seed)
	case c.TopP != nil && *c.TopP == 0:
		return invalid("top_p", "Invalid 'top_p': 0; it must be greater than 0 and at most 1.")
	case c.RepetitionPenalty != nil && *c.RepetitionPenalty == 0:
		return invalid("repetition_penalty", "Invalid 'repetition_penalty': 0; it must be between %v and %v.",
			sampling.MinRepetition, sampling.MaxRepetition)
	case c.TopK != nil && *c.TopK < 0:
		return invalid("top_k", "Invalid 'top_k': %d; it must be between 0 (off) and %d.", *c.TopK, sampling.MaxTopK)
	}
	return nil
}

// params builds the sampling parameters from the request over the API's defaults, with the
// given max tokens (nil: up to the context; 0: the caller generates nothing) and logprobs
// settings, and validates them.
func (c *commonRequest) params(maxTokens *int, maxTokensParam string, logprobs bool, topLogprobs int) (sampling.Params, *apiError) {
	p := sampling.DefaultParams()
	if e := c.explicitCheck(); e != nil {
		return p, e
	}
	setF := func(dst *float64, src *float64) {
		if src != nil {
			*dst = *src
		}
	}
	setF(&p.Temperature, c.Temperature)
	setF(&p.TopP, c.TopP)
	setF(&p.MinP, c.MinP)
	setF(&p.PresencePenalty, c.PresencePenalty)
	setF(&p.FrequencyPenalty, c.FrequencyPenalty)
	setF(&p.RepetitionPenalty, c.RepetitionPenalty)
	if c.TopK != nil {
		p.TopK = *c.TopK
	}
	if maxTokens != nil {
		if *maxTokens < 0 {
			return p, invalid(maxTokensParam, "Invalid '%s': %d; it must be at least 0.", maxTokensParam, *maxTokens)
		}
		p.MaxTokens = *maxTokens
	}
	if c.Seed != nil {
		seed := *c.Seed
		p.Seed = &seed
	}
	p.Stop = c.Stop
	if len(c.LogitBias) > 0 {
		p.LogitBias = make(map[int]float64, len(c.LogitBias))
		for k, v := range c.LogitBias {
			id, err := strconv.Atoi(k)
			if err != nil {
				return p, invalid("logit_bias", "Invalid key %q in 'logit_bias': keys must be token ids.", k)
			}
			p.LogitBias[id] = v
		}
	}
	p.Logprobs = logprobs
	p.TopLogprobs = topLogprobs
	if err := p.Validate(); err != nil {
		return p, paramError(err)
	}
	return p, nil
}

// paramError maps a sampling validation error (a *sampling.ParamError, which names the
// API parameter) to a 400.
func paramError(err error) *apiError {
	var pe *sampling.ParamError
	if errors.As(err, &pe) {
		return invalid(pe.Field, "Invalid '%s': %v must be %s.", pe.Field, pe.Value, pe.Range)
	}
	return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Code: "invalid_value", Message: err.Error()}
}

// finiteLogprob makes a log-probability JSON-encodable: -Inf and NaN become -9999, the API's
// value for "very unlikely".
func finiteLogprob(lp float64) float64 {
	if math.IsInf(lp, 0) || math.IsNaN(lp) {
		if lp > 0 {
			return 0
		}
		return -9999
	}
	return lp
}
