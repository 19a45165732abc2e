package kernels

import "math"

// The vector helpers of a transformer layer. They are memory-light next to the matrix
// products, so only the ones built on the dot product and Axpy use vector code.

// Scale multiplies x by a in place.
func Scale(x []float32, a float32) { impl.scale(x, a) }

func scaleGeneric(x []float32, a float32) {
	for i := range x {
		x[i] *= a
	}
}

// Max returns the largest of x, NaN if any is NaN, and -Inf if x is empty. (Of +0 and -0 it
// may return either.)
func Max(x []float32) float32 {
	if len(x) == 0 {
		return float32(math.Inf(-1))
	}
	return impl.maxF32(x)
}

// maxGeneric returns the largest of x (not empty), or NaN if any is NaN.
func maxGeneric(x []float32) float32 {
	m := x[0]
	for _, v := range x[1:] {
		if v > m || v != v {
			m = v
		}
	}
	if m == m {
		return m
	}
	return float32(math.NaN())
}

// Add adds x to dst[:len(x)] in place.
func Add(dst, x []float32) { impl.axpy(1, x, dst) }

// SumSquares returns Σ x[i]², accumulated in float32.
func SumSquares(x []float32) float32 { return impl.dotF32(x, x) }

// RMSNorm sets dst[i] = (x[i]·r)·w[i] with r = 1/√(mean(x²) + eps), the root-mean-square norm
// of Llama and Mixtral in float32. dst may be x.
func RMSNorm(dst, x, w []float32, eps float32) {
	dst, w = dst[:len(x)], w[:len(x)]
	if len(x) == 0 {
		return
	}
	r := float32(1 / math.Sqrt(float64(SumSquares(x)/float32(len(x))+eps)))
	for i, v := range x {
		dst[i] = (v * r) * w[i]
	}
}

// SiLUMul sets dst[i] = silu(gate[i])·up[i], silu(g) = g/(1+e^-g): the gated activation of a
// SwiGLU feed-forward block, to within a few units in the last place. dst may be gate or up.
func SiLUMul(dst, gate, up []float32) {
	impl.siluMul(dst[:len(gate)], gate, up[:len(gate)])
}

func siluMulGeneric(dst, gate, up []float32) {
	dst, up = dst[:len(gate)], up[:len(gate)]
	for i, g := range gate {
		dst[i] = float32(float64(g)/(1+math.Exp(-float64(g)))) * up[i]
	}
}

// Softmax replaces x by its softmax, exp(x[i]-max)/Σ exp(x[j]-max), in float32 to within a
// few units in the last place (exponentials below 2.5e-38 may flush to zero). A -Inf entry
// gets 0; if every entry is -Inf, or any is NaN, the results are NaN.
func Softmax(x []float32) {
	if len(x) == 0 {
		return
	}
	m := impl.maxF32(x)
	impl.scale(x, 1/impl.softmaxExp(x, m))
}

// softmaxExpGeneric replaces x[i] by exp(x[i]-m) and returns their sum.
func softmaxExpGeneric(x []float32, m float32) float32 {
	var sum float64
	for i, v := range x {
		e := math.Exp(float64(v - m))
		x[i] = float32(e)
		sum += e
	}
	return float32(sum)
}
