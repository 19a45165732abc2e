package mixtral

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"

	"github.com/fathom-llm/fathom/engine"
	"github.com/fathom-llm/fathom/sampling"
	"github.com/fathom-llm/fathom/tokenizer"
)

// ErrRequest reports a malformed Request: both Messages and Prompt set, or neither and no
// PromptIDs, or a token id outside the vocabulary.
var ErrRequest = errors.New("mixtral: invalid request")

// ErrNoTokenizer reports a text or chat request to a model without a tokenizer.
var ErrNoTokenizer = errors.New("mixtral: model has no tokenizer")

// Generate runs a request to the end and returns the generated text and ids. On error
// (including the cancellation of ctx, noticed within one token) it returns what was
// generated so far with the error.
func (m *Model) Generate(ctx context.Context, req Request) (Response, error) {
	var resp Response
	var text strings.Builder
	err := m.generate(ctx, req, func(ev Event) bool {
		text.WriteString(ev.Text)
		if ev.ID >= 0 {
			resp.IDs = append(resp.IDs, ev.ID)
			if ev.Logprobs != nil {
				resp.Logprobs = append(resp.Logprobs, *ev.Logprobs)
			}
		}
		if ev.Done {
			resp.FinishReason, resp.Usage, resp.Timings = ev.FinishReason, ev.Usage, ev.Timings
		}
		return true
	})
	resp.Text = text.String()
	return resp, err
}

// Stream runs a request and yields one Event per generated token, then a final Event with
// Done set. An error ends the sequence as its last pair (with a zero Event). Stopping the
// iteration, or cancelling ctx, stops generation within one token.
func (m *Model) Stream(ctx context.Context, req Request) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		stopped := false
		err := m.generate(ctx, req, func(ev Event) bool {
			if !yield(ev, nil) {
				stopped = true
				return false
			}
			return true
		})
		if err != nil && !stopped {
			yield(Event{ID: -1}, err)
		}
	}
}

// PromptIDs returns the token ids a request's prompt becomes: PromptIDs when set, checked
// against the vocabulary; else Messages rendered with the chat template and the generation
// prompt (special tokens inside contents stay text), or Prompt tokenized with BOS as the
// tokenizer's configuration says (special tokens written in it are matched).
func (m *Model) PromptIDs(req Request) ([]int, error) {
	if len(req.Messages) > 0 && req.Prompt != "" || len(req.Messages) == 0 && req.Prompt == "" && len(req.PromptIDs) == 0 {
		return nil, fmt.Errorf("%w: set one of Messages, Prompt and PromptIDs", ErrRequest)
	}
	var ids []int
	var err error
	switch {
	case len(req.PromptIDs) > 0:
		ids = slices.Clone(req.PromptIDs)
	case m.tok == nil:
		return nil, ErrNoTokenizer
	case len(req.Messages) > 0:
		ids, _, err = m.tok.EncodeChat(req.Messages, tokenizer.ChatOptions{AddGenerationPrompt: true, Tools: req.Tools})
	default:
		ids, err = m.tok.Encode(req.Prompt, tokenizer.EncodeOptions{AddBOS: m.tok.AddsBOS(), ParseSpecial: true})
	}
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: the prompt has no tokens", ErrRequest)
	}
	if err := m.checkIDs(ids); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRequest, err)
	}
	return ids, nil
}

// generate runs a request, calling emit with each event; emit returning false stops it.
func (m *Model) generate(ctx context.Context, req Request, emit func(Event) bool) error {
	prompt, err := m.PromptIDs(req)
	if err != nil {
		return err
	}
	p := req.Params
	stops, err := sampling.NewStopMatcher(p.Stop)
	if err != nil {
		return err
	}
	h, err := m.engine.Submit(ctx, engine.Request{Prompt: prompt, Params: p, EOS: m.cfg.EOSTokenIDs, Constraint: req.Constraint})
	if err != nil {
		return engineError(err)
	}
	defer h.Close()
	var decoder *tokenizer.Decoder
	if m.tok != nil {
		decoder = m.tok.NewDecoder(true)
	}
	finish := func(o engine.Output, reason sampling.FinishReason, text string) {
		emit(Event{ID: -1, Text: text, Done: true, FinishReason: reason, Usage: usage(o.Usage), Timings: timings(o)})
	}
	// flush ends the text: the decoder's held-back bytes, then the stop matcher's.
	flush := func() (string, bool) {
		var rest string
		if decoder != nil {
			rest = decoder.Flush()
		}
		text, stopped := stops.Push(rest)
		if stopped {
			return text, true
		}
		return text + stops.Flush(), false
	}
	for {
		o, err := h.Next()
		if err != nil {
			return engineError(err)
		}
		ev := Event{ID: o.ID, Logprobs: o.Logprobs}
		if o.Finish == sampling.FinishStop {
			// A stop or end-of-sequence token: it adds no text.
			if !emit(ev) {
				return nil
			}
			text, _ := flush()
			finish(o, sampling.FinishStop, text)
			return nil
		}
		if decoder != nil {
			var stopped bool
			ev.Text, stopped = stops.Push(decoder.Add(o.ID))
			if stopped {
				h.Stop(0)
				if emit(ev) {
					finish(o, sampling.FinishStop, "")
				}
				return nil
			}
		}
		if !emit(ev) {
			return nil
		}
		if o.Finish == sampling.FinishLength {
			text, stopped := flush()
			reason := sampling.FinishLength
			if stopped {
				reason = sampling.FinishStop
			}
			finish(o, reason, text)
			return nil
		}
	}
}

// engineError maps the serving engine's errors to the package's.
func engineError(err error) error {
	switch {
	case errors.Is(err, engine.ErrClosed):
		return ErrClosed
	case errors.Is(err, engine.ErrRequest):
		return fmt.Errorf("%w: %v", ErrRequest, err)
	}
	return err
}

// usage is the Usage of a choice.
func usage(u engine.Usage) Usage {
	return Usage{
		PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.PromptTokens + u.CompletionTokens,
		PromptTokensDetails: PromptTokensDetails{CachedTokens: u.CachedTokens},
	}
}

// timings are the Timings of a choice's last output: prefill from its first step to its
// first token, over the prompt tokens it computed, and decode from there to the end.
func timings(o engine.Output) Timings {
	tm := o.Timing
	t := Timings{Prefill: tm.FirstToken.Sub(tm.Scheduled), Decode: tm.Finished.Sub(tm.FirstToken)}
	if t.Prefill > 0 {
		t.PrefillTokensPerSecond = float64(o.Usage.PromptTokens-o.Usage.CachedTokens) / t.Prefill.Seconds()
	}
	if t.Decode > 0 && o.Usage.CompletionTokens > 1 {
		t.DecodeTokensPerSecond = float64(o.Usage.CompletionTokens-1) / t.Decode.Seconds()
	}
	return t
}
