package cpu_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/backend/backendtest"
	"github.com/fathom-llm/fathom/backend/cpu"
	"github.com/fathom-llm/fathom/internal/kernels"
	"github.com/fathom-llm/fathom/safetensors"
)

// TestConformanceBF16Activations runs the suite with activations rounded to bfloat16, at the
// tolerance of bfloat16 compute.
func TestConformanceBF16Activations(t *testing.T) {
	backendtest.RunOptions(t, func() backend.Backend {
		return cpu.NewWithOptions(cpu.Options{Workers: 2, BF16Activations: true})
	}, backendtest.Options{Tolerance: backendtest.BF16Tolerance})
}

// TestBF16ActivationsGEMM compares products over enough tokens for the VDPBF16PS tiles (a
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
			bt, err := c.Prepare([]backend.Token{{Seq: 0, Pos: 0, ID: 7}}, [][]int{{0}})
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
// working memory has grown: one token, a few (the few-token kernels), many (the tiles),
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

// TestQuantizedWeight checks that a weight quantized by QuantizeWeight and bound by
// BindQuantizedWeight gives the products of the same weight bound by BindQuantized, bit for
// bit, as a view of the data it was given; that a matrix in column panels, put together from
// panels quantized one by one, multiplies as the whole matrix does; and that malformed
// quantized weights are refused.
func TestQuantizedWeight(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	be := cpu.New(2)
	defer be.Close()
	product := func(w backend.Weight, xv []float32, tokens int) []float32 {
		t.Helper()
		x, _ := be.NewTensor(tokens, w.Cols())
		y, _ := be.NewTensor(tokens, w.Rows())
		if err := be.Write(x, xv[:tokens*w.Cols()]); err != nil {
			t.Fatal(err)
		}
		if err := be.MatMul(y, x, w); err != nil {
			t.Fatal(err)
		}
		out := make([]float32, tokens*w.Rows())
		if err := be.Read(out, y); err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, q := range []backend.Quantization{backend.Q8, backend.Q4} {
		for _, dt := range []safetensors.DType{safetensors.BF16, safetensors.F32} {
			for _, shape := range [][2]int{{40, 96}, {1, 64}, {24, backendtest.Wide}} {
				rows, cols := shape[0], shape[1]
				what := fmt.Sprintf("%s %s %dx%d", q, dt, rows, cols)
				st, _ := backendtest.Weight(r, "w", dt, 0.3, rows, cols)
				qw, err := be.QuantizeWeight(st, q)
				if err != nil {
					t.Fatal(err)
				}
				if qw.Rows != rows || qw.Cols != cols || qw.Quant != q || qw.DType != dt || qw.Check() != nil {
					t.Fatalf("%s: quantized as %+v (%v)", what, qw, qw.Check())
				}
				pre, err := be.BindQuantizedWeight(qw)
				if err != nil {
					t.Fatal(err)
				}
				loaded, err := be.BindQuantized(st, q)
				if err != nil {
					t.Fatal(err)
				}
				if pre.Rows() != rows || pre.Cols() != cols || pre.DType() != dt {
					t.Errorf("%s: bound as %dx%d %s", what, pre.Rows(), pre.Cols(), pre.DType())
				}
				xv := random(r, 40*cols)
				for _, tokens := range []int{1, 3, 40} {
					if got, want := product(pre, xv, tokens), product(loaded, xv, tokens); !slices.Equal(got, want) {
						t.Errorf("%s, %d tokens: the pre-quantized weight's product differs", what, tokens)
					}
				}
				clear(qw.Data)
				if got := product(pre, xv, 1); !slices.Equal(got, make([]float32, rows)) {
					t.Errorf("%s: the bound weight does not view the quantized data", what)
				}
			}
		}
	}

	// Panels of 512 columns, each quantized as a matrix of its own.
	const rows, cols, panel = 24, 2*kernels.PanelAlign + 3*backend.QuantGroup, kernels.PanelAlign
	st, wv := backendtest.Weight(r, "w", safetensors.BF16, 0.3, rows, cols)
	whole, err := be.QuantizeWeight(st, backend.Q8)
	if err != nil {
		t.Fatal(err)
	}
	if whole.Panel != cols {
		t.Fatalf("a matrix of %d columns quantized in panels of %d", cols, whole.Panel)
	}
	panels := whole
	panels.Panel, panels.Data = panel, nil
	for c0 := 0; c0 < cols; c0 += panel {
		n := min(panel, cols-c0)
		part := safetensors.Tensor{Name: "part", DType: safetensors.F32, Shape: []int{rows, n}}
		for row := range rows {
			for _, v := range wv[row*cols+c0 : row*cols+c0+n] {
				part.Data = binary.LittleEndian.AppendUint32(part.Data, math.Float32bits(float32(v)))
			}
		}
		pq, err := be.QuantizeWeight(part, backend.Q8)
		if err != nil {
			t.Fatal(err)
		}
		panels.Data = append(panels.Data, pq.Data...)
	}
	pw, err := be.BindQuantizedWeight(panels)
	if err != nil {
		t.Fatal(err)
	}
	ww, err := be.BindQuantizedWeight(whole)
	if err != nil {
		t.Fatal(err)
	}
	xv := random(r, 40*cols)
	for _, tokens := range []int{1, 3, 40} {
		got, want := product(pw, xv, tokens), product(ww, xv, tokens)
		if e := backendtest.RelErr(got, f64s(want)); !(e < 1e-5) {
			t.Errorf("panels of %d, %d tokens: product off by %.3g", panel, tokens, e)
		}
	}

	bad := func(f func(*backend.QuantizedWeight)) backend.QuantizedWeight {
		w := whole
		f(&w)
		return w
	}
	for name, w := range map[string]backend.QuantizedWeight{
		"unknown quantization": bad(func(w *backend.QuantizedWeight) { w.Quant = "q3" }),
		"as stored":            bad(func(w *backend.QuantizedWeight) { w.Quant = backend.AsStored }),
		"integer dtype":        bad(func(w *backend.QuantizedWeight) { w.DType = safetensors.I32 }),
		"short data":           bad(func(w *backend.QuantizedWeight) { w.Data = w.Data[:len(w.Data)-1] }),
		"a row more":           bad(func(w *backend.QuantizedWeight) { w.Rows++ }),
		"columns not grouped":  bad(func(w *backend.QuantizedWeight) { w.Cols, w.Panel = 33, 33 }),
		"unaligned panels":     bad(func(w *backend.QuantizedWeight) { w.Panel = 544 }),
		"no panels":            bad(func(w *backend.QuantizedWeight) { w.Panel = 0 }),
	} {
		if _, err := be.BindQuantizedWeight(w); !errors.Is(err, backend.ErrQuantization) {
			t.Errorf("%s: %v", name, err)
		}
	}
	odd, _ := backendtest.Weight(r, "odd", safetensors.BF16, 0.3, 4, 33)
	asStored := backend.QuantizedWeight{Name: "odd", DType: odd.DType, Rows: 4, Cols: 33, Data: odd.Data}
	sw, err := be.BindQuantizedWeight(asStored)
	if err != nil {
		t.Fatal(err)
	}
	bw, err := be.Bind(odd)
	if err != nil {
		t.Fatal(err)
	}
	if xv := random(r, 3*33); !slices.Equal(product(sw, xv, 3), product(bw, xv, 3)) {
		t.Error("a weight as stored bound by BindQuantizedWeight multiplies differently")
	}
	if _, err := be.QuantizeWeight(odd, backend.Q4); !errors.Is(err, backend.ErrQuantization) {
		t.Errorf("quantizing rows of 33: %v", err)
	}
	if _, err := be.QuantizeWeight(st, backend.AsStored); !errors.Is(err, backend.ErrQuantization) {
		t.Errorf("quantizing as stored: %v", err)
	}
}

// TestQuantizedExperts checks that experts bound from QuantizeWeight's output compute the MoE
// block of experts quantized at binding, bit for bit.
func TestQuantizedExperts(t *testing.T) {
	r := rand.New(rand.NewPCG(33, 34))
	be := cpu.New(2)
	defer be.Close()
	const experts, hidden, inner, n = 4, 64, 96, 5
	et := randomExperts(r, experts, hidden, inner)
	for _, q := range []backend.Quantization{backend.Q8, backend.Q4} {
		var w [3][]backend.QuantizedWeight
		for i, ws := range [][]safetensors.Tensor{et.W1, et.W2, et.W3} {
			for _, st := range ws {
				qw, err := be.QuantizeWeight(st, q)
				if err != nil {
					t.Fatal(err)
				}
				w[i] = append(w[i], qw)
			}
		}
		pre, err := be.BindQuantizedExperts(et.Gate, w[0], w[1], w[2])
		if err != nil {
			t.Fatal(err)
		}
		loaded, err := be.BindExpertsQuantized(et, q)
		if err != nil {
			t.Fatal(err)
		}
		x, _ := be.NewTensor(n, hidden)
		if err := be.Write(x, random(r, n*hidden)); err != nil {
			t.Fatal(err)
		}
		var out [2][]float32
		for i, e := range []backend.Experts{pre, loaded} {
			y, _ := be.NewTensor(n, hidden)
			if err := be.MoE(y, x, e, 2, backend.Tensor{}); err != nil {
				t.Fatal(err)
			}
			out[i] = make([]float32, n*hidden)
			if err := be.Read(out[i], y); err != nil {
				t.Fatal(err)
			}
		}
		if !slices.Equal(out[0], out[1]) {
			t.Errorf("%s: the pre-quantized experts' output differs", q)
		}
		if _, err := be.BindQuantizedExperts(et.Gate, w[0][:3], w[1], w[2]); !errors.Is(err, backend.ErrShape) {
			t.Errorf("%s: three experts' w1 for four: %v", q, err)
		}
		if _, err := be.BindQuantizedExperts(et.Gate, w[1], w[0], w[2]); !errors.Is(err, backend.ErrShape) {
			t.Errorf("%s: w1 and w2 swapped: %v", q, err)
		}
	}
}

// random returns n normally distributed values.
func random(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func f64s(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}
