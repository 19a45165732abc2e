package kernels

import (
	"errors"
	"math"
	"slices"

	"github.com/fathom-llm/fathom/internal/half"
)

// Quantized weights. Both formats quantize each row in groups of GroupSize consecutive values
// and store the groups in super-blocks of up to 16 groups (the last super-block of a row may
// have fewer), with the values of a super-block of n groups interleaved: value e of group l
// is at position (e/4)·4n + 4l + e%4, so that a vector of 64 bytes holds four values of each
// of 16 groups and one VNNI instruction sums four products per group. A row keeps its values
// first, so that they stay aligned to cache lines, and its scales after them.
//
//   - q8: symmetric, int8 values q with a float16 scale d per group: v ≈ d·q. A row of cols
//     values (G groups) is cols bytes of values, the super-block of group g at byte 32g,
//     then G float16 scales (little-endian), group g's at byte cols+2g: 34 bytes per group.
//   - q4: 4-bit values q in [0, 15] with a float16 scale d and minimum m per group: v ≈ d·q+m.
//     The super-block of group g (n groups) is at byte 20g of its row: n scales, n minimums,
//     then 16n bytes of values, its interleaved position p (vector index p/4n) in byte
//     (p/4n/2)·4n + p%4n, in the low nibble for even vector indices and the high one for
//     odd: 20 bytes per group, a full super-block 320 bytes (five cache lines).
//
// The dot products quantize the activations too, per group of 32 to int8 with a float32
// scale, and multiply in integers.

// GroupSize is the number of consecutive values of a row that share a scale.
const GroupSize = 32

const superGroups = 16 // groups per full super-block

var (
	// ErrShape reports a length that does not fit the shape: a row length that is not a
	// multiple of GroupSize, or a buffer of the wrong size.
	ErrShape = errors.New("kernels: shape does not fit the quantized format")
	// ErrRange reports values that do not quantize: NaN, infinite, or so large that a
	// scale overflows float16.
	ErrRange = errors.New("kernels: value out of range for quantization")
)

// Q8RowBytes returns the size of one q8 row of cols values (a multiple of GroupSize).
func Q8RowBytes(cols int) int { return cols / GroupSize * 34 }

// Q4RowBytes returns the size of one q4 row of cols values (a multiple of GroupSize).
func Q4RowBytes(cols int) int { return cols / GroupSize * 20 }

// pos returns the interleaved position of value e of group l in a super-block of n groups.
func pos(e, l, n int) int { return e/4*4*n + 4*l + e%4 }

// superBlocks calls f for every super-block of a row of cols values: its first group g and
// its number of groups n.
func superBlocks(cols int, f func(g, n int)) {
	groups := cols / GroupSize
	for g := 0; g < groups; g += superGroups {
		f(g, min(superGroups, groups-g))
	}
}

// checkQuant validates the shapes of a quantization or dequantization.
func checkQuant(values, cols, bytes, rowBytes int) (rows int, err error) {
	if cols <= 0 || cols%GroupSize != 0 || values%cols != 0 {
		return 0, ErrShape
	}
	rows = values / cols
	if bytes != rows*rowBytes {
		return 0, ErrShape
	}
	return rows, nil
}

// f16 rounds v to float16, failing where it does not fit.
func f16(v float32) (uint16, error) {
	h := half.F32ToF16(v)
	if !half.IsF16Finite(h) {
		return 0, ErrRange
	}
	return h, nil
}

// QuantizeQ8 quantizes the rows of cols values in src to q8 in dst, which must be
// len(src)/cols·Q8RowBytes(cols) bytes long.
func QuantizeQ8(dst []byte, src []float32, cols int) error { return impl.quantizeQ8(dst, src, cols) }

