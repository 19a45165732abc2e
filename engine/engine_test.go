package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fathom-llm/fathom/sampling"
)

// start makes an engine over a fake model of layout lay.
func start(t *testing.T, lay Layout, opts Options) (*Engine, *fakeModel) {
	t.Helper()
	f := newFake(lay)
	e, err := New(f, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e, f
}

// result is what a request produced: each choice's tokens and last output.
type result struct {
	ids   [][]int
	final []Output
}

func collect(h *Handle, n int) (result, error) {
	res := result{ids: make([][]int, n), final: make([]Output, n)}
	for {
		o, err := h.Next()
		if err == io.EOF {
			return res, nil
		}
		if err != nil {
			return res, err
		}
		res.ids[o.Choice] = append(res.ids[o.Choice], o.ID)
		if o.Finish != "" {
			res.final[o.Choice] = o
		}
	}
}

func choices(req Request) int { return max(1, req.N) }

// generate runs req to the end.
func generate(t *testing.T, e *Engine, req Request) result {
	t.Helper()
	h, err := e.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	res, err := collect(h, choices(req))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// check compares every choice of res with the reference generation.
func check(t *testing.T, lay Layout, req Request, res result) {
	t.Helper()
	for i := range choices(req) {
		p := req.Params.ForChoice(i)
		want, err := reference(lay, req.Prompt, p, p.MaxTokens, req.EOS...)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.ids[i], want) {
			t.Fatalf("choice %d: got %v, want %v", i, res.ids[i], want)
		}
		if f := res.final[i]; f.Finish == "" || f.Usage.CompletionTokens != len(want) || f.Usage.PromptTokens != len(req.Prompt) {
			t.Fatalf("choice %d: final output %+v for %d tokens", i, f, len(want))
		}
	}
}

func seeded(seed int64, maxTokens int) sampling.Params {
	return sampling.Params{Temperature: 1, Seed: &seed, MaxTokens: maxTokens}
}

// prompt returns n pseudo-random token ids in [1, 32).
func prompt(seed uint64, n int) []int {
	r := rand.New(rand.NewPCG(seed, 1))
	ids := make([]int, n)
	for i := range ids {
		ids[i] = 1 + r.IntN(31)
	}
	return ids
}

// waitFor polls cond until it holds, failing the test after a while.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestGenerateMatchesReference(t *testing.T) {
	for _, tc := range []struct {
		name   string
		lay    Layout
		params sampling.Params
		n      int
		eos    []int
	}{
		{"greedy", Layout{BlockSize: 4, Blocks: 64}, sampling.Params{MaxTokens: 20}, 1, nil},
		{"seeded", Layout{BlockSize: 4, Blocks: 64}, seeded(7, 30), 1, nil},
		{"choices", Layout{BlockSize: 4, Blocks: 64}, seeded(8, 25), 4, nil},
		{"eos", Layout{BlockSize: 16, Blocks: 16}, seeded(9, 200), 3, []int{5}},
		{"window", Layout{BlockSize: 4, Blocks: 64, SlidingWindow: 6}, seeded(10, 60), 2, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, f := start(t, tc.lay, Options{})
			req := Request{Prompt: prompt(1, 37), Params: tc.params, N: tc.n, EOS: tc.eos}
			check(t, f.lay, req, generate(t, e, req))
			waitFor(t, "blocks released", func() bool { return e.Metrics().BlocksUsed == 0 })
		})
	}
}

func TestLogprobs(t *testing.T) {
	e, _ := start(t, Layout{BlockSize: 4, Blocks: 16}, Options{})
	p := seeded(3, 5)
	p.Logprobs, p.TopLogprobs = true, 2
	h, err := e.Submit(context.Background(), Request{Prompt: prompt(2, 9), Params: p})
	if err != nil {
		t.Fatal(err)
	}
	for {
		o, err := h.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if o.Logprobs == nil || o.Logprobs.Chosen.ID != o.ID || len(o.Logprobs.Top) != 2 {
			t.Fatalf("output %+v: logprobs %+v", o, o.Logprobs)
		}
	}
}

