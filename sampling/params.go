package sampling

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"unicode/utf8"
)

// Params are the sampling parameters of one request, with the hosted chat API's names and
// ranges. DefaultParams returns the API's defaults; Validate checks every range.
//
// The zero value is valid and means greedy decoding: a zero TopP or RepetitionPenalty is
// read as "unset", the same as 1 (off).
type Params struct {
	// Temperature scales the logits (0-2, default 1); below 1e-5 decoding is greedy.
	Temperature float64
	// TopP keeps the smallest set of tokens whose probability mass reaches TopP (0 < p <= 1,
	// default 1 = off; 0, the zero value, also means off).
	TopP float64
	// MinP drops tokens whose probability is below MinP times the top probability (0-1,
	// default 0 = off).
	MinP float64
	// TopK keeps the K most likely tokens, ties at the K-th value included (0-999, 0 = off;
	// -1 is accepted as off too, as OpenAI-compatible servers write it).
	TopK int
	// PresencePenalty is subtracted from the logit of every token that occurs in the output
	// so far (-2..2, default 0).
	PresencePenalty float64
	// FrequencyPenalty times a token's count in the output so far is subtracted from its
	// logit (-2..2, default 0).
	FrequencyPenalty float64
	// RepetitionPenalty divides positive logits and multiplies negative ones of every token
	// in the prompt or output (0.01-5, default 1 = off; 0, the zero value, also means off).
	RepetitionPenalty float64
	// LogitBias adds a bias, clamped to ±100, to the logits of the given token ids. Ids are
	// checked against the vocabulary by NewSampler.
	LogitBias map[int]float64
	// Seed, when non-nil, seeds the request's random stream so runs are reproducible.
	// ForChoice derives the seed of each of several choices.
	Seed *int64
	// MaxTokens bounds the number of generated tokens (0 = up to the context length).
	MaxTokens int
	// Stop lists up to 16 strings that end generation; the matched string is not returned.
	Stop []string
	// StopTokenIDs lists token ids that end generation, in addition to the model's eos ids.
	StopTokenIDs []int
	// Logprobs asks for the log-probability of each chosen token.
	Logprobs bool
	// TopLogprobs asks for that many most likely alternatives at each position (0-20);
	// it requires Logprobs.
	TopLogprobs int
}

// DefaultParams returns the hosted API's defaults: temperature 1, top_p 1, repetition
// penalty 1, everything else off.
func DefaultParams() Params {
	return Params{Temperature: 1, TopP: 1, RepetitionPenalty: 1}
}

// The limits that Validate enforces.
const (
	MaxTemperature    = 2
	MaxTopK           = 999
	MaxPenalty        = 2 // presence and frequency penalties lie in [-MaxPenalty, MaxPenalty]
	MinRepetition     = 0.01
	MaxRepetition     = 5
	MaxLogitBias      = 100 // logit bias values are clamped to [-MaxLogitBias, MaxLogitBias]
	MaxStop           = 16
	MaxTopLogprobs    = 20
	greedyTemperature = 1e-5 // temperatures below this mean greedy decoding, as in vLLM
)

// ErrInvalidParam is matched (with errors.Is) by every *ParamError.
var ErrInvalidParam = errors.New("sampling: invalid parameter")

// ParamError reports a parameter outside its allowed range. Field is the hosted API's name
// of the parameter ("top_p", "logit_bias", ...).
type ParamError struct {
	Field string // the API's parameter name
	Value any    // the offending value
	Range string // the allowed range, in words
}

// Error describes the parameter, its value and its allowed range.
func (e *ParamError) Error() string {
	return fmt.Sprintf("sampling: invalid %s %v: must be %s", e.Field, e.Value, e.Range)
}

// Is reports whether target is ErrInvalidParam.
func (e *ParamError) Is(target error) bool { return target == ErrInvalidParam }

func paramErr(field string, value any, rng string) error {
	return &ParamError{Field: field, Value: value, Range: rng}
}

// within reports whether lo <= v <= hi; NaN is never within.
func within(v, lo, hi float64) bool { return v >= lo && v <= hi }

