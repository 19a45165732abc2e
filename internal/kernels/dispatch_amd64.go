//go:build !purego

package kernels

import (
	"slices"
	"strings"
)

// haveAsm reports whether this build has vector implementations.
const haveAsm = true

// vectorTable replaces the entries of t by the assembly implementations that f allows, and
// sets in a the optional kernels they bring to the matrix products and quantizations.
func vectorTable(f features, t *table, a *accel) {
	if !f.avx2 {
		return
	}
	type level struct {
		lanes           int
		dotF32          func(w *float32, x *float32, n int) float32
		dot4F32         func(w *float32, stride int, x *float32, n int, out *float32)
		axpy            func(a float32, x, y *float32, n int)
		cvtBF16, cvtF16 func(dst *float32, src *uint16, n int)
	}
	l := level{8, dotF32AVX2, dot4F32AVX2, axpyAVX2, cvtBF16AVX2, cvtF16AVX2}
	name := []string{"avx2"}
	t.dotBF16 = vecDot(8, dotBF16AVX2, dotBF16Generic)
	t.dotF16 = vecDot(8, dotF16AVX2, dotF16Generic)
	t.matVecBF16 = vecMatVec(8, dot4BF16AVX2, t.dotBF16)
	t.matVecF16 = vecMatVec(8, dot4F16AVX2, t.dotF16)
	if f.avx512 {
		l = level{16, dotF32AVX512, nil, axpyAVX512, cvtBF16AVX512, cvtF16AVX512}
		name = []string{"avx512"}
		// Every product in the canonical order, whatever its number of tokens.
		a.canonBF16 = &canon[uint16]{rows: dotRowsBF16AVX512, tiled: tiled[uint16, float32]{tiles: [][]tileKernel[uint16, float32]{
			{dot4x5BF16AVX512, dot4x4BF16AVX512, dot4x1BF16AVX512},
			{dot2x5BF16AVX512, dot2x4BF16AVX512, dot2x1BF16AVX512},
			{dot1x5BF16AVX512, dot1x4BF16AVX512, dot1x1BF16AVX512},
		},
			tileRows: []int{4, 2, 1}, tileTokens: []int{5, 4, 1},
			tail:    dotBF16Generic,
			prepare: func(dst, src []float32) { permuteEvenOddAVX512(&dst[0], &src[:len(dst)][0], len(dst)) }}}
		a.canonF16 = &canon[uint16]{rows: dotRowsF16AVX512, tiled: tiled[uint16, float32]{tiles: [][]tileKernel[uint16, float32]{
			{dot4x5F16AVX512, dot4x4F16AVX512, dot4x1F16AVX512},
			{dot2x5F16AVX512, dot2x4F16AVX512, dot2x1F16AVX512},
			{dot1x5F16AVX512, dot1x4F16AVX512, dot1x1F16AVX512},
		},
			tileRows: []int{4, 2, 1}, tileTokens: []int{5, 4, 1},
			tail: dotF16Generic}}
		a.canonF32 = &canon[float32]{rows: dotRowsF32AVX512, tiled: tiled[float32, float32]{tiles: [][]tileKernel[float32, float32]{
			{dot4x5F32AVX512, dot4x4F32AVX512, dot4x1F32AVX512},
			{dot2x5F32AVX512, dot2x4F32AVX512, dot2x1F32AVX512},
			{dot1x5F32AVX512, dot1x4F32AVX512, dot1x1F32AVX512},
		},
			tileRows: []int{4, 2, 1}, tileTokens: []int{5, 4, 1},
			tail: dotF32Generic}}
		t.roundBF16 = func(dst, x []float32) {
			dst = dst[:len(x)]
			n := len(x) &^ 15
			if n > 0 {
				roundBF16F32AVX512(&dst[0], &x[0], n)
			}
			roundBF16Generic(dst[n:], x[n:])
		}
		t.dotBF16, t.dotF16 = a.canonBF16.dot, a.canonF16.dot
		t.matVecBF16, t.matVecF16 = a.canonBF16.matVec, a.canonF16.matVec
		t.maxF32 = func(x []float32) float32 {
			n := len(x) &^ 15
			if n == 0 {
				return maxGeneric(x)
			}
			m := maxAVX512(&x[0], n)
			if n < len(x) {
				if r := maxGeneric(x[n:]); r > m || r != r {
					m = r
				}
			}
			return m
		}
		t.scale = func(x []float32, a float32) {
			n := len(x) &^ 15
			if n > 0 {
				scaleAVX512(&x[0], n, a)
			}
			scaleGeneric(x[n:], a)
		}
	}
	t.dotF32 = vecDot(l.lanes, l.dotF32, dotF32Generic)
	if f.avx512 {
		t.matVecF32 = a.canonF32.matVec
	} else {
		t.matVecF32 = vecMatVec(l.lanes, l.dot4F32, t.dotF32)
	}
	t.cvtBF16 = vecConvert(l.lanes, l.cvtBF16, cvtBF16Generic)
	t.cvtF16 = vecConvert(l.lanes, l.cvtF16, cvtF16Generic)
	axpy, lanes := l.axpy, l.lanes
	t.axpy = func(a float32, x, y []float32) {
		y = y[:len(x)]
		n := len(x) &^ (lanes - 1)
		if n > 0 {
			axpy(a, &x[0], &y[0], n)
		}
		axpyGeneric(a, x[n:], y[n:])
	}
	t.prefetch = prefetchRange
	// The widths and rows of the matMulAdd tiles (matMulAddRows of the generator).
	width, rows := 8, []int{12, 4, 2, 1}
	f32 := []matMulAddTile[float32]{matMulAdd12F32AVX2, matMulAdd4F32AVX2, matMulAdd2F32AVX2, matMulAdd1F32AVX2}
	f16 := []matMulAddTile[uint16]{matMulAdd12F16AVX2, matMulAdd4F16AVX2, matMulAdd2F16AVX2, matMulAdd1F16AVX2}
	bf16 := []matMulAddTile[uint16]{matMulAdd12BF16AVX2, matMulAdd4BF16AVX2, matMulAdd2BF16AVX2, matMulAdd1BF16AVX2}
	if f.avx512 {
		width, rows = 16, []int{16, 4, 2, 1}
		f32 = []matMulAddTile[float32]{matMulAdd16F32AVX512, matMulAdd4F32AVX512, matMulAdd2F32AVX512, matMulAdd1F32AVX512}
		f16 = []matMulAddTile[uint16]{matMulAdd16F16AVX512, matMulAdd4F16AVX512, matMulAdd2F16AVX512, matMulAdd1F16AVX512}
		bf16 = []matMulAddTile[uint16]{matMulAdd16BF16AVX512, matMulAdd4BF16AVX512, matMulAdd2BF16AVX512, matMulAdd1BF16AVX512}
	}
	t.matMulAddF32 = vecMatMulAdd(width, rows, f32, matMulAddF32Generic)
	t.matMulAddF16 = vecMatMulAdd(width, rows, f16, matMulAddF16Generic)
	t.matMulAddBF16 = vecMatMulAdd(width, rows, bf16, matMulAddBF16Generic)
	t.qDot = qDotAVX2
	silu, softmaxExp := siluMulAVX2, softmaxExpAVX2
	if f.avx512 {
		silu, softmaxExp = siluMulAVX512, softmaxExpAVX512
	}
	t.siluMul = func(dst, gate, up []float32) {
		n := len(gate) &^ (lanes - 1)
		dst, up = dst[:len(gate)], up[:len(gate)]
		if n > 0 {
			silu(&dst[0], &gate[0], &up[0], n)
		}
		siluMulGeneric(dst[n:], gate[n:], up[n:])
	}
	t.softmaxExp = func(x []float32, m float32) float32 {
		n := len(x) &^ (lanes - 1)
		var s float32
		if n > 0 {
			s = softmaxExp(&x[0], n, m)
		}
		return s + softmaxExpGeneric(x[n:], m)
	}
	if f.avx512 {
		a.quantActs = func(x []float32, q []int8, d []float32, sum []int32, nsb int) {
			n := nsb * superGroups
			_, _, _, _ = x[n*GroupSize-1], q[n*GroupSize-1], d[n-1], sum[n-1]
			quantActsAVX512(&x[0], &q[0], &d[0], &sum[0], nsb)
		}
	}
	if f.avx512 {
		a.quantW = &quantWeights{
			bounds: func(x []float32, lo, hi []float32) bool {
				n := len(lo)
				_, _ = x[n*GroupSize-1], hi[n-1]
				return quantRangeAVX512(&x[0], n, &lo[0], &hi[0])
			},
			scales8: func(s *quantScratch) bool {
				return quantScalesQ8AVX512(&s.lo[0], &s.hi[0], &s.h[0], &s.m[0], &s.inv[0])
			},
			scales4: func(s *quantScratch) bool {
				return quantScalesQ4AVX512(&s.lo[0], &s.hi[0], &s.h[0], &s.m[0], &s.inv[0])
			},
			q8: func(x, inv []float32, out []byte, idx *[8]int32) {
				n := len(inv)
				_, _ = x[n*GroupSize-1], out[4*(n-1)+int(slices.Max(idx[:]))+3]
				quantQ8AVX512(&x[0], &inv[0], n, &out[0], &idx[0])
			},
			q4: func(x, m, inv []float32, out []byte, idx *[4]int32) {
				n := len(inv)
				_, _, _ = x[n*GroupSize-1], m[n-1], out[4*(n-1)+int(slices.Max(idx[:]))+3]
				quantQ4AVX512(&x[0], &m[0], &inv[0], n, &out[0], &idx[0])
			},
		}
		t.indexAtLeast = func(dst []int32, x []float32, t float32) int {
			n := len(x) &^ 15
			c := 0
			if n > 0 {
				c = indexAtLeastAVX512(&dst[:len(x)][0], &x[0], n, t)
			}
			for i := n; i < len(x); i++ {
				if x[i] >= t {
					dst[c] = int32(i)
					c++
				}
			}
			return c
		}
		t.expSum = func(dst, x []float32, shift, scale float32) float64 {
			n := len(x) &^ 15
			var s float64
			if n > 0 {
				var d *float32
				if dst != nil {
					d = &dst[:len(x)][0]
				}
				s = expSumAVX512(d, &x[0], n, shift, scale)
			}
			if n < len(x) {
				var d []float32
				if dst != nil {
					d = dst[n:len(x)]
				}
				s += expSumGeneric(d, x[n:], shift, scale)
			}
			return s
		}
	}
	xor, words := xorWordsAVX2, 16
	if f.avx512 {
		xor, words = xorWordsAVX512, 32
	}
	t.xorWords = func(p []uint64) uint64 {
		n := len(p) &^ (words - 1)
		var s uint64
		if n > 0 {
			s = xor(&p[0], n)
		}
		return s ^ xorWordsGeneric(p[n:])
	}
	t.peakFMA = func(n int) int64 { peakFMAAVX2(n); return int64(n) * 12 * 8 * 2 }
	if f.avx512 {
		t.peakFMA = func(n int) int64 { peakFMAAVX512(n); return int64(n) * 24 * 16 * 2 }
	}
	if f.bf16 {
		a.rounded = &tiled[uint16, uint16]{tiles: [][]tileKernel[uint16, uint16]{
			{dot4x6BF16DPAVX512, dot4x4BF16DPAVX512, dot4x1BF16DPAVX512},
			{dot2x6BF16DPAVX512, dot2x4BF16DPAVX512, dot2x1BF16DPAVX512},
			{dot1x6BF16DPAVX512, dot1x4BF16DPAVX512, dot1x1BF16DPAVX512},
		},
			tileRows: []int{4, 2, 1}, tileTokens: []int{6, 4, 1},
			tail:    dotBF16RoundedGeneric,
			prepare: func(dst []uint16, src []float32) { roundBF16WordsAVX512(&dst[0], &src[:len(dst)][0], len(dst)) }}
		t.peakBF16 = func(n int) int64 { peakBF16AVX512(n); return int64(n) * 24 * 16 * 4 }
		name = append(name, "bf16")
	}
	if f.vnni {
		t.qDot = qDotVNNI
		name = append(name, "vnni")
	}
	t.name = strings.Join(name, "+")
}