func TestPrefixReuse(t *testing.T) {
	for _, tc := range []struct {
		name   string
		lay    Layout
		noPC   bool
		cached int // prompt tokens the second turn finds cached
	}{
		// Turn 1 computes 23 prompt tokens and 9 of its 10 generated ones: 32 positions,
		// 8 full blocks; turn 2 (43 tokens) hits all 8.
		{"cache", Layout{BlockSize: 4, Blocks: 64}, false, 32},
		{"off", Layout{BlockSize: 4, Blocks: 64}, true, 0},
		// With a window of 6 only the blocks that the first token to compute reads must be
		// cached; the table has none before them.
		{"window", Layout{BlockSize: 4, Blocks: 64, SlidingWindow: 6}, false, 32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, f := start(t, tc.lay, Options{NoPrefixCache: tc.noPC})
			turn1 := Request{Prompt: prompt(3, 23), Params: seeded(1, 10)}
			r1 := generate(t, e, turn1)
			check(t, f.lay, turn1, r1)
			if got := r1.final[0].Usage.CachedTokens; got != 0 {
				t.Fatalf("turn 1: %d cached tokens", got)
			}
			before := len(f.records())
			turn2 := Request{Prompt: append(append(slices.Clone(turn1.Prompt), r1.ids[0]...), prompt(4, 10)...), Params: seeded(2, 10)}
			r2 := generate(t, e, turn2)
			check(t, f.lay, turn2, r2)
			if got := r2.final[0].Usage.CachedTokens; got != tc.cached {
				t.Fatalf("turn 2: %d cached tokens, want %d", got, tc.cached)
			}
			m := e.Metrics()
			if m.PrefixQueries != int64(len(turn1.Prompt)+len(turn2.Prompt)) || m.PrefixHits != int64(tc.cached) {
				t.Fatalf("prefix cache queries %d, hits %d", m.PrefixQueries, m.PrefixHits)
			}
			// The step that started turn 2 ran only its uncached tokens.
			first := f.records()[before].seqs[0]
			if first.first.Pos != tc.cached || first.n != len(turn2.Prompt)-tc.cached {
				t.Fatalf("turn 2 started with %+v, want %d tokens from position %d", first, len(turn2.Prompt)-tc.cached, tc.cached)
			}
		})
	}
}

func TestWindowHitNeedsOnlyTheWindow(t *testing.T) {
	// Window 8, blocks of 4, 12 blocks. Turn 1 leaves 8 cached blocks, those that slid out
	// of the window released first; a filler of 9 blocks takes the 4 others and evicts the
	// 5 oldest. Turn 2's first token to compute, at 32, reads blocks 6 and 7, which
	// survive: it hits 8 blocks though the first 5 are gone.
	lay := Layout{BlockSize: 4, Blocks: 12, SlidingWindow: 8}
	e, f := start(t, lay, Options{})
	turn1 := Request{Prompt: prompt(3, 23), Params: seeded(1, 10)}
	r1 := generate(t, e, turn1)
	check(t, f.lay, turn1, r1)
	filler := Request{Prompt: prompt(30, 33), Params: sampling.Params{MaxTokens: 1}}
	check(t, f.lay, filler, generate(t, e, filler))
	turn2 := Request{Prompt: append(append(slices.Clone(turn1.Prompt), r1.ids[0]...), prompt(4, 10)...), Params: seeded(2, 10)}
	r2 := generate(t, e, turn2)
	check(t, f.lay, turn2, r2)
	if got := r2.final[0].Usage.CachedTokens; got != 32 {
		t.Fatalf("turn 2: %d cached tokens, want 32", got)
	}
}

