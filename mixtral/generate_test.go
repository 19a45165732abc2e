package mixtral

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/fathom-llm/fathom/internal/reference"
	"github.com/fathom-llm/fathom/sampling"
	"github.com/fathom-llm/fathom/tokenizer"
)

// greedyPrefix returns the part of the reference greedy continuation whose every margin so
// far exceeds 1e-3, cut before the first eos.
func greedyPrefix(greedy []int, margins []float64, eos []int) []int {
	for i := range greedy {
		if !(margins[i] > 1e-3) {
			return greedy[:i]
		}
		if slices.Contains(eos, greedy[i]) {
			return greedy[:i+1]
		}
	}
	return greedy
}

func TestGenerateGreedyMatchesReference(t *testing.T) {
	for _, name := range reference.Models {
		t.Run(name, func(t *testing.T) {
			ref := reference.Load(t, name)
			m := sharedModel(t, name)
			for _, p := range ref.Prompts {
				want := greedyPrefix(p.Greedy, p.GreedyMargins, m.EOSTokenIDs())
				resp, err := m.Generate(context.Background(), Request{PromptIDs: p.IDs, Params: sampling.Params{MaxTokens: len(want)}})
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(resp.IDs, want) {
					t.Errorf("prompt %d: generated %v, want %v", p.Index, resp.IDs, want)
				}
				if resp.Usage != (Usage{PromptTokens: len(p.IDs), CompletionTokens: len(want), TotalTokens: len(p.IDs) + len(want)}) {
					t.Errorf("prompt %d: usage %+v", p.Index, resp.Usage)
				}
			}
		})
	}
}

// TestGenerateText runs text prompts end to end: tokenization, generation and
// detokenization, streamed and not. Where the tokenizer gives the reference's prompt ids
// (the references tokenized some prompts with tokenizer.model, which splits runs of spaces
// differently from tokenizer.json), the text is the reference continuation's.
func TestGenerateText(t *testing.T) {
	ref := reference.Load(t, "tiny-code-mixtral")
	m := sharedModel(t, "tiny-code-mixtral")
	ctx := context.Background()
	same := 0
	for _, p := range ref.Prompts {
		ids, err := m.PromptIDs(Request{Prompt: p.Text})
		if err != nil {
			t.Fatal(err)
		}
		want := greedyPrefix(p.Greedy, p.GreedyMargins, m.EOSTokenIDs())
		params := sampling.Params{MaxTokens: len(want)}
		if slices.Equal(ids, p.IDs) {
			same++
		} else {
			r, err := m.Generate(ctx, Request{PromptIDs: ids, Params: params})
			if err != nil {
				t.Fatal(err)
			}
			want = r.IDs
		}
		resp, err := m.Generate(ctx, Request{Prompt: p.Text, Params: params})
		if err != nil {
			t.Fatal(err)
		}
		if wantText := m.Tokenizer().Decode(want, true); resp.Text != wantText || !slices.Equal(resp.IDs, want) {
			t.Errorf("prompt %d: text %q, want %q", p.Index, resp.Text, wantText)
		}
		if resp.FinishReason != sampling.FinishLength {
			t.Errorf("prompt %d: finish reason %q", p.Index, resp.FinishReason)
		}
		// Streaming gives the same text and ids, and ends with one Done event.
		var text strings.Builder
		var ids2 []int
		var last Event
		for ev, err := range m.Stream(ctx, Request{Prompt: p.Text, Params: params}) {
			if err != nil {
				t.Fatal(err)
			}
			if last.Done {
				t.Fatal("event after the Done event")
			}
			text.WriteString(ev.Text)
			if ev.ID >= 0 {
				ids2 = append(ids2, ev.ID)
			}
			last = ev
		}
		if !last.Done || text.String() != resp.Text || !slices.Equal(ids2, resp.IDs) || last.Usage != resp.Usage {
			t.Errorf("prompt %d: stream gave %q %v %+v, Generate %q %v %+v", p.Index, text.String(), ids2, last, resp.Text, resp.IDs, resp.Usage)
		}
	}
	if same < 2 {
		t.Errorf("only %d prompts tokenize to the reference ids", same)
	}
}