// Validate checks every parameter against the hosted API's ranges and returns a *ParamError
// (matching ErrInvalidParam) naming the first one at fault. NaN is rejected everywhere.
// Nothing is clamped except logit bias values, which the API's rules clamp to ±100.
func (p Params) Validate() error {
	switch {
	case !within(p.Temperature, 0, MaxTemperature):
		return paramErr("temperature", p.Temperature, "between 0 and 2")
	case !within(p.TopP, 0, 1):
		return paramErr("top_p", p.TopP, "in (0, 1] (0 means unset)")
	case !within(p.MinP, 0, 1):
		return paramErr("min_p", p.MinP, "between 0 and 1")
	case p.TopK < -1 || p.TopK > MaxTopK:
		return paramErr("top_k", p.TopK, "between 0 and 999, or -1 (off)")
	case !within(p.PresencePenalty, -MaxPenalty, MaxPenalty):
		return paramErr("presence_penalty", p.PresencePenalty, "between -2 and 2")
	case !within(p.FrequencyPenalty, -MaxPenalty, MaxPenalty):
		return paramErr("frequency_penalty", p.FrequencyPenalty, "between -2 and 2")
	case p.RepetitionPenalty != 0 && !within(p.RepetitionPenalty, MinRepetition, MaxRepetition):
		return paramErr("repetition_penalty", p.RepetitionPenalty, "between 0.01 and 5 (0 means unset)")
	case p.MaxTokens < 0:
		return paramErr("max_tokens", p.MaxTokens, "at least 0 (0 = up to the context length)")
	case len(p.Stop) > MaxStop:
		return paramErr("stop", len(p.Stop), "at most 16 strings")
	case p.TopLogprobs < 0 || p.TopLogprobs > MaxTopLogprobs:
		return paramErr("top_logprobs", p.TopLogprobs, "between 0 and 20")
	case p.TopLogprobs > 0 && !p.Logprobs:
		return paramErr("top_logprobs", p.TopLogprobs, "0 unless logprobs is true")
	}
	if err := validStops(p.Stop); err != nil {
		return err
	}
	for _, id := range p.StopTokenIDs {
		if id < 0 {
			return paramErr("stop_token_ids", id, "non-negative token ids")
		}
	}
	for id, b := range p.LogitBias {
		if id < 0 {
			return paramErr("logit_bias", id, "keyed by non-negative token ids")
		}
		if math.IsNaN(b) {
			return paramErr("logit_bias", b, "a number (clamped to ±100)")
		}
	}
	return nil
}

// validStops checks that every stop string is non-empty, valid UTF-8.
func validStops(stops []string) error {
	for _, s := range stops {
		if s == "" || !utf8.ValidString(s) {
			return paramErr("stop", fmt.Sprintf("%q", s), "non-empty UTF-8 strings")
		}
	}
	return nil
}

// ClampBias clamps a logit bias value to [-100, 100], as the API's rules do.
func ClampBias(b float64) float64 { return max(-MaxLogitBias, min(MaxLogitBias, b)) }

// ForChoice returns the parameters of choice i of a request with several choices (n > 1):
// choice i is seeded with Seed + i, so every choice draws its own reproducible stream; a
// non-negative seed stays non-negative (the sum wraps past math.MaxInt64 to 0). Without a
// seed every choice draws an independent random seed, and p is returned unchanged.
func (p Params) ForChoice(i int) Params {
	if p.Seed != nil && i != 0 {
		s := *p.Seed + int64(i)
		if *p.Seed >= 0 {
			s &= math.MaxInt64
		}
		p.Seed = &s
	}
	return p
}

// IsStopToken reports whether generating id ends the request: id is one of StopTokenIDs or
// one of the model's end-of-sequence ids eos. The finish reason is then FinishStop.
func (p Params) IsStopToken(id int, eos ...int) bool {
	return slices.Contains(p.StopTokenIDs, id) || slices.Contains(eos, id)
}

// MaxNewTokens returns how many tokens a request with promptLen prompt tokens may generate in
// a context of contextLen tokens: MaxTokens, or fewer when the context would overflow (never
// below 0). Reaching it ends the request with FinishLength.
func (p Params) MaxNewTokens(promptLen, contextLen int) int {
	n := max(0, contextLen-promptLen)
	if p.MaxTokens > 0 {
		n = min(n, p.MaxTokens)
	}
	return n
}

// greedy reports whether p decodes greedily.
func (p Params) greedy() bool { return p.Temperature < greedyTemperature }

// topP returns TopP with 0 read as 1 (off).
func (p Params) topP() float64 {
	if p.TopP == 0 {
		return 1
	}
	return p.TopP
}

// repetition returns RepetitionPenalty with 0 read as 1 (off).
func (p Params) repetition() float64 {
	if p.RepetitionPenalty == 0 {
		return 1
	}
	return p.RepetitionPenalty
}

// FinishReason says why generation ended, as the hosted API reports it.
type FinishReason string

const (
	// FinishStop: a stop string, a stop token or an end-of-sequence token was produced.
	FinishStop FinishReason = "stop"
	// FinishLength: max_tokens was reached, or the context is full.
	FinishLength FinishReason = "length"
)

// TokenLogprob is the log-probability of one token id.
type TokenLogprob struct {
	ID      int
	Logprob float64
}

// Logprobs describes one generated position: the chosen token and the most likely
// alternatives (best first), all as log-softmax of the raw logits.
type Logprobs struct {
	Chosen TokenLogprob
	Top    []TokenLogprob
}