func TestWholePromptCachedComputesLastToken(t *testing.T) {
	e, f := start(t, Layout{BlockSize: 4, Blocks: 32}, Options{})
	req := Request{Prompt: prompt(5, 16), Params: sampling.Params{MaxTokens: 3}}
	check(t, f.lay, req, generate(t, e, req))
	res := generate(t, e, req)
	check(t, f.lay, req, res)
	// 16 tokens in 4 full blocks: the last block is computed again for the last token's
	// logits.
	if got := res.final[0].Usage.CachedTokens; got != 12 {
		t.Fatalf("%d cached tokens, want 12", got)
	}
}

func TestChoicesSharePromptBlocks(t *testing.T) {
	lay := Layout{BlockSize: 4, Blocks: 64}
	e, f := start(t, lay, Options{})
	req := Request{Prompt: prompt(6, 40), Params: seeded(11, 6), N: 4}
	res := generate(t, e, req)
	check(t, f.lay, req, res)
	for i, o := range res.final {
		want := 36 // every choice after the first hits 9 of the 10 prompt blocks
		if i == 0 {
			want = 0
		}
		if o.Usage.CachedTokens != want {
			t.Fatalf("choice %d: %d cached tokens, want %d", i, o.Usage.CachedTokens, want)
		}
	}
	// In every step the choices' tables share their prompt blocks.
	for _, r := range f.records() {
		if len(r.seqs) < 2 {
			continue
		}
		seen := map[int]int{}
		for _, s := range r.seqs {
			for _, b := range s.blocks {
				seen[b]++
			}
		}
		shared := 0
		for _, n := range seen {
			if n == len(r.seqs) {
				shared++
			}
		}
		if shared < 9 {
			t.Fatalf("step %+v: %d blocks shared by all, want 9", r, shared)
		}
	}
}

func TestEvictionLeastRecentlyUsed(t *testing.T) {
	// 8 blocks of 4; a prompt of 9 tokens and one generated leaves 2 cached blocks and a
	// partial one.
	a := Request{Prompt: prompt(7, 9), Params: sampling.Params{MaxTokens: 1}}
	b := Request{Prompt: prompt(8, 9), Params: sampling.Params{MaxTokens: 1}}
	for _, tc := range []struct {
		name  string
		third Request
		// cached blocks after the three requests, and the cached tokens B then A find
		blocks, b, a int
	}{
		// C needs 7 blocks: the 2 empty ones and A's and B's partial ones, then the least
		// recently released cached ones, A's (its second block first), then B's second.
		// B's first block survives, and B finds it; A finds nothing.
		{"lru", Request{Prompt: prompt(9, 27), Params: sampling.Params{MaxTokens: 1}}, 1 + 6, 4, 0},
		// C needs 4 blocks: the partial and empty ones suffice, every cached block survives.
		{"empty first", Request{Prompt: prompt(9, 13), Params: sampling.Params{MaxTokens: 1}}, 2 + 2 + 3, 8, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, f := start(t, Layout{BlockSize: 4, Blocks: 8}, Options{})
			for _, req := range []Request{a, b, tc.third} {
				check(t, f.lay, req, generate(t, e, req))
			}
			// The gauges follow the step that ended the last request.
			waitFor(t, fmt.Sprintf("%d cached blocks", tc.blocks), func() bool { return e.Metrics().BlocksCached == tc.blocks })
			for _, again := range []struct {
				name   string
				req    Request
				cached int
			}{{"B", b, tc.b}, {"A", a, tc.a}} {
				res := generate(t, e, again.req)
				check(t, f.lay, again.req, res)
				if got := res.final[0].Usage.CachedTokens; got != again.cached {
					t.Fatalf("%s again: %d cached tokens, want %d", again.name, got, again.cached)
				}
			}
		})
	}
}