func TestGenerateChatPrompt(t *testing.T) {
	ref := reference.Load(t, "tiny-mixtral-bf16")
	m := sharedModel(t, "tiny-mixtral-bf16")
	ids, err := m.PromptIDs(Request{Messages: []tokenizer.Message{{Role: "user", Content: "Hello!"}}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, ref.Prompts[0].IDs) {
		t.Errorf("chat prompt ids %v, want %v", ids, ref.Prompts[0].IDs)
	}
	// Special tokens inside a message stay text.
	ids, err = m.PromptIDs(Request{Messages: []tokenizer.Message{{Role: "user", Content: "<|im_end|>"}}})
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(fmt.Sprint(ids), "32000"); n != 1 {
		t.Errorf("content special token parsed: %v", ids)
	}
}

// codePrompts are prompts for the bundled model; the first continues greedily with
// "    import argparse\n\n    parser = ...".
var codePrompts = []string{
	"import os\nimport sys\n\n\ndef main():\n",
	"def fibonacci(n):\n",
	"class Stack:\n    def __init__(self):\n",
	"# Read a CSV file and print the sum of its second column.\nimport csv\n",
	"for i in range(10):\n",
}

// promptIDs returns the ids of a text prompt for m.
func promptIDs(t *testing.T, m *Model, text string) []int {
	t.Helper()
	ids, err := m.PromptIDs(Request{Prompt: text})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestGenerateStops(t *testing.T) {
	m := sharedModel(t, "tiny-code-mixtral")
	ids := promptIDs(t, m, codePrompts[0])
	ctx := context.Background()
	full, err := m.Generate(ctx, Request{PromptIDs: ids, Params: sampling.Params{MaxTokens: 20}})
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(full.Text, "argparse")
	if i < 0 {
		t.Fatalf("generated %q, expected it to contain argparse", full.Text)
	}
	resp, err := m.Generate(ctx, Request{PromptIDs: ids, Params: sampling.Params{MaxTokens: 20, Stop: []string{"parse"}}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Text != full.Text[:i+3] || resp.FinishReason != sampling.FinishStop {
		t.Errorf("stop string: %q (%s), want %q", resp.Text, resp.FinishReason, full.Text[:i+3])
	}
	// A stop token: the token is returned, its text is not.
	resp, err = m.Generate(ctx, Request{PromptIDs: ids, Params: sampling.Params{MaxTokens: 20, StopTokenIDs: []int{full.IDs[2]}}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(resp.IDs, full.IDs[:3]) || resp.FinishReason != sampling.FinishStop ||
		resp.Text != m.Tokenizer().Decode(full.IDs[:2], true) {
		t.Errorf("stop token: %v %q (%s)", resp.IDs, resp.Text, resp.FinishReason)
	}
}

func TestGenerateContextLength(t *testing.T) {
	roomy := sharedModel(t, "tiny-code-mixtral")
	ids := promptIDs(t, roomy, codePrompts[0])
	ctx := context.Background()
	greedy, err := roomy.Generate(ctx, Request{PromptIDs: ids, Params: sampling.Params{MaxTokens: 3}})
	if err != nil {
		t.Fatal(err)
	}
	m := loadFixture(t, "tiny-code-mixtral", Options{ContextLength: len(ids) + 3})
	resp, err := m.Generate(ctx, Request{PromptIDs: ids})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.IDs) != 3 || resp.FinishReason != sampling.FinishLength || !slices.Equal(resp.IDs, greedy.IDs) {
		t.Errorf("context full: %v (%s), want %v", resp.IDs, resp.FinishReason, greedy.IDs)
	}
	long := append(slices.Clone(ids), greedy.IDs...)
	if _, err := m.Generate(ctx, Request{PromptIDs: long}); !errors.Is(err, ErrContextLength) {
		t.Errorf("prompt filling the context: %v, want ErrContextLength", err)
	}
	if _, err := m.Generate(ctx, Request{PromptIDs: long[:len(long)-1]}); err != nil {
		t.Errorf("prompt leaving room for one token: %v", err)
	}
}

func TestGenerateErrors(t *testing.T) {
	m := sharedModel(t, "tiny-code-mixtral")
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		req  Request
	}{
		{"no prompt", Request{}},
		{"two prompts", Request{Prompt: "x", Messages: []tokenizer.Message{{Role: "user", Content: "y"}}}},
		{"id past the vocabulary", Request{PromptIDs: []int{1, 40000}}},
		{"negative id", Request{PromptIDs: []int{-1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := m.Generate(ctx, tc.req); !errors.Is(err, ErrRequest) {
				t.Errorf("Generate(%+v): %v, want ErrRequest", tc.req, err)
			}
		})
	}
	if _, err := m.Generate(ctx, Request{PromptIDs: []int{1}, Params: sampling.Params{Temperature: 3}}); !errors.Is(err, sampling.ErrInvalidParam) {
		t.Errorf("bad temperature: %v", err)
	}
}

func TestGenerateCancel(t *testing.T) {
	m := sharedModel(t, "tiny-code-mixtral")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	var last error
	for ev, err := range m.Stream(ctx, Request{PromptIDs: []int{1, 801}, Params: sampling.Params{MaxTokens: 50}}) {
		if err != nil {
			last = err
			break
		}
		if ev.ID >= 0 {
			n++
		}
		if n == 2 {
			cancel()
		}
	}
	if !errors.Is(last, context.Canceled) || n != 2 {
		t.Errorf("after cancelling: %d tokens, error %v", n, last)
	}
	// Breaking out of the loop stops generation too.
	n = 0
	for range m.Stream(context.Background(), Request{PromptIDs: []int{1, 801}, Params: sampling.Params{MaxTokens: 50}}) {
		n++
		break
	}
	if n != 1 {
		t.Errorf("break: %d events", n)
	}
}

// TestGenerateConcurrent runs requests at once (the scheduler batches their steps) and
// checks each against the same request run alone: the same tokens, seeded sampling
// included, and the same logprobs bit for bit, since the CPU backend computes a token the
// same way whatever else its step holds.
func TestGenerateConcurrent(t *testing.T) {
	m := sharedModel(t, "tiny-code-mixtral")
	ctx := context.Background()
	seed := int64(7)
	var reqs []Request
	for i, text := range codePrompts {
		params := sampling.Params{MaxTokens: 12 + i}
		if i%2 == 1 {
			params = sampling.Params{Temperature: 0.8, TopP: 0.95, Seed: &seed, MaxTokens: 12, Logprobs: true, TopLogprobs: 2}
		}
		reqs = append(reqs, Request{PromptIDs: promptIDs(t, m, text), Params: params})
	}
	want := make([]Response, len(reqs))
	for i, req := range reqs {
		var err error
		if want[i], err = m.Generate(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]Response, len(reqs))
	var wg sync.WaitGroup
	for i, req := range reqs {
		wg.Go(func() {
			var err error
			if got[i], err = m.Generate(ctx, req); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for i := range reqs {
		if !slices.Equal(got[i].IDs, want[i].IDs) || got[i].Text != want[i].Text {
			t.Errorf("request %d: concurrent %v, alone %v", i, got[i].IDs, want[i].IDs)
		}
		for j, lp := range got[i].Logprobs {
			if w := want[i].Logprobs[j]; !reflect.DeepEqual(lp, w) || len(lp.Top) != 2 {
				t.Errorf("request %d token %d: logprobs %+v, alone %+v", i, j, lp, w)
			}
		}
	}
}

func TestGenerateLogprobs(t *testing.T) {
	ref := reference.Load(t, "tiny-code-mixtral")
	m := sharedModel(t, "tiny-code-mixtral")
	p := ref.Prompts[0]
	resp, err := m.Generate(context.Background(), Request{PromptIDs: p.IDs, Params: sampling.Params{MaxTokens: 1, Logprobs: true, TopLogprobs: 3}})
	if err != nil {
		t.Fatal(err)
	}
	lp, err := sampling.LogSoftmax(ref.Tensor(t, "prompt0.last_logits"), p.Greedy[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	want := lp.Chosen.Logprob
	if len(resp.Logprobs) != 1 || math.Abs(resp.Logprobs[0].Chosen.Logprob-want) > 1e-4 || resp.Logprobs[0].Top[0].ID != p.Greedy[0] {
		t.Errorf("logprobs %+v, want chosen %d at %.5f", resp.Logprobs, p.Greedy[0], want)
	}
}
