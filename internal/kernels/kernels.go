// Package kernels holds the inner loops of the CPU backend: dot products and matrix products
// over weights in their stored dtype (bfloat16, float16, float32 and the quantized formats),
// accumulated in float32.
//
// Every kernel is a plain Go function here, the generic implementation that always compiles.
// Faster implementations for the running CPU (AVX2+FMA, AVX-512, AVX512_BF16, VNNI on amd64,
// generated with avo from the _asm directory) are chosen once at start; the generic one is the
// reference that tests hold them to. The build tag purego leaves the assembly out. Weight
// matrices are row-major, [rows, cols]: row r is w[r*cols : (r+1)*cols]. Activations are
// row-major too, [tokens, cols].
//
// Kernels check their slice arguments by slicing them to the lengths the shape needs, so a
// slice too short panics with an index error rather than being read out of bounds.
package kernels

import "math"

// BF16ToF32 converts one bfloat16 value, given as its bits, to float32.
func BF16ToF32(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }

// F16ToF32 converts one IEEE half-precision value, given as its bits, to float32. The
// conversion is exact; NaNs stay NaNs.
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch exp {
	case 0: // zero or subnormal: mant·2⁻²⁴
		return math.Float32frombits(sign | math.Float32bits(float32(mant)*(1.0/(1<<24))))
	case 0x1f: // infinity or NaN
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// F32ToBF16 rounds f to the nearest bfloat16, ties to even, and returns its bits. NaNs stay
// NaNs (quiet).
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// BF16ToF32Slice widens src to float32 in dst[:len(src)].
func BF16ToF32Slice(dst []float32, src []uint16) { impl.cvtBF16(dst, src) }

// F16ToF32Slice widens src to float32 in dst[:len(src)].
func F16ToF32Slice(dst []float32, src []uint16) { impl.cvtF16(dst, src) }

// DotF32 returns the float32 dot product of x and y[:len(x)].
func DotF32(x, y []float32) float32 { return impl.dotF32(x, y) }

// DotBF16 returns the dot product of the bfloat16 vector w and the float32 vector x[:len(w)].
func DotBF16(w []uint16, x []float32) float32 { return impl.dotBF16(w, x) }

// DotF16 returns the dot product of the float16 vector w and the float32 vector x[:len(w)].
func DotF16(w []uint16, x []float32) float32 { return impl.dotF16(w, x) }

// Axpy adds a*x to y[:len(x)].
func Axpy(a float32, x, y []float32) { impl.axpy(a, x, y) }

// MatVecBF16 computes out[r] = Σ_c w[r*cols+c]·x[c] for every r < len(out): the product of
// the bfloat16 matrix w, [len(out), cols], with x[:cols]. It streams w once, several rows at a
// time so that each load of x serves them all.
func MatVecBF16(out []float32, w []uint16, x []float32, cols int) {
	if cols <= 0 {
		clear(out)
		return
	}
	impl.matVecBF16(out, w[:len(out)*cols], x[:cols], cols)
}

// MatVecF16 is MatVecBF16 for a float16 matrix.
func MatVecF16(out []float32, w []uint16, x []float32, cols int) {
	if cols <= 0 {
		clear(out)
		return
	}
	impl.matVecF16(out, w[:len(out)*cols], x[:cols], cols)
}

// MatVecF32 is MatVecBF16 for a float32 matrix.
func MatVecF32(out []float32, w []float32, x []float32, cols int) {
	if cols <= 0 {
		clear(out)
		return
	}
	impl.matVecF32(out, w[:len(out)*cols], x[:cols], cols)
}