// vecDot wraps a vector dot product over whole vectors with the generic one for the tail.
func vecDot[T uint16 | float32](lanes int, dot func(w *T, x *float32, n int) float32, tail func([]T, []float32) float32) func([]T, []float32) float32 {
	return func(w []T, x []float32) float32 {
		x = x[:len(w)]
		n := len(w) &^ (lanes - 1)
		var s float32
		if n > 0 {
			s = dot(&w[0], &x[0], n)
		}
		if n < len(w) {
			s += tail(w[n:], x[n:])
		}
		return s
	}
}

// vecMatVec builds a matrix-vector product from a four-row vector kernel, finishing the
// columns past the last whole vector with dot. Every row goes through dot4 (the last ones of
// a matrix of fewer than four rows as four copies of one row), so that a row's product does
// not depend on which rows share its call.
func vecMatVec[T uint16 | float32](lanes int, dot4 func(w *T, stride int, x *float32, n int, out *float32), dot func([]T, []float32) float32) func([]float32, []T, []float32, int) {
	return func(out []float32, w []T, x []float32, cols int) {
		rows := len(out)
		w = w[:rows*cols]
		x = x[:cols]
		n := cols &^ (lanes - 1)
		if n == 0 {
			for r := range out {
				out[r] = dot(w[r*cols:(r+1)*cols], x)
			}
			return
		}
		for r := 0; r < rows; r += 4 {
			if r+4 <= rows {
				dot4(&w[r*cols], cols, &x[0], n, &out[r])
			} else if rows >= 4 {
				// The last four rows again: the rows done twice get the same sums.
				r = rows - 4
				dot4(&w[r*cols], cols, &x[0], n, &out[r])
			} else {
				for ; r < rows; r++ {
					var o [4]float32
					dot4(&w[r*cols], 0, &x[0], n, &o[0])
					out[r] = o[0]
				}
			}
		}
		if n < cols {
			for r := range out {
				out[r] += dot(w[r*cols+n:(r+1)*cols], x[n:])
			}
		}
	}
}

