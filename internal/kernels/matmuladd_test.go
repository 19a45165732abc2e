package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestMatMulAdd holds MatMulAdd, in every implementation, to a float64 reference over shapes
// with whole tiles and partial ones of rows and of columns, with guards around the output and
// inputs that fault past their ends.
func TestMatMulAdd(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(41, 42))
		for _, m := range []int{1, 5, 12, 13, 25, 64} {
			for _, k := range []int{0, 1, 7, 32, 100} {
				for _, n := range []int{1, 15, 16, 31, 32, 33, 64, 100, 256} {
					a, b := randVec(t, r, m*k), randVec(t, r, k*n)
					out, check := withGuards(t, m*n)
					init := make([]float32, m*n)
					for i := range init {
						init[i] = float32(r.NormFloat64())
					}
					copy(out, init)
					MatMulAdd(out, a, b, m, k, n)
					check()
					for i := range m {
						for j := range n {
							sum, mag := float64(init[i*n+j]), math.Abs(float64(init[i*n+j]))
							for l := range k {
								p := float64(a[i*k+l]) * float64(b[l*n+j])
								sum += p
								mag += math.Abs(p)
							}
							if got := out[i*n+j]; !close(got, sum, mag, k+1) {
								t.Fatalf("%s: [%d, %d] = %v, want %v", fmt.Sprint(m, "×", k, "×", n), i, j, got, sum)
							}
						}
					}
				}
			}
		}
	})
}

func TestMatMulAddShapePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("a negative dimension did not panic")
		}
	}()
	MatMulAdd(nil, nil, nil, -1, 1, 1)
}

// BenchmarkMatMulAdd times MatMulAdd at the shapes of attention's products for a tile of 64
// query rows and 256 keys, with heads of 32 and of 128: scores (k = head width, n = keys) and
// the weighted values (k = keys, n = head width).
func BenchmarkMatMulAdd(b *testing.B) {
	for _, s := range [][3]int{{64, 32, 256}, {64, 256, 32}, {64, 128, 256}, {64, 256, 128}} {
		m, k, n := s[0], s[1], s[2]
		b.Run(fmt.Sprintf("%dx%dx%d", m, k, n), func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			a, w, out := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
			for i := range a {
				a[i] = float32(r.NormFloat64())
			}
			for i := range w {
				w[i] = float32(r.NormFloat64())
			}
			for b.Loop() {
				MatMulAdd(out, a, w, m, k, n)
			}
			b.ReportMetric(2*float64(m*k*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
