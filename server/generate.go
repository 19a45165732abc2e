package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/fathom-llm/fathom/mixtral"
	"github.com/fathom-llm/fathom/sampling"
)

// choiceEvent is one event of one choice's generation.
type choiceEvent struct {
	index int
	ev    mixtral.Event
	err   error
}

// panicError is a panic recovered in a generation goroutine.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("panic in generation: %v", e.value) }

// errNoFinalEvent reports a generation that ended without its final event.
var errNoFinalEvent = errors.New("server: generation ended without a final event")

// generate starts one generation per request, each in its own goroutine, and returns their
// events merged into one channel, closed once every generation has ended. To stop early,
// cancel ctx and drain the channel: once it is closed no goroutine is left.
func generate(ctx context.Context, m Model, reqs []mixtral.Request) <-chan choiceEvent {
	out := make(chan choiceEvent)
	send := func(ce choiceEvent) bool {
		select {
		case out <- ce:
			return true
		case <-ctx.Done():
			return false
		}
	}
	var wg sync.WaitGroup
	for i, req := range reqs {
		wg.Go(func() {
			defer func() {
				if v := recover(); v != nil {
					send(choiceEvent{index: i, err: &panicError{v, debug.Stack()}})
				}
			}()
			for ev, err := range m.Stream(ctx, req) {
				if err != nil && ctx.Err() != nil {
					err = context.Cause(ctx) // errStopped rather than context.Canceled
				}
				if !send(choiceEvent{index: i, ev: ev, err: err}) || err != nil || ev.Done {
					return
				}
			}
			if ctx.Err() == nil {
				send(choiceEvent{index: i, err: errNoFinalEvent})
			}
		})
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out
}

// generation is a started set of choices: their events, and the means to stop them.
type generation struct {
	ctx    context.Context
	events <-chan choiceEvent
	cancel context.CancelFunc
	// release, when set, frees the generation's turn once it has stopped.
	release func()
}

// choices expands each prompt's request into n choices, each with its own sampling seed
// (Params.ForChoice): choice p*n+i is choice i of prompt p, and promptOf[p*n+i] = p.
func choices(prompts []mixtral.Request, n int) (reqs []mixtral.Request, promptOf []int) {
	reqs = make([]mixtral.Request, 0, len(prompts)*n)
	promptOf = make([]int, 0, len(prompts)*n)
	for p, req := range prompts {
		for i := range n {
			r := req
			r.Params = req.Params.ForChoice(i)
			reqs = append(reqs, r)
			promptOf = append(promptOf, p)
		}
	}
	return reqs, promptOf
}

// begin checks that each prompt fits the context, waits for a turn and starts n choices of
// each prompt (promptOf as for choices); with empty (max_tokens 0) it generates nothing and
// takes no turn. param names the prompt parameter. The caller must stop the generation.
func (s *Server) begin(w http.ResponseWriter, r *http.Request, prompts []mixtral.Request, n int, empty bool, param string) (*generation, []int, *apiError) {
	if empty {
		promptTokens, e := s.prepare(prompts, n, param, true)
		if e != nil {
			return nil, nil, e
		}
		_, promptOf := choices(prompts, n)
		return startEmpty(r.Context(), promptTokens, promptOf), promptOf, nil
	}
	release, e := s.admit(r.Context(), w)
	if e != nil {
		return nil, nil, e
	}
	if _, e := s.prepare(prompts, n, param, false); e != nil {
		release()
		return nil, nil, e
	}
	reqs, promptOf := choices(prompts, n)
	g := start(r.Context(), s.model, reqs)
	g.release = release
	return g, promptOf, nil
}

// start runs reqs under a context derived from ctx.
func start(ctx context.Context, m Model, reqs []mixtral.Request) *generation {
	ctx, cancel := context.WithCancel(ctx)
	return &generation{ctx: ctx, events: generate(ctx, m, reqs), cancel: cancel}
}

// startEmpty returns a generation of no tokens (max_tokens 0): each choice ends at once
// with finish reason "length" and the usage of its prompt, promptTokens[promptOf[i]].
func startEmpty(ctx context.Context, promptTokens, promptOf []int) *generation {
	ctx, cancel := context.WithCancel(ctx)
	events := make(chan choiceEvent, len(promptOf))
	for i, p := range promptOf {
		n := promptTokens[p]
		events <- choiceEvent{index: i, ev: mixtral.Event{ID: -1, Done: true, FinishReason: sampling.FinishLength,
			Usage: mixtral.Usage{PromptTokens: n, TotalTokens: n}}}
	}
	close(events)
	return &generation{ctx: ctx, events: events, cancel: cancel}
}

// ended returns the error for a generation whose events ended before every choice was done:
// the cause of its context's end, or errNoFinalEvent.
func (g *generation) ended() error {
	if g.ctx.Err() != nil {
		return context.Cause(g.ctx)
	}
	return errNoFinalEvent
}

// stop cancels the generations and waits until all have ended.
func (g *generation) stop() {
	g.cancel()
	for range g.events {
	}
	if g.release != nil {
		g.release()
	}
}

// choiceResult is one choice's whole output.
type choiceResult struct {
	text     strings.Builder
	logprobs []sampling.Logprobs
	finish   sampling.FinishReason
	usage    mixtral.Usage
}

// collect gathers every choice's output, or returns the first error.
func (g *generation) collect(n int) ([]choiceResult, error) {
	res := make([]choiceResult, n)
	done := 0
	for ce := range g.events {
		if ce.err != nil {
			return nil, ce.err
		}
		c := &res[ce.index]
		c.text.WriteString(ce.ev.Text)
		if ce.ev.Logprobs != nil {
			c.logprobs = append(c.logprobs, *ce.ev.Logprobs)
		}
		if ce.ev.Done {
			c.finish, c.usage = ce.ev.FinishReason, ce.ev.Usage
			done++
		}
	}
	if done < n {
		return nil, g.ended()
	}
	return res, nil
}

// generationError maps an error from a generation to the answer for the client, logging
// server faults.
func (s *Server) generationError(err error) *apiError {
	var pe *panicError
	switch {
	case errors.As(err, &pe):
		s.log.Error("panic in generation", "panic", fmt.Sprint(pe.value), "stack", string(pe.stack))
		return errInternal()
	case errors.Is(err, errStopped):
		return errStopping()
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &apiError{Status: 499, Type: typeInvalidRequest, Message: "Request cancelled: " + err.Error()}
	case errors.Is(err, sampling.ErrInvalidParam):
		return paramError(err)
	case errors.Is(err, mixtral.ErrContextLength):
		return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Code: "context_length_exceeded",
			Message: "This model's maximum context length was exceeded: " + err.Error()}
	case errors.Is(err, mixtral.ErrRequest), errors.Is(err, sampling.ErrTokenID), errors.Is(err, mixtral.ErrNoTokenizer):
		return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Message: err.Error()}
	case errors.Is(err, mixtral.ErrClosed):
		return &apiError{Status: http.StatusServiceUnavailable, Type: typeServer, Message: "The model is shutting down."}
	}
	s.log.Error("generation failed", "error", err)
	return errInternal()
}

