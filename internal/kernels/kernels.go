// Package kernels holds the inner loops of the CPU backend: dot products and matrix products
// over weights in their stored dtype (bfloat16, float16, float32 and the quantized formats),
// accumulated in float32.
//
// Every kernel is a plain Go function here, the generic implementation that always compiles.
// Faster implementations for the running CPU are chosen once at start; the generic one is the
// reference that tests hold them to. Weight matrices are row-major, [rows, cols]: row r is
// w[r*cols : (r+1)*cols].
package kernels

import (
	"math"

	"github.com/x448/float16"
)

// BF16ToF32 converts one bfloat16 value, given as its bits, to float32.
func BF16ToF32(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }

// F16ToF32 converts one IEEE half-precision value, given as its bits, to float32.
func F16ToF32(h uint16) float32 { return float16.Frombits(h).Float32() }

// DotF32 returns the float32 dot product of x and y[:len(x)].
func DotF32(x, y []float32) float32 {
	y = y[:len(x)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * y[i]
		s1 += x[i+1] * y[i+1]
		s2 += x[i+2] * y[i+2]
		s3 += x[i+3] * y[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// DotBF16 returns the dot product of the bfloat16 vector w and the float32 vector x[:len(w)].
func DotBF16(w []uint16, x []float32) float32 {
	x = x[:len(w)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(w); i += 4 {
		s0 += BF16ToF32(w[i]) * x[i]
		s1 += BF16ToF32(w[i+1]) * x[i+1]
		s2 += BF16ToF32(w[i+2]) * x[i+2]
		s3 += BF16ToF32(w[i+3]) * x[i+3]
	}
	for ; i < len(w); i++ {
		s0 += BF16ToF32(w[i]) * x[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// DotF16 returns the dot product of the float16 vector w and the float32 vector x[:len(w)].
func DotF16(w []uint16, x []float32) float32 {
	x = x[:len(w)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(w); i += 4 {
		s0 += F16ToF32(w[i]) * x[i]
		s1 += F16ToF32(w[i+1]) * x[i+1]
		s2 += F16ToF32(w[i+2]) * x[i+2]
		s3 += F16ToF32(w[i+3]) * x[i+3]
	}
	for ; i < len(w); i++ {
		s0 += F16ToF32(w[i]) * x[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// Axpy adds a*x to y[:len(x)].
func Axpy(a float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += a * v
	}
}