// vecConvert wraps a vector conversion over whole vectors with the generic one for the tail.
func vecConvert(lanes int, cvt func(dst *float32, src *uint16, n int), tail func([]float32, []uint16)) func([]float32, []uint16) {
	return func(dst []float32, src []uint16) {
		dst = dst[:len(src)]
		n := len(src) &^ (lanes - 1)
		if n > 0 {
			cvt(&dst[0], &src[0], n)
		}
		tail(dst[n:], src[n:])
	}
}

// qDotVNNI runs the rows with the VNNI kernels: the full super-blocks, then a partial last one
// (rows shorter than a super-block are one).
func qDotVNNI(q4 bool, out []float32, w []byte, rowBytes int, a *QuantActs, r int) {
	cols := a.cols
	groups := cols / GroupSize
	nsb := groups / superGroups
	if len(out) == 0 {
		return
	}
	_ = w[(len(out)-1)*rowBytes+rowBytes-1] // every row lies in w
	g := r * a.stride / GroupSize
	if nsb == 0 {
		clear(out)
	} else {
		xq, xd := &a.q[r*a.stride], &a.d[g]
		soff := cols // the q8 scales; q4 super-blocks carry their own
		if len(out) != 4 {
			// One row at a time streams memory fastest.
			if q4 {
				dotRowsQ4VNNI(&w[0], rowBytes, soff, xq, xd, &a.ds[g], nsb, &out[0], len(out))
			} else {
				dotRowsQ8VNNI(&w[0], rowBytes, soff, xq, xd, &a.o[g], nsb, &out[0], len(out))
			}
		} else {
			// Four rows at a time share the loads of the activations, which pays when the
			// rows are in cache (many tokens).
			if q4 {
				dot4Q4VNNI(&w[0], rowBytes, soff, xq, xd, &a.ds[g], nsb, &out[0])
			} else {
				dot4Q8VNNI(&w[0], rowBytes, soff, xq, xd, &a.o[g], nsb, &out[0])
			}
		}
	}
	if g0 := nsb * superGroups; g0 < groups {
		n := groups - g0
		xq, xd := &a.q[r*a.stride+g0*GroupSize], &a.d[g+g0]
		if q4 {
			dotPartQ4VNNI(&w[20*g0], rowBytes, 0, xq, xd, &a.ds[g+g0], n, &out[0], len(out))
		} else {
			// The super-block's values at byte 32·g0 of the row, its scales at cols + 2·g0.
			dotPartQ8VNNI(&w[GroupSize*g0], rowBytes, cols+2*g0-GroupSize*g0, xq, xd, &a.o[g+g0], n, &out[0], len(out))
		}
	}
}

// qDotAVX2 is qDotVNNI for CPUs without VNNI, a row at a time.
func qDotAVX2(q4 bool, out []float32, w []byte, rowBytes int, a *QuantActs, r int) {
	cols := a.cols
	nsb := cols / (GroupSize * superGroups)
	if len(out) == 0 {
		return
	}
	if nsb == 0 {
		qDotGeneric(q4, out, w, rowBytes, a, r)
		return
	}
	_ = w[(len(out)-1)*rowBytes+rowBytes-1] // every row lies in w
	g := r * a.stride / GroupSize
	dot, soff := dotQ8AVX2, cols
	if q4 {
		dot = dotQ4AVX2
	}
	for i := range out {
		s := dot(&w[i*rowBytes], soff, &a.q[r*a.stride], &a.d[g], &a.ds[g], nsb)
		if nsb*superGroups < cols/GroupSize {
			s += dotQGeneric(q4, w[i*rowBytes:(i+1)*rowBytes], a, r, nsb*superGroups)
		}
		out[i] = s
	}
}
