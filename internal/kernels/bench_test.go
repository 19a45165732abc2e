package kernels

import (
	"fmt"
	"testing"

	"github.com/fathom-llm/fathom/internal/half"
)

// The benchmarks pair every implementation this CPU supports on the same data, at sizes that
// stay in cache so that they compare the code rather than the memory.

func benchImpls(b *testing.B, f func(b *testing.B)) {
	for _, fs := range supportedFeatureSets() {
		restore := useFeatures(fs)
		b.Run(impl.name, f)
		restore()
	}
}

func BenchmarkMatVec(b *testing.B) {
	const rows, cols = 64, 4096 // 512 KiB of bfloat16: L2
	w := make([]uint16, rows*cols)
	wf := make([]float32, rows*cols)
	for i := range w {
		w[i] = half.F32ToBF16(float32(i%7) - 3)
		wf[i] = half.BF16ToF32(w[i])
	}
	x := make([]float32, cols)
	for i := range x {
		x[i] = float32(i%5) - 2
	}
	out := make([]float32, rows)
	q8 := make([]byte, rows*Q8RowBytes(cols))
	q4 := make([]byte, rows*Q4RowBytes(cols))
	if QuantizeQ8(q8, wf, cols) != nil || QuantizeQ4(q4, wf, cols) != nil {
		b.Fatal("quantize")
	}
	for _, dt := range []string{"bf16", "f16", "f32", "q8", "q4"} {
		b.Run(dt, func(b *testing.B) {
			benchImpls(b, func(b *testing.B) {
				b.SetBytes(map[string]int64{"bf16": 2 * rows * cols, "f16": 2 * rows * cols, "f32": 4 * rows * cols,
					"q8": int64(len(q8)), "q4": int64(len(q4))}[dt])
				for b.Loop() {
					switch dt {
					case "bf16":
						MatVecBF16(out, w, x, cols)
					case "f16":
						MatVecF16(out, w, x, cols)
					case "f32":
						MatVecF32(out, wf, x, cols)
					case "q8":
						MatVecQ8(out, q8, x, cols)
					case "q4":
						MatVecQ4(out, q4, x, cols)
					}
				}
			})
		})
	}
}

