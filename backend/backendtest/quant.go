package backendtest

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/safetensors"
	"github.com/x448/float16"
)

// QuantTolerance is the relative error allowed to products with quantized weights against
// the float64 reference over the dequantized weights: what quantizing the activations to
// int8 per group costs (about 0.5% for normally distributed inputs, up to about 1.5% for the
// heavier-tailed inner activations of an expert).
const QuantTolerance = 3e-2

// quantized checks, on a backend.Quantizer, MatMul and MoE with weights stored in each
// quantization the backend stores against the reference over the weights as the format
// dequantizes them, and that the others fail with backend.ErrQuantization; a backend that is
// no Quantizer skips it.
func (s suite) quantized(t *testing.T, b backend.Backend) {
	bq, isQ := b.(backend.Quantizer)
	if !isQ {
		if _, err := backend.BindAs(b, zeroWeight(), backend.Q8); !errors.Is(err, backend.ErrQuantization) {
			t.Errorf("BindAs on a backend that does not quantize: %v", err)
		}
		t.Skip("the backend does not quantize")
	}
	r := rand.New(rand.NewPCG(1, 11))
	// (tokens, in, out): rows of one group, of whole super-blocks of 512 inputs and of a
	// partial one; a row that does not split into groups stays as stored.
	shapes := [][3]int{{1, 64, 40}, {5, 96, 33}, {3, 33, 20}, {2, 544, 24}}
	if s.large {
		shapes = append(shapes, [3]int{1, 1024, 200}, [3]int{40, 512, 70}, [3]int{130, 1056, 48}, [3]int{1, Wide, 24}, [3]int{40, Wide, 24})
	}
	for _, q := range []backend.Quantization{backend.Q8, backend.Q4} {
		if !slices.Contains(s.quants, q) {
			t.Run(string(q)+"/unsupported", func(t *testing.T) {
				if _, err := bq.BindQuantized(zeroWeight(), q); !errors.Is(err, backend.ErrQuantization) {
					t.Errorf("BindQuantized as %s: %v", q, err)
				}
				et := backend.ExpertTensors{Gate: zeroWeight(), W1: []safetensors.Tensor{zeroWeight()},
					W2: []safetensors.Tensor{zeroWeight()}, W3: []safetensors.Tensor{zeroWeight()}}
				et.W2[0].Shape = []int{32, 1}
				if _, err := bq.BindExpertsQuantized(et, q); !errors.Is(err, backend.ErrQuantization) {
					t.Errorf("BindExpertsQuantized as %s: %v", q, err)
				}
			})
			continue
		}
		for _, dt := range dtypes {
			for _, shape := range shapes {
				n, in, out := shape[0], shape[1], shape[2]
				t.Run(fmt.Sprintf("%s/%s/n=%d,in=%d,out=%d", q, dt, n, in, out), func(t *testing.T) {
					st, wv := Weight(r, "w", dt, 0.2, out, in)
					w := must(bq.BindQuantized(st, q))(t)
					if w.Rows() != out || w.Cols() != in || w.DType() != dt {
						t.Errorf("a %s weight of %dx%d is a %s weight of %dx%d", dt, out, in, w.DType(), w.Rows(), w.Cols())
					}
					tol := QuantTolerance
					if in%backend.QuantGroup == 0 {
						wv = dequantRef(q, wv, in)
					} else {
						tol = s.tol
					}
					xv := random(r, n*in, 1)
					x := upload(t, b, n, in, xv)
					dst := must(b.NewTensor(n, out))(t)
					ok(t, b.MatMul(dst, x, w))
					checkTol(t, "matmul", download(t, b, dst), matmulRef(f64(xv), n, wv, out), tol)
				})
			}
		}
		s.quantizedMoE(t, bq, b, q, r)
		bad := safetensors.Tensor{Name: "inf", DType: safetensors.F32, Shape: []int{1, 32}, Data: make([]byte, 128)}
		copy(bad.Data[4:], []byte{0, 0, 0x80, 0x7f}) // +Inf
		if _, err := bq.BindQuantized(bad, q); !errors.Is(err, backend.ErrQuantization) {
			t.Errorf("%s of an infinite weight: %v", q, err)
		}
	}
	if _, err := bq.BindQuantized(zeroWeight(), "q3"); !errors.Is(err, backend.ErrQuantization) {
		t.Errorf("an unknown quantization: %v", err)
	}
}

