package mixtral

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/fathom-llm/fathom/engine"
	"github.com/fathom-llm/fathom/internal/reference"
	"github.com/fathom-llm/fathom/safetensors"
	"github.com/fathom-llm/fathom/sampling"
)

// TestSequenceLimits checks the context and cache limits of Sequence, and that a chunked
// Append (steps of MaxBatch tokens) computes what one step does.
func TestSequenceLimits(t *testing.T) {
	m := loadFixture(t, "tiny-code-mixtral", Options{ContextLength: 40, CacheTokens: 64, MaxBatch: 7, CacheType: safetensors.F32})
	ctx := context.Background()
	ids := []int{1, 801, 16182, 266, 28127, 28732, 28711, 1329, 13, 260, 1270, 307, 28705, 28750}
	s, err := m.NewSequence()
	if err != nil {
		t.Fatal(err)
	}
	ev, err := s.Append(ctx, ids, EvalOptions{AllLogits: true})
	if err != nil {
		t.Fatal(err)
	}
	whole := sharedModel(t, "tiny-code-mixtral")
	want, err := whole.Eval(ctx, ids, EvalOptions{AllLogits: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range want.Logits {
		if e := reference.RelErr(ev.Logits[i], want.Logits[i]); !(e < 1e-6) {
			t.Errorf("position %d: chunked prefill differs by %.3g", i, e)
		}
	}
	if _, err := s.Append(ctx, make([]int, 40-len(ids)+1), EvalOptions{}); !errors.Is(err, ErrContextLength) {
		t.Errorf("past the context: %v", err)
	}
	// 14 tokens hold one block of 16; the cache has 4. A second sequence of 40 needs 3.
	s2, err := m.NewSequence()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Append(ctx, make([]int, 40), EvalOptions{}); err != nil {
		t.Fatal(err)
	}
	s3, err := m.NewSequence()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s3.Append(ctx, []int{1}, EvalOptions{}); !errors.Is(err, engine.ErrCacheFull) {
		t.Errorf("a full cache: %v", err)
	}
	s2.Close()
	if _, err := s3.Append(ctx, []int{1}, EvalOptions{}); err != nil {
		t.Errorf("after freeing: %v", err)
	}
	if _, err := s.Append(ctx, []int{-1}, EvalOptions{}); err == nil {
		t.Error("a bad id was accepted")
	}
	s.Close()
	s3.Close()
	if _, err := s.Append(ctx, []int{1}, EvalOptions{}); !errors.Is(err, ErrClosed) {
		t.Errorf("closed sequence: %v", err)
	}
	if _, err := m.Perplexity(ctx, ids, 0); err == nil {
		t.Error("perplexity window 0 accepted")
	}
	if _, err := m.Perplexity(ctx, make([]int, 100), 50); !errors.Is(err, ErrContextLength) {
		t.Errorf("perplexity windows longer than the context: %v", err)
	}
}

// TestGenerateWaitsForCache runs more requests than the cache holds at once: they wait for
// each other and all finish with the results they have alone.
func TestGenerateWaitsForCache(t *testing.T) {
	m := loadFixture(t, "tiny-code-mixtral", Options{ContextLength: 32, CacheTokens: 32})
	ctx := context.Background()
	req := Request{PromptIDs: []int{1, 801, 16182}, Params: sampling.Params{MaxTokens: 20}}
	want, err := m.Generate(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			got, err := m.Generate(ctx, req)
			if err != nil || !slices.Equal(got.IDs, want.IDs) {
				t.Errorf("got %v, %v; want %v", got.IDs, err, want.IDs)
			}
		})
	}
	wg.Wait()
	// A request that can never fit fails at once.
	if _, err := m.Generate(ctx, Request{PromptIDs: make([]int, 40)}); !errors.Is(err, ErrContextLength) {
		t.Errorf("oversized request: %v", err)
	}
}

func TestCloseDuringStream(t *testing.T) {
	m := loadFixture(t, "tiny-code-mixtral", Options{})
	n := 0
	var last error
	for ev, err := range m.Stream(context.Background(), Request{PromptIDs: []int{1, 801}, Params: sampling.Params{MaxTokens: 100}}) {
		if err != nil {
			last = err
			break
		}
		if ev.ID >= 0 {
			n++
		}
		if n == 3 {
			m.Close()
		}
	}
	if !errors.Is(last, ErrClosed) {
		t.Errorf("after Close: %d tokens, error %v", n, last)
	}
	if _, err := m.Generate(context.Background(), Request{PromptIDs: []int{1}}); !errors.Is(err, ErrClosed) {
		t.Errorf("Generate after Close: %v", err)
	}
	if _, err := m.NewSequence(); !errors.Is(err, ErrClosed) {
		t.Errorf("NewSequence after Close: %v", err)
	}
}
