package cpu_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/backend/backendtest"
	"github.com/fathom-llm/fathom/backend/cpu"
	"github.com/fathom-llm/fathom/safetensors"
)

// TestConformanceBF16Activations runs the suite with activations rounded to bfloat16, at the
// tolerance of bfloat16 compute.
func TestConformanceBF16Activations(t *testing.T) {
	backendtest.RunOptions(t, func() backend.Backend {
		return cpu.NewWithOptions(cpu.Options{Workers: 2, BF16Activations: true})
	}, backendtest.Options{Tolerance: backendtest.BF16Tolerance})
}

// TestBF16ActivationsGEMM compares products over enough tokens for the VDPBF16PS GEMM (a
// MatMul and a MoE block) with the exact mode: they differ by bfloat16 rounding, no more.
func TestBF16ActivationsGEMM(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const n, hidden, inner, experts = 150, 64, 96, 4
	et := randomExperts(r, experts, hidden, inner)
	xv := make([]float32, n*hidden)
	for i := range xv {
		xv[i] = float32(r.NormFloat64())
	}
	var res [2][2][]float32 // [mode][matmul, moe]
	for mode, on := range []bool{false, true} {
		be := cpu.NewWithOptions(cpu.Options{Workers: 2, BF16Activations: on})
		ex, err := be.BindExperts(et)
		if err != nil {
			t.Fatal(err)
		}
		w, err := be.Bind(et.W1[0])
		if err != nil {
			t.Fatal(err)
		}
		x, _ := be.NewTensor(n, hidden)
		mm, _ := be.NewTensor(n, inner)
		moe, _ := be.NewTensor(n, hidden)
		if err := be.Write(x, xv); err != nil {
			t.Fatal(err)
		}
		if err := be.MatMul(mm, x, w); err != nil {
			t.Fatal(err)
		}
		if err := be.MoE(moe, x, ex, 2, backend.Tensor{}); err != nil {
			t.Fatal(err)
		}
		res[mode][0], res[mode][1] = make([]float32, n*inner), make([]float32, n*hidden)
		if err := be.Read(res[mode][0], mm); err != nil {
			t.Fatal(err)
		}
		if err := be.Read(res[mode][1], moe); err != nil {
			t.Fatal(err)
		}
		be.Close()
	}
	for i, what := range []string{"matmul", "moe"} {
		exact := make([]float64, len(res[0][i]))
		for j, v := range res[0][i] {
			exact[j] = float64(v)
		}
		e := backendtest.RelErr(res[1][i], exact)
		t.Logf("%s: bfloat16 activations differ by %.3g", what, e)
		if !(e < backendtest.BF16Tolerance) || e == 0 {
			t.Errorf("%s: bfloat16 activations differ by %.3g, want (0, %g)", what, e, backendtest.BF16Tolerance)
		}
	}
}

// TestQuantizedCopy checks that a quantized weight keeps no reference to the stored data and
// that its rows serve Embed as well as MatMul.
func TestQuantizedCopy(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	be := cpu.New(2)
	defer be.Close()
	const rows, cols = 40, 96
	st, _ := backendtest.Weight(r, "w", safetensors.BF16, 0.5, rows, cols)
	for _, q := range []backend.Quantization{backend.Q8, backend.Q4} {
		t.Run(string(q), func(t *testing.T) {
			data := slices.Clone(st.Data)
			stored := st
			stored.Data = data
			w, err := be.BindQuantized(stored, q)
			if err != nil {
				t.Fatal(err)
			}
			x, _ := be.NewTensor(3, cols)
			xv := make([]float32, 3*cols)
			for i := range xv {
				xv[i] = float32(r.NormFloat64())
			}
			if err := be.Write(x, xv); err != nil {
				t.Fatal(err)
			}
			y, _ := be.NewTensor(3, rows)
			run := func() []float32 {
				if err := be.MatMul(y, x, w); err != nil {
					t.Fatal(err)
				}
				out := make([]float32, 3*rows)
				if err := be.Read(out, y); err != nil {
					t.Fatal(err)
				}
				return out
			}
			before := run()
			clear(data)
			if after := run(); !slices.Equal(before, after) {
				t.Errorf("%s: the product changed with the stored data", q)
			}
			// The embedding of row 7 is the dequantized row: the product with one-hot
			// activations (which quantize exactly) gives it too.
			c, err := be.NewCache(backend.CacheConfig{Layers: 1, KVHeads: 1, HeadDim: 2, BlockSize: 4, Blocks: 2})
			if err != nil {
				t.Fatal(err)
			}
			seq, _ := c.NewSequence()
			bt, err := c.Prepare([]backend.Token{{Seq: seq, Pos: 0, ID: 7}})
			if err != nil {
				t.Fatal(err)
			}
			e, _ := be.NewTensor(1, cols)
			if err := be.Embed(e, w, bt); err != nil {
				t.Fatal(err)
			}
			row := make([]float32, cols)
			if err := be.Read(row, e); err != nil {
				t.Fatal(err)
			}
			c.Close()
			eye, _ := be.NewTensor(cols, cols)
			ev := make([]float32, cols*cols)
			for i := range cols {
				ev[i*cols+i] = 1
			}
			if err := be.Write(eye, ev); err != nil {
				t.Fatal(err)
			}
			col, _ := be.NewTensor(cols, rows)
			if err := be.MatMul(col, eye, w); err != nil {
				t.Fatal(err)
			}
			cv := make([]float32, cols*rows)
			if err := be.Read(cv, col); err != nil {
				t.Fatal(err)
			}
			for j, v := range row {
				if d := v - cv[j*rows+7]; d > 1e-6*abs(v) || -d > 1e-6*abs(v) {
					t.Fatalf("%s: embedded row 7 has %g at %d, the product %g", q, v, j, cv[j*rows+7])
				}
			}
			if slices.Equal(row, make([]float32, cols)) {
				t.Errorf("%s: embedding row 7 is zero", q)
			}
		})
	}
}

