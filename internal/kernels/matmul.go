package kernels

import (
	"slices"
	"unsafe"

	"github.com/klauspost/cpuid/v2"
)

// PanelAlign is the granularity of column panels: a whole number of quantization
// super-blocks, so that a panel of a quantized matrix is a quantized matrix of its own.
const PanelAlign = GroupSize * superGroups

// panelWidths are the widths of the column panels of wide matrices on this CPU, for float32
// activations and for quantized ones.
var panelWidths = newPanelWidths(cpuid.CPU.Cache.L1D)

// newPanelWidths returns the panel widths for an L1 data cache of l1 bytes: the slice of a
// token's activations that meets a panel fills a quarter of L1, so that it stays there while
// the panel's rows stream past. Float32 activations take 4 bytes a value; quantized ones 1,
// and 8 bytes of scales per group of 32: 1.25.
func newPanelWidths(l1 int) (w [2]int) {
	if l1 <= 0 {
		l1 = 32 << 10
	}
	w[0] = max(PanelAlign, l1/4/4/PanelAlign*PanelAlign)
	w[1] = max(PanelAlign, l1/4*4/5/PanelAlign*PanelAlign)
	return w
}

// PanelCols returns the width of the column panels in which a matrix with rows of cols
// values is best stored, or cols if it is best stored whole; quantized tells whether the
// matrix is quantized, with quantized activations. A product with one token streams each row
// against the whole activation vector; where that vector is more than half of L1, every row
// reads it back from L2 and the product runs at about half the memory's rate
// (BenchmarkWideRows). Stored as panels, each panel's rows of panel width contiguous and the
// panels one after another, such a matrix streams from memory sequentially against an
// activation slice that stays in L1. Panel widths are multiples of PanelAlign; the last panel
// may be narrower.
func PanelCols(cols int, quantized bool) int {
	w := panelWidths[0]
	if quantized {
		w = panelWidths[1]
	}
	if cols > 2*w {
		return w
	}
	return cols
}

// checkRange slices the operands of a matrix product to the lengths its shape needs, so that
// a slice too short panics here rather than being read out of bounds.
func checkRange(tokens, rows, cols, lo, hi int) {
	if tokens < 0 || rows < 0 || cols < 0 || lo < 0 || lo > hi || hi > rows {
		panic("kernels: bad matrix product shape or row range")
	}
}

// MatMulBF16 computes out[t*rows+r] = Σ_c w[r*cols+c]·x[t*cols+c] for t < tokens, r < rows:
// the product of tokens activations x, [tokens, cols], with the bfloat16 matrix w, [rows,
// cols], accumulated in float32. out is [tokens, rows].
func MatMulBF16(out []float32, w []uint16, x []float32, tokens, rows, cols int) {
	MatMulBF16Rows(out, w, x, tokens, rows, cols, 0, rows)
}

// Scratch is working memory for the matrix products with several tokens (the permuted or
// rounded activations and the accumulators of the tiles), grown as products need it and
// reused: products through a Scratch allocate nothing once it is large enough. A
// Scratch serves one product at a time; workers that share a product each need their own.
// The package-level functions, which are the methods with a nil *Scratch, allocate what they
// need per call.
type Scratch struct {
	f    [4][]float32
	h    []uint16 // activations rounded to bfloat16, as the tiles take them
	rows []byte   // a block of weight rows copied onto cache lines
}

// Indices of the buffers of a Scratch.
const (
	scratchX     = iota // the permuted activations
	scratchW            // the canonical accumulators
	scratchTile         // one output tile at the edges
	scratchRound        // activations rounded to bfloat16
)

// floats returns buffer i of s with n elements (not cleared), new memory if s is nil.
func (s *Scratch) floats(i, n int) []float32 {
	if s == nil {
		return make([]float32, n)
	}
	s.f[i] = slices.Grow(s.f[i][:0], n)[:n]
	return s.f[i]
}

// halves is floats for the activations rounded to bfloat16.
func (s *Scratch) halves(n int) []uint16 {
	if s == nil {
		return make([]uint16, n)
	}
	s.h = slices.Grow(s.h[:0], n)[:n]
	return s.h
}

// cacheLine is the size in bytes of the cache line that the tiles' loads should not straddle.
const cacheLine = 64