// usage is the API's usage object: token counts and their estimated cost in US dollars.
type usage struct {
	PromptTokens        int                         `json:"prompt_tokens"`
	CompletionTokens    int                         `json:"completion_tokens"`
	TotalTokens         int                         `json:"total_tokens"`
	PromptTokensDetails mixtral.PromptTokensDetails `json:"prompt_tokens_details"`
	EstimatedCost       float64                     `json:"estimated_cost"`
}

// totalUsage sums the usage of choices, priced with the server's prices; promptOf[i] names
// choice i's prompt, whose tokens (and those of them served from the prefix cache, as its
// first choice found them) count once however many choices share it.
func (s *Server) totalUsage(usages []mixtral.Usage, promptOf []int) *usage {
	var u usage
	seen := map[int]bool{}
	for i, cu := range usages {
		if !seen[promptOf[i]] {
			seen[promptOf[i]] = true
			u.PromptTokens += cu.PromptTokens
			u.PromptTokensDetails.CachedTokens += cu.PromptTokensDetails.CachedTokens
		}
		u.CompletionTokens += cu.CompletionTokens
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	u.EstimatedCost = (float64(u.PromptTokens)*s.opts.PriceInput + float64(u.CompletionTokens)*s.opts.PriceOutput) / 1e6
	return &u
}

// streamFormat renders the chunks of one endpoint's event stream.
type streamFormat interface {
	// begin returns the chunk that opens choice i, or nil.
	begin(i int) any
	// token returns the chunks for text and logprobs that choice i produced.
	token(i int, text string, lp *sampling.Logprobs) []any
	// finish returns the chunks of choice i's last event, the one that ends it.
	finish(i int, text string, lp *sampling.Logprobs, reason sampling.FinishReason) []any
	// usage returns the final usage chunk.
	usage(u *usage) any
}

// stream answers a started generation as server-sent events. Until the first event arrives
// nothing is written, so a failure before it is answered with an error status; a failure
// after it ends the stream with an error event.
func (s *Server) stream(w http.ResponseWriter, g *generation, n int, promptOf []int, f streamFormat, withUsage bool) *apiError {
	first, ok := <-g.events
	if !ok {
		return s.generationError(g.ended())
	}
	if first.err != nil {
		return s.generationError(first.err)
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	sse := &sseWriter{w: w, rc: http.NewResponseController(w)}
	for i := range n {
		if c := f.begin(i); c != nil {
			sse.data(c)
		}
	}
	usages := make([]mixtral.Usage, n)
	done := 0
	handle := func(ce choiceEvent) {
		if ce.err != nil {
			e := s.generationError(ce.err)
			sse.data(e.envelope())
			return
		}
		chunks := f.token
		if ce.ev.Done {
			usages[ce.index] = ce.ev.Usage
			done++
			chunks = func(i int, text string, lp *sampling.Logprobs) []any {
				return f.finish(i, text, lp, ce.ev.FinishReason)
			}
		}
		for _, c := range chunks(ce.index, ce.ev.Text, ce.ev.Logprobs) {
			sse.data(c)
		}
	}
	handle(first)
	failed := first.err != nil
	for ce := range g.events {
		if sse.err != nil || failed {
			break
		}
		handle(ce)
		failed = ce.err != nil
	}
	if !failed && sse.err == nil && done < n {
		// Cancelled (Server.Stop) or broken: say so rather than end as if complete.
		handle(choiceEvent{err: g.ended()})
		failed = true
	}
	if sse.err != nil {
		return nil // the client went away; the caller stops the generation
	}
	if withUsage && !failed {
		sse.data(f.usage(s.totalUsage(usages, promptOf)))
	}
	sse.raw("[DONE]")
	return nil
}

// sseWriter writes server-sent events, flushing each; it remembers the first write error.
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	err error
}

// data writes v as one event: "data: <json>\n\n".
func (s *sseWriter) data(v any) {
	b, err := marshal(v)
	if err != nil {
		b, _ = marshal(errInternal().envelope())
	}
	s.raw(string(b))
}

// raw writes one event with the given data line.
func (s *sseWriter) raw(data string) {
	if s.err != nil {
		return
	}
	if _, err := s.w.Write([]byte("data: " + data + "\n\n")); err != nil {
		s.err = err
		return
	}
	s.err = s.rc.Flush()
}