func abs(x float32) float32 { return max(x, -x) }

// randomExperts returns a bfloat16 mixture-of-experts block of random weights.
func randomExperts(r *rand.Rand, experts, hidden, inner int) backend.ExpertTensors {
	var et backend.ExpertTensors
	et.Gate, _ = backendtest.Weight(r, "gate", safetensors.BF16, 0.5, experts, hidden)
	for range experts {
		w1, _ := backendtest.Weight(r, "w1", safetensors.BF16, 0.3, inner, hidden)
		w2, _ := backendtest.Weight(r, "w2", safetensors.BF16, 0.3, hidden, inner)
		w3, _ := backendtest.Weight(r, "w3", safetensors.BF16, 0.3, inner, hidden)
		et.W1, et.W2, et.W3 = append(et.W1, w1), append(et.W2, w2), append(et.W3, w3)
	}
	return et
}

// TestProductAllocs checks that products and MoE blocks allocate nothing once the backend's
// working memory has grown: one token, a few (the few-token kernels), many (the packed GEMMs),
// with weights as stored, with bfloat16 activations and quantized. The experts' w2 rows are
// wide enough to be kept in column panels.
func TestProductAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	r := rand.New(rand.NewPCG(9, 10))
	const hidden, inner, experts, most = 64, backendtest.Wide, 4, 48
	et := randomExperts(r, experts, hidden, inner)
	for _, c := range []struct {
		q        backend.Quantization
		bf16Acts bool
	}{{backend.AsStored, false}, {backend.AsStored, true}, {backend.Q8, false}, {backend.Q4, false}} {
		t.Run(fmt.Sprintf("%s/bf16-activations=%v", c.q, c.bf16Acts), func(t *testing.T) {
			be := cpu.NewWithOptions(cpu.Options{Workers: 2, BF16Activations: c.bf16Acts})
			ex, err := be.BindExpertsQuantized(et, c.q)
			if err != nil {
				t.Fatal(err)
			}
			w, err := be.BindQuantized(et.W1[0], c.q)
			if err != nil {
				t.Fatal(err)
			}
			xv := make([]float32, most*hidden)
			for i := range xv {
				xv[i] = float32(r.NormFloat64())
			}
			// Grow the working memory at the largest size first.
			for _, n := range []int{most, 1, 8} {
				x, _ := be.NewTensor(n, hidden)
				mm, _ := be.NewTensor(n, inner)
				moe, _ := be.NewTensor(n, hidden)
				if err := be.Write(x, xv[:n*hidden]); err != nil {
					t.Fatal(err)
				}
				run := func() {
					if err := be.MatMul(mm, x, w); err != nil {
						t.Fatal(err)
					}
					if err := be.MoE(moe, x, ex, 2, backend.Tensor{}); err != nil {
						t.Fatal(err)
					}
				}
				run()
				if a := testing.AllocsPerRun(5, run); a != 0 {
					t.Errorf("%q (bfloat16 activations %v), %d tokens: %v allocations", c.q, c.bf16Acts, n, a)
				}
			}
			be.Close()
		})
	}
}
