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
	events <-chan choiceEvent
	cancel context.CancelFunc
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

// start runs reqs under a context derived from ctx.
func start(ctx context.Context, m Model, reqs []mixtral.Request) *generation {
	ctx, cancel := context.WithCancel(ctx)
	return &generation{events: generate(ctx, m, reqs), cancel: cancel}
}

// stop cancels the generations and waits until all have ended.
func (g *generation) stop() {
	g.cancel()
	for range g.events {
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
		}
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
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return errCanceled(err)
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

// totalUsage sums the usage of choices; promptOf[i] names choice i's prompt, whose tokens
// (and those of them served from the prefix cache, as its first choice found them) count
// once however many choices share it.
func totalUsage(usages []mixtral.Usage, promptOf []int) mixtral.Usage {
	var u mixtral.Usage
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
	return u
}

// streamFormat renders the chunks of one endpoint's event stream.
type streamFormat interface {
	// begin returns the chunk that opens choice i, or nil.
	begin(i int) any
	// token returns the chunk for text and logprobs that choice i produced.
	token(i int, text string, lp *sampling.Logprobs) any
	// finish returns the chunk that ends choice i.
	finish(i int, reason sampling.FinishReason) any
	// usage returns the final usage chunk.
	usage(u mixtral.Usage) any
}

// stream answers a started generation as server-sent events. Until the first event arrives
// nothing is written, so a failure before it is answered with an error status; a failure
// after it ends the stream with an error event.
func (s *Server) stream(w http.ResponseWriter, g *generation, n int, promptOf []int, f streamFormat, withUsage bool) *apiError {
	first, ok := <-g.events
	if !ok {
		return s.generationError(errNoFinalEvent)
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
	handle := func(ce choiceEvent) {
		if ce.err != nil {
			e := s.generationError(ce.err)
			sse.data(e.envelope())
			return
		}
		if ce.ev.Text != "" || ce.ev.Logprobs != nil {
			sse.data(f.token(ce.index, ce.ev.Text, ce.ev.Logprobs))
		}
		if ce.ev.Done {
			usages[ce.index] = ce.ev.Usage
			sse.data(f.finish(ce.index, ce.ev.FinishReason))
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
	if sse.err != nil {
		return nil // the client went away; the caller stops the generation
	}
	if withUsage && !failed {
		sse.data(f.usage(totalUsage(usages, promptOf)))
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
