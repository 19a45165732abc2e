package mixtral

import (
	"context"
	"fmt"
	"math"

	"github.com/fathom-llm/fathom/engine"
	"github.com/fathom-llm/fathom/sampling"
)

// EvalOptions choose what Sequence.Append and Model.Eval return.
type EvalOptions struct {
	// AllLogits asks for the logits of every appended position, not only the last.
	AllLogits bool
	// Trace asks for the hidden states and the router logits of every appended position.
	Trace bool
}

// Eval is the result of evaluating tokens.
type Eval struct {
	// Logits has one row of VocabSize logits per returned position: the last appended
	// token's, or with AllLogits every appended token's.
	Logits [][]float32
	// Hidden, with Trace, has NumHiddenLayers+1 entries of [tokens×HiddenSize] values:
	// Hidden[0] is the embedding output, Hidden[L] for 0 < L < NumHiddenLayers the residual
	// stream after decoder layer L-1, and Hidden[NumHiddenLayers] the final norm's output.
	Hidden [][]float32
	// Router, with Trace, has NumHiddenLayers entries of [tokens×NumLocalExperts] raw router
	// logits (before the softmax).
	Router [][]float32
}

// Sequence is a sequence of tokens held in the model's KV cache, extended step by step
// with Append: the low-level interface for scoring and for tests. A Sequence is not safe for
// concurrent use; Close it to free its cache blocks.
type Sequence struct {
	m *Model
	q *engine.Sequence
}

// NewSequence starts an empty sequence in the KV cache. Its blocks come from the pool that
// Generate requests use, and it holds them until Close; Append fails with an error wrapping
// engine.ErrCacheFull when the cache has none left.
func (m *Model) NewSequence() (*Sequence, error) {
	q, err := m.engine.NewSequence()
	if err != nil {
		return nil, engineError(err)
	}
	return &Sequence{m: m, q: q}, nil
}

// Len returns the number of tokens in the sequence.
func (s *Sequence) Len() int { return s.q.Len() }

// Close frees the sequence's cache blocks.
func (s *Sequence) Close() error { return s.q.Close() }

// Append runs ids through the model after the tokens already in the sequence, in steps of
// at most Options.MaxBatch tokens, and returns their logits (and traces).
func (s *Sequence) Append(ctx context.Context, ids []int, opts EvalOptions) (*Eval, error) {
	m := s.m
	switch {
	case len(ids) == 0:
		return nil, fmt.Errorf("mixtral: Append of no tokens")
	case s.q.Len()+len(ids) > m.ContextLength():
		return nil, fmt.Errorf("%w: %d + %d tokens, context %d", ErrContextLength, s.q.Len(), len(ids), m.ContextLength())
	}
	if err := m.checkIDs(ids); err != nil {
		return nil, err
	}
	ev := &Eval{}
	var tr *trace
	if opts.Trace {
		tr = &trace{hidden: make([][]float32, m.cfg.NumHiddenLayers+1), router: make([][]float32, m.cfg.NumHiddenLayers)}
	}
	V := m.cfg.VocabSize
	for lo := 0; lo < len(ids); lo += m.maxBatch {
		chunk := ids[lo:min(lo+m.maxBatch, len(ids))]
		var rows []int
		if opts.AllLogits {
			for i := range chunk {
				rows = append(rows, i)
			}
		} else if lo+len(chunk) == len(ids) {
			rows = []int{len(chunk) - 1}
		}
		out := make([]float32, len(rows)*V)
		err := s.q.Append(ctx, chunk, func(st *engine.Step) error {
			return m.forward(st.Tokens, st.Tables, rows, out, tr)
		})
		if err != nil {
			return nil, engineError(err)
		}
		for i := range rows {
			ev.Logits = append(ev.Logits, out[i*V:(i+1)*V:(i+1)*V])
		}
	}
	if tr != nil {
		ev.Hidden, ev.Router = tr.hidden, tr.router
	}
	return ev, nil
}

// checkIDs reports a token id outside the vocabulary.
func (m *Model) checkIDs(ids []int) error {
	for _, id := range ids {
		if id < 0 || id >= m.cfg.VocabSize {
			return fmt.Errorf("mixtral: token id %d outside the vocabulary of %d", id, m.cfg.VocabSize)
		}
	}
	return nil
}

// Eval runs ids as a fresh sequence and returns their logits (and traces).
func (m *Model) Eval(ctx context.Context, ids []int, opts EvalOptions) (*Eval, error) {
	s, err := m.NewSequence()
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.Append(ctx, ids, opts)
}

// Perplexity scores ids in independent windows: ids[0:window+1], ids[window:2·window+1], ...
// (each window predicts window tokens from scratch, no KV cache carried over; a shorter last
// window scores what remains) and returns exp of the mean negative log-likelihood of all the
// predicted tokens.
func (m *Model) Perplexity(ctx context.Context, ids []int, window int) (float64, error) {
	switch {
	case window <= 0:
		return 0, fmt.Errorf("mixtral: perplexity window %d is not positive", window)
	case min(window+1, len(ids)) > m.ContextLength():
		return 0, fmt.Errorf("%w: windows of %d tokens, context %d", ErrContextLength, window+1, m.ContextLength())
	case len(ids) < 2:
		return 0, fmt.Errorf("mixtral: perplexity needs at least 2 tokens, got %d", len(ids))
	}
	if err := m.checkIDs(ids); err != nil {
		return 0, err
	}
	const step = 64 // tokens per Append, bounding the logits held at once
	var nll float64
	var count int
	for start := 0; start+1 < len(ids); start += window {
		w := ids[start:min(start+window+1, len(ids))]
		s, err := m.NewSequence()
		if err != nil {
			return 0, err
		}
		for lo := 0; lo+1 < len(w); lo += step {
			part := w[lo:min(lo+step, len(w)-1)]
			ev, err := s.Append(ctx, part, EvalOptions{AllLogits: true})
			if err != nil {
				s.Close()
				return 0, err
			}
			for i, logits := range ev.Logits {
				lp, err := sampling.LogSoftmax(logits, w[lo+i+1], 0)
				if err != nil {
					s.Close()
					return 0, err
				}
				nll -= lp.Chosen.Logprob
				count++
			}
		}
		s.Close()
	}
	return math.Exp(nll / float64(count)), nil
}
