package mixtral

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/backend/cpu"
	"github.com/fathom-llm/fathom/internal/reference"
	"github.com/fathom-llm/fathom/safetensors"
)

// TestQuantizedPerplexity scores held-out tokens of tiny-code-mixtral (the first two of the
// reference's perplexity windows, 1024 predicted tokens, to keep it fast: its small rows take
// the kernels' generic quantized path) with the weights as stored (bf16), quantized to q8 and
// to q4: q8 must stay within 0.5% of the bf16 perplexity, q4 within 5%.
func TestQuantizedPerplexity(t *testing.T) {
	const name = "tiny-code-mixtral"
	ppl := reference.LoadPerplexity(t, name)
	if raceEnabled {
		t.Skip("scoring 4096 tokens three times is too slow under the race detector; the other test runs check it")
	}
	ctx := context.Background()
	window := ppl.WindowsOf
	ids := ppl.Tokens[:2*window+1]
	base, err := sharedModel(t, name).Perplexity(ctx, ids, window)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("as stored: perplexity %.4f over %d tokens", base, len(ids)-1)
	for _, tc := range []struct {
		name string
		opts Options
		tol  float64
	}{
		{"q8", Options{Quantize: backend.Q8, CacheType: safetensors.F32}, 0.005},
		{"q4", Options{Quantize: backend.Q4, CacheType: safetensors.F32}, 0.05},
		// The KV cache in 16 bits, the default float16 and bfloat16.
		{"f16 KV", Options{}, 0.005},
		{"bf16 KV", Options{CacheType: safetensors.BF16}, 0.02},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := loadFixture(t, name, tc.opts)
			got, err := m.Perplexity(ctx, ids, window)
			if err != nil {
				t.Fatal(err)
			}
			e := math.Abs(got-base) / base
			t.Logf("perplexity %.4f, %+.3f%% from as stored", got, 100*(got-base)/base)
			if !(e < tc.tol) {
				t.Errorf("perplexity %.4f, %.3g from %.4f (tolerance %g)", got, e, base, tc.tol)
			}
		})
	}
}

// TestQuantizeOptions checks the errors of the quantization option.
func TestQuantizeOptions(t *testing.T) {
	dir := modelDir(t, "tiny-code-mixtral")
	ctx := context.Background()
	if _, err := Load(ctx, dir, Options{Quantize: "q3"}); !errors.Is(err, backend.ErrQuantization) {
		t.Errorf("an unknown quantization: %v", err)
	}
	be := cpu.New(1)
	defer be.Close()
	if _, err := Load(ctx, dir, Options{Quantize: backend.Q4, Backend: plainBackend{be}}); !errors.Is(err, backend.ErrQuantization) {
		t.Errorf("a backend that does not quantize: %v", err)
	}
}

// plainBackend hides every method of a backend beyond the Backend interface.
type plainBackend struct{ backend.Backend }

// TestBF16Activations checks that rounding the activations to bfloat16 changes the logits of
// a prompt long enough for the bfloat16 GEMM by what bfloat16 rounding should: a relative
// difference of a few 1e-3 at a typical position. (A position where the rounding tips a
// router's choice to another expert differs more, so the median is held to it.)
func TestBF16Activations(t *testing.T) {
	const name = "tiny-code-mixtral"
	plain := sharedModel(t, name)
	ids := promptIDs(t, plain, strings.Join(codePrompts, "\n    pass\n\n"))
	t.Logf("%d tokens", len(ids))
	ctx := context.Background()
	want, err := plain.Eval(ctx, ids, EvalOptions{AllLogits: true})
	if err != nil {
		t.Fatal(err)
	}
	be := cpu.NewWithOptions(cpu.Options{BF16Activations: true})
	t.Cleanup(func() { be.Close() }) // after the model's cleanup
	m := loadFixture(t, name, Options{Backend: be, CacheType: safetensors.F32})
	got, err := m.Eval(ctx, ids, EvalOptions{AllLogits: true})
	if err != nil {
		t.Fatal(err)
	}
	errs := make([]float64, len(want.Logits))
	for i := range want.Logits {
		errs[i] = reference.RelErr(got.Logits[i], want.Logits[i])
	}
	slices.Sort(errs)
	median := errs[len(errs)/2]
	t.Logf("relative difference of a position's logits: median %.3g, largest %.3g", median, errs[len(errs)-1])
	if !(median < 1e-2) || median == 0 {
		t.Errorf("bfloat16 activations change a typical position's logits by %.3g, want (0, 1e-2)", median)
	}
}

// TestLoadCancelled checks that cancelling the context while the weights are bound stops
// Load at the next layer.
func TestLoadCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	opts := Options{Quantize: backend.Q8, Progress: func(done, total int64) { calls++; cancel() }}
	if _, err := Load(ctx, modelDir(t, "tiny-code-mixtral"), opts); !errors.Is(err, context.Canceled) {
		t.Errorf("Load cancelled while binding: %v", err)
	}
	if calls == 0 {
		t.Error("no progress reported")
	}
}
