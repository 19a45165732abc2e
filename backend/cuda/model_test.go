//go:build cuda && cgo

package cuda

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/bench"
	"github.com/fathom-llm/fathom/mixtral"
	"github.com/fathom-llm/fathom/safetensors"
)

// Whole models of full Mixtral size on device-side random weights: a checkpoint of shapes
// without data, bound by a backend that fills each weight on the device instead of
// uploading it.

// shapeSource is a checkpoint of bfloat16 tensors that have shapes but no data.
type shapeSource map[string][]int

func (s shapeSource) Tensor(name string) (safetensors.Tensor, error) {
	shape, ok := s[name]
	if !ok {
		return safetensors.Tensor{}, fmt.Errorf("%w: %s", safetensors.ErrNotFound, name)
	}
	return safetensors.Tensor{Name: name, DType: safetensors.BF16, Shape: shape}, nil
}

func (s shapeSource) Names() []string {
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func (s shapeSource) Close() error { return nil }

// randomBinder is the backend with its binding replaced: norm gains are ones, matrices and
// experts random on the device, int8 where they are bound quantized.
type randomBinder struct {
	*gpu
	seed uint64
}

func (r *randomBinder) Bind(t safetensors.Tensor) (backend.Weight, error) {
	return r.BindQuantized(t, backend.AsStored)
}

func (r *randomBinder) BindQuantized(t safetensors.Tensor, q backend.Quantization) (backend.Weight, error) {
	r.seed++
	if len(t.Shape) == 1 {
		return r.onesWeight(t.Shape[0])
	}
	return r.randomWeight(t.Shape[0], t.Shape[1], q == backend.Q8, r.seed, 0.02)
}

func (r *randomBinder) BindExperts(t backend.ExpertTensors) (backend.Experts, error) {
	return r.BindExpertsQuantized(t, backend.AsStored)
}

func (r *randomBinder) BindExpertsQuantized(t backend.ExpertTensors, q backend.Quantization) (backend.Experts, error) {
	r.seed++
	return r.randomExperts(len(t.W1), t.W1[0].Shape[1], t.W1[0].Shape[0], q == backend.Q8, r.seed)
}

// randomModel returns a model of configuration cfg on device-side random weights, those that
// mixtral.Options.Quantize names stored as q.
func randomModel(tb testing.TB, g *gpu, cfg mixtral.Config, contextLength int, q backend.Quantization) *mixtral.Model {
	tb.Helper()
	m, err := mixtral.New(cfg, shapeSource(bench.TensorShapes(cfg)), mixtral.Options{
		Backend: &randomBinder{gpu: g}, ContextLength: contextLength, CacheTokens: contextLength, MaxBatch: 512,
		Quantize: q,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func TestRandomModel(t *testing.T) {
	g := open(t, Options{})
	defer g.Close()
	cfg := bench.SmallMixtral(2)
	m := randomModel(t, g, cfg, 64, backend.AsStored)
	defer m.Close()
	s, err := m.NewSequence()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, ids := range [][]int{{1, 5, 9, 200, 7, 7, 3, 11, 12}, {40}, {41}} {
		ev, err := s.Append(context.Background(), ids, mixtral.EvalOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var norm float64
		for _, v := range ev.Logits[0] {
			norm += float64(v) * float64(v)
		}
		if !(norm > 0 && norm < 1e12) {
			t.Fatalf("logits after %v: squared norm %g, want finite and non-zero", ids, norm)
		}
	}
}

// BenchmarkDecode runs Mixtral 8x7B (all 32 layers) on random weights: prefill of 512
// tokens, and decode at batch 1 with a context of about 512 tokens. GB/s counts the weight
// bytes one token reads (bench.DecodeWeightBytes, with int8 weights at their stored size: in
// the int8 mode the model quantizes the experts and attention projections as backend.Q8).
func BenchmarkDecode(b *testing.B) {
	cfg := bench.Mixtral8x7B(32)
	for _, mode := range benchModes {
		b.Run(mode.name, func(b *testing.B) {
			g := open(b, mode.opts)
			defer g.Close()
			bytes := float64(bench.DecodeWeightBytes(cfg))
			h, qDim, kvDim := cfg.HiddenSize, cfg.NumAttentionHeads*cfg.HeadDim, cfg.NumKeyValueHeads*cfg.HeadDim
			attnBytes := float64(2 * cfg.NumHiddenLayers * (2*h*qDim + 2*h*kvDim))
			expertBytes := float64(2 * cfg.NumHiddenLayers * cfg.NumExpertsPerTok * 3 * h * cfg.IntermediateSize)
			total := float64(cfg.NumHiddenLayers*cfg.NumLocalExperts*3*h*cfg.IntermediateSize) * 2
			quant := backend.AsStored
			if mode.int8 {
				quant = backend.Q8
				bytes -= (attnBytes + expertBytes) * (1 - int8Bytes/2)
				total *= int8Bytes / 2
			}
			if total > 0.9*float64(g.totalMem) {
				b.Skipf("%.0f GB of expert weights do not fit %s", total/1e9, g)
			}
			const contextLen = 2048
			m := randomModel(b, g, cfg, contextLen, quant)
			defer m.Close()
			ctx := context.Background()
			prompt := make([]int, 512)
			for i := range prompt {
				prompt[i] = (i*7919 + 13) % cfg.VocabSize
			}
			b.Run("prefill=512", func(b *testing.B) {
				sec := timed(b, g, func() error {
					s, err := m.NewSequence()
					if err != nil {
						return err
					}
					defer s.Close()
					_, err = s.Append(ctx, prompt, mixtral.EvalOptions{})
					return err
				})
				b.ReportMetric(float64(len(prompt))/sec, "tokens/s")
				b.ReportMetric(bench.PrefillFLOPs(cfg, len(prompt))/sec/1e12, "TFLOP/s")
			})
			b.Run("decode", func(b *testing.B) {
				var s *mixtral.Sequence
				defer func() {
					if s != nil {
						s.Close()
					}
				}()
				next := 0
				sec := timed(b, g, func() error {
					if s == nil || s.Len() >= contextLen-1 {
						if s != nil {
							s.Close()
						}
						var err error
						if s, err = m.NewSequence(); err != nil {
							return err
						}
						if _, err = s.Append(ctx, prompt, mixtral.EvalOptions{}); err != nil {
							return err
						}
					}
					next = (next*31 + 7) % cfg.VocabSize
					ev, err := s.Append(ctx, []int{next}, mixtral.EvalOptions{})
					if err == nil && math.IsNaN(float64(ev.Logits[0][0])) {
						err = fmt.Errorf("NaN logits")
					}
					return err
				})
				b.ReportMetric(1/sec, "tokens/s")
				b.ReportMetric(bytes/sec/1e9, "GB/s")
			})
		})
	}
}