func TestSlidingWindowReleasesBlocks(t *testing.T) {
	// A window of 8 positions in blocks of 4: a token reads at most 3 blocks, so a sequence
	// never holds more than 3 (4 while a chunk spans one more).
	lay := Layout{BlockSize: 4, Blocks: 6, SlidingWindow: 8, ContextLength: 400}
	e, f := start(t, lay, Options{TokenBudget: 4})
	if got := e.ContextLength(); got != 400 {
		t.Fatalf("context length %d, want 400: a windowed sequence fits in 6 blocks", got)
	}
	req := Request{Prompt: prompt(10, 30), Params: seeded(12, 150)}
	check(t, f.lay, req, generate(t, e, req))
	for _, r := range f.records() {
		if len(r.seqs[0].blocks) > 4 {
			t.Fatalf("step %+v holds %d blocks", r, len(r.seqs[0].blocks))
		}
	}
	waitFor(t, "blocks released", func() bool { return e.Metrics().BlocksUsed == 0 })
}

func TestChunkedPrefillKeepsDecodesRunning(t *testing.T) {
	lay := Layout{BlockSize: 4, Blocks: 256}
	budget := 16
	e, f := start(t, lay, Options{TokenBudget: budget})
	// The stream's third step waits until the long prompt is submitted.
	gate := make(chan struct{})
	f.hook = func(*Step) {
		if len(f.steps) == 2 {
			<-gate
		}
	}
	stream := Request{Prompt: prompt(11, 5), Params: seeded(13, 0)}
	h, err := e.Submit(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	long := Request{Prompt: prompt(12, 150), Params: seeded(14, 2)}
	hl, err := e.Submit(context.Background(), long)
	close(gate)
	if err != nil {
		t.Fatal(err)
	}
	resLong, err := collect(hl, 1)
	if err != nil {
		t.Fatal(err)
	}
	check(t, f.lay, long, resLong)
	h.Close()
	res, err := collect(h, 1)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := reference(f.lay, stream.Prompt, stream.Params, len(res.ids[0]))
	if !slices.Equal(res.ids[0], want) {
		t.Fatalf("stream: %v, want %v", res.ids[0], want)
	}
	// From the third step on, every step with a chunk of the long prompt (15 tokens, the
	// budget less the stream's one) also ran the stream's next token.
	chunks := 0
	for i, r := range f.records() {
		if r.tokens > budget {
			t.Fatalf("step %d: %d tokens, budget %d", i, r.tokens, budget)
		}
		var decode, chunk bool
		for _, s := range r.seqs {
			decode = decode || s.n == 1
			chunk = chunk || s.n > 1
		}
		if chunk && i > 0 {
			chunks++
			if !decode {
				t.Fatalf("step %d ran a prompt chunk without the running stream: %+v", i, r)
			}
		}
	}
	if chunks != 10 {
		t.Fatalf("%d prompt chunks, want 10", chunks)
	}
}

func TestPreemptionIsExact(t *testing.T) {
	// 12 blocks of 4 positions for 6 requests of 10 prompt tokens and 30 generated: they
	// cannot all run at once, so the later ones are preempted and recomputed, and each
	// yields the tokens it would alone.
	for _, tc := range []struct {
		name string
		lay  Layout
		opts Options
	}{
		{"cache", Layout{BlockSize: 4, Blocks: 12}, Options{}},
		{"no cache", Layout{BlockSize: 4, Blocks: 12}, Options{NoPrefixCache: true}},
		{"small budget", Layout{BlockSize: 4, Blocks: 12}, Options{TokenBudget: 7}},
		{"window", Layout{BlockSize: 4, Blocks: 12, SlidingWindow: 16}, Options{}},
		{"attention cost", Layout{BlockSize: 4, Blocks: 12, AttentionCost: 0.05}, Options{TokenBudget: 7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, f := start(t, tc.lay, tc.opts)
			var reqs []Request
			for i := range 6 {
				reqs = append(reqs, Request{Prompt: prompt(uint64(20+i), 10), Params: seeded(int64(i), 30), N: 1 + i%2})
			}
			results := runAll(t, e, f, reqs)
			for i, req := range reqs {
				check(t, f.lay, req, results[i])
			}
			if e.Metrics().Preemptions == 0 {
				t.Fatal("no preemption")
			}
			preempted := 0
			for _, res := range results {
				for _, o := range res.final {
					preempted += o.Timing.Preemptions
				}
			}
			if preempted != int(e.Metrics().Preemptions) {
				t.Fatalf("choices report %d preemptions, metrics %d", preempted, e.Metrics().Preemptions)
			}
			waitFor(t, "blocks released", func() bool { m := e.Metrics(); return m.BlocksUsed == 0 && m.Running+m.Waiting == 0 })
		})
	}
}

// runAll submits reqs at once (the first step waits until all are submitted) and collects
// their results.
func runAll(t *testing.T, e *Engine, f *fakeModel, reqs []Request) []result {
	t.Helper()
	gate := make(chan struct{})
	f.mu.Lock()
	f.hook = func(*Step) {
		if len(f.steps) == 0 {
			<-gate
		}
	}
	f.mu.Unlock()
	results := make([]result, len(reqs))
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	for i, req := range reqs {
		h, err := e.Submit(context.Background(), req)
		if err != nil {
			close(gate)
			t.Fatal(err)
		}
		wg.Go(func() { results[i], errs[i] = collect(h, choices(req)) })
	}
	close(gate)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return results
}

func TestRandomLoadNeverDeadlocks(t *testing.T) {
	// Random requests against a cache that holds a few at a time, some sharing prefixes:
	// every one finishes with the reference tokens.
	for _, tc := range []struct {
		name string
		lay  Layout
		opts Options
	}{
		{"tiny", Layout{BlockSize: 2, Blocks: 24, ContextLength: 48}, Options{TokenBudget: 9, MaxRunning: 5}},
		{"window", Layout{BlockSize: 4, Blocks: 10, SlidingWindow: 10, ContextLength: 200}, Options{TokenBudget: 13}},
		{"attention cost", Layout{BlockSize: 4, Blocks: 10, SlidingWindow: 10, ContextLength: 200, AttentionCost: 0.3}, Options{TokenBudget: 13}},
		{"off", Layout{BlockSize: 4, Blocks: 20, ContextLength: 80}, Options{NoPrefixCache: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, f := start(t, tc.lay, tc.opts)
			r := rand.New(rand.NewPCG(42, 0))
			shared := prompt(99, 40)
			var reqs []Request
			for i := range 40 {
				n := 1 + r.IntN(min(30, e.ContextLength()/2))
				p := prompt(uint64(100+i), n)
				if i%3 == 0 {
					p = append(slices.Clone(shared[:min(len(shared), e.ContextLength()/2)]), p[:n/2]...)
				}
				maxTokens := 1 + r.IntN(e.ContextLength()-len(p)-1)
				reqs = append(reqs, Request{Prompt: p, Params: seeded(int64(i), maxTokens), N: 1 + r.IntN(3), EOS: []int{3}})
			}
			results := runAll(t, e, f, reqs)
			for i, req := range reqs {
				check(t, f.lay, req, results[i])
			}
			waitFor(t, "blocks released", func() bool { m := e.Metrics(); return m.BlocksUsed == 0 && m.Running+m.Waiting == 0 })
		})
	}
}

func TestContextLength(t *testing.T) {
	for _, tc := range []struct {
		name   string
		lay    Layout
		ctxLen int
	}{
		{"model", Layout{BlockSize: 4, Blocks: 64, ContextLength: 100}, 100},
		{"cache", Layout{BlockSize: 4, Blocks: 10, ContextLength: 100}, 40},
		{"window", Layout{BlockSize: 4, Blocks: 3, ContextLength: 100, SlidingWindow: 6}, 100},
		{"window cache", Layout{BlockSize: 4, Blocks: 2, ContextLength: 100, SlidingWindow: 6}, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, f := start(t, tc.lay, Options{})
			if got := e.ContextLength(); got != tc.ctxLen {
				t.Fatalf("context length %d, want %d", got, tc.ctxLen)
			}
			_, err := e.Submit(context.Background(), Request{Prompt: prompt(1, tc.ctxLen)})
			if !errors.Is(err, ErrContextLength) {
				t.Fatalf("prompt of the whole context: %v", err)
			}
			// A prompt one shorter runs alone to the end of the context.
			req := Request{Prompt: prompt(1, tc.ctxLen-1)}
			res := generate(t, e, req)
			req.Params.MaxTokens = 1
			check(t, f.lay, req, res)
			// Without max_tokens a request may fill the context.
			req = Request{Prompt: prompt(2, 3)}
			res = generate(t, e, req)
			req.Params.MaxTokens = tc.ctxLen - 3
			check(t, f.lay, req, res)
		})
	}
}

