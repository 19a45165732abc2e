package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fathom-llm/fathom/internal/half"
)

// matMulAddOperand is b of a MatMulAdd test in each element type: the product to call, with
// b from its column j0, and b's values as float32.
type matMulAddOperand struct {
	name string
	call func(c []float32, ldc int, a []float32, lda, ldb, j0, m, k, n int, add bool)
	b    []float32
}

// matMulAddOperands returns b, [k, n] with row stride ldb, as float32, float16 and bfloat16,
// each in a slice that faults past its end.
func matMulAddOperands(t *testing.T, r *rand.Rand, size int) []matMulAddOperand {
	b32, b16, bb := guarded[float32](t, size), guarded[uint16](t, size), guarded[uint16](t, size)
	f16, bf := make([]float32, size), make([]float32, size)
	for i := range size {
		v := float32(r.NormFloat64())
		b32[i], b16[i], bb[i] = v, half.F32ToF16(v), half.F32ToBF16(v)
		f16[i], bf[i] = half.F16ToF32(b16[i]), half.BF16ToF32(bb[i])
	}
	return []matMulAddOperand{
		{"f32", func(c []float32, ldc int, a []float32, lda, ldb, j0, m, k, n int, add bool) {
			MatMulAdd(c, ldc, a, lda, b32[j0:], ldb, m, k, n, add)
		}, b32},
		{"f16", func(c []float32, ldc int, a []float32, lda, ldb, j0, m, k, n int, add bool) {
			MatMulAddF16(c, ldc, a, lda, b16[j0:], ldb, m, k, n, add)
		}, f16},
		{"bf16", func(c []float32, ldc int, a []float32, lda, ldb, j0, m, k, n int, add bool) {
			MatMulAddBF16(c, ldc, a, lda, bb[j0:], ldb, m, k, n, add)
		}, bf},
	}
}

// TestMatMulAdd holds MatMulAdd, in every implementation and for b of every element type, to
// a float64 reference over shapes with whole tiles and partial ones of rows and of columns,
// row strides wider than the rows, and both storing and adding; the elements between the
// rows of c are left alone, and the operands fault past their ends.
func TestMatMulAdd(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(41, 42))
		for _, m := range []int{1, 2, 3, 5, 12, 13, 16, 17, 25, 64} {
			for _, k := range []int{0, 1, 7, 32, 100} {
				for _, n := range []int{1, 8, 15, 16, 17, 31, 32, 33, 100} {
					ldc, lda, ldb := n+r.IntN(3), k+r.IntN(3), n+r.IntN(3)
					a := randVec(t, r, max(0, (m-1)*lda+k))
					for _, b := range matMulAddOperands(t, r, max(0, (k-1)*ldb+n)) {
						for _, add := range []bool{false, true} {
							shape := fmt.Sprint(b.name, " ", m, "×", k, "×", n, " add=", add)
							c, check := withGuards(t, (m-1)*ldc+n)
							init := make([]float32, len(c))
							for i := range init {
								init[i] = float32(r.NormFloat64())
							}
							copy(c, init)
							b.call(c, ldc, a, lda, ldb, 0, m, k, n, add)
							check()
							for i := range c {
								if row, j := i/ldc, i%ldc; j >= n && c[i] != init[i] {
									t.Fatalf("%s: c[%d] past row %d changed", shape, i, row)
								}
							}
							for i := range m {
								for j := range n {
									var sum, mag float64
									if add {
										sum, mag = float64(init[i*ldc+j]), math.Abs(float64(init[i*ldc+j]))
									}
									for l := range k {
										p := float64(a[i*lda+l]) * float64(b.b[l*ldb+j])
										sum += p
										mag += math.Abs(p)
									}
									if got := c[i*ldc+j]; !close(got, sum, mag, k+1) {
										t.Fatalf("%s: [%d, %d] = %v, want %v", shape, i, j, got, sum)
									}
								}
							}
						}
					}
				}
			}
		}
	})
}

// TestMatMulAddInvariant checks that an element of MatMulAdd's product is the same bits
// whatever the rows of the call and the panels before its own: attention computes a query
// row alone when it decodes and among up to 64 rows when it reads a prompt.
func TestMatMulAddInvariant(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(43, 44))
		const m, k, n = 37, 128, 80
		a := randVec(t, r, m*k)
		for _, b := range matMulAddOperands(t, r, k*n) {
			all := make([]float32, m*n)
			b.call(all, n, a, k, n, 0, m, k, n, false)
			for i := range m {
				for _, j0 := range []int{0, 16, 64} {
					one := make([]float32, n-j0)
					b.call(one, n-j0, a[i*k:], k, n, j0, 1, k, n-j0, false)
					for j, v := range one {
						if w := all[i*n+j0+j]; math.Float32bits(v) != math.Float32bits(w) {
							t.Fatalf("%s: [%d, %d] alone %v, among %d rows %v", b.name, i, j0+j, v, m, w)
						}
					}
				}
			}
		}
	})
}

func TestMatMulAddShapePanics(t *testing.T) {
	for name, call := range map[string]func(){
		"negative": func() { MatMulAdd(nil, 0, nil, 0, nil, 0, -1, 1, 1, false) },
		"stride":   func() { MatMulAdd(make([]float32, 8), 1, make([]float32, 8), 2, make([]float32, 8), 2, 2, 2, 2, false) },
		"short": func() {
			MatMulAddF16(make([]float32, 3), 2, make([]float32, 4), 2, make([]uint16, 4), 2, 2, 2, 2, true)
		},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: a bad shape did not panic", name)
				}
			}()
			call()
		}()
	}
}

// BenchmarkMatMulAdd times MatMulAdd at the shapes of attention's products for a tile of 64
// query rows and a cache block of 16 float16 positions, with heads of 32 and of 128: scores
// (k = head width, n = positions, b the keys of the block stored transposed) and the
// weighted values (k = positions, n = head width).
func BenchmarkMatMulAdd(b *testing.B) {
	for _, s := range [][3]int{{64, 32, 16}, {64, 16, 32}, {64, 128, 16}, {64, 16, 128}} {
		m, k, n := s[0], s[1], s[2]
		b.Run(fmt.Sprintf("%dx%dx%d", m, k, n), func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			a, w, out := make([]float32, m*k), make([]uint16, k*n), make([]float32, m*n)
			for i := range a {
				a[i] = float32(r.NormFloat64())
			}
			for i := range w {
				w[i] = half.F32ToF16(float32(r.NormFloat64()))
			}
			for b.Loop() {
				MatMulAddF16(out, n, a, k, w, n, m, k, n, true)
			}
			b.ReportMetric(2*float64(m*k*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
