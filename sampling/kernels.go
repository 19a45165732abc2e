package sampling

import (
	"math"

	"github.com/fathom-llm/fathom/internal/kernels"
)

// The numeric kernels shared by the exported processors and the Sampler.

// cand is one candidate token: its (penalised) logit, its unnormalised probability
// e^((v-max)/T), and its id.
type cand struct {
	v  float32
	e  float32
	id int32
}

// ranksAbove reports whether a ranks above b: a larger logit, or an equal logit and a larger
// id. The tie rule is that of an ascending stable sort read from the top, as the reference
// top-p implementations (vLLM's and Hugging Face's) rank.
func ranksAbove(a, b *cand) bool { return a.v > b.v || (a.v == b.v && a.id > b.id) }

// expChunk is the number of candidates expCands passes to the vector exponential at a time.
const expChunk = 1024

// expCands sets c[i].e = e^((c[i].v - top) * scale) (0 below kernels.ExpMin, for -Inf and for
// NaN) and returns the sum of the e values, accumulated in float32 blocks and in float64
// across them. tmp, at least 2·expChunk entries, is its scratch.
func expCands(c []cand, top, scale float32, tmp []float32) float64 {
	v, e := tmp[:expChunk], tmp[expChunk:2*expChunk]
	total := 0.0
	for len(c) > 0 {
		blk := c[:min(len(c), expChunk)]
		c = c[len(blk):]
		for i := range blk {
			v[i] = blk[i].v
		}
		total += kernels.ExpSum(e[:len(blk)], v[:len(blk)], top, scale)
		for i := range blk {
			blk[i].e = e[i]
		}
	}
	return total
}

// sumExp returns the sum of e^(x - top) over x, -Inf and NaN counting 0.
func sumExp(x []float32, top float32) float64 { return kernels.ExpSum(nil, x, top, 1) }

// pick returns the index in c of the candidate that the point r, 0 <= r < Σ c[i].e, falls
// on when the candidates' e values are laid end to end. Rounding never makes it return a
// candidate of zero weight; it returns -1 only when every weight is zero.
func pick(c []cand, r float64) int {
	weighted := -1 // the start of the last block passed over with some weight
	for base := 0; base < len(c); base += 256 {
		blk := c[base:min(len(c), base+256)]
		var s0, s1 float32
		i := 0
		for ; i+2 <= len(blk); i += 2 {
			s0 += blk[i].e
			s1 += blk[i+1].e
		}
		if i < len(blk) {
			s0 += blk[i].e
		}
		s := float64(s0 + s1)
		if r >= s && base+len(blk) < len(c) {
			r -= s
			if s > 0 {
				weighted = base
			}
			continue
		}
		last := -1
		for j := range blk {
			if e := float64(blk[j].e); e > 0 {
				last = base + j
				if r < e {
					return last
				}
				r -= e
			}
		}
		if last >= 0 {
			return last
		}
		break
	}
	// Rounding carried r past the weighted candidates: take the last one.
	if weighted >= 0 {
		for j := min(len(c), weighted+256) - 1; j >= weighted; j-- {
			if c[j].e > 0 {
				return j
			}
		}
	}
	return -1
}

// kHeap keeps the k largest values offered to it: a min-heap whose root is the k-th largest.
type kHeap []float32

// reset empties the heap: it holds k values of -Inf.
func (h kHeap) reset() {
	for i := range h {
		h[i] = negInf
	}
}

// offer adds v when it is among the k largest so far.
func (h kHeap) offer(v float32) {
	if v > h[0] {
		h[0] = v
		siftDown(h, 0)
	}
}

// siftDown restores the min-heap property of h below node i.
func siftDown(h []float32, i int) {
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h[r] < h[l] {
			m = r
		}
		if !(h[m] < h[i]) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// nucleus applies top-p to the candidates c: it reorders c so that c[:n] holds, in no
// particular order, every candidate whose preceding mass (the sum of e over the candidates
// ranking above it, see ranksAbove) is below target, and returns n and the mass of c[:n].
// This is the smallest top set whose mass reaches target; the top candidate always stays.
// It is a quickselect on rank that carries masses, so it runs in expected linear time
// without sorting the candidates.
func nucleus(c []cand, target float64) (int, float64) {
	if len(c) == 0 {
		return 0, 0
	}
	if !(target > 0) {
		top := 0
		for i := range c {
			if ranksAbove(&c[i], &c[top]) {
				top = i
			}
		}
		c[0], c[top] = c[top], c[0]
		return 1, float64(c[0].e)
	}
	lo, hi := 0, len(c)
	before := 0.0 // the mass of c[:lo], all of which is kept
	for hi-lo > 16 {
		medianToFront(c, lo, hi)
		pv := c[lo]
		j := lo + 1
		var mass float64
		for i := lo + 1; i < hi; i++ {
			if ranksAbove(&c[i], &pv) {
				mass += float64(c[i].e)
				c[i], c[j] = c[j], c[i]
				j++
			}
		}
		// c[lo+1:j] ranks above the pivot; put the pivot right after them.
		c[lo], c[j-1] = c[j-1], c[lo]
		if before+mass >= target {
			hi = j - 1 // the pivot and everything below it are dropped
			continue
		}
		before += mass + float64(pv.e)
		lo = j
	}
	sub := c[lo:hi]
	for i := 1; i < len(sub); i++ { // insertion sort by rank, best first
		for j := i; j > 0 && ranksAbove(&sub[j], &sub[j-1]); j-- {
			sub[j], sub[j-1] = sub[j-1], sub[j]
		}
	}
	for i := lo; i < hi; i++ {
		if before >= target {
			return i, before
		}
		before += float64(c[i].e)
	}
	return hi, before
}

// medianToFront moves the median (by rank) of c[lo], c[mid] and c[hi-1] to c[lo].
func medianToFront(c []cand, lo, hi int) {
	a, b, d := lo, lo+(hi-lo)/2, hi-1
	if ranksAbove(&c[b], &c[a]) {
		a, b = b, a
	}
	// now c[a] ranks above c[b]
	m := b
	if ranksAbove(&c[d], &c[b]) {
		m = d
		if ranksAbove(&c[d], &c[a]) {
			m = a
		}
	}
	c[lo], c[m] = c[m], c[lo]
}

// ceil32 returns the smallest float32 that is >= x, so that for every float32 v,
// v >= ceil32(x) exactly when float64(v) >= x.
func ceil32(x float64) float32 {
	f := float32(x)
	if float64(f) < x {
		f = math.Nextafter32(f, float32(math.Inf(1)))
	}
	return f
}

// clean returns v with NaN read as -Inf and +Inf as the largest float32, the rules every
// processor here applies to its input.
func clean(v float32) float32 {
	if v != v {
		return float32(math.Inf(-1))
	}
	if v > math.MaxFloat32 {
		return math.MaxFloat32
	}
	return v
}
