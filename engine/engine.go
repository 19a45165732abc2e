package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/sampling"
)

// Errors of the engine; test them with errors.Is.
var (
	// ErrContextLength: a request's prompt leaves no room for a generated token in the
	// context, or in the KV cache with nothing else running.
	ErrContextLength = errors.New("engine: context length exceeded")
	// ErrRequest: a malformed request (no prompt, a token id outside the vocabulary, too many
	// choices or tokens).
	ErrRequest = errors.New("engine: invalid request")
	// ErrClosed: the engine was closed.
	ErrClosed = errors.New("engine: closed")
	// ErrCacheFull: a Sequence needs more blocks than are free.
	ErrCacheFull = errors.New("engine: KV cache full")
)

// Layout describes a model to the engine: its paged KV cache and the sizes of its steps.
type Layout struct {
	// BlockSize is the number of positions in one KV cache block, Blocks the number of
	// blocks, and BlockBytes the bytes one block takes (for reporting).
	BlockSize, Blocks int
	BlockBytes        int64
	// SlidingWindow, when positive, is the number of positions a token attends to, itself
	// included.
	SlidingWindow int
	// VocabSize is the number of logits per row.
	VocabSize int
	// ContextLength is the most positions one sequence may hold.
	ContextLength int
	// MaxStepTokens is the most tokens one forward step may run.
	MaxStepTokens int
	// AttentionCost is the work of attending to one position relative to the rest of a
	// token's work in a step: a model's attention FLOPs per attended position divided by a
	// token's other FLOPs (its projections and feed-forward, without the logits, which a
	// prompt token does not compute). The scheduler sizes prompt chunks by it, so that a
	// step late in a long prompt, whose tokens attend to more positions, costs about what an
	// early one does (see Options.TokenBudget). 0, for a model that does not say, counts
	// every token alike.
	AttentionCost float64
}

// Step is the input of one forward step.
type Step struct {
	// Tokens are the step's tokens. A token's Seq indexes Tables; the tokens of one sequence
	// are consecutive and in order. The positions before a sequence's first token hold keys
	// and values already (written by earlier steps, possibly of other sequences sharing the
	// blocks, or by this step's tokens of another sequence: a step stores every token's keys
	// and values before any token reads them).
	Tokens []backend.Token
	// Tables[s] is the block table of sequence s: block Tables[s][i] holds positions
	// i·BlockSize to (i+1)·BlockSize−1. An entry is −1 for a block outside the attention
	// window of every token of the step.
	Tables [][]int
	// Rows are the indices of the tokens whose logits are wanted, in order.
	Rows []int
}

// Model is what the engine needs of a model.
type Model interface {
	// Layout returns the model's layout; it does not change.
	Layout() Layout
	// Forward runs one step and writes the logits of the step's Rows into logits
	// (len(Rows)·VocabSize values). The engine calls it from one goroutine at a time and
	// does not keep the step or its slices afterwards.
	Forward(s *Step, logits []float32) error
}

// Defaults of Options.
const (
	DefaultTokenBudget = 512
	DefaultMaxRunning  = 256
	DefaultMaxChoices  = 16
)

// Options configure an Engine. The zero value of each field selects its default.
type Options struct {
	// TokenBudget bounds the work of one step, in tokens (default DefaultTokenBudget, at
	// most the model's MaxStepTokens). Running decodes go first and count 1 each; prompt
	// chunks fill the rest, a prompt token at position p counting 1 + AttentionCost·a, where
	// a is the number of positions it attends to (p+1, at most the sliding window). A chunk
	// holds at least one token, so a step runs at most TokenBudget tokens and a running
	// stream waits about one step of the budget for its next token however long the prompts
	// being read.
	TokenBudget int
	// MaxRunning is the most sequences that run at once, each choice of a request counting
	// once (default DefaultMaxRunning, at most TokenBudget).
	MaxRunning int
	// MaxChoices bounds a request's N (default DefaultMaxChoices).
	MaxChoices int
	// MaxRequestTokens bounds the tokens one request may generate over all its choices
	// (default four times the context length). A request that sets MaxTokens beyond it is
	// refused; without MaxTokens each of its N choices may generate MaxRequestTokens/N.
	MaxRequestTokens int
	// NoPrefixCache turns automatic prefix caching off: every request computes its whole
	// prompt.
	NoPrefixCache bool
}

