package bench

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/backend/cpu"
	"github.com/fathom-llm/fathom/internal/half"
	"github.com/fathom-llm/fathom/internal/kernels"
	"github.com/fathom-llm/fathom/safetensors"
)

// The mixture-of-experts block of Mixtral 8x7B on the CPU backend, with every worker: the
// expert products alone (backend.MatMul against [14336, 4096] expert weights) and the whole
// block (backend.MoE: router, top-2 of 8 experts, SwiGLU experts, weighted sum), for one token
// (decode, bound by memory: GB/s of weights read and %bw of the read bandwidth) and for 512
// tokens (prefill, bound by arithmetic: GFLOP/s and %fma of the float32 FMA peak, %bf16 of
// the VDPBF16PS peak for the bfloat16-activation mode), the probes measured in the same run
// (see meter). Weights: the synthetic model's bfloat16 experts, converted to float16, or
// quantized by the backend to q8 and q4.

// moeFormat is a way to store the experts.
type moeFormat struct {
	name    string
	f16     bool                 // convert the bfloat16 weights to float16
	quant   backend.Quantization // or quantize them
	rounded bool                 // the bfloat16-activation mode (prefill only)
}

var moeFormats = []moeFormat{
	{name: "bf16"}, {name: "bf16-rounded", rounded: true}, {name: "f16", f16: true},
	{name: "q8", quant: backend.Q8}, {name: "q4", quant: backend.Q4},
}

// bytesPerWeight is the storage of one weight in format f.
func (f moeFormat) bytesPerWeight() float64 {
	switch f.quant {
	case backend.Q8:
		return float64(kernels.Q8RowBytes(backend.QuantGroup)) / backend.QuantGroup
	case backend.Q4:
		return float64(kernels.Q4RowBytes(backend.QuantGroup)) / backend.QuantGroup
	}
	return 2
}

// syntheticLayer is one decoder layer of Mixtral 8x7B with random bfloat16 weights, made once
// per benchmark run.
var syntheticLayer = sync.OnceValues(func() (*Synthetic, error) { return NewSynthetic(Mixtral8x7B(1), 1) })

// layerExperts returns the stored MoE block of layer 0 of src, converted to float16 if f16.
func layerExperts(b testing.TB, src *Synthetic, experts int, f16 bool) backend.ExpertTensors {
	get := func(name string) safetensors.Tensor {
		t, err := src.Tensor(name)
		if err != nil {
			b.Fatal(err)
		}
		if f16 {
			t = toF16(t)
		}
		return t
	}
	et := backend.ExpertTensors{Gate: get("model.layers.0.block_sparse_moe.gate.weight")}
	for e := range experts {
		p := fmt.Sprintf("model.layers.0.block_sparse_moe.experts.%d.", e)
		et.W1 = append(et.W1, get(p+"w1.weight"))
		et.W2 = append(et.W2, get(p+"w2.weight"))
		et.W3 = append(et.W3, get(p+"w3.weight"))
	}
	return et
}

// toF16 converts a bfloat16 tensor to float16 (exactly, for the synthetic values).
func toF16(t safetensors.Tensor) safetensors.Tensor {
	out := safetensors.Tensor{Name: t.Name, DType: safetensors.F16, Shape: t.Shape, Data: make([]byte, len(t.Data))}
	for i := 0; i+1 < len(t.Data); i += 2 {
		v := half.BF16ToF32(binary.LittleEndian.Uint16(t.Data[i:]))
		binary.LittleEndian.PutUint16(out.Data[i:], f32ToF16(v))
	}
	return out
}

// moeBackend returns a CPU backend with every worker for format f.
func moeBackend(f moeFormat) *cpu.Backend {
	return cpu.NewWithOptions(cpu.Options{BF16Activations: f.rounded})
}

// moeInput uploads tokens rows of activations of the model width, different for every row.
func moeInput(b *testing.B, be backend.Backend, tokens, cols int) backend.Tensor {
	x, err := be.NewTensor(tokens, cols)
	if err != nil {
		b.Fatal(err)
	}
	v := make([]float32, tokens*cols)
	for i := range v {
		v[i] = float32(math.Sin(float64(i)*0.37 + float64(i/cols)))
	}
	if err := be.Write(x, v); err != nil {
		b.Fatal(err)
	}
	return x
}

