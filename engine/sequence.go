package engine

import (
	"context"
	"fmt"

	"github.com/fathom-llm/fathom/backend"
)

// job is work for the loop's goroutine, between two steps.
type job struct {
	run  func() error
	done chan error
}

// do runs f on the loop's goroutine and returns its error; ctx ending before the loop
// takes the job skips it.
func (e *Engine) do(ctx context.Context, f func() error) error {
	j := &job{done: make(chan error, 1)}
	j.run = func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return f()
	}
	if err := e.post(event{job: j}); err != nil {
		return err
	}
	return <-j.done
}

// Sequence is a sequence of tokens in the KV cache outside any request, for scoring: the
// caller runs its steps (choosing the rows whose logits it wants). Its blocks come from the
// engine's pool, neither shared nor cached; it holds them until Close. A Sequence is not safe
// for concurrent use.
type Sequence struct {
	e      *Engine
	s      *seq
	n      int
	closed bool
}

// NewSequence starts an empty Sequence.
func (e *Engine) NewSequence() (*Sequence, error) {
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	return &Sequence{e: e, s: &seq{}}, nil
}

// Len returns the number of positions the sequence holds.
func (q *Sequence) Len() int { return q.n }

// Append runs ids after the sequence's positions as one step: it takes the blocks the new
// positions need, failing with an error wrapping ErrCacheFull when they are not free
// even after evicting cached blocks, and calls run with the step (its Rows empty) on the
// engine's goroutine, between the engine's own steps. When run fails the sequence keeps its
// length. ids must number at most the model's MaxStepTokens and keep the sequence within the
// context length.
func (q *Sequence) Append(ctx context.Context, ids []int, run func(*Step) error) error {
	e := q.e
	switch {
	case q.closed:
		return ErrClosed
	case len(ids) == 0 || len(ids) > e.lay.MaxStepTokens:
		return fmt.Errorf("%w: a step of %d tokens (1 to %d)", ErrRequest, len(ids), e.lay.MaxStepTokens)
	case q.n+len(ids) > e.ctxLen:
		return fmt.Errorf("%w: %d + %d tokens, context %d", ErrContextLength, q.n, len(ids), e.ctxLen)
	}
	return e.do(ctx, func() error {
		s := q.s
		s.computed = q.n
		e.kv.slide(s)
		if e.kv.fit(s, len(ids)) < len(ids) {
			return fmt.Errorf("%w: %d tokens after %d, %d blocks free", ErrCacheFull, len(ids), q.n, e.kv.nfree)
		}
		e.kv.grow(s, len(ids))
		st := &Step{Tables: [][]int{s.table}}
		for i, id := range ids {
			st.Tokens = append(st.Tokens, backend.Token{Seq: 0, Pos: q.n + i, ID: id})
		}
		if err := run(st); err != nil {
			return err
		}
		q.n += len(ids)
		return nil
	})
}

// Close releases the sequence's blocks.
func (q *Sequence) Close() error {
	if q.closed {
		return nil
	}
	q.closed = true
	err := q.e.do(context.Background(), func() error {
		q.e.kv.drop(q.s)
		return nil
	})
	if err == ErrClosed {
		return nil
	}
	return err
}
