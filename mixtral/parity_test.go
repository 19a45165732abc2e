package mixtral

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/backend/cpu"

	"github.com/fathom-llm/fathom/internal/fixtures"
	"github.com/fathom-llm/fathom/internal/reference"
	"github.com/fathom-llm/fathom/safetensors"
)

// logitTolerance is the relative error the float64 references support for float32 compute.
const logitTolerance = 1e-4

// shared holds the fixture models loaded with default options, loaded once for all tests
// (loading a tokenizer is most of a test's time under the race detector).
var shared struct {
	sync.Mutex
	models map[string]*Model
}

// modelDir returns the directory of a test model: the bundled tiny-code-mixtral (the same
// files as the fixture of that name), or a fixture model.
func modelDir(t testing.TB, name string) string {
	t.Helper()
	if name == "tiny-code-mixtral" {
		return bundledModel
	}
	return fixtures.Model(t, name)
}

// bundledIDs are token ids for the bundled model: a short Python function.
var bundledIDs = []int{1, 28705, 13, 1270, 2282, 28732, 28744, 28725, 337, 1329, 13, 2287, 604, 1318,
	648, 337, 13, 13, 1270, 2016, 28732, 28744, 1329, 13, 2287}

// sharedModel returns the fixture model name loaded with a float32 KV cache (the exact path
// the parity tolerances hold for) and otherwise default options; tests must not
// close it.
func sharedModel(t *testing.T, name string) *Model {
	t.Helper()
	dir := modelDir(t, name)
	shared.Lock()
	defer shared.Unlock()
	if m, ok := shared.models[name]; ok {
		return m
	}
	m, err := Load(context.Background(), dir, Options{CacheTokens: 4096, CacheType: safetensors.F32})
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
	dir := modelDir(t, name)
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
	for _, name := range reference.Models {
		t.Run(name, func(t *testing.T) {
			ref := reference.Load(t, name)
			m := sharedModel(t, name)
			for _, p := range ref.Prompts {
				pre := fmt.Sprintf("prompt%d.", p.Index)
				all := ref.Tensor(t, pre+"all_logits")
				ev, err := m.Eval(context.Background(), p.IDs, EvalOptions{AllLogits: all != nil, Trace: true})
				if err != nil {
					t.Fatal(err)
				}
				check := func(what string, got, want []float32) {
					t.Helper()
					e := reference.RelErr(got, want)
					t.Logf("%s%s: relative error %.2e", pre, what, e)
					if !(e < logitTolerance) {
						t.Errorf("%s%s: relative error %.3g", pre, what, e)
					}
				}
				check("last_logits", ev.Logits[len(ev.Logits)-1], ref.Tensor(t, pre+"last_logits"))
				if all != nil {
					V := m.cfg.VocabSize
					worst := 0.0
					for i, row := range ev.Logits {
						worst = max(worst, reference.RelErr(row, all[i*V:(i+1)*V]))
					}
					t.Logf("%sall_logits: worst relative error %.2e over %d positions", pre, worst, len(ev.Logits))
					if !(worst < logitTolerance) {
						t.Errorf("%sall_logits: worst relative error %.3g", pre, worst)
					}
				}
				for _, trace := range []struct {
					what string
					rows [][]float32
				}{{"hidden_state", ev.Hidden}, {"router_logits", ev.Router}} {
					for l, got := range trace.rows {
						name := fmt.Sprintf("%s.%d", trace.what, l)
						if want := ref.Tensor(t, pre+name); want != nil {
							check(name, got, want)
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
	for _, name := range reference.Models {
		t.Run(name, func(t *testing.T) {
			ref := reference.Load(t, name)
			m := sharedModel(t, name)
			V := m.cfg.VocabSize
			ctx := context.Background()
			for _, p := range ref.Prompts {
				pre := fmt.Sprintf("prompt%d.", p.Index)
				all := ref.Tensor(t, pre+"all_logits")
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
						worst = max(worst, reference.RelErr(logits, all[i*V:(i+1)*V]))
					}
				}
				worst = max(worst, reference.RelErr(logits, ref.Tensor(t, pre+"last_logits")))
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
	ppl := reference.LoadPerplexity(t, name)
	if raceEnabled {
		t.Skip("scoring 4096 tokens is too slow under the race detector; the other test runs check it")
	}
	m := sharedModel(t, name)
	got, err := m.Perplexity(context.Background(), ppl.Tokens, ppl.WindowsOf)
	if err != nil {
		t.Fatal(err)
	}
	e := math.Abs(got-ppl.PPL) / ppl.PPL
	t.Logf("perplexity %.4f, reference %.4f, relative error %.2e", got, ppl.PPL, e)
	if !(e < 1e-3) {
		t.Errorf("perplexity %.4f, want %.4f", got, ppl.PPL)
	}
}

// fusedNorm is the CPU backend with backend.ResidualNormer, made of Add and RMSNorm, so that
// the forward pass takes its fused path; it counts the calls.
type fusedNorm struct {
	backend.Backend
	calls *atomic.Int64
}

func (f fusedNorm) AddRMSNorm(dst, x, r backend.Tensor, w backend.Weight, eps float32) error {
	f.calls.Add(1)
	if err := f.Add(x, r); err != nil {
		return err
	}
	return f.RMSNorm(dst, x, w, eps)
}

// TestResidualNormer checks that the forward pass with a backend.ResidualNormer takes its
// fused path, two per layer, and gives the logits, and hidden states and router logits when
// traced, of the plain path.
func TestResidualNormer(t *testing.T) {
	be := cpu.New(0)
	t.Cleanup(func() { be.Close() })
	var calls atomic.Int64
	plain := sharedModel(t, "tiny-code-mixtral")
	fused := loadFixture(t, "tiny-code-mixtral", Options{Backend: fusedNorm{be, &calls}, CacheType: safetensors.F32})
	ids := bundledIDs
	for _, opts := range []EvalOptions{{AllLogits: true}, {AllLogits: true, Trace: true}} {
		t.Run(fmt.Sprintf("trace=%v", opts.Trace), func(t *testing.T) {
			want, err := plain.Eval(context.Background(), ids, opts)
			if err != nil {
				t.Fatal(err)
			}
			calls.Store(0)
			got, err := fused.Eval(context.Background(), ids, opts)
			if err != nil {
				t.Fatal(err)
			}
			if n := calls.Load(); n != 2*int64(fused.cfg.NumHiddenLayers) {
				t.Errorf("%d calls of AddRMSNorm in one step, want 2 per layer", n)
			}
			for i := range want.Logits {
				if !slices.Equal(got.Logits[i], want.Logits[i]) {
					t.Fatalf("logits of token %d differ", i)
				}
			}
			for l := range want.Hidden {
				if !slices.Equal(got.Hidden[l], want.Hidden[l]) {
					t.Errorf("hidden state %d differs", l)
				}
			}
			for l := range want.Router {
				if !slices.Equal(got.Router[l], want.Router[l]) {
					t.Errorf("router logits of layer %d differ", l)
				}
			}
		})
	}
}

// recorder is the CPU backend with a backend.StepRecorder that runs every step, holding
// the backend for itself as it does, and counts them.
type recorder struct {
	backend.Backend
	mu    sync.Mutex
	steps map[any]int
}

func (r *recorder) Step(key any, f func(be backend.Backend) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.steps[key]++
	return f(r.Backend)
}

// TestStepRecorder checks that steps of at most recordTokens tokens go through a backend's
// StepRecorder, keyed by the batch size, with the logits of the plain path.
func TestStepRecorder(t *testing.T) {
	ids := bundledIDs
	be := cpu.New(0)
	t.Cleanup(func() { be.Close() })
	rec := &recorder{Backend: be, steps: map[any]int{}}
	plain := sharedModel(t, "tiny-code-mixtral")
	recorded := loadFixture(t, "tiny-code-mixtral", Options{Backend: rec, CacheType: safetensors.F32})
	ctx := context.Background()
	run := func(m *Model) [][]float32 {
		s, err := m.NewSequence()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var out [][]float32
		for _, part := range [][]int{ids[:20], ids[20:21], ids[21:22], ids[22:25]} {
			ev, err := s.Append(ctx, part, EvalOptions{})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, ev.Logits[0])
		}
		return out
	}
	want, got := run(plain), run(recorded)
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("step %d: logits differ", i)
		}
	}
	wantSteps := map[any]int{stepKey{recorded, 20}: 1, stepKey{recorded, 1}: 2, stepKey{recorded, 3}: 1}
	if !maps.Equal(rec.steps, wantSteps) {
		t.Errorf("recorded steps %v, want %v", rec.steps, wantSteps)
	}
}