// alignedRows returns the rows of w, each of cols values, copied into s (not nil) with a
// stride of cols rounded up to a whole number of cache lines and the first on a cache line,
// and that stride.
func alignedRows[E uint16 | float32](s *Scratch, w []E, cols int) ([]E, int) {
	size := int(unsafe.Sizeof(w[0]))
	stride := (cols*size + cacheLine - 1) / cacheLine * cacheLine / size
	rows := len(w) / cols
	n := rows*stride*size + cacheLine
	s.rows = slices.Grow(s.rows[:0], n)[:n]
	off := lineSkip(unsafe.Pointer(unsafe.SliceData(s.rows)), 0)
	dst := unsafe.Slice((*E)(unsafe.Pointer(unsafe.SliceData(s.rows[off:]))), rows*stride)
	for r := range rows {
		copy(dst[r*stride:r*stride+cols], w[r*cols:(r+1)*cols])
	}
	return dst, stride
}

// lineSkip returns how many bytes past p (fewer than a cache line) lie at bytes into a
// cache line.
func lineSkip(p unsafe.Pointer, at int) int {
	return (at - int(uintptr(p)%cacheLine) + cacheLine) % cacheLine
}

// lineAligned reports whether every row of w, of cols values, starts on a cache line.
func lineAligned[E uint16 | float32](w []E, cols int) bool {
	size := int(unsafe.Sizeof(w[0]))
	return uintptr(unsafe.Pointer(unsafe.SliceData(w)))%cacheLine == 0 && cols*size%cacheLine == 0
}

// MatMulBF16Rows is MatMulBF16 for the rows [lo, hi) of w only: it writes out[t*rows+r] for
// r in [lo, hi) and nothing else, so that workers can share one product. Row ranges that are
// multiples of 16 keep the workers' writes on separate cache lines.
func MatMulBF16Rows(out []float32, w []uint16, x []float32, tokens, rows, cols, lo, hi int) {
	(*Scratch)(nil).MatMulBF16Rows(out, w, x, tokens, rows, cols, lo, hi)
}

// MatMulBF16Rows is the package-level MatMulBF16Rows with its working memory in s.
func (s *Scratch) MatMulBF16Rows(out []float32, w []uint16, x []float32, tokens, rows, cols, lo, hi int) {
	checkRange(tokens, rows, cols, lo, hi)
	impl.matMulBF16(s, out[:tokens*rows], w[:rows*cols], x[:tokens*cols], tokens, rows, cols, lo, hi)
}

// MatMulF16 is MatMulBF16 for a float16 matrix.
func MatMulF16(out []float32, w []uint16, x []float32, tokens, rows, cols int) {
	MatMulF16Rows(out, w, x, tokens, rows, cols, 0, rows)
}

// MatMulF16Rows is MatMulBF16Rows for a float16 matrix.
func MatMulF16Rows(out []float32, w []uint16, x []float32, tokens, rows, cols, lo, hi int) {
	(*Scratch)(nil).MatMulF16Rows(out, w, x, tokens, rows, cols, lo, hi)
}

// MatMulF16Rows is the package-level MatMulF16Rows with its working memory in s.
func (s *Scratch) MatMulF16Rows(out []float32, w []uint16, x []float32, tokens, rows, cols, lo, hi int) {
	checkRange(tokens, rows, cols, lo, hi)
	impl.matMulF16(s, out[:tokens*rows], w[:rows*cols], x[:tokens*cols], tokens, rows, cols, lo, hi)
}

// MatMulF32 is MatMulBF16 for a float32 matrix.
func MatMulF32(out []float32, w []float32, x []float32, tokens, rows, cols int) {
	MatMulF32Rows(out, w, x, tokens, rows, cols, 0, rows)
}

// MatMulF32Rows is MatMulBF16Rows for a float32 matrix.
func MatMulF32Rows(out []float32, w []float32, x []float32, tokens, rows, cols, lo, hi int) {
	(*Scratch)(nil).MatMulF32Rows(out, w, x, tokens, rows, cols, lo, hi)
}

// MatMulF32Rows is the package-level MatMulF32Rows with its working memory in s.
func (s *Scratch) MatMulF32Rows(out []float32, w []float32, x []float32, tokens, rows, cols, lo, hi int) {
	checkRange(tokens, rows, cols, lo, hi)
	impl.matMulF32(s, out[:tokens*rows], w[:rows*cols], x[:tokens*cols], tokens, rows, cols, lo, hi)
}