// BenchmarkMoEExperts times the expert products of one MoE block through backend.MatMul:
// for one token, the gate projections (w1, [14336, 4096]) of the two chosen experts; for 512
// tokens routed top-2 over 8 experts, each expert's gate projection over its 128 tokens.
func BenchmarkMoEExperts(b *testing.B) {
	src, err := syntheticLayer()
	if err != nil {
		b.Fatal(err)
	}
	cfg := Mixtral8x7B(1)
	E, K, H, I := cfg.NumLocalExperts, cfg.NumExpertsPerTok, cfg.HiddenSize, cfg.IntermediateSize
	for _, f := range moeFormats {
		b.Run(f.name, func(b *testing.B) {
			be := moeBackend(f)
			defer be.Close()
			et := layerExperts(b, src, E, f.f16)
			ws := make([]backend.Weight, E)
			for e := range ws {
				if ws[e], err = backend.BindAs(be, et.W1[e], f.quant); err != nil {
					b.Fatal(err)
				}
			}
			for _, tokens := range []int{1, 512} {
				if f.rounded && tokens == 1 {
					continue
				}
				per := max(1, tokens*K/E) // tokens per chosen expert
				used := K                 // experts used per step
				if tokens > 1 {
					used = E
				}
				b.Run(fmt.Sprintf("tokens=%d", tokens), func(b *testing.B) {
					x := moeInput(b, be, per, H)
					out, err := be.NewTensor(per, I)
					if err != nil {
						b.Fatal(err)
					}
					m := newMeter(b, be.Workers(), tokens, f.rounded)
					step := 0
					for b.Loop() {
						m.time(func() {
							for e := range used {
								if err := be.MatMul(out, x, ws[(step*used+e)%E]); err != nil {
									b.Fatal(err)
								}
							}
						})
						step++
					}
					n := float64(used) * float64(H*I)
					m.report(n*f.bytesPerWeight(), 2*float64(per)*n)
				})
			}
		})
	}
}

// BenchmarkMoEBlock times backend.MoE on the MoE block of the synthetic Mixtral 8x7B layer.
// One token reads the router and the two chosen experts' three matrices (704 MB in bf16);
// the rows of the input change every step, and with them the chosen experts. The
// operations counted are the router's and the chosen experts' products.
func BenchmarkMoEBlock(b *testing.B) {
	src, err := syntheticLayer()
	if err != nil {
		b.Fatal(err)
	}
	cfg := Mixtral8x7B(1)
	E, K, H, I := cfg.NumLocalExperts, cfg.NumExpertsPerTok, cfg.HiddenSize, cfg.IntermediateSize
	for _, f := range moeFormats {
		b.Run(f.name, func(b *testing.B) {
			be := moeBackend(f)
			defer be.Close()
			ex, err := backend.BindExpertsAs(be, layerExperts(b, src, E, f.f16), f.quant)
			if err != nil {
				b.Fatal(err)
			}
			for _, tokens := range []int{1, 512} {
				if f.rounded && tokens == 1 {
					continue
				}
				b.Run(fmt.Sprintf("tokens=%d", tokens), func(b *testing.B) {
					const inputs = 16 // different one-token inputs, cycled
					rows := tokens
					if tokens == 1 {
						rows = inputs
					}
					all := moeInput(b, be, rows, H)
					x, err := be.NewTensor(tokens, H)
					if err != nil {
						b.Fatal(err)
					}
					out, err := be.NewTensor(tokens, H)
					if err != nil {
						b.Fatal(err)
					}
					m := newMeter(b, be.Workers(), tokens, f.rounded)
					step := 0
					for b.Loop() {
						if tokens == 1 {
							if err := be.Gather(x, all, []int{step % inputs}); err != nil {
								b.Fatal(err)
							}
						} else {
							x = all
						}
						step++
						m.time(func() {
							if err := be.MoE(out, x, ex, K, backend.Tensor{}); err != nil {
								b.Fatal(err)
							}
						})
					}
					// Weights read: the router and the experts chosen (one token: K; many: all).
					read := float64(min(E, tokens*K)) * 3 * float64(H*I)
					weightBytes := 2*float64(E*H) + read*f.bytesPerWeight()
					flops := 2 * float64(tokens) * float64(E*H+K*3*H*I)
					m.report(weightBytes, flops)
				})
			}
		})
	}
}

// BenchmarkMoEQuantize times quantizing the expert weights of one Mixtral 8x7B layer (1.4 G
// weights) at bind time, with every worker: Mparams/s, and the load time of the 32 layers'
// experts (s/model) at that rate.
func BenchmarkMoEQuantize(b *testing.B) {
	src, err := syntheticLayer()
	if err != nil {
		b.Fatal(err)
	}
	cfg := Mixtral8x7B(1)
	E, H, I := cfg.NumLocalExperts, cfg.HiddenSize, cfg.IntermediateSize
	et := layerExperts(b, src, E, false)
	for _, q := range []backend.Quantization{backend.Q8, backend.Q4} {
		b.Run(string(q), func(b *testing.B) {
			be := cpu.New(0)
			defer be.Close()
			for b.Loop() {
				if _, err := backend.BindExpertsAs(be, et, q); err != nil {
					b.Fatal(err)
				}
			}
			perSec := float64(b.N) * float64(3*E*H*I) / b.Elapsed().Seconds()
			b.ReportMetric(perSec/1e6, "Mparams/s")
			b.ReportMetric(32*float64(3*E*H*I)/perSec, "s/model")
		})
	}
}
