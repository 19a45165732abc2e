//go:build !purego

package kernels

import "strings"

// haveAsm reports whether this build has vector implementations.
const haveAsm = true

// vectorTable replaces the entries of t by the assembly implementations that f allows.
func vectorTable(f features, t *table) {
	if !f.avx2 {
		return
	}
	type level struct {
		lanes           int
		dotF32          func(w *float32, x *float32, n int) float32
		dot4F32         func(w *float32, stride int, x *float32, n int, out *float32)
		axpy            func(a float32, x, y *float32, n int)
		cvtBF16, cvtF16 func(dst *float32, src *uint16, n int)
		gemm            *gemmF32Kernel
	}
	l := level{8, dotF32AVX2, dot4F32AVX2, axpyAVX2, cvtBF16AVX2, cvtF16AVX2, &gemmF32Kernel{mr: 16, nr: 6, kern: gemmF32AVX2}}
	name := []string{"avx2"}
	t.dotBF16 = vecDot(8, dotBF16AVX2, dotBF16Generic)
	t.dotF16 = vecDot(8, dotF16AVX2, dotF16Generic)
	t.matVecBF16 = vecMatVec(8, dot4BF16AVX2, t.dotBF16)
	t.matVecF16 = vecMatVec(8, dot4F16AVX2, t.dotF16)
	if f.avx512 {
		l = level{16, dotF32AVX512, dot4F32AVX512, axpyAVX512, cvtBF16AVX512, cvtF16AVX512, &gemmF32Kernel{mr: 32, nr: 12, kern: gemmF32AVX512}}
		name = []string{"avx512"}
		// A row at a time, a cache line per load: one stream per core is what memory
		// serves fastest.
		t.dotBF16 = vecDot(32, dot1BF16XAVX512, dotBF16Generic)
		t.dotF16 = vecDot(32, dot1F16XAVX512, dotF16Generic)
		dotBF16, dotF16 := t.dotBF16, t.dotF16
		t.matVecBF16 = func(out []float32, w []uint16, x []float32, cols int) { matVecGeneric(dotBF16, out, w, x, cols) }
		t.matVecF16 = func(out []float32, w []uint16, x []float32, cols int) { matVecGeneric(dotF16, out, w, x, cols) }
	}
	t.dotF32 = vecDot(l.lanes, l.dotF32, dotF32Generic)
	t.matVecF32 = vecMatVec(l.lanes, l.dot4F32, t.dotF32)
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
	t.gemm = l.gemm
	t.qDot = qDotAVX2
	if f.avx512 {
		t.quantActs = func(x []float32, q []int8, d []float32, sum []int32, nsb int) {
			n := nsb * superGroups
			_, _, _, _ = x[n*GroupSize-1], q[n*GroupSize-1], d[n-1], sum[n-1]
			quantActsAVX512(&x[0], &q[0], &d[0], &sum[0], nsb)
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
		t.gemmBF16 = &gemmBF16Kernel{mr: 32, nr: 12, kern: gemmBF16DPAVX512}
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

// vecMatVec builds a matrix-vector product from a four-row vector kernel, finishing tails
// (columns past the last whole vector, rows past the last group of four) with dot.
func vecMatVec[T uint16 | float32](lanes int, dot4 func(w *T, stride int, x *float32, n int, out *float32), dot func([]T, []float32) float32) func([]float32, []T, []float32, int) {
	return func(out []float32, w []T, x []float32, cols int) {
		rows := len(out)
		w = w[:rows*cols]
		x = x[:cols]
		n := cols &^ (lanes - 1)
		r := 0
		if n > 0 {
			for ; r+4 <= rows; r += 4 {
				o := out[r : r+4]
				dot4(&w[r*cols], cols, &x[0], n, &o[0])
				if n < cols {
					for i := range o {
						row := w[(r+i)*cols : (r+i+1)*cols]
						o[i] += dot(row[n:], x[n:])
					}
				}
			}
		}
		for ; r < rows; r++ {
			out[r] = dot(w[r*cols:(r+1)*cols], x)
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

// qDotVNNI runs the full super-blocks of the rows with the VNNI kernels and finishes a partial
// last super-block with the generic code.
func qDotVNNI(q4 bool, out []float32, w []byte, rowBytes int, a *qActs, r int) {
	cols := a.cols
	nsb := cols / (GroupSize * superGroups)
	if nsb == 0 {
		qDotGeneric(q4, out, w, rowBytes, a, r)
		return
	}
	_ = w[(len(out)-1)*rowBytes+rowBytes-1] // every row lies in w
	g := r * cols / GroupSize
	xq, xd := &a.q[r*cols], &a.d[g]
	soff := cols // the q8 scales; q4 super-blocks carry their own
	var res [4]float32
	for i := 0; i < len(out); {
		// Four rows at a time share the loads of the activations, which pays when the rows
		// are in cache (many tokens); one row at a time streams memory faster.
		n := 1
		if len(out) == 4 {
			n = 4
		}
		switch {
		case q4 && n == 4:
			dot4Q4VNNI(&w[i*rowBytes], rowBytes, soff, xq, xd, &a.ds[g], nsb, &res[0])
		case q4:
			dot1Q4VNNI(&w[i*rowBytes], rowBytes, soff, xq, xd, &a.ds[g], nsb, &res[0])
		case n == 4:
			dot4Q8VNNI(&w[i*rowBytes], rowBytes, soff, xq, xd, &a.o[g], nsb, &res[0])
		default:
			dot1Q8VNNI(&w[i*rowBytes], rowBytes, soff, xq, xd, &a.o[g], nsb, &res[0])
		}
		for j := range n {
			s := res[j]
			if nsb*superGroups < cols/GroupSize {
				s += dotQGeneric(q4, w[(i+j)*rowBytes:(i+j+1)*rowBytes], a, r, nsb*superGroups)
			}
			out[i+j] = s
		}
		i += n
	}
}

// qDotAVX2 is qDotVNNI for CPUs without VNNI, a row at a time.
func qDotAVX2(q4 bool, out []float32, w []byte, rowBytes int, a *qActs, r int) {
	cols := a.cols
	nsb := cols / (GroupSize * superGroups)
	if nsb == 0 {
		qDotGeneric(q4, out, w, rowBytes, a, r)
		return
	}
	_ = w[(len(out)-1)*rowBytes+rowBytes-1] // every row lies in w
	g := r * cols / GroupSize
	dot, soff := dotQ8AVX2, cols
	if q4 {
		dot = dotQ4AVX2
	}
	for i := range out {
		s := dot(&w[i*rowBytes], soff, &a.q[r*cols], &a.d[g], &a.ds[g], nsb)
		if nsb*superGroups < cols/GroupSize {
			s += dotQGeneric(q4, w[i*rowBytes:(i+1)*rowBytes], a, r, nsb*superGroups)
		}
		out[i] = s
	}
}
