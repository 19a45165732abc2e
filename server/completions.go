package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/fathom-llm/fathom/mixtral"
	"github.com/fathom-llm/fathom/sampling"
)

// Text completion defaults and limits of the API.
const (
	defaultCompletionMaxTokens = 16
	maxCompletionLogprobs      = 5
)

// completionRequest is the body of POST /v1/completions.
type completionRequest struct {
	commonRequest
	Prompt   promptInput `json:"prompt"`
	Logprobs *int        `json:"logprobs"`
	Echo     bool        `json:"echo"`
	Suffix   *string     `json:"suffix"`
	BestOf   *int        `json:"best_of"`
}

// promptInput is the "prompt" parameter: a string, an array of strings, an array of token
// ids, or an array of arrays of token ids. Exactly one of texts and ids is set.
type promptInput struct {
	texts []string
	ids   [][]int
	set   bool
}

// UnmarshalJSON accepts the four forms of a prompt.
func (p *promptInput) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	var one string
	if json.Unmarshal(b, &one) == nil {
		*p = promptInput{texts: []string{one}, set: true}
		return nil
	}
	var texts []string
	if json.Unmarshal(b, &texts) == nil {
		*p = promptInput{texts: texts, set: true}
		return nil
	}
	var ids []int
	if json.Unmarshal(b, &ids) == nil {
		*p = promptInput{ids: [][]int{ids}, set: true}
		return nil
	}
	var batch [][]int
	if json.Unmarshal(b, &batch) == nil {
		*p = promptInput{ids: batch, set: true}
		return nil
	}
	return &fieldError{"prompt", "Invalid type for 'prompt': expected a string, an array of strings, an array of token ids or an array of arrays of token ids."}
}

// requests validates the request and returns one generation request per prompt, the number
// of choices per prompt, and the texts to echo (nil without echo).
func (c *completionRequest) requests(s *Server) ([]mixtral.Request, int, []string, *apiError) {
	n, e := c.choices()
	if e != nil {
		return nil, 0, nil, e
	}
	if e := c.streamCheck(); e != nil {
		return nil, 0, nil, e
	}
	if c.BestOf != nil && *c.BestOf != n && *c.BestOf != 1 {
		return nil, 0, nil, unsupported("best_of", "'best_of' other than 'n' is not supported.")
	}
	if c.Suffix != nil && *c.Suffix != "" {
		return nil, 0, nil, unsupported("suffix", "'suffix' is not supported by this model.")
	}
	count := len(c.Prompt.texts) + len(c.Prompt.ids)
	if !c.Prompt.set || count == 0 {
		return nil, 0, nil, &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Param: "prompt",
			Code: "missing_required_parameter", Message: "You must provide a non-empty 'prompt'."}
	}
	if count*n > maxN {
		return nil, 0, nil, invalid("n", "Too many choices: %d prompts times n = %d is over %d.", count, n, maxN)
	}
	logprobs, top := false, 0
	if c.Logprobs != nil {
		if *c.Logprobs < 0 || *c.Logprobs > maxCompletionLogprobs {
			return nil, 0, nil, invalid("logprobs", "Invalid 'logprobs': %d; it must be between 0 and %d.", *c.Logprobs, maxCompletionLogprobs)
		}
		logprobs, top = true, *c.Logprobs
	}
	if c.Echo && (logprobs || c.Prompt.ids != nil) {
		return nil, 0, nil, unsupported("echo", "'echo' is supported only for text prompts without 'logprobs'.")
	}
	maxTokens := c.MaxTokens
	if maxTokens == nil {
		d := defaultCompletionMaxTokens
		maxTokens = &d
	}
	p, e := c.params(maxTokens, "max_tokens", logprobs, top)
	if e != nil {
		return nil, 0, nil, e
	}
	cons, e := s.constraint(c.ResponseFormat, nil)
	if e != nil {
		return nil, 0, nil, e
	}
	var reqs []mixtral.Request
	for _, t := range c.Prompt.texts {
		reqs = append(reqs, mixtral.Request{Prompt: t, Params: p, Constraint: cons})
	}
	for _, ids := range c.Prompt.ids {
		if len(ids) == 0 {
			return nil, 0, nil, invalid("prompt", "A token-id prompt must not be empty.")
		}
		reqs = append(reqs, mixtral.Request{PromptIDs: ids, Params: p, Constraint: cons})
	}
	var echo []string
	if c.Echo {
		echo = c.Prompt.texts
	}
	return reqs, n, echo, nil
}

