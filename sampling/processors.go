package sampling

import "math"

// The logits processors, each usable on its own over a full logits vector. They modify
// logits in place, mark a filtered token with -Inf, read NaN as -Inf and +Inf as the largest
// float32 (and write them back so). The Sampler applies the same rules, in vLLM's order,
// without materialising the filtered vector.

var negInf = float32(math.Inf(-1))

// cleanAll applies clean to every entry of x.
func cleanAll(x []float32) {
	for i, v := range x {
		x[i] = clean(v)
	}
}

// maxOf returns the largest entry of x (-Inf when x is empty).
func maxOf(x []float32) float32 {
	m := negInf
	for _, v := range x {
		if v > m {
			m = v
		}
	}
	return m
}

// ApplyLogitBias adds each bias, clamped to ±100, to the logit of its token id. Ids outside
// the vocabulary are ignored (NewSampler rejects them).
func ApplyLogitBias(logits []float32, bias map[int]float64) {
	cleanAll(logits)
	for id, b := range bias {
		if id >= 0 && id < len(logits) && !math.IsNaN(b) {
			logits[id] += float32(ClampBias(b))
		}
	}
}

// repeat applies the repetition penalty r to one logit: a positive logit is divided by r,
// any other multiplied by it. An overflow saturates (see clean).
func repeat(v, r float32) float32 {
	if v > 0 {
		return clean(v / r)
	}
	return v * r
}

// ApplyRepetitionPenalty applies the repetition penalty once to every distinct token id in
// ids (the prompt and the output so far): positive logits are divided by penalty, the
// others multiplied by it. Ids outside the vocabulary are ignored.
func ApplyRepetitionPenalty(logits []float32, ids []int, penalty float64) {
	cleanAll(logits)
	seen := make([]bool, len(logits))
	r := float32(penalty)
	for _, id := range ids {
		if id >= 0 && id < len(logits) && !seen[id] {
			seen[id] = true
			logits[id] = repeat(logits[id], r)
		}
	}
}

// ApplyFrequencyPresencePenalty subtracts frequency times its count in outputIDs from the
// logit of every token generated so far, and presence from each such token once. Only the
// output counts, not the prompt. Ids outside the vocabulary are ignored.
func ApplyFrequencyPresencePenalty(logits []float32, outputIDs []int, frequency, presence float64) {
	cleanAll(logits)
	counts := make([]int32, len(logits))
	for _, id := range outputIDs {
		if id >= 0 && id < len(logits) {
			counts[id]++
		}
	}
	f, p := float32(frequency), float32(presence)
	for id, n := range counts {
		if n > 0 {
			logits[id] = penalise(logits[id], n, f, p)
		}
	}
}

// penalise applies the frequency and presence penalties to the logit of a token generated
// n > 0 times. An overflow saturates (see clean).
func penalise(v float32, n int32, f, p float32) float32 {
	return clean(v - f*float32(n) - p)
}

// ApplyTemperature divides the logits by t. A temperature below 1e-5 (greedy decoding, where
// temperature does not apply) or NaN leaves them unchanged.
func ApplyTemperature(logits []float32, t float64) {
	cleanAll(logits)
	if !(t >= greedyTemperature) {
		return
	}
	d := float32(t)
	for i, v := range logits {
		logits[i] = v / d
	}
}

// minPThreshold returns the smallest logit that min-p keeps when the top logit is top and the
// logits are divided by temperature t: p_i >= minP * p_max is e^((v-top)/t) >= minP, that is
// v >= top + t*ln(minP). minP <= 0 keeps everything.
func minPThreshold(top float32, minP, t float64) float32 {
	if !(minP > 0) {
		return negInf
	}
	return ceil32(float64(top) + t*math.Log(minP))
}

// ApplyMinP filters the tokens whose probability (the softmax of logits) is below minP
// times the top probability. minP <= 0 filters nothing; the top token always stays.
func ApplyMinP(logits []float32, minP float64) {
	cleanAll(logits)
	thr := minPThreshold(maxOf(logits), minP, 1)
	for i, v := range logits {
		if v < thr {
			logits[i] = negInf
		}
	}
}

// ApplyTopK keeps the k largest logits, and every logit equal to the k-th largest, and
// filters the others. k <= 0 or k >= len(logits) filters nothing.
func ApplyTopK(logits []float32, k int) {
	cleanAll(logits)
	if k <= 0 || k >= len(logits) {
		return
	}
	h := make(kHeap, k)
	h.reset()
	for _, v := range logits {
		h.offer(v)
	}
	thr := h[0]
	for i, v := range logits {
		if v < thr {
			logits[i] = negInf
		}
	}
}

// ApplyTopP keeps the smallest set of the most likely tokens whose probability (the
// softmax of logits) reaches p, and filters the others: a token stays when the mass of the
// tokens ranking above it is below p. Tokens rank by logit, and equal logits by id, the
// larger id first (the order of an ascending stable sort read from the top, as Hugging
// Face's and vLLM's top-p rank). The top token always stays; p >= 1 filters nothing.
func ApplyTopP(logits []float32, p float64) {
	cleanAll(logits)
	if p >= 1 {
		return
	}
	c := make([]cand, 0, len(logits))
	for i, v := range logits {
		if v > negInf {
			c = append(c, cand{v: v, id: int32(i)})
		}
	}
	if len(c) == 0 {
		return
	}
	z := expCands(c, maxOf(logits), 1, make([]float32, 2*expChunk))
	n, _ := nucleus(c, p*z)
	keep := make([]bool, len(logits))
	for _, k := range c[:n] {
		keep[k.id] = true
	}
	for i := range logits {
		if !keep[i] {
			logits[i] = negInf
		}
	}
}