func TestRequestLimits(t *testing.T) {
	e, f := start(t, Layout{BlockSize: 4, Blocks: 64, ContextLength: 100}, Options{MaxChoices: 4, MaxRequestTokens: 60})
	for _, tc := range []struct {
		name string
		req  Request
		err  error
	}{
		{"no prompt", Request{}, ErrRequest},
		{"vocabulary", Request{Prompt: []int{1, 32}}, ErrRequest},
		{"negative id", Request{Prompt: []int{-1}}, ErrRequest},
		{"choices", Request{Prompt: []int{1}, N: 5}, ErrRequest},
		{"negative choices", Request{Prompt: []int{1}, N: -1}, ErrRequest},
		{"tokens", Request{Prompt: []int{1}, N: 4, Params: sampling.Params{MaxTokens: 16}}, ErrRequest},
		{"params", Request{Prompt: []int{1}, Params: sampling.Params{Temperature: 3}}, sampling.ErrInvalidParam},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := e.Submit(context.Background(), tc.req); !errors.Is(err, tc.err) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
		})
	}
	// Without max_tokens, 4 choices share the 60 tokens a request may generate.
	req := Request{Prompt: prompt(3, 5), N: 4}
	res := generate(t, e, req)
	req.Params.MaxTokens = 15
	check(t, f.lay, req, res)
}