// textChoice is one choice of a text completion (also of a chunk).
type textChoice struct {
	Index        int                    `json:"index"`
	Text         string                 `json:"text"`
	Logprobs     *textLogprobs          `json:"logprobs"`
	FinishReason *sampling.FinishReason `json:"finish_reason"`
}

// textCompletion is the response of a text completion and each event of a streamed one.
type textCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []textChoice `json:"choices"`
	// Usage is omitted (nil), null (nullJSON) or the usage of the request.
	Usage any `json:"usage,omitempty"`
}

// textStream renders the chunks of a streamed text completion.
type textStream struct {
	m         Model
	id, model string
	created   int64
	withUsage bool
	echo      []string // per prompt, or nil
	n         int      // choices per prompt
	offsets   []int    // per choice: characters streamed so far
}

func (f *textStream) chunk(c textChoice) textCompletion {
	ch := textCompletion{ID: f.id, Object: "text_completion", Created: f.created, Model: f.model,
		Choices: []textChoice{c}}
	if f.withUsage {
		ch.Usage = nullJSON
	}
	return ch
}

func (f *textStream) begin(i int) any {
	if f.echo == nil {
		return nil
	}
	text := f.echo[i/f.n]
	f.offsets[i] = utf8.RuneCountInString(text)
	return f.chunk(textChoice{Index: i, Text: text})
}

func (f *textStream) token(i int, text string, lp *sampling.Logprobs) []any {
	if text == "" && lp == nil {
		return nil
	}
	c := textChoice{Index: i, Text: text}
	if lp != nil {
		c.Logprobs, f.offsets[i] = textLogprobsOf(f.m, []sampling.Logprobs{*lp}, f.offsets[i])
	}
	return []any{f.chunk(c)}
}

func (f *textStream) finish(i int, text string, lp *sampling.Logprobs, reason sampling.FinishReason) []any {
	return append(f.token(i, text, lp), f.chunk(textChoice{Index: i, FinishReason: &reason}))
}

func (f *textStream) usage(u *usage) any {
	return textCompletion{ID: f.id, Object: "text_completion", Created: f.created, Model: f.model,
		Choices: []textChoice{}, Usage: u}
}

// completions serves POST /v1/completions. Choice p*n+i is choice i of prompt p.
func (s *Server) completions(w http.ResponseWriter, r *http.Request) *apiError {
	var body completionRequest
	if e := decodeJSON(r, &body); e != nil {
		return e
	}
	if e := s.checkModel(body.Model); e != nil {
		return e
	}
	prompts, n, echo, e := body.requests(s)
	if e != nil {
		return e
	}
	g, promptOf, e := s.begin(w, r, prompts, n, body.MaxTokens != nil && *body.MaxTokens == 0, "prompt")
	if e != nil {
		return e
	}
	defer g.stop()
	total := len(promptOf)
	id, created := newID("cmpl-"), time.Now().Unix()

	if body.Stream {
		f := &textStream{m: s.model, id: id, model: body.Model, created: created,
			withUsage: body.includeUsage(), echo: echo, n: n, offsets: make([]int, total)}
		return s.stream(w, g, total, promptOf, f, f.withUsage)
	}
	results, err := g.collect(total)
	if err != nil {
		return s.generationError(err)
	}
	resp := textCompletion{ID: id, Object: "text_completion", Created: created, Model: body.Model,
		Choices: make([]textChoice, total)}
	usages := make([]mixtral.Usage, total)
	for i := range results {
		c := &results[i]
		reason := c.finish
		tc := textChoice{Index: i, Text: c.text.String(), FinishReason: &reason}
		if echo != nil {
			tc.Text = echo[promptOf[i]] + tc.Text
		}
		if prompts[promptOf[i]].Params.Logprobs {
			tc.Logprobs, _ = textLogprobsOf(s.model, c.logprobs, 0)
		}
		resp.Choices[i] = tc
		usages[i] = c.usage
	}
	resp.Usage = s.totalUsage(usages, promptOf)
	writeJSON(w, http.StatusOK, resp)
	return nil
}
