package kernels

import "math"

// ExpMin is the smallest argument for which ExpNeg and ExpSum give e^a: below it, e^a
// leaves float32's normal range, and they give 0.
const ExpMin = -87.3

// ExpNeg returns e^a for a in [ExpMin, 0] in float32, with a relative error of a few units in
// the last place: Cody-Waite range reduction and a degree-5 polynomial (Cephes' expf). Every
// product is rounded on its own (the conversions forbid fusing it with an addition), so that
// the vector forms of ExpSum compute the same bits. Below ExpMin (and for NaN) it returns 0,
// above 0 it returns 1, as ExpSum counts them.
func ExpNeg(a float32) float32 {
	v := [1]float32{a}
	expArgs(v[:], v[:], 0, 1)
	return v[0]
}

// expArgs sets dst[i] = e^((x[i]-shift)·scale) for i < len(x), as ExpSum defines it, and
// returns the float32 sums of the values at even and at odd i. It is the one place of the
// formula, a loop so that the generic ExpSum makes no call per value.
func expArgs(dst, x []float32, shift, scale float32) (even, odd float32) {
	dst = dst[:len(x)]
	for i, v := range x {
		a := float32(v-shift) * scale
		var e float32
		if a >= ExpMin { // not NaN
			if a > 0 {
				a = 0
			}
			r := float32(a*math.Log2E) + 0xc00000 // 1.5·2²³: rounds to an integer in the low bits
			n := r - 0xc00000
			// ln 2 = 0.693359375 - 2.12194440e-4, the first exact in few bits.
			f := a - float32(n*0.693359375) + float32(n*2.12194440e-4)
			p := float32(1.9875691500e-4*f) + 1.3981999507e-3
			p = float32(p*f) + 8.3334519073e-3
			p = float32(p*f) + 4.1665795894e-2
			p = float32(p*f) + 1.6666665459e-1
			p = float32(p*f) + 5.0000001201e-1
			p = float32(p*f*f) + f + 1
			// n lies in [-126, 0]; the low bits of r hold it, two's complement.
			e = p * math.Float32frombits((math.Float32bits(r)+127)<<23)
		}
		dst[i] = e
		if i&1 == 0 {
			even += e
		} else {
			odd += e
		}
	}
	return even, odd
}

// expBlock is the number of values whose exponentials ExpSum adds in float32 before it adds
// them to its float64 total.
const expBlock = 256

// ExpSum sets dst[i] = e^((x[i]-shift)·scale) for i < len(x), unless dst is nil, and
// returns the sum of those values. It serves softmax-like sums over a whole vocabulary, with
// shift at least the largest x[i] and scale > 0, so that each argument a = (x[i]-shift)·scale
// is at most 0: e^a is ExpNeg(a), 0 for a below ExpMin or NaN (x[i] = -Inf counts 0). An
// argument above 0 counts as 0 (e^a = 1). The sum is accumulated in float32 over blocks of a
// few hundred values and in float64 across them.
func ExpSum(dst, x []float32, shift, scale float32) float64 {
	if dst != nil {
		dst = dst[:len(x)]
	}
	return impl.expSum(dst, x, shift, scale)
}

func expSumGeneric(dst, x []float32, shift, scale float32) float64 {
	var tmp [expBlock]float32
	total := 0.0
	for b := 0; b < len(x); b += expBlock {
		blk := x[b:min(len(x), b+expBlock)]
		e := tmp[:len(blk)]
		if dst != nil {
			e = dst[b : b+len(blk)]
		}
		s0, s1 := expArgs(e, blk, shift, scale)
		total += float64(s0 + s1)
	}
	return total
}

// IndexAtLeast stores to dst, in order, the indices i of the values x[i] >= t (NaN never is)
// and returns their number. dst needs len(x) entries: the vector code stores whole vectors
// past the indices it keeps.
func IndexAtLeast(dst []int32, x []float32, t float32) int {
	return impl.indexAtLeast(dst[:len(x)], x, t)
}

func indexAtLeastGeneric(dst []int32, x []float32, t float32) int {
	dst = dst[:len(x)]
	n := 0
	for i, v := range x {
		// Store every index and keep those that pass: no branch to mispredict.
		dst[n] = int32(i)
		if v >= t {
			n++
		}
	}
	return n
}