// quantize runs the quantization of one super-block, by the vector kernels v or, where v is
// nil, generic, over every super-block of the rows of cols values of src.
func quantize(v *quantWeights, dst []byte, src []float32, cols, rowBytes int,
	generic func(row []float32, out []byte, cols, g, n int) error,
	vector func(s *quantScratch, row []float32, out []byte, cols, g, n int) error) error {
	rows, err := checkQuant(len(src), cols, len(dst), rowBytes)
	if err != nil {
		return err
	}
	var s *quantScratch
	if v != nil {
		s = &quantScratch{v: v}
	}
	groups := cols / GroupSize
	for r := range rows {
		row, out := src[r*cols:(r+1)*cols], dst[r*rowBytes:][:rowBytes]
		for g := 0; g < groups; g += superGroups {
			n := min(superGroups, groups-g)
			if s != nil {
				err = vector(s, row, out, cols, g, n)
			} else {
				err = generic(row, out, cols, g, n)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// quantizeQ8Super quantizes the super-block of n groups from group g of row to q8 in out,
// the row's bytes.
func quantizeQ8Super(row []float32, out []byte, cols, g, n int) error {
	vals := out[g*GroupSize : (g+n)*GroupSize]
	for l := range n {
		v := row[(g+l)*GroupSize:][:GroupSize]
		var amax float32
		for _, x := range v {
			if x != x || math.IsInf(float64(x), 0) {
				return ErrRange
			}
			amax = max(amax, abs(x))
		}
		h, err := f16(amax / 127)
		if err != nil {
			return err
		}
		putF16(out[cols+2*(g+l):], h)
		inv := float32(0)
		if d := half.F16ToF32(h); d != 0 {
			inv = 1 / d
		}
		for e, x := range v {
			q := max(-127, min(127, math.Round(float64(x*inv))))
			vals[pos(e, l, n)] = byte(int8(q))
		}
	}
	return nil
}

// quantWeights holds the vector kernels of the weight quantization.
type quantWeights struct {
	// bounds sets lo[l] and hi[l] to the least and largest of group l of x, l < len(lo), and
	// reports whether every value is finite.
	bounds func(x []float32, lo, hi []float32) bool
	// scales8 and scales4 compute the float16 scales (and for q4 minimums) of the 16 groups
	// of a super-block from their bounds in s, into s, and report whether they are finite.
	scales8, scales4 func(s *quantScratch) bool
	// q8 and q4 quantize the groups of x with the scales inv (q4: after subtracting m) and
	// store dword j of group l (q4: dwords 2j and 2j+1 as nibbles) at out[4l+idx[j]:].
	q8 func(x, inv []float32, out []byte, idx *[8]int32)
	q4 func(x, m, inv []float32, out []byte, idx *[4]int32)
}

// quantScratch is the vector quantization's working memory for one super-block.
type quantScratch struct {
	v              *quantWeights
	lo, hi, m, inv [superGroups]float32
	h              [2 * superGroups]uint16 // float16 scales, then (q4) minimums
	idx8           [8]int32
	idx4           [4]int32
}

// q8 is quantizeQ8Super by the vector kernels: the bounds and the values in vectors, the
// scales as the generic code computes them.
func (s *quantScratch) q8(row []float32, out []byte, cols, g, n int) error {
	x := row[g*GroupSize : (g+n)*GroupSize]
	if !s.v.bounds(x, s.lo[:n], s.hi[:n]) {
		return ErrRange
	}
	clear(s.lo[n:]) // unused lanes
	clear(s.hi[n:])
	if !s.v.scales8(s) {
		return ErrRange
	}
	for l, h := range s.h[:n] {
		putF16(out[cols+2*(g+l):], h)
	}
	for j := range s.idx8 {
		s.idx8[j] = int32(j * 4 * n)
	}
	s.v.q8(x, s.inv[:n], out[g*GroupSize:(g+n)*GroupSize], &s.idx8)
	return nil
}

// q4 is quantizeQ4Super by the vector kernels.
func (s *quantScratch) q4(row []float32, out []byte, cols, g, n int) error {
	x := row[g*GroupSize : (g+n)*GroupSize]
	if !s.v.bounds(x, s.lo[:n], s.hi[:n]) {
		return ErrRange
	}
	sc, nib := q4Super(out, g, n)
	for l, lo := range s.lo[:n] {
		if lo == 0 {
			// The generic minimum of +0 and -0 is -0; the vector one may be either.
			s.lo[l], s.hi[l] = bounds(x[l*GroupSize : (l+1)*GroupSize])
		}
	}
	clear(s.lo[n:]) // unused lanes
	clear(s.hi[n:])
	if !s.v.scales4(s) {
		return ErrRange
	}
	for l := range n {
		putF16(sc[2*l:], s.h[l])
		putF16(sc[2*n+2*l:], s.h[superGroups+l])
	}
	for j := range s.idx4 {
		s.idx4[j] = int32(j * 4 * n)
	}
	s.v.q4(x, s.m[:n], s.inv[:n], nib, &s.idx4)
	return nil
}

// bounds returns the least and the largest of v, +Inf and -Inf if it is empty.
func bounds(v []float32) (lo, hi float32) {
	lo, hi = float32(math.Inf(1)), float32(math.Inf(-1))
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

// q4Scales stores the scale and the minimum of group l of a q4 super-block of n groups with
// scales sc, for values in [lo, hi], and returns them as float32.
func q4Scales(sc []byte, n, l int, lo, hi float32) (d, m float32, err error) {
	hd, err := f16((hi - lo) / 15)
	if err != nil {
		return 0, 0, err
	}
	hm, err := f16(lo)
	if err != nil {
		return 0, 0, err
	}
	putF16(sc[2*l:], hd)
	putF16(sc[2*n+2*l:], hm)
	return half.F16ToF32(hd), half.F16ToF32(hm), nil
}

// putF16 and getF16 store and load a little-endian float16.
func putF16(b []byte, h uint16) { b[0], b[1] = byte(h), byte(h>>8) }

func getF16(b []byte) float32 { return half.F16ToF32(uint16(b[0]) | uint16(b[1])<<8) }

// QuantizeQ4 quantizes the rows of cols values in src to q4 in dst, which must be
// len(src)/cols·Q4RowBytes(cols) bytes long.
func QuantizeQ4(dst []byte, src []float32, cols int) error { return impl.quantizeQ4(dst, src, cols) }

// quantizeQ4Super quantizes the super-block of n groups from group g of row to q4 in out,
// the row's bytes.
func quantizeQ4Super(row []float32, out []byte, cols, g, n int) error {
	sc, nib := q4Super(out, g, n)
	clear(nib)
	for l := range n {
		v := row[(g+l)*GroupSize:][:GroupSize]
		for _, x := range v {
			if x != x || math.IsInf(float64(x), 0) {
				return ErrRange
			}
		}
		lo, hi := bounds(v)
		d, m, err := q4Scales(sc, n, l, lo, hi)
		if err != nil {
			return err
		}
		inv := float32(0)
		if d != 0 {
			inv = 1 / d
		}
		for e, x := range v {
			q := byte(max(0, min(15, math.Round(float64((x-m)*inv)))))
			b, shift := q4Byte(pos(e, l, n), n)
			nib[b] |= q << shift
		}
	}
	return nil
}

// q4Super splits the q4 super-block of n groups from group g of row into its scales and
// minimums (4n bytes) and its values (16n bytes).
func q4Super(row []byte, g, n int) (scales, values []byte) {
	sb := row[20*g : 20*(g+n)]
	return sb[:4*n], sb[4*n:]
}

// q4Byte returns the byte and the shift of the nibble that holds interleaved position p of a
// q4 super-block of n groups.
func q4Byte(p, n int) (int, uint) {
	m, o := p/(4*n), p%(4*n)
	return m/2*4*n + o, uint(m&1) * 4
}

// DequantizeQ8 expands the q8 rows of cols values in src to float32 in dst.
func DequantizeQ8(dst []float32, src []byte, cols int) error {
	rows, err := checkQuant(len(dst), cols, len(src), Q8RowBytes(cols))
	if err != nil {
		return err
	}
	for r := range rows {
		in, row := src[r*Q8RowBytes(cols):][:Q8RowBytes(cols)], dst[r*cols:(r+1)*cols]
		superBlocks(cols, func(g, n int) {
			vals := in[g*GroupSize : (g+n)*GroupSize]
			for l := range n {
				d := getF16(in[cols+2*(g+l):])
				for e := range GroupSize {
					row[(g+l)*GroupSize+e] = d * float32(int8(vals[pos(e, l, n)]))
				}
			}
		})
	}
	return nil
}

// DequantizeQ4 expands the q4 rows of cols values in src to float32 in dst.
func DequantizeQ4(dst []float32, src []byte, cols int) error {
	rows, err := checkQuant(len(dst), cols, len(src), Q4RowBytes(cols))
	if err != nil {
		return err
	}
	for r := range rows {
		in, row := src[r*Q4RowBytes(cols):][:Q4RowBytes(cols)], dst[r*cols:(r+1)*cols]
		superBlocks(cols, func(g, n int) {
			sc, nib := q4Super(in, g, n)
			for l := range n {
				d, m := getF16(sc[2*l:]), getF16(sc[2*n+2*l:])
				for e := range GroupSize {
					b, shift := q4Byte(pos(e, l, n), n)
					row[(g+l)*GroupSize+e] = d*float32(nib[b]>>shift&15) + m
				}
			}
		})
	}
	return nil
}

func abs(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// QuantActs holds activation rows quantized for the products with quantized weights: per
// group of 32 values, int8 values q (interleaved like the weights), the scale d, d·Σq and
// 128·Σq. Quantizing the activations once into a QuantActs that the caller keeps lets every
// product and every worker's share of a product over the same activations use them
// (MatMulQ8RowsQ, MatMulQ4RowsQ) without quantizing again or allocating. The zero value is
// empty; Reset sizes it, growing its memory only when it is too small.
type QuantActs struct {
	tokens, cols int
	stride       int // values from the start of one row to the next: cols, more in a column view
	q            []int8
	d            []float32
	ds           []float32
	o            []int32
}

// Reset makes a hold tokens rows of cols values (cols a multiple of GroupSize; it panics
// otherwise), to be filled by QuantizeRows. It allocates only when a's memory is too small.
func (a *QuantActs) Reset(tokens, cols int) {
	if tokens < 0 || cols < 0 || cols%GroupSize != 0 {
		panic("kernels: quantized activations of a bad shape")
	}
	n := tokens * cols
	groups := n / GroupSize
	a.tokens, a.cols, a.stride = tokens, cols, cols
	// Resized, reallocated only when too small; the old contents need not survive.
	a.q = slices.Grow(a.q[:0], n)[:n]
	a.d, a.ds = slices.Grow(a.d[:0], groups)[:groups], slices.Grow(a.ds[:0], groups)[:groups]
	a.o = slices.Grow(a.o[:0], groups)[:groups]
}

// Quantize sets a to the tokens rows of cols values of x (cols a multiple of GroupSize).
func (a *QuantActs) Quantize(x []float32, tokens, cols int) {
	a.Reset(tokens, cols)
	a.QuantizeRows(x, 0, tokens)
}

// QuantizeRows quantizes the rows [lo, hi) of x, which holds a.Tokens() rows of a.Cols()
// values, into the same rows of a. Calls for disjoint row ranges may run concurrently. a must
// not be a column view (see Columns).
func (a *QuantActs) QuantizeRows(x []float32, lo, hi int) {
	if lo < 0 || lo > hi || hi > a.tokens {
		panic("kernels: quantized activation rows out of range")
	}
	if a.stride != a.cols {
		panic("kernels: quantizing into a column view")
	}
	impl.quantizeActs(a, x[:a.tokens*a.cols], lo, hi)
}

// quantizeRows is QuantizeRows, with whole super-blocks quantized by vec where it is not nil.
func (a *QuantActs) quantizeRows(x []float32, lo, hi int, vec func(x []float32, q []int8, d []float32, sum []int32, nsb int)) {
	cols := a.cols
	for r := lo; r < hi; r++ {
		base := r * cols
		g0 := 0
		if nsb := cols / (GroupSize * superGroups); vec != nil && nsb > 0 {
			gb := base / GroupSize
			vec(x[base:base+cols], a.q[base:base+cols], a.d[gb:], a.o[gb:], nsb)
			g0 = nsb * superGroups
			for gi := gb; gi < gb+g0; gi++ {
				a.finishGroup(gi, a.o[gi], (gi-gb)/superGroups*superGroups*GroupSize+base, superGroups, (gi-gb)%superGroups)
			}
		}
		superBlocks(cols, func(g, n int) {
			if g < g0 {
				return
			}
			q := a.q[base+g*GroupSize:][:n*GroupSize]
			for l := range n {
				gi := base/GroupSize + g + l
				v := x[gi*GroupSize:][:GroupSize]
				var amax float32
				for _, f := range v {
					amax = max(amax, abs(f))
				}
				a.d[gi] = amax / 127
				if !(a.d[gi] >= tinyScale) || math.IsInf(float64(amax), 0) {
					a.finishGroup(gi, 0, base+g*GroupSize, n, l)
					continue
				}
				inv := 127 / amax
				var sum int32
				// Value 4m+j of group l goes to position m·4n + 4l + j.
				for m := range 8 {
					dst := q[m*4*n+4*l:][:4]
					for j, f := range v[4*m : 4*m+4] {
						// |f·inv| ≤ 127 up to rounding; adding and taking off 1.5·2²³
						// rounds it to an integer, ties to even. (The conversion keeps
						// f·inv rounded on its own, unfused.)
						qi := int32((float32(f*inv) + 0x1.8p23) - 0x1.8p23)
						qi = max(-127, min(127, qi))
						dst[j] = int8(qi)
						sum += qi
					}
				}
				a.finishGroup(gi, sum, base+g*GroupSize, n, l)
			}
		})
	}
}

// Tokens and Cols return the shape of a: Tokens rows of Cols values.
func (a *QuantActs) Tokens() int { return a.tokens }

// Cols returns the number of values of each row of a.
func (a *QuantActs) Cols() int { return a.cols }

// Slice returns the rows [lo, hi) of a as a QuantActs that shares a's memory.
func (a *QuantActs) Slice(lo, hi int) QuantActs {
	if lo < 0 || lo > hi || hi > a.tokens {
		panic("kernels: quantized activation rows out of range")
	}
	return a.view(lo, hi, 0, a.cols)
}

// Columns returns the columns [lo, hi) of every row of a as a QuantActs that shares a's
// memory: the activations of a product with the columns [lo, hi) of a quantized matrix,
// quantized as a column panel of the matrix (see PanelCols) would quantize them. lo must be a
// multiple of PanelAlign and hi too, or a.Cols().
func (a *QuantActs) Columns(lo, hi int) QuantActs {
	if lo < 0 || lo > hi || hi > a.cols || lo%PanelAlign != 0 || hi%PanelAlign != 0 && hi != a.cols {
		panic("kernels: quantized activation columns out of range")
	}
	return a.view(0, a.tokens, lo, hi)
}

// view returns the rows [r0, r1) and columns [c0, c1) of a, c0 and c1 on super-block bounds.
func (a *QuantActs) view(r0, r1, c0, c1 int) QuantActs {
	v := QuantActs{tokens: r1 - r0, cols: c1 - c0, stride: a.stride}
	if r1 == r0 {
		return v
	}
	lo, hi := r0*a.stride+c0, (r1-1)*a.stride+c1 // the values of the view lie in [lo, hi)
	v.q = a.q[lo:hi]
	lo, hi = lo/GroupSize, hi/GroupSize
	v.d, v.ds, v.o = a.d[lo:hi], a.ds[lo:hi], a.o[lo:hi]
	return v
}

// tinyScale is the smallest group scale kept: groups of activations below 2⁻¹⁰⁰ quantize to
// zero, which keeps 127/max|x| finite.
const tinyScale = 0x1p-107

// quantizeActs quantizes the rows of cols values of x (cols a multiple of GroupSize) into new
// memory.
func quantizeActs(x []float32, cols int) *QuantActs {
	a := new(QuantActs)
	a.Quantize(x, len(x)/cols, cols)
	return a
}

// finishGroup completes group gi, group l of the super-block of n groups at a.q[sb:], once
// a.d[gi] holds max|x|/127 and its values sum to sum: a group of tiny or zero values becomes
// zeros, one with NaN or infinity gets a NaN scale, poisoning the products as float arithmetic
// would.
func (a *QuantActs) finishGroup(gi int, sum int32, sb, n, l int) {
	d := a.d[gi]
	if d >= tinyScale && !math.IsInf(float64(d), 0) {
		a.ds[gi], a.o[gi] = d*float32(sum), 128*sum
		return
	}
	if d != 0 && (d != d || math.IsInf(float64(d), 0)) {
		d = float32(math.NaN())
	} else {
		d = 0
	}
	a.d[gi], a.ds[gi], a.o[gi] = d, d, 0
	for m := range 8 {
		clear(a.q[sb+m*4*n+4*l:][:4])
	}
}

// dotQGeneric is the dot product of the quantized weight row w (q4 if q4, else q8) with row r
// of the quantized activations a, super-blocks from group g0 on.
func dotQGeneric(q4 bool, w []byte, a *QuantActs, r, g0 int) float32 {
	cols := a.cols
	var sum float32
	superBlocks(cols, func(g, n int) {
		if g < g0 {
			return
		}
		q := a.q[r*a.stride+g*GroupSize:][:n*GroupSize]
		var isum [superGroups]int32
		// Position m·4n + 4l + j holds value 4m+j of group l.
		var sc []byte
		if q4 {
			var nib []byte
			sc, nib = q4Super(w, g, n)
			for m := range 8 {
				shift := uint(m&1) * 4
				for l := range n {
					p, b := m*4*n+4*l, m/2*4*n+4*l
					for j := range 4 {
						isum[l] += int32(nib[b+j]>>shift&15) * int32(q[p+j])
					}
				}
			}
		} else {
			vals := w[g*GroupSize : (g+n)*GroupSize]
			for p, v := range vals {
				isum[p%(4*n)/4] += int32(int8(v)) * int32(q[p])
			}
		}
		for l := range n {
			gi := r*a.stride/GroupSize + g + l
			if q4 {
				sum += getF16(sc[2*l:]) * (a.d[gi] * float32(isum[l]))
				sum += getF16(sc[2*n+2*l:]) * a.ds[gi]
			} else {
				sum += getF16(w[cols+2*(g+l):]) * (a.d[gi] * float32(isum[l]))
			}
		}
	})
	return sum
}

// qDot computes out[i] for the len(out) consecutive weight rows starting at w (row stride
// rowBytes) against activation row r of a.
type qDot func(q4 bool, out []float32, w []byte, rowBytes int, a *QuantActs, r int)

func qDotGeneric(q4 bool, out []float32, w []byte, rowBytes int, a *QuantActs, r int) {
	for i := range out {
		out[i] = dotQGeneric(q4, w[i*rowBytes:(i+1)*rowBytes], a, r, 0)
	}
}

// checkQMat validates the shapes of a quantized matrix product.
func checkQMat(q4 bool, w []byte, x []float32, tokens, rows, cols, lo, hi int) []byte {
	checkRange(tokens, rows, cols, lo, hi)
	if cols%GroupSize != 0 {
		panic("kernels: quantized row length is not a multiple of GroupSize")
	}
	rb := Q8RowBytes(cols)
	if q4 {
		rb = Q4RowBytes(cols)
	}
	_ = x[:tokens*cols]
	return w[:rows*rb]
}

// matMulQ computes rows [lo, hi) of out = x·wᵀ for quantized weights, quantizing x into
// new memory.
func matMulQ(q4 bool, out []float32, w []byte, x []float32, tokens, rows, cols, lo, hi int) {
	checkQMat(q4, w, x, tokens, rows, cols, lo, hi)
	var a QuantActs
	a.Quantize(x, tokens, cols)
	matMulQActs(q4, out, w, &a, rows, lo, hi)
}

// matMulQActs computes rows [lo, hi) of out = x·wᵀ for quantized weights w and the quantized
// activations a of x.
func matMulQActs(q4 bool, out []float32, w []byte, a *QuantActs, rows, lo, hi int) {
	tokens, cols := a.tokens, a.cols
	w = checkQMat(q4, w, nil, 0, rows, cols, lo, hi)
	out = out[:tokens*rows]
	if tokens == 0 || lo == hi {
		return
	}
	if cols == 0 {
		for t := range tokens {
			clear(out[t*rows+lo : t*rows+hi])
		}
		return
	}
	rb := len(w) / rows
	dot := impl.qDot
	if tokens == 1 {
		// One pass over the rows, streaming them from memory.
		dot(q4, out[lo:hi], w[lo*rb:hi*rb], rb, a, 0)
		return
	}
	// A block of 16 rows stays in L1/L2 while every token passes over it.
	for r0 := lo; r0 < hi; r0 += 16 {
		r1 := min(r0+16, hi)
		for t := range tokens {
			for r := r0; r < r1; r += 4 {
				n := min(4, r1-r)
				dot(q4, out[t*rows+r:t*rows+r+n], w[r*rb:], rb, a, t)
			}
		}
	}
}

// MatVecQ8 computes out[r] = Σ_c w_r[c]·x[c] for every r < len(out), w holding len(out) q8
// rows of cols values (cols a multiple of GroupSize; it panics otherwise). x is quantized to
// int8 per group of 32 for the product.
func MatVecQ8(out []float32, w []byte, x []float32, cols int) {
	matMulQ(false, out, w, x, 1, len(out), cols, 0, len(out))
}

// MatVecQ4 is MatVecQ8 for q4 rows.
func MatVecQ4(out []float32, w []byte, x []float32, cols int) {
	matMulQ(true, out, w, x, 1, len(out), cols, 0, len(out))
}

// MatMulQ8Rows is MatMulBF16Rows for q8 weights: out[t*rows+r] = Σ_c w_r[c]·x[t*cols+c] for
// r in [lo, hi), with x quantized to int8 per group of 32.
func MatMulQ8Rows(out []float32, w []byte, x []float32, tokens, rows, cols, lo, hi int) {
	matMulQ(false, out, w, x, tokens, rows, cols, lo, hi)
}

// MatMulQ4Rows is MatMulQ8Rows for q4 weights.
func MatMulQ4Rows(out []float32, w []byte, x []float32, tokens, rows, cols, lo, hi int) {
	matMulQ(true, out, w, x, tokens, rows, cols, lo, hi)
}

// MatMulQ8RowsQ is MatMulQ8Rows for activations already quantized in a (a.Tokens() tokens of
// a.Cols() values): out[t*rows+r] for r in [lo, hi). It allocates nothing, so that workers
// sharing a product (each its own rows) quantize the activations only once, beforehand.
func MatMulQ8RowsQ(out []float32, w []byte, a *QuantActs, rows, lo, hi int) {
	matMulQActs(false, out, w, a, rows, lo, hi)
}

// MatMulQ4RowsQ is MatMulQ8RowsQ for q4 weights.
func MatMulQ4RowsQ(out []float32, w []byte, a *QuantActs, rows, lo, hi int) {
	matMulQActs(true, out, w, a, rows, lo, hi)
}