func TestCancel(t *testing.T) {
	e, f := start(t, Layout{BlockSize: 4, Blocks: 64}, Options{})
	// The fourth step waits until the cancellation is posted to the engine.
	gate := make(chan struct{})
	f.hook = func(*Step) {
		if len(f.steps) == 3 {
			<-gate
			waitFor(t, "the cancellation", func() bool {
				e.mu.Lock()
				defer e.mu.Unlock()
				return len(e.inbox) > 0
			})
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	h, err := e.Submit(ctx, Request{Prompt: prompt(1, 10), Params: seeded(1, 500), N: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Next(); err != nil {
		t.Fatal(err)
	}
	cancel()
	close(gate)
	for {
		if _, err := h.Next(); err != nil {
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("after cancel: %v", err)
			}
			break
		}
	}
	waitFor(t, "blocks released", func() bool {
		m := e.Metrics()
		return m.BlocksUsed == 0 && m.Running == 0 && m.Aborted == 1
	})
}

func TestStopChoice(t *testing.T) {
	e, f := start(t, Layout{BlockSize: 4, Blocks: 64}, Options{})
	// The fourth step waits until choice 0 is stopped.
	gate := make(chan struct{})
	f.hook = func(*Step) {
		if len(f.steps) == 3 {
			<-gate
		}
	}
	req := Request{Prompt: prompt(1, 10), Params: seeded(1, 40), N: 2}
	h, err := e.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	var got [2][]int
	stopped := false
	for {
		o, err := h.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[o.Choice] = append(got[o.Choice], o.ID)
		if o.Choice == 0 && !stopped {
			h.Stop(0)
			close(gate)
			stopped = true
		}
	}
	want, _ := reference(f.lay, req.Prompt, req.Params.ForChoice(1), 40)
	if !slices.Equal(got[1], want) {
		t.Fatalf("choice 1: %v, want %v", got[1], want)
	}
	if len(got[0]) > 5 {
		t.Fatalf("choice 0 ran on after Stop: %d tokens", len(got[0]))
	}
	waitFor(t, "finish recorded", func() bool { return e.Metrics().Finished[sampling.FinishLength] == 1 })
}

func TestForwardErrorFailsStepAndForgetsItsBlocks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		budget int
		fail   func(s *Step) bool
		cached int // what the request finds cached when submitted again
	}{
		{"prompt", 0, func(s *Step) bool { return len(s.Tokens) > 1 }, 0},
		// The first chunk fills block 0 and half of block 1; the second fails: only block 0
		// was computed.
		{"second chunk", 6, func(s *Step) bool { return s.Tokens[0].Pos == 6 }, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, f := start(t, Layout{BlockSize: 4, Blocks: 64}, Options{TokenBudget: tc.budget})
			boom := errors.New("boom")
			f.mu.Lock()
			f.fail = func(s *Step) error {
				if tc.fail(s) {
					return boom
				}
				return nil
			}
			f.mu.Unlock()
			req := Request{Prompt: prompt(1, 20), Params: seeded(1, 3)}
			h, err := e.Submit(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := collect(h, 1); !errors.Is(err, boom) {
				t.Fatalf("error %v, want boom", err)
			}
			f.mu.Lock()
			f.fail = nil
			f.mu.Unlock()
			res := generate(t, e, req)
			check(t, f.lay, req, res)
			if got := res.final[0].Usage.CachedTokens; got != tc.cached {
				t.Fatalf("%d cached tokens, want %d", got, tc.cached)
			}
		})
	}
}

func TestClose(t *testing.T) {
	f := newFake(Layout{BlockSize: 4, Blocks: 64})
	// The third step waits until Close has begun.
	reached, gate := make(chan struct{}), make(chan struct{})
	f.hook = func(*Step) {
		if len(f.steps) == 2 {
			close(reached)
			<-gate
		}
	}
	e, err := New(f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := e.Submit(context.Background(), Request{Prompt: prompt(1, 10), Params: seeded(1, 1000)})
	if err != nil {
		t.Fatal(err)
	}
	<-reached
	closed := make(chan struct{})
	go func() {
		e.Close()
		close(closed)
	}()
	waitFor(t, "Close to begin", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.closed
	})
	close(gate)
	<-closed
	e.Close()
	for {
		if _, err := h.Next(); err != nil {
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("after Close: %v", err)
			}
			break
		}
	}
	if _, err := e.Submit(context.Background(), Request{Prompt: []int{1}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Submit after Close: %v", err)
	}
	if _, err := e.NewSequence(); !errors.Is(err, ErrClosed) {
		t.Fatalf("NewSequence after Close: %v", err)
	}
}

func TestSequence(t *testing.T) {
	lay := Layout{BlockSize: 4, Blocks: 4, ContextLength: 100}
	e, f := start(t, lay, Options{})
	q, err := e.NewSequence()
	if err != nil {
		t.Fatal(err)
	}
	ids := prompt(1, 10)
	logits := make([]float32, f.lay.VocabSize)
	run := func(s *Step) error {
		s.Rows = []int{len(s.Tokens) - 1}
		return f.Forward(s, logits)
	}
	for _, part := range [][]int{ids[:7], ids[7:]} {
		if err := q.Append(context.Background(), part, run); err != nil {
			t.Fatal(err)
		}
	}
	if q.Len() != 10 {
		t.Fatalf("length %d", q.Len())
	}
	want := make([]float32, f.lay.VocabSize)
	h := uint64(historySeed)
	for p, id := range ids {
		h = mix(h, id, p)
	}
	fill(want, h)
	if !slices.Equal(logits, want) {
		t.Fatal("logits differ from the history's")
	}
	// 10 positions hold 3 of the 4 blocks; another sequence's 7 need 2.
	q2, err := e.NewSequence()
	if err != nil {
		t.Fatal(err)
	}
	if err := q2.Append(context.Background(), prompt(2, 7), run); !errors.Is(err, ErrCacheFull) {
		t.Fatalf("append past the cache: %v", err)
	}
	if q2.Len() != 0 {
		t.Fatalf("length %d after a failed append", q2.Len())
	}
	q2.Close()
	// A request waits for the blocks the sequence holds.
	req := Request{Prompt: prompt(3, 14), Params: sampling.Params{MaxTokens: 2}}
	h2, err := e.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the request to wait", func() bool { return e.Metrics().Waiting == 1 })
	q.Close()
	res, err := collect(h2, 1)
	if err != nil {
		t.Fatal(err)
	}
	check(t, f.lay, req, res)
	if err := q.Append(context.Background(), []int{1}, run); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after Close: %v", err)
	}
}