// Request is one generation request.
type Request struct {
	// Prompt is the prompt's token ids.
	Prompt []int
	// Params are the sampling parameters; choice i samples with Params.ForChoice(i).
	Params sampling.Params
	// N is the number of choices, independent continuations of the prompt (0 means 1).
	N int
	// EOS are the model's end-of-sequence ids, which end a choice as Params.StopTokenIDs do.
	EOS []int
	// Constraint, when set, restricts the generated tokens: each choice follows its own
	// state of it, the tokens it does not allow are masked before any other sampling step,
	// and the stop and end-of-sequence tokens are allowed only where it accepts the end.
	Constraint sampling.Constraint
}

// Usage counts the tokens of one choice.
type Usage struct {
	PromptTokens int
	// CachedTokens is how many of the prompt's tokens were served from the prefix cache.
	CachedTokens     int
	CompletionTokens int
}

// Timing records when a choice went through its phases.
type Timing struct {
	// Arrival is when the request was submitted, Scheduled when the choice first ran,
	// FirstToken when its first token was sampled and Finished when it ended.
	Arrival, Scheduled, FirstToken, Finished time.Time
	// Preemptions counts the times the choice was preempted.
	Preemptions int
}

// Output is one sampled token of one choice.
type Output struct {
	Choice int
	ID     int
	// Logprobs is set when the request's Params ask for logprobs.
	Logprobs *sampling.Logprobs
	// Finish is set on a choice's last output: FinishStop when ID is a stop or
	// end-of-sequence token, FinishLength when the choice reached its most tokens.
	Finish sampling.FinishReason
	// Usage and Timing describe the choice up to this output (Timing.Finished is set on
	// the last).
	Usage  Usage
	Timing Timing
}

// Engine schedules the requests of one model. Its methods are safe for concurrent use.
type Engine struct {
	m      Model
	lay    Layout
	opts   Options
	ctxLen int
	kv     *ledger

	mu     sync.Mutex
	inbox  []event
	closed bool
	wake   chan struct{}
	exited chan struct{}

	// The loop's state.
	waiting []*seq // the head runs first
	running []*seq // in admission order
	batch   []scheduled
	step    Step
	logits  []float32

	stats stats
}

// event is a message to the loop.
type event struct {
	submit *request
	cancel *request // with choice, or -1 for every choice
	choice int
	reason sampling.FinishReason // of a cancelled choice; empty for an abort
	job    *job
}

// New returns an engine over m, running its loop until Close.
func New(m Model, opts Options) (*Engine, error) {
	lay := m.Layout()
	if lay.BlockSize <= 0 || lay.Blocks <= 0 || lay.VocabSize <= 0 || lay.ContextLength <= 0 ||
		lay.MaxStepTokens <= 0 || lay.SlidingWindow < 0 || lay.BlockBytes < 0 ||
		!(lay.AttentionCost >= 0 && lay.AttentionCost <= math.MaxFloat64) {
		return nil, fmt.Errorf("engine: invalid layout %+v", lay)
	}
	if opts.TokenBudget < 0 || opts.MaxRunning < 0 || opts.MaxChoices < 0 || opts.MaxRequestTokens < 0 {
		return nil, fmt.Errorf("engine: negative limit in %+v", opts)
	}
	if opts.TokenBudget == 0 {
		opts.TokenBudget = DefaultTokenBudget
	}
	opts.TokenBudget = min(opts.TokenBudget, lay.MaxStepTokens)
	if opts.MaxRunning == 0 {
		opts.MaxRunning = DefaultMaxRunning
	}
	opts.MaxRunning = min(opts.MaxRunning, opts.TokenBudget)
	if opts.MaxChoices == 0 {
		opts.MaxChoices = DefaultMaxChoices
	}
	e := &Engine{
		m: m, lay: lay, opts: opts,
		kv:   newLedger(lay.Blocks, lay.BlockSize, lay.SlidingWindow, !opts.NoPrefixCache),
		wake: make(chan struct{}, 1), exited: make(chan struct{}),
	}
	e.ctxLen = e.kv.fitLength(lay.ContextLength)
	if e.opts.MaxRequestTokens == 0 {
		e.opts.MaxRequestTokens = 4 * e.ctxLen
	}
	e.stats.init(lay)
	go e.loop()
	return e, nil
}

