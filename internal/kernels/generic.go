package kernels

import "github.com/fathom-llm/fathom/internal/half"

// This file holds the generic implementations: plain Go that compiles everywhere and is the
// reference the vector implementations are tested against.

func dotF32Generic(x, y []float32) float32 {
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

func dotBF16Generic(w []uint16, x []float32) float32 {
	x = x[:len(w)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(w); i += 4 {
		s0 += half.BF16ToF32(w[i]) * x[i]
		s1 += half.BF16ToF32(w[i+1]) * x[i+1]
		s2 += half.BF16ToF32(w[i+2]) * x[i+2]
		s3 += half.BF16ToF32(w[i+3]) * x[i+3]
	}
	for ; i < len(w); i++ {
		s0 += half.BF16ToF32(w[i]) * x[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// dotBF16RoundedGeneric is dotBF16Generic with x rounded to bfloat16.
func dotBF16RoundedGeneric(w []uint16, x []float32) float32 {
	x = x[:len(w)]
	var s float32
	for i, v := range w {
		s += half.BF16ToF32(v) * half.BF16ToF32(half.F32ToBF16(x[i]))
	}
	return s
}

func dotF16Generic(w []uint16, x []float32) float32 {
	x = x[:len(w)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(w); i += 4 {
		s0 += half.F16ToF32(w[i]) * x[i]
		s1 += half.F16ToF32(w[i+1]) * x[i+1]
		s2 += half.F16ToF32(w[i+2]) * x[i+2]
		s3 += half.F16ToF32(w[i+3]) * x[i+3]
	}
	for ; i < len(w); i++ {
		s0 += half.F16ToF32(w[i]) * x[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func axpyGeneric(a float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += a * v
	}
}

func cvtBF16Generic(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = half.BF16ToF32(v)
	}
}

func roundBF16Generic(dst, x []float32) {
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] = half.BF16ToF32(half.F32ToBF16(v))
	}
}

func cvtF16Generic(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = half.F16ToF32(v)
	}
}

// matVecGeneric computes out[r] = dot(w[r*cols:(r+1)*cols], x) for every r < len(out).
func matVecGeneric[T uint16 | float32](dot func([]T, []float32) float32, out []float32, w []T, x []float32, cols int) {
	for r := range out {
		out[r] = dot(w[r*cols:(r+1)*cols], x)
	}
}
