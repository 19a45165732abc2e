package engine

// The token budget of a step counts a token's work, in units of a decode's: a decode counts
// 1, a prompt token at position p counts 1 + AttentionCost·a, where a is the number of
// positions it attends to (p+1, at most the sliding window).

// attended returns the positions attended to by the tokens at positions [0, n) together:
// the sum over p of min(p+1, window), window 0 meaning no limit.
func attended(n, window int) float64 {
	m := float64(n)
	if window == 0 || n <= window {
		return m * (m + 1) / 2
	}
	w := float64(window)
	return w*(w+1)/2 + (m-w)*w
}

// chunkCost returns what the prompt tokens at positions [p, p+n) count against the budget.
func (e *Engine) chunkCost(p, n int) float64 {
	c := e.lay.AttentionCost
	if c == 0 {
		return float64(n)
	}
	w := e.lay.SlidingWindow
	return float64(n) + c*(attended(p+n, w)-attended(p, w))
}

// chunk returns how many of the n prompt tokens from position p fit in budget: the most
// whose cost is within it, but at least one.
func (e *Engine) chunk(p, n int, budget float64) int {
	// The cost grows with n: find the largest n that fits by bisection.
	lo, hi := min(1, n), n
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		if e.chunkCost(p, mid) <= budget {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}
