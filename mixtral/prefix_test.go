package mixtral

import (
	"context"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/fathom-llm/fathom/engine"
	"github.com/fathom-llm/fathom/safetensors"
	"github.com/fathom-llm/fathom/sampling"
	"github.com/fathom-llm/fathom/tokenizer"
)

// TestPrefixCacheExact checks that a request served from cached blocks computes exactly what
// a cold run does: turn 1 of a conversation, then turn 2 (turn 1's prompt and reply and a
// new message), whose first token's logprobs, over the whole vocabulary, must equal bit for
// bit those of a fresh sequence that appends turn 2's whole prompt at once, and those of the
// same request on a model without prefix caching. Turn 1 computed its reply's positions a
// token a step, the cold runs in one prefill: the CPU backend computes each token the same
// way whatever its step holds.
func TestPrefixCacheExact(t *testing.T) {
	for _, name := range []string{"tiny-code-mixtral", "tiny-mixtral-swa-f16"} {
		for _, kv := range []safetensors.DType{safetensors.F16, safetensors.F32} {
			t.Run(name+"/"+string(kv), func(t *testing.T) {
				m := loadFixture(t, name, Options{CacheTokens: 1024, CacheType: kv})
				ctx := context.Background()
				r := rand.New(rand.NewPCG(1, 2))
				words := func(n int) []int {
					ids := make([]int, n)
					for i := range ids {
						ids[i] = 3 + r.IntN(m.cfg.VocabSize-3)
					}
					return ids
				}
				turn1 := append([]int{1}, words(40)...)
				r1, err := m.Generate(ctx, Request{PromptIDs: turn1, Params: sampling.Params{MaxTokens: 20, StopTokenIDs: []int{}}})
				if err != nil {
					t.Fatal(err)
				}
				if len(r1.IDs) < 8 {
					t.Skipf("turn 1 ended after %d tokens", len(r1.IDs))
				}
				turn2 := slices.Concat(turn1, r1.IDs, words(10))
				p := sampling.Params{MaxTokens: 1, Logprobs: true, TopLogprobs: sampling.MaxTopLogprobs}
				r2, err := m.Generate(ctx, Request{PromptIDs: turn2, Params: p})
				if err != nil {
					t.Fatal(err)
				}
				// Turn 1 computed its prompt and all but its last generated token.
				computed := len(turn1) + len(r1.IDs) - 1
				hit := r2.Usage.PromptTokensDetails.CachedTokens
				if hit%blockSize != 0 || hit <= len(turn1) || hit > computed {
					t.Fatalf("turn 2 found %d tokens cached; turn 1 computed %d", hit, computed)
				}

				q, err := m.NewSequence()
				if err != nil {
					t.Fatal(err)
				}
				defer q.Close()
				ev, err := q.Append(ctx, turn2, EvalOptions{})
				if err != nil {
					t.Fatal(err)
				}
				want, err := sampling.LogSoftmax(ev.Logits[0], r2.IDs[0], sampling.MaxTopLogprobs)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(r2.Logprobs[0], want) {
					t.Errorf("served from %d cached tokens: %+v\none prefill of the whole prompt: %+v", hit, r2.Logprobs[0], want)
				}

				cold := loadFixture(t, name, Options{CacheTokens: 1024, CacheType: kv, Engine: engine.Options{NoPrefixCache: true}})
				rc, err := cold.Generate(ctx, Request{PromptIDs: turn2, Params: p})
				if err != nil {
					t.Fatal(err)
				}
				if rc.Usage.PromptTokensDetails.CachedTokens != 0 {
					t.Fatalf("%d cached tokens without prefix caching", rc.Usage.PromptTokensDetails.CachedTokens)
				}
				if !reflect.DeepEqual(r2.Logprobs[0], rc.Logprobs[0]) {
					t.Errorf("served from %d cached tokens: %+v\nwithout prefix caching: %+v", hit, r2.Logprobs[0], rc.Logprobs[0])
				}
			})
		}
	}
}

// TestChatTurnsReuseCache runs a two-turn chat on the bundled model: the second turn, which
// resends the first with its reply, finds the first turn's blocks cached, unless prefix
// caching is off.
func TestChatTurnsReuseCache(t *testing.T) {
	dir := modelDir(t, "tiny-code-mixtral")
	for _, tc := range []struct {
		name string
		off  bool
	}{{"cache", false}, {"off", true}} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Load(context.Background(), dir, Options{CacheTokens: 2048, Engine: engine.Options{NoPrefixCache: tc.off}})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			msgs := []tokenizer.Message{
				{Role: "system", Content: "You write short Python functions."},
				{Role: "user", Content: "Write a function that returns the sum of a list of numbers."},
			}
			r1, err := m.Generate(context.Background(), Request{Messages: msgs, Params: sampling.Params{MaxTokens: 24}})
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs,
				tokenizer.Message{Role: "assistant", Content: strings.TrimSpace(r1.Text)},
				tokenizer.Message{Role: "user", Content: "Now the product."})
			r2, err := m.Generate(context.Background(), Request{Messages: msgs, Params: sampling.Params{MaxTokens: 8}})
			if err != nil {
				t.Fatal(err)
			}
			got := r2.Usage.PromptTokensDetails.CachedTokens
			t.Logf("turn 1: %d prompt tokens; turn 2: %d, %d of them cached", r1.Usage.PromptTokens, r2.Usage.PromptTokens, got)
			switch {
			case tc.off && got != 0:
				t.Errorf("%d cached tokens with prefix caching off", got)
			case !tc.off && got < r1.Usage.PromptTokens/blockSize*blockSize:
				t.Errorf("turn 2 found %d tokens cached, turn 1's prompt was %d", got, r1.Usage.PromptTokens)
			}
			if mt := m.Metrics(); !tc.off && mt.PrefixHits != int64(got) {
				t.Errorf("metrics: %d prefix cache hits", mt.PrefixHits)
			}
		})
	}
}
