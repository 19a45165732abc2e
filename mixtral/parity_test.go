package mixtral

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sync"
	"testing"

	"github.com/fathom-llm/fathom/internal/fixtures"
	"github.com/fathom-llm/fathom/safetensors"
)

// fixtureModels are the reference checkpoints.
var fixtureModels = []string{"tiny-mixtral-bf16", "tiny-mixtral-swa-f16", "tiny-code-mixtral"}

// reference is a model's reference JSON.
type reference struct {
	Prompts []struct {
		Index         int       `json:"index"`
		Text          string    `json:"text"`
		IDs           []int     `json:"ids"`
		Greedy        []int     `json:"greedy"`
		GreedyMargins []float64 `json:"greedy_margins"`
	} `json:"prompts"`
	Perplexity *struct {
		Tokens    []int   `json:"tokens"`
		WindowsOf int     `json:"windows_of"`
		PPL       float64 `json:"ppl"`
	} `json:"perplexity"`
}

// loadReference reads a model's reference JSON and tensors.
func loadReference(t *testing.T, name string) (*reference, *safetensors.File) {
	t.Helper()
	data, err := os.ReadFile(fixtures.Path(t, "reference", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref reference
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(fixtures.Path(t, "reference", name+".safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &ref, f
}

// refTensor returns a reference tensor as float32s, or nil when there is none.
func refTensor(t *testing.T, f *safetensors.File, name string) []float32 {
	t.Helper()
	tt, err := f.Tensor(name)
	if err != nil {
		return nil
	}
	v, err := tt.Float32s(nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// relErr returns ‖got−want‖/‖want‖.
func relErr(got, want []float32) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(num / den)
}

// logitTolerance is the relative error the float64 references support for float32 compute.
const logitTolerance = 1e-4

// shared holds the fixture models loaded with default options, loaded once for all tests
// (loading a tokenizer is most of a test's time under the race detector).
var shared struct {
	sync.Mutex
	models map[string]*Model
}

// sharedModel returns the fixture model name loaded with default options; tests must not
// close it.
func sharedModel(t *testing.T, name string) *Model {
	t.Helper()
	dir := fixtures.Model(t, name)
	shared.Lock()
	defer shared.Unlock()
	if m, ok := shared.models[name]; ok {
		return m
	}
	m, err := Load(context.Background(), dir, Options{CacheTokens: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if shared.models == nil {
		shared.models = map[string]*Model{}
	}
	shared.models[name] = m
	return m
}

// loadFixture loads a fixture model's weights (not its tokenizer) with opts; the model is
// closed when the test ends.
func loadFixture(t testing.TB, name string, opts Options) *Model {
	t.Helper()
	dir := fixtures.Model(t, name)
	cfg, err := LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(cfg, ck, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close()
		ck.Close()
	})
	return m
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// TestFixtureParity compares one-shot prefill with the references: last and all logits,
// hidden states and router logits.
func TestFixtureParity(t *testing.T) {
	for _, name := range fixtureModels {
		t.Run(name, func(t *testing.T) {
			ref, rf := loadReference(t, name)
			m := sharedModel(t, name)
			for _, p := range ref.Prompts {
				pre := fmt.Sprintf("prompt%d.", p.Index)
				all := refTensor(t, rf, pre+"all_logits")
				ev, err := m.Eval(context.Background(), p.IDs, EvalOptions{AllLogits: all != nil, Trace: true})
				if err != nil {
					t.Fatal(err)
				}
				last := ev.Logits[len(ev.Logits)-1]
				e := relErr(last, refTensor(t, rf, pre+"last_logits"))
				t.Logf("%slast_logits: relative error %.2e", pre, e)
				if !(e < logitTolerance) {
					t.Errorf("%slast_logits: relative error %.3g", pre, e)
				}
				if all != nil {
					V := m.cfg.VocabSize
					worst := 0.0
					for i, row := range ev.Logits {
						worst = max(worst, relErr(row, all[i*V:(i+1)*V]))
					}
					t.Logf("%sall_logits: worst relative error %.2e over %d positions", pre, worst, len(ev.Logits))
					if !(worst < logitTolerance) {
						t.Errorf("%sall_logits: worst relative error %.3g", pre, worst)
					}
				}
				for L, h := range ev.Hidden {
					if want := refTensor(t, rf, fmt.Sprintf("%shidden_state.%d", pre, L)); want != nil {
						e := relErr(h, want)
						t.Logf("%shidden_state.%d: relative error %.2e", pre, L, e)
						if !(e < logitTolerance) {
							t.Errorf("%shidden_state.%d: relative error %.3g", pre, L, e)
						}
					}
				}
				for l, r := range ev.Router {
					if want := refTensor(t, rf, fmt.Sprintf("%srouter_logits.%d", pre, l)); want != nil {
						e := relErr(r, want)
						t.Logf("%srouter_logits.%d: relative error %.2e", pre, l, e)
						if !(e < logitTolerance) {
							t.Errorf("%srouter_logits.%d: relative error %.3g", pre, l, e)
						}
					}
				}
			}
		})
	}
}

// TestFixtureIncremental feeds each prompt one token at a time through the KV cache and
// compares every step with the references, then decodes greedily and compares the
// continuation while every reference margin so far exceeds 1e-3.
func TestFixtureIncremental(t *testing.T) {
	for _, name := range fixtureModels {
		t.Run(name, func(t *testing.T) {
			ref, rf := loadReference(t, name)
			m := sharedModel(t, name)
			V := m.cfg.VocabSize
			ctx := context.Background()
			for _, p := range ref.Prompts {
				pre := fmt.Sprintf("prompt%d.", p.Index)
				all := refTensor(t, rf, pre+"all_logits")
				s, err := m.NewSequence()
				if err != nil {
					t.Fatal(err)
				}
				var logits []float32
				worst := 0.0
				for i, id := range p.IDs {
					ev, err := s.Append(ctx, []int{id}, EvalOptions{})
					if err != nil {
						t.Fatal(err)
					}
					logits = ev.Logits[0]
					if all != nil {
						worst = max(worst, relErr(logits, all[i*V:(i+1)*V]))
					}
				}
				worst = max(worst, relErr(logits, refTensor(t, rf, pre+"last_logits")))
				t.Logf("%stoken by token: worst relative error %.2e", pre, worst)
				if !(worst < logitTolerance) {
					t.Errorf("%stoken by token: worst relative error %.3g", pre, worst)
				}
				compared := 0
				for i, want := range p.Greedy {
					if !(p.GreedyMargins[i] > 1e-3) {
						break
					}
					got := argmax(logits)
					if got != want {
						t.Errorf("%sgreedy token %d: %d, want %d", pre, i, got, want)
						break
					}
					compared++
					ev, err := s.Append(ctx, []int{got}, EvalOptions{})
					if err != nil {
						t.Fatal(err)
					}
					logits = ev.Logits[0]
				}
				t.Logf("%sgreedy: %d of %d tokens compared, positions up to %d", pre, compared, len(p.Greedy), s.Len())
				s.Close()
			}
		})
	}
}

func TestFixturePerplexity(t *testing.T) {
	const name = "tiny-code-mixtral"
	ref, _ := loadReference(t, name)
	if ref.Perplexity == nil {
		t.Fatal("no perplexity reference")
	}
	if raceEnabled {
		t.Skip("scoring 4096 tokens is too slow under the race detector; the other test runs check it")
	}
	m := sharedModel(t, name)
	got, err := m.Perplexity(context.Background(), ref.Perplexity.Tokens, ref.Perplexity.WindowsOf)
	if err != nil {
		t.Fatal(err)
	}
	e := math.Abs(got-ref.Perplexity.PPL) / ref.Perplexity.PPL
	t.Logf("perplexity %.4f, reference %.4f, relative error %.2e", got, ref.Perplexity.PPL, e)
	if !(e < 1e-3) {
		t.Errorf("perplexity %.4f, want %.4f", got, ref.Perplexity.PPL)
	}
}
