package kernels

// FMALoop runs n iterations of a register-only loop of independent float32 multiply-adds, in
// the widest vectors the CPU has, and returns the floating-point operations it performed (a
// multiply-add counts two). Timing it gives the arithmetic peak that the matrix products are
// measured against.
func FMALoop(n int) int64 {
	if n <= 0 {
		return 0
	}
	return impl.peakFMA(n)
}

// BF16DotLoop is FMALoop for the bfloat16 dot-product instruction VDPBF16PS (each lane adds
// two products, four operations). It returns 0, doing nothing, where the CPU lacks
// AVX512_BF16.
func BF16DotLoop(n int) int64 {
	if n <= 0 {
		return 0
	}
	return impl.peakBF16(n)
}

// peakFMAGeneric is FMALoop in scalar Go: eight independent chains.
func peakFMAGeneric(n int) int64 {
	var a [8]float32
	b, c := float32(0.999), float32(1e-3)
	for range n {
		for j := range a {
			a[j] = a[j]*b + c
		}
	}
	if a[0] != a[7] { // keeps the loop; never true
		return 0
	}
	return int64(n) * 8 * 2
}

// XORWords returns the XOR of the words of p. It reads p as fast as one core can, with the
// widest vector loads the CPU has, which makes it the probe of memory read bandwidth.
func XORWords(p []uint64) uint64 { return impl.xorWords(p) }

func xorWordsGeneric(p []uint64) uint64 {
	var a, b, c, d uint64
	i := 0
	for ; i+4 <= len(p); i += 4 {
		a ^= p[i]
		b ^= p[i+1]
		c ^= p[i+2]
		d ^= p[i+3]
	}
	for ; i < len(p); i++ {
		a ^= p[i]
	}
	return a ^ b ^ c ^ d
}