func TestMetrics(t *testing.T) {
	e, f := start(t, Layout{BlockSize: 4, Blocks: 64, BlockBytes: 1024}, Options{})
	reqs := []Request{
		{Prompt: prompt(1, 10), Params: seeded(1, 5), N: 2},
		{Prompt: prompt(2, 7), Params: seeded(2, 3)},
	}
	runAll(t, e, f, reqs)
	waitFor(t, "gauges", func() bool { return e.Metrics().Running == 0 })
	m := e.Metrics()
	for _, c := range []struct {
		name      string
		got, want int64
	}{
		{"prompt tokens", m.PromptTokens, 17},
		{"generated tokens", m.GeneratedTokens, 13},
		{"prefix queries", m.PrefixQueries, 27},
		{"finished", m.Finished[sampling.FinishLength], 2},
		{"ttft", int64(m.TimeToFirstToken.Count), 3},
		{"tpot", int64(m.TimePerOutputToken.Count), 10},
		{"queue", int64(m.QueueTime.Count), 3},
		{"latency", int64(m.Latency.Count), 2},
		{"blocks", int64(m.BlocksTotal), 64},
		{"block bytes", m.BlockBytes, 1024},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.got != c.want {
				t.Fatalf("%d, want %d", c.got, c.want)
			}
		})
	}
	var sum uint64
	for _, c := range m.TimeToFirstToken.Counts {
		sum += c
	}
	if sum != m.TimeToFirstToken.Count || len(m.TimeToFirstToken.Counts) != len(m.TimeToFirstToken.Bounds)+1 {
		t.Fatalf("histogram %+v", m.TimeToFirstToken)
	}
	if m.KVUsage() != 0 || m.PrefixHitRate() != float64(m.PrefixHits)/27 {
		t.Fatalf("usage %g, hit rate %g", m.KVUsage(), m.PrefixHitRate())
	}
}