func (s suite) quantizedMoE(t *testing.T, bq backend.Quantizer, b backend.Backend, q backend.Quantization, r *rand.Rand) {
	cases := []moeCase{{safetensors.BF16, 1, 64, 96, 8, 2}, {safetensors.F16, 9, 32, 64, 4, 2}, {safetensors.F32, 3, 40, 64, 4, 1}}
	if s.large {
		cases = append(cases, moeCase{safetensors.BF16, 1, 512, 1056, 8, 2}, moeCase{safetensors.BF16, 70, 512, 544, 8, 2},
			moeCase{safetensors.BF16, 1, 64, Wide, 4, 2}, moeCase{safetensors.F16, 20, 64, Wide, 4, 2})
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s/moe/%s", q, tc), func(t *testing.T) {
			var et backend.ExpertTensors
			var gate []float64
			w1, w2, w3 := make([][]float64, tc.experts), make([][]float64, tc.experts), make([][]float64, tc.experts)
			et.Gate, gate = Weight(r, "gate", tc.dtype, 0.5, tc.experts, tc.hidden)
			deq := func(w []float64, cols int) []float64 {
				if cols%backend.QuantGroup != 0 {
					return w
				}
				return dequantRef(q, w, cols)
			}
			for e := range tc.experts {
				var s1, s2, s3 safetensors.Tensor
				s1, w1[e] = Weight(r, "w1", tc.dtype, 0.3, tc.inner, tc.hidden)
				s2, w2[e] = Weight(r, "w2", tc.dtype, 0.3, tc.hidden, tc.inner)
				s3, w3[e] = Weight(r, "w3", tc.dtype, 0.3, tc.inner, tc.hidden)
				w1[e], w2[e], w3[e] = deq(w1[e], tc.hidden), deq(w2[e], tc.inner), deq(w3[e], tc.hidden)
				et.W1, et.W2, et.W3 = append(et.W1, s1), append(et.W2, s2), append(et.W3, s3)
			}
			ex := must(bq.BindExpertsQuantized(et, q))(t)
			xv := random(r, tc.n*tc.hidden, 1)
			x := upload(t, b, tc.n, tc.hidden, xv)
			dst := must(b.NewTensor(tc.n, tc.hidden))(t)
			router := must(b.NewTensor(tc.n, tc.experts))(t)
			ok(t, b.MoE(dst, x, ex, tc.topK, router))
			want, logits := moeRef(f64(xv), tc.n, tc.hidden, tc.inner, tc.experts, tc.topK, gate, w1, w2, w3)
			// The router stays as stored: its logits carry the backend's own precision.
			checkTol(t, "router logits", download(t, b, router), logits, s.tol)
			checkTol(t, "output", download(t, b, dst), want, QuantTolerance)
		})
	}
}

// checkTol is suite.check with the given tolerance.
func checkTol(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	suite{tol: tol}.check(t, what, got, want)
}

// zeroWeight returns a 1×32 float32 weight of zeros.
func zeroWeight() safetensors.Tensor {
	return safetensors.Tensor{Name: "zero", DType: safetensors.F32, Shape: []int{1, 32}, Data: make([]byte, 128)}
}

// dequantRef returns the values of w (rows of cols, a multiple of backend.QuantGroup) as q
// stores them: per group of QuantGroup, Q8 rounds amax/127 to a float16 scale d and each
// value to d·round(v/d); Q4 rounds (max−min)/15 and min to float16 d and m and each value to
// d·round((v−m)/d)+m with the integer clamped to [0, 15].
func dequantRef(q backend.Quantization, w []float64, cols int) []float64 {
	out := make([]float64, len(w))
	h := func(v float64) float64 { return float64(float16.Fromfloat32(float32(v)).Float32()) }
	for g := 0; g < len(w); g += backend.QuantGroup {
		v, o := w[g:g+backend.QuantGroup], out[g:g+backend.QuantGroup]
		lo, hi, amax := math.Inf(1), math.Inf(-1), 0.0
		for _, x := range v {
			lo, hi, amax = min(lo, x), max(hi, x), max(amax, math.Abs(x))
		}
		switch q {
		case backend.Q8:
			d := h(float64(float32(amax) / 127))
			for i, x := range v {
				if d != 0 {
					o[i] = d * max(-127, min(127, math.Round(x/d)))
				}
			}
		case backend.Q4:
			d, m := h(float64(float32(hi-lo)/15)), h(lo)
			for i, x := range v {
				o[i] = m
				if d != 0 {
					o[i] += d * max(0, min(15, math.Round((x-m)/d)))
				}
			}
		}
	}
	return out
}