// MatMulBF16Rounded is MatMulBF16 with the activations rounded to bfloat16 (to nearest, ties
// to even) before they are multiplied: products are exact and sums float32, as the
// AVX512_BF16 instruction VDPBF16PS computes them, which doubles the arithmetic rate where the
// CPU has it. It trades about three significant digits of the activations for speed, so it is
// opt-in.
func MatMulBF16Rounded(out []float32, w []uint16, x []float32, tokens, rows, cols int) {
	MatMulBF16RoundedRows(out, w, x, tokens, rows, cols, 0, rows)
}

// MatMulBF16RoundedRows is MatMulBF16Rounded for the rows [lo, hi) of w, like MatMulBF16Rows.
func MatMulBF16RoundedRows(out []float32, w []uint16, x []float32, tokens, rows, cols, lo, hi int) {
	(*Scratch)(nil).MatMulBF16RoundedRows(out, w, x, tokens, rows, cols, lo, hi)
}

// MatMulBF16RoundedRows is the package-level MatMulBF16RoundedRows with its working memory
// in s.
func (s *Scratch) MatMulBF16RoundedRows(out []float32, w []uint16, x []float32, tokens, rows, cols, lo, hi int) {
	checkRange(tokens, rows, cols, lo, hi)
	out, w, x = out[:tokens*rows], w[:rows*cols], x[:tokens*cols]
	if tokens == 0 || lo == hi {
		return
	}
	impl.matMulBF16Rounded(s, out, w, x, tokens, rows, cols, lo, hi)
}

// fewTokens is the most tokens whose canonical products take two rows at a time over whole
// rows, which reads each weight from memory once; more tokens take the blocked loops, which
// keep a tile's activations in L1 (over whole rows of 4,096 or more values, those of more
// than a few tokens do not fit there, and the products run at half the rate).
const fewTokens = 4

// alignTokens is the fewest tokens for which the blocked products copy each block of rows
// onto cache lines first, when the rows do not start on one (a memory-mapped checkpoint's
// tensors start wherever its header ends): the tiles' loads of such rows each straddle two
// lines, which costs them 5-10%, and from about this many tokens on, the block is read often
// enough to repay the copy (BenchmarkExpert, "at48").
const alignTokens = 48

// RoundedTiles reports whether MatMulBF16Rounded multiplies tokens tokens by the VDPBF16PS
// tiles. Where it does not, it is MatMulBF16 over the activations rounded to bfloat16, which
// a caller holding them rounded already can call itself rather than have them rounded again.
func RoundedTiles(tokens int) bool { return impl.roundedTiles(tokens) }

// roundedFewTokens is the most tokens of a product with activations rounded to bfloat16
// that goes the float32 way rather than by the VDPBF16PS tiles: one token streams the rows
// at the memory's rate, and two or three take tiles of one token, which run 9-17% faster as
// float32 multiply-adds than by VDPBF16PS; from four tokens on it is level or up to 32%
// faster.
const roundedFewTokens = 3

// matMul computes out[t*rows+r] = Σ_c w[r*cols+c]·x[t*cols+c] for t < tokens and r in
// [lo, hi). T is the stored weight type; c (if not nil) holds the kernels of the canonical
// products (matVec being c's too), else each token's product is matVec's over blocks of rows
// that stay in cache while every token passes: either way, each output is computed in the
// same order whatever the tokens and the rows of the call.
func matMul[T uint16 | float32](s *Scratch, out []float32, w []T, x []float32, tokens, rows, cols, lo, hi int,
	matVec func([]float32, []T, []float32, int), c *canon[T]) {
	if tokens <= 0 || lo >= hi {
		return
	}
	if cols <= 0 {
		for t := 0; t < tokens; t++ {
			clear(out[t*rows+lo : t*rows+hi])
		}
		return
	}
	switch {
	case tokens == 1:
		// One pass over the rows, streaming them from memory.
		matVec(out[lo:hi], w[lo*cols:hi*cols], x[:cols], cols)
	case c != nil:
		c.matMul(s, out, w, x, tokens, rows, cols, lo, hi)
	default:
		const block = 16
		for r0 := lo; r0 < hi; r0 += block {
			r1 := min(r0+block, hi)
			for t := 0; t < tokens; t++ {
				matVec(out[t*rows+r0:t*rows+r1], w[r0*cols:r1*cols], x[t*cols:(t+1)*cols], cols)
			}
		}
	}
}
