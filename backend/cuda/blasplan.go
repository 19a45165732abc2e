package cuda

// Host-side planning of the cuBLASLt expert products (fc_moe_blas), free of cgo.

const (
	// moeBLASReadTokens is the most tokens of an MoE block whose experts each get room for
	// every token, so that nothing waits for the routing (and a recorded step replays for
	// any routing). A larger block reads the experts' pair counts back first and gives each
	// expert room for the largest.
	moeBLASReadTokens = 64
	// moeBLASCapStep rounds a read-back capacity up, so that few product shapes occur.
	moeBLASCapStep = 16
)

// moeBLASLayout is the scratch memory of the cuBLASLt experts: byte offsets of the buffers
// of fc_moe_args (bx, bd1, bd3) in one allocation of bytes bytes.
type moeBLASLayout struct {
	x, d1, d3, bytes int
}

// planMoEBLAS lays out the buffers for experts that each own parts·capacity rows (parts is
// 2 when the activations are split into two bfloat16 parts). The buffers also hold the
// grouped GEMMs' operands (xa in x, h in d3, y in d1) for the same block, which run when
// cuBLASLt has no algorithm: every expert owns at least its pairs' rows, so
// experts·capacity >= pairs.
func planMoEBLAS(experts, capacity, parts, hidden, inner int) moeBLASLayout {
	rows := experts * parts * capacity
	wide := pad8(max(hidden, inner))
	var l moeBLASLayout
	at := 0
	take := func(bytes int) int {
		off := at
		at += (bytes + scratchAlign - 1) / scratchAlign * scratchAlign
		return off
	}
	l.x = take(2 * rows * wide)
	l.d1 = take(4 * rows * wide)
	l.d3 = take(4 * rows * pad8(inner))
	l.bytes = at
	return l
}

// moeCapacity returns the rows each expert gets after routing: the largest pair count in
// offsets (experts+1 starts of the sorted rows), rounded up to moeBLASCapStep, at most
// tokens (no expert takes a token twice) and at least 1.
func moeCapacity(offsets []int32, tokens int) int {
	most := 1
	for e := 0; e+1 < len(offsets); e++ {
		most = max(most, int(offsets[e+1]-offsets[e]))
	}
	return min(tokens, (most+moeBLASCapStep-1)/moeBLASCapStep*moeBLASCapStep)
}
