package engine

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/fathom-llm/fathom/sampling"
)

// request is a submitted Request: its choices, and the outputs waiting for the reader.
type request struct {
	e       *Engine
	ctx     context.Context
	seqs    []*seq
	arrival time.Time
	eos     []int
	live    int // choices not finished; the loop's

	mu        sync.Mutex
	stopWatch func() bool // stops watching ctx
	out       []Output    // outputs not yet read: out[head:]
	head      int
	err       error
	done      bool
	notify    chan struct{}
}

// seqState is where a sequence stands.
type seqState uint8

const (
	stateWaiting seqState = iota
	stateRunning
	stateDone
)

// seq is one sequence in the cache: a choice of a request. The loop owns it.
type seq struct {
	req    *request
	choice int
	state  seqState

	// tokens are the prompt and the tokens generated so far; hashes the hashes of the full
	// blocks of tokens (empty without prefix caching).
	tokens    []int
	hashes    []blockHash
	promptLen int
	// table is the block table; computed counts the positions whose keys and values are in
	// the cache, registered the leading blocks offered to the prefix cache.
	table                []int
	computed, registered int

	sampler   *sampling.Sampler
	cons      *constrained // nil without a constraint
	params    sampling.Params
	maxNew    int
	generated int
	cached    int // prompt tokens served from the prefix cache when first admitted
	admitted  bool
	timing    Timing
	last      time.Time // when the last token was sampled
}

// newRequest checks req and makes its choices.
func (e *Engine) newRequest(req Request) (*request, error) {
	n := req.N
	if n == 0 {
		n = 1
	}
	switch {
	case len(req.Prompt) == 0:
		return nil, fmt.Errorf("%w: the prompt has no tokens", ErrRequest)
	case n < 0 || n > e.opts.MaxChoices:
		return nil, fmt.Errorf("%w: %d choices, at most %d", ErrRequest, n, e.opts.MaxChoices)
	case len(req.Prompt)+1 > e.ctxLen:
		return nil, fmt.Errorf("%w: prompt of %d tokens, context %d", ErrContextLength, len(req.Prompt), e.ctxLen)
	case req.Params.MaxTokens > 0 && n*req.Params.MaxTokens > e.opts.MaxRequestTokens:
		return nil, fmt.Errorf("%w: %d choices of up to %d tokens are over the %d tokens one request may generate",
			ErrRequest, n, req.Params.MaxTokens, e.opts.MaxRequestTokens)
	}
	for _, id := range req.Prompt {
		if id < 0 || id >= e.lay.VocabSize {
			return nil, fmt.Errorf("%w: token id %d outside the vocabulary of %d", ErrRequest, id, e.lay.VocabSize)
		}
	}
	maxNew := req.Params.MaxNewTokens(len(req.Prompt), e.ctxLen)
	if req.Params.MaxTokens == 0 {
		maxNew = max(1, min(maxNew, e.opts.MaxRequestTokens/n))
	}
	r := &request{e: e, arrival: time.Now(), eos: req.EOS, live: n, notify: make(chan struct{}, 1)}
	prompt := req.Prompt
	hashes := e.kv.hashes(nil, prompt)
	for i := range n {
		p := req.Params.ForChoice(i)
		sampler, err := sampling.NewSampler(p, e.lay.VocabSize, prompt)
		if err != nil {
			return nil, err
		}
		// Each choice's own copies, with room for its generated tokens.
		tokens := slices.Grow(slices.Clone(prompt), maxNew)
		hs := slices.Clone(hashes)
		if len(hs) > 0 {
			hs = slices.Grow(hs, (len(prompt)+maxNew)/e.lay.BlockSize-len(hs))
		}
		r.seqs = append(r.seqs, &seq{
			req: r, choice: i, promptLen: len(prompt), tokens: tokens, hashes: hs,
			sampler: sampler, cons: newConstrained(req.Constraint, e.lay.VocabSize, p.StopTokenIDs, req.EOS),
			params: p, maxNew: maxNew,
			timing: Timing{Arrival: r.arrival},
		})
	}
	return r, nil
}

// push delivers an output to the reader.
func (r *request) push(o Output) {
	r.mu.Lock()
	r.out = append(r.out, o)
	r.mu.Unlock()
	r.wakeReader()
}

// end marks the request finished: with err when it failed.
func (r *request) end(err error) {
	r.mu.Lock()
	if !r.done {
		r.done, r.err = true, err
	}
	stop := r.stopWatch
	r.mu.Unlock()
	if stop != nil {
		stop()
	}
	r.wakeReader()
}

func (r *request) wakeReader() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}
