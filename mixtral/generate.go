package mixtral

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/fathom-llm/fathom/sampling"
	"github.com/fathom-llm/fathom/tokenizer"
)

// ErrRequest reports a malformed Request: not exactly one of Messages, Prompt and
// PromptIDs set, or a token id outside the vocabulary.
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

// PromptIDs returns the token ids a request's prompt becomes: Messages rendered with the
// chat template and the generation prompt (special tokens inside contents stay text),
// Prompt tokenized with BOS as the tokenizer's configuration says (special tokens written in
// it are matched), or PromptIDs as given.
func (m *Model) PromptIDs(req Request) ([]int, error) {
	set := 0
	for _, b := range []bool{len(req.Messages) > 0, req.Prompt != "", len(req.PromptIDs) > 0} {
		if b {
			set++
		}
	}
	if set != 1 {
		return nil, fmt.Errorf("%w: set exactly one of Messages, Prompt and PromptIDs (%d set)", ErrRequest, set)
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
	if len(prompt)+1 > m.ctxLen {
		return fmt.Errorf("%w: prompt of %d tokens, context %d", ErrContextLength, len(prompt), m.ctxLen)
	}
	p := req.Params
	sampler, err := sampling.NewSampler(p, m.cfg.VocabSize, prompt)
	if err != nil {
		return err
	}
	stops, err := sampling.NewStopMatcher(p.Stop)
	if err != nil {
		return err
	}
	var decoder *tokenizer.Decoder
	if m.tok != nil {
		decoder = m.tok.NewDecoder(true)
	}
	maxNew := p.MaxNewTokens(len(prompt), m.ctxLen)
	cons := newConstrained(req.Constraint, m.cfg.VocabSize, p.StopTokenIDs, m.cfg.EOSTokenIDs)

	// The sequence holds the prompt and every generated token but the last.
	blocks, err := m.sched.reserve(ctx, len(prompt)+maxNew-1)
	if err != nil {
		return err
	}
	defer m.sched.release(blocks)
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	seq, err := m.cache.NewSequence()
	m.mu.Unlock()
	if err != nil {
		return err
	}
	defer m.cache.Free(seq)

	st := &step{seq: seq, logits: make([]float32, m.cfg.VocabSize), done: make(chan struct{}, 1)}
	start := time.Now()
	for lo := 0; lo < len(prompt); lo += m.maxBatch {
		if err := ctx.Err(); err != nil {
			return err
		}
		st.pos, st.ids = lo, prompt[lo:min(lo+m.maxBatch, len(prompt))]
		if err := m.sched.run(st); err != nil {
			return err
		}
	}
	prefilled := time.Now()

	var generated int
	finish := func(reason sampling.FinishReason, text string) {
		now := time.Now()
		t := Timings{Prefill: prefilled.Sub(start), Decode: now.Sub(prefilled)}
		if t.Prefill > 0 {
			t.PrefillTokensPerSecond = float64(len(prompt)) / t.Prefill.Seconds()
		}
		if t.Decode > 0 {
			t.DecodeTokensPerSecond = float64(generated) / t.Decode.Seconds()
		}
		emit(Event{ID: -1, Text: text, Done: true, FinishReason: reason, Timings: t,
			Usage: Usage{PromptTokens: len(prompt), CompletionTokens: generated, TotalTokens: len(prompt) + generated}})
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
	ids := []int{0}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		id, err := cons.sample(sampler, st.logits)
		if err != nil {
			return err
		}
		generated++
		ev := Event{ID: id}
		if p.Logprobs || p.TopLogprobs > 0 {
			lp, err := sampler.Logprobs(st.logits, id)
			if err != nil {
				return err
			}
			ev.Logprobs = &lp
		}
		if p.IsStopToken(id, m.cfg.EOSTokenIDs...) {
			if !emit(ev) {
				return nil
			}
			text, _ := flush()
			finish(sampling.FinishStop, text)
			return nil
		}
		if err := cons.advance(id); err != nil {
			return err
		}
		if decoder != nil {
			var stopped bool
			ev.Text, stopped = stops.Push(decoder.Add(id))
			if stopped {
				if emit(ev) {
					finish(sampling.FinishStop, "")
				}
				return nil
			}
		}
		if !emit(ev) {
			return nil
		}
		if generated == maxNew {
			text, stopped := flush()
			reason := sampling.FinishLength
			if stopped {
				reason = sampling.FinishStop
			}
			finish(reason, text)
			return nil
		}
		ids[0] = id
		st.pos, st.ids = len(prompt)+generated-1, ids
		if err := m.sched.run(st); err != nil {
			return err
		}
	}
}
