package kernels

import (
	"unsafe"

	"github.com/fathom-llm/fathom/internal/half"
)

// MatMulAdd sets c[i*ldc+j] to Σ_{l<k} a[i*lda+l]·b[l*ldb+j] for i < m and j < n, or adds
// that sum to it if add: the product of a row-major [m, k] matrix a and a row-major [k, n]
// matrix b, each read with its own row stride, into the [m, n] matrix c, its row stride ldc.
// Each sum is accumulated in float32 from zero in the order of l, then stored or added, so
// an element of c does not depend on m or on the other rows of the call. The columns are
// taken a vector at a time (16 with AVX-512, 8 with AVX2) from the first; those past the last
// whole vector are summed in Go, whose roundings may differ, so a column's bits do not depend
// on n or on the columns beside it as long as it falls in a whole vector: attention's
// products, over whole cache blocks and heads, rest on it. Neither operand is packed, so a
// product pays nothing for operands it uses once, as attention's are: the elements of a are
// broadcast and the rows of b read as vectors as they are. A shape that does not fit the
// slices panics.
func MatMulAdd(c []float32, ldc int, a []float32, lda int, b []float32, ldb int, m, k, n int, add bool) {
	if matMulAddShape(len(c), ldc, len(a), lda, len(b), ldb, m, k, n) {
		impl.matMulAddF32(c, ldc, a, lda, b, ldb, m, k, n, add)
	}
}

// MatMulAddF16 is MatMulAdd for b in float16, widened to float32 as it is read.
func MatMulAddF16(c []float32, ldc int, a []float32, lda int, b []uint16, ldb int, m, k, n int, add bool) {
	if matMulAddShape(len(c), ldc, len(a), lda, len(b), ldb, m, k, n) {
		impl.matMulAddF16(c, ldc, a, lda, b, ldb, m, k, n, add)
	}
}

// MatMulAddBF16 is MatMulAdd for b in bfloat16, widened to float32 as it is read.
func MatMulAddBF16(c []float32, ldc int, a []float32, lda int, b []uint16, ldb int, m, k, n int, add bool) {
	if matMulAddShape(len(c), ldc, len(a), lda, len(b), ldb, m, k, n) {
		impl.matMulAddBF16(c, ldc, a, lda, b, ldb, m, k, n, add)
	}
}

// Prefetch asks the CPU to bring the cache lines of s into L1, where the vector
// implementations run: a product over operands scattered in memory, as the blocks of a paged
// KV cache are, prefetches the next while it computes the last.
func Prefetch[E any](s []E) {
	if len(s) > 0 {
		impl.prefetch((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(s[0])))
	}
}

// matMulAddShape panics unless the matrices of a MatMulAdd fit their slices, and reports
// whether there is anything to compute.
func matMulAddShape(lc, ldc, la, lda, lb, ldb, m, k, n int) bool {
	if m < 0 || k < 0 || n < 0 || ldc < n || lda < k || ldb < n ||
		m > 0 && (lc < (m-1)*ldc+n || la < (m-1)*lda+k) || k > 0 && lb < (k-1)*ldb+n {
		panic("kernels: bad matrix product shape")
	}
	return m > 0 && n > 0
}

// matMulAddFunc is MatMulAdd for b of element type E, its shape checked.
type matMulAddFunc[E uint16 | float32] func(c []float32, ldc int, a []float32, lda int, b []E, ldb int, m, k, n int, add bool)

// matMulAddGeneric returns MatMulAdd in Go for b widened by widen, over the columns [j0, n).
func matMulAddGeneric[E uint16 | float32](widen func(E) float32) func(c []float32, ldc int, a []float32, lda int, b []E, ldb int, m, k, n, j0 int, add bool) {
	return func(c []float32, ldc int, a []float32, lda int, b []E, ldb int, m, k, n, j0 int, add bool) {
		for i := range m {
			ci := c[i*ldc : i*ldc+n]
			for j := j0; j < n; j++ {
				var s float32
				for l := range k {
					s += a[i*lda+l] * widen(b[l*ldb+j])
				}
				if add {
					s += ci[j]
				}
				ci[j] = s
			}
		}
	}
}

var (
	matMulAddF32Generic  = matMulAddGeneric(func(v float32) float32 { return v })
	matMulAddF16Generic  = matMulAddGeneric(half.F16ToF32)
	matMulAddBF16Generic = matMulAddGeneric(half.BF16ToF32)
)

// whole returns a generic MatMulAdd as a matMulAddFunc, all of its columns.
func whole[E uint16 | float32](f func(c []float32, ldc int, a []float32, lda int, b []E, ldb int, m, k, n, j0 int, add bool)) matMulAddFunc[E] {
	return func(c []float32, ldc int, a []float32, lda int, b []E, ldb int, m, k, n int, add bool) {
		f(c, ldc, a, lda, b, ldb, m, k, n, 0, add)
	}
}

// matMulAddTile is a vector tile of MatMulAdd: some rows of a times a panel of b one vector
// wide, over k (see the generator).
type matMulAddTile[E uint16 | float32] func(c *float32, ldc int, a *float32, lda int, b *E, ldb int, k int, add bool)

// vecMatMulAdd returns MatMulAdd by tiles over panels of width columns, tiles[t] taking
// rows[t] rows (rows decreasing to 1), each run of rows taken by the largest tile that fits
// it. The columns past the last whole panel, and products over no l, go to rest.
func vecMatMulAdd[E uint16 | float32](width int, rows []int, tiles []matMulAddTile[E],
	rest func(c []float32, ldc int, a []float32, lda int, b []E, ldb int, m, k, n, j0 int, add bool)) matMulAddFunc[E] {
	return func(c []float32, ldc int, a []float32, lda int, b []E, ldb int, m, k, n int, add bool) {
		whole := n / width * width
		if k == 0 {
			whole = 0
		}
		for j := 0; j < whole; j += width {
			for i, t := 0, 0; i < m; i += rows[t] {
				for rows[t] > m-i {
					t++
				}
				tiles[t](&c[i*ldc+j], ldc, &a[i*lda], lda, &b[j], ldb, k, add)
			}
		}
		if whole < n {
			rest(c, ldc, a, lda, b, ldb, m, k, n, whole, add)
		}
	}
}