// ContextLength returns the most positions one sequence may hold: the model's context
// length, or less when the KV cache could not hold a sequence that long.
func (e *Engine) ContextLength() int { return e.ctxLen }

// Options returns the engine's options with the defaults filled in.
func (e *Engine) Options() Options { return e.opts }

// Close stops the engine: requests still running or waiting end with ErrClosed. Closing
// twice is harmless.
func (e *Engine) Close() error {
	e.mu.Lock()
	if !e.closed {
		e.closed = true
		e.signal()
	}
	e.mu.Unlock()
	<-e.exited
	return nil
}

// signal wakes the loop; the caller holds e.mu.
func (e *Engine) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// post sends ev to the loop, failing once the engine is closed.
func (e *Engine) post(ev event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	e.inbox = append(e.inbox, ev)
	e.signal()
	return nil
}

// Handle is a submitted request: its outputs, and the means to stop it.
type Handle struct {
	r *request
}

// Submit checks a request and queues it. Generation runs in the engine; read the outputs
// with Next. Cancelling ctx stops the request (within one step) and makes Next return
// ctx's error. Errors in the request are reported here: ErrRequest, ErrContextLength and
// the sampling package's parameter errors.
func (e *Engine) Submit(ctx context.Context, req Request) (*Handle, error) {
	r, err := e.newRequest(req)
	if err != nil {
		return nil, err
	}
	r.ctx = ctx
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := e.post(event{submit: r}); err != nil {
		return nil, err
	}
	// Registered after the submission, so that the cancellation follows it in the inbox.
	stop := context.AfterFunc(ctx, func() { e.post(event{cancel: r, choice: -1}) })
	r.mu.Lock()
	if r.done {
		stop()
	} else {
		r.stopWatch = stop
	}
	r.mu.Unlock()
	return &Handle{r: r}, nil
}

// Next waits for the request's next output. After a request's last output it returns
// io.EOF; when the request failed, the error (ErrClosed, the model's error); once the
// context given to Submit is done, its error (the outputs not yet read are dropped).
func (h *Handle) Next() (Output, error) {
	r := h.r
	for {
		if err := r.ctx.Err(); err != nil {
			return Output{}, err
		}
		r.mu.Lock()
		if r.head < len(r.out) {
			o := r.out[r.head]
			r.out[r.head] = Output{}
			if r.head++; r.head == len(r.out) {
				r.out, r.head = r.out[:0], 0
			}
			r.mu.Unlock()
			return o, nil
		}
		err, done := r.err, r.done
		r.mu.Unlock()
		switch {
		case err != nil:
			return Output{}, err
		case done:
			return Output{}, io.EOF
		}
		select {
		case <-r.notify:
		case <-r.ctx.Done():
		}
	}
}

// Stop ends one choice early, as finished by a stop string found in its text, releasing
// its blocks. Its outputs not yet read stay readable.
func (h *Handle) Stop(choice int) {
	h.r.e.post(event{cancel: h.r, choice: choice, reason: sampling.FinishStop})
}

// Close ends every choice of the request that is still running. Outputs not yet read stay
// readable.
func (h *Handle) Close() {
	h.r.e.post(event{cancel: h.r, choice: -1})
}