func TestNewRejectsBadLayout(t *testing.T) {
	for _, lay := range []Layout{
		{BlockSize: 0, Blocks: 4, VocabSize: 2, ContextLength: 8, MaxStepTokens: 4},
		{BlockSize: 4, Blocks: 0, VocabSize: 2, ContextLength: 8, MaxStepTokens: 4},
		{BlockSize: 4, Blocks: 4, VocabSize: 0, ContextLength: 8, MaxStepTokens: 4},
		{BlockSize: 4, Blocks: 4, VocabSize: 2, ContextLength: 8, MaxStepTokens: 4, SlidingWindow: -1},
		{BlockSize: 4, Blocks: 4, VocabSize: 2, ContextLength: 8, MaxStepTokens: 4, AttentionCost: -1},
		{BlockSize: 4, Blocks: 4, VocabSize: 2, ContextLength: 8, MaxStepTokens: 4, AttentionCost: math.NaN()},
		{BlockSize: 4, Blocks: 4, VocabSize: 2, ContextLength: 8, MaxStepTokens: 4, AttentionCost: math.Inf(1)},
	} {
		t.Run(fmt.Sprintf("%+v", lay), func(t *testing.T) {
			if _, err := New(&fakeModel{lay: lay}, Options{}); err == nil {
				t.Fatal("no error")
			}
		})
	}
}