// BenchmarkMatMul times products over a few tokens (a batch of decoding sequences) and many
// (a prompt's chunk) on one weight of 256×4096, whose rows are as wide as Mixtral's hidden size.
func BenchmarkMatMul(b *testing.B) {
	const rows, cols = 256, 4096
	w := make([]uint16, rows*cols)
	for i := range w {
		w[i] = half.F32ToBF16(float32(i%7) - 3)
	}
	for _, tokens := range []int{4, 16, 96} {
		x := make([]float32, tokens*cols)
		for i := range x {
			x[i] = float32(i%11-5) * 0.29
		}
		out := make([]float32, tokens*rows)
		for _, dt := range []string{"bf16", "bf16-rounded"} {
			b.Run(fmt.Sprintf("%s/tokens=%d", dt, tokens), func(b *testing.B) {
				benchImpls(b, func(b *testing.B) {
					var s Scratch
					for b.Loop() {
						if dt == "bf16" {
							s.MatMulBF16Rows(out, w, x, tokens, rows, cols, 0, rows)
						} else {
							s.MatMulBF16RoundedRows(out, w, x, tokens, rows, cols, 0, rows)
						}
					}
					b.ReportMetric(2*float64(tokens*rows*cols)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
			})
		}
	}
}

func BenchmarkPeak(b *testing.B) {
	for name, loop := range map[string]func(int) int64{"fma": FMALoop, "bf16": BF16DotLoop} {
		b.Run(name, func(b *testing.B) {
			var flops int64
			for b.Loop() {
				flops += loop(1 << 14)
			}
			b.ReportMetric(float64(flops)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

func BenchmarkHelpers(b *testing.B) {
	const n = 14336 // an expert's hidden size
	g := make([]float32, n)
	for i := range g {
		g[i] = float32(i%100)/10 - 5
	}
	u := make([]float32, n)
	d := make([]float32, n)
	b.Run("SiLUMul", func(b *testing.B) {
		benchImpls(b, func(b *testing.B) {
			b.SetBytes(3 * 4 * n)
			for b.Loop() {
				SiLUMul(d, g, u)
			}
		})
	})
	b.Run("Softmax", func(b *testing.B) {
		benchImpls(b, func(b *testing.B) {
			b.SetBytes(4 * n)
			for b.Loop() {
				copy(d, g)
				Softmax(d)
			}
		})
	})
}

// BenchmarkStream streams an expert-sized matrix (14336×4096, far larger than the caches)
// once per product, one token, in shares of 256 rows as the backend's workers take them, with
// the activations quantized beforehand for the quantized formats: the rate at which each
// format's kernels read memory.
func BenchmarkStream(b *testing.B) {
	const rows, cols, share = 14336, 4096, 256
	wf := make([]float32, share*cols)
	for i := range wf {
		wf[i] = float32(i%7) - 3
	}
	w := make([]uint16, rows*cols)
	for i := range w {
		w[i] = half.F32ToBF16(wf[i%len(wf)])
	}
	r8, r4 := Q8RowBytes(cols), Q4RowBytes(cols)
	q8, q4 := make([]byte, rows*r8), make([]byte, rows*r4)
	for r := 0; r < rows; r += share {
		if QuantizeQ8(q8[r*r8:(r+share)*r8], wf, cols) != nil || QuantizeQ4(q4[r*r4:(r+share)*r4], wf, cols) != nil {
			b.Fatal("quantize")
		}
	}
	x := make([]float32, cols)
	for i := range x {
		x[i] = float32(i%5) - 2
	}
	var xq QuantActs
	xq.Quantize(x, 1, cols)
	out := make([]float32, rows)
	// q8-each quantizes the activations for each share, as MatVecQ8 does.
	for _, dt := range []string{"bf16", "q8", "q8-each", "q4"} {
		b.Run(dt, func(b *testing.B) {
			b.SetBytes(map[string]int64{"bf16": int64(2 * len(w)), "q8": int64(len(q8)), "q8-each": int64(len(q8)), "q4": int64(len(q4))}[dt])
			for b.Loop() {
				for lo := 0; lo < rows; lo += share {
					switch dt {
					case "bf16":
						MatMulBF16Rows(out, w, x, 1, rows, cols, lo, lo+share)
					case "q8":
						MatMulQ8RowsQ(out, q8, &xq, rows, lo, lo+share)
					case "q8-each":
						MatVecQ8(out[lo:lo+share], q8[lo*r8:(lo+share)*r8], x, cols)
					case "q4":
						MatMulQ4RowsQ(out, q4, &xq, rows, lo, lo+share)
					}
				}
			}
		})
	}
}

// BenchmarkWideRows streams a down-projection-shaped matrix (4096×14336 bf16: rows of 28 KB,
// an input of 57 KB, more than the 32 KB L1 cache) against one token on one goroutine, in
// four orders: the rows one after another against the whole input (MatVecBF16); the same
// weight stream against an 8 KB slice of the input that stays in L1 (a wrong product, a probe
// of where the time goes); column blocks of the panel width over the row-major layout; and the
// matrix stored in column panels (PanelCols), each panel's rows against its slice of the input.
func BenchmarkWideRows(b *testing.B) {
	const rows, cols = 4096, 14336
	p := PanelCols(cols, false)
	w := make([]uint16, rows*cols)
	for i := range w {
		w[i] = half.F32ToBF16(float32(i%7) - 3)
	}
	panels := make([]uint16, 0, rows*cols) // the panels one after another
	for c := 0; c < cols; c += p {
		for r := range rows {
			panels = append(panels, w[r*cols+c:r*cols+min(cols, c+p)]...)
		}
	}
	x := make([]float32, cols)
	for i := range x {
		x[i] = float32(i%5) - 2
	}
	out, part := make([]float32, rows), make([]float32, rows)
	orders := map[string]func(){
		"rows": func() { MatVecBF16(out, w, x, cols) },
		"rows-l1-input": func() {
			for r := range rows {
				var s float32
				for c := 0; c+p <= cols; c += p {
					s += DotBF16(w[r*cols+c:r*cols+c+p], x[:p])
				}
				out[r] = s
			}
		},
		"column-blocks": func() {
			clear(out)
			for c := 0; c < cols; c += p {
				e := min(cols, c+p)
				for r := range rows {
					out[r] += DotBF16(w[r*cols+c:r*cols+e], x[c:e])
				}
			}
		},
		"panels": func() {
			clear(out)
			for c := 0; c < cols; c += p {
				n := min(p, cols-c)
				MatVecBF16(part, panels[c*rows:c*rows+rows*n], x[c:c+n], n)
				Axpy(1, part, out)
			}
		},
	}
	for _, name := range []string{"rows", "rows-l1-input", "column-blocks", "panels"} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(2 * len(w)))
			for b.Loop() {
				orders[name]()
			}
		})
	}
}
