package backendtest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/internal/kernels"
	"github.com/fathom-llm/fathom/safetensors"
)

// quantizedBinder checks, on a backend.QuantizedBinder, MatMul with weights bound already
// quantized (whole rows, and column panels of backend.QuantPanelAlign) against the reference
// over the weights as the format dequantizes them; that malformed quantized weights fail with
// backend.ErrQuantization and experts of mismatched shapes with backend.ErrShape. A backend
// that is no QuantizedBinder skips it.
func (s suite) quantizedBinder(t *testing.T, b backend.Backend) {
	qb, isBinder := b.(backend.QuantizedBinder)
	if !isBinder {
		t.Skip("the backend binds no weights already quantized")
	}
	r := rand.New(rand.NewPCG(3, 13))
	// (tokens, in, out, panel)
	cases := [][4]int{{1, 64, 40, 64}, {5, 96, 33, 96}, {3, 1056, 24, backend.QuantPanelAlign}, {40, 1056, 24, 1056}}
	for _, q := range s.quants {
		for _, c := range cases {
			n, in, out, panel := c[0], c[1], c[2], c[3]
			t.Run(fmt.Sprintf("%s/n=%d,in=%d,out=%d,panel=%d", q, n, in, out, panel), func(t *testing.T) {
				_, wv := Weight(r, "w", safetensors.F32, 0.2, out, in)
				qw := quantizedWeight(t, q, wv, out, in, panel)
				w := must(qb.BindQuantizedWeight(qw))(t)
				if w.Rows() != out || w.Cols() != in || w.DType() != safetensors.F32 {
					t.Errorf("bound as %dx%d %s", w.Rows(), w.Cols(), w.DType())
				}
				xv := random(r, n*in, 1)
				x := upload(t, b, n, in, xv)
				dst := must(b.NewTensor(n, out))(t)
				ok(t, b.MatMul(dst, x, w))
				checkTol(t, "matmul", download(t, b, dst), matmulRef(f64(xv), n, dequantRef(q, wv, in), out), QuantTolerance)

				for name, bad := range map[string]func(*backend.QuantizedWeight){
					"short data":       func(w *backend.QuantizedWeight) { w.Data = w.Data[:len(w.Data)-1] },
					"unaligned panels": func(w *backend.QuantizedWeight) { w.Panel = backend.QuantGroup },
					"unknown format":   func(w *backend.QuantizedWeight) { w.Quant = "q3" },
				} {
					w := qw
					bad(&w)
					if _, err := qb.BindQuantizedWeight(w); !errors.Is(err, backend.ErrQuantization) {
						t.Errorf("%s: %v", name, err)
					}
				}
			})
		}
		t.Run(string(q)+"/experts", func(t *testing.T) {
			const experts, hidden, inner = 2, 64, 96
			gate, _ := Weight(r, "gate", safetensors.F32, 0.5, experts, hidden)
			var w [3][]backend.QuantizedWeight
			for range experts {
				for i, shape := range [][2]int{{inner, hidden}, {hidden, inner}, {inner, hidden}} {
					_, v := Weight(r, "w", safetensors.F32, 0.2, shape[0], shape[1])
					w[i] = append(w[i], quantizedWeight(t, q, v, shape[0], shape[1], shape[1]))
				}
			}
			if _, err := qb.BindQuantizedExperts(gate, w[0], w[1], w[2]); err != nil {
				t.Errorf("experts: %v", err)
			}
			if _, err := qb.BindQuantizedExperts(gate, w[0][:1], w[1], w[2]); !errors.Is(err, backend.ErrShape) {
				t.Errorf("one expert's w1 for two experts: %v", err)
			}
			if _, err := qb.BindQuantizedExperts(gate, w[1], w[0], w[2]); !errors.Is(err, backend.ErrShape) {
				t.Errorf("w1 and w2 swapped: %v", err)
			}
		})
	}
}

// quantizedWeight returns the float32 matrix wv (rows×cols) quantized as q in column panels of
// panel columns, as backend.QuantizedWeight lays them out.
func quantizedWeight(t *testing.T, q backend.Quantization, wv []float64, rows, cols, panel int) backend.QuantizedWeight {
	t.Helper()
	quantize := kernels.QuantizeQ8
	if q == backend.Q4 {
		quantize = kernels.QuantizeQ4
	}
	qw := backend.QuantizedWeight{Name: "w", Quant: q, DType: safetensors.F32, Rows: rows, Cols: cols, Panel: panel}
	for c0 := 0; c0 < cols; c0 += panel {
		n := min(panel, cols-c0)
		src := make([]float32, 0, rows*n)
		for r := range rows {
			for _, v := range wv[r*cols+c0 : r*cols+c0+n] {
				src = append(src, float32(v))
			}
		}
		part := make([]byte, rows*backend.QuantizedRowBytes(q, n))
		if err := quantize(part, src, n); err != nil {
			t.Fatal(err)
		}
		qw.Data = append(qw.Data, part...)
	}
	return qw
}
