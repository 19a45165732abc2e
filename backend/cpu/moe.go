package cpu

import (
	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/internal/kernels"
)

// MoE runs a whole mixture-of-experts block. The batch's tokens are grouped by expert, so
// each chosen expert's weights are read once per batch.
func (b *Backend) MoE(dst, x backend.Tensor, e backend.Experts, topK int, router backend.Tensor) error {
	if err := backend.CheckMoE(dst, x, e, topK, router); err != nil {
		return err
	}
	o := operands{b: b, op: "moe"}
	d, xs, ex := o.data(dst), o.data(x), o.experts(e)
	var rl []float32
	if router.Buf != nil {
		rl = o.data(router)
	}
	if o.err != nil {
		return o.err
	}
	if err := b.lock(); err != nil {
		return err
	}
	defer b.mu.Unlock()

	n, E, H, I := x.Rows, ex.count, ex.hidden, ex.inner
	t := &b.moe
	t.ex, t.dst, t.scratch = ex, d, b.scratch

	// Router logits x·gateᵀ, then per token the softmax over all experts in float32, the
	// top k, renormalised.
	t.probs = grow(t.probs, n*E)
	b.matmul = matmulTask{scratch: b.scratch, dst: t.probs, x: xs, n: n, w: ex.gate} // exact, never rounded
	b.pool.each(E, 16, 1, &b.matmul)
	b.matmul = matmulTask{}
	copy(rl, t.probs)
	t.choice = growInts(t.choice, n*topK)
	t.weight = grow(t.weight, n*topK)
	for i := range n {
		p := t.probs[i*E : (i+1)*E]
		kernels.Softmax(p)
		top(p, t.choice[i*topK:(i+1)*topK], t.weight[i*topK:(i+1)*topK])
	}

	// Group the (token, weight) pairs by expert: start[c] is where expert c's pairs begin.
	t.start = growInts(t.start, E+1)
	clear(t.start)
	for _, c := range t.choice {
		t.start[c+1]++
	}
	for c := range E {
		t.start[c+1] += t.start[c]
	}
	t.fill = growInts(t.fill, E)
	copy(t.fill, t.start[:E])
	t.tokens = growInts(t.tokens, n*topK)
	t.gains = grow(t.gains, n*topK)
	for i, c := range t.choice {
		t.tokens[t.fill[c]], t.gains[t.fill[c]] = i/topK, t.weight[i]
		t.fill[c]++
	}

	// Gather each expert's tokens, experts one after another (pair p is row p of xs). Then
	// two parallel phases over all the chosen experts at once, each share of the work the
	// same rows of every chosen expert: h = silu(w1·x) ⊙ (w3·x), then dst += gain·(w2·h).
	m := n * topK
	t.xs = grow(t.xs, m*H)
	t.g, t.u = grow(t.g, m*I), grow(t.u, m*I)
	t.y = grow(t.y, m*H)
	t.bf16Acts = b.bf16Acts
	for c := range E {
		round, _ := t.rounded(c)
		for p := t.start[c]; p < t.start[c+1]; p++ {
			row, tok := t.xs[p*H:(p+1)*H], t.tokens[p]
			copy(row, xs[tok*H:(tok+1)*H])
			if round {
				kernels.RoundBF16(row, row)
			}
		}
	}
	most := 0 // the most tokens of one expert
	for c := range E {
		most = max(most, t.start[c+1]-t.start[c])
	}
	clear(d)
	// Quantized experts take each expert's activations quantized once, before the workers
	// share its rows: the views xqs[c] and gqs[c] are expert c's pairs.
	quant := ex.w1[0].quantized()
	t.xqs, t.gqs = t.xqs[:0], t.gqs[:0]
	if quant {
		b.quantizeActs(&t.xq, t.xs, m, H)
		for c := range E {
			t.xqs = append(t.xqs, t.xq.Slice(t.start[c], t.start[c+1]))
		}
	}
	t.phase = 0
	b.pool.each(I, 16, spread(most), t)
	if ex.w2[0].quantized() {
		b.quantizeActs(&t.gq, t.g, m, I)
		for c := range E {
			t.gqs = append(t.gqs, t.gq.Slice(t.start[c], t.start[c+1]))
		}
	}
	t.phase = 1
	b.pool.each(H, 16, spread(most), t)
	t.ex, t.dst, t.scratch = nil, nil, nil
	return nil
}

// moeTask holds one MoE call's routing and runs its two parallel phases over every chosen
// expert: phase 0 the columns [lo, hi) of h = silu(w1·x) ⊙ (w3·x), phase 1 the columns
// [lo, hi) of dst += gain·(w2·h).
type moeTask struct {
	ex      *experts
	dst     []float32
	scratch []workerScratch // the workers' working memory

	probs       []float32 // [n, experts]: router logits, then probabilities
	choice      []int     // [n, topK] chosen experts
	weight      []float32 // [n, topK] their renormalised probabilities
	start, fill []int     // per expert: where its pairs start, and a cursor
	tokens      []int     // the token of each pair, grouped by expert
	gains       []float32 // its routing weight
	xs, g, u, y []float32 // per pair: input [hidden], gate and up [inner], output [hidden]
	phase       int
	bf16Acts    bool // Options.BF16Activations
	// xs and g quantized, for quantized experts, and per expert views of its pairs (empty
	// otherwise).
	xq, gq   kernels.QuantActs
	xqs, gqs []kernels.QuantActs
}

// quantActs returns the view of the quantized activations qs for expert c, nil if there is
// none.
func quantActs(qs []kernels.QuantActs, c int) *kernels.QuantActs {
	if c < len(qs) {
		return &qs[c]
	}
	return nil
}

// rounded reports whether expert c's products take activations rounded to bfloat16: those
// of w1 and w3 (in) and those of w2 (inner).
func (t *moeTask) rounded(c int) (in, inner bool) {
	e := t.ex
	return t.bf16Acts && e.w1[c].roundable() && e.w3[c].roundable(), t.bf16Acts && e.w2[c].roundable()
}

func (t *moeTask) run(w, lo, hi int) {
	H, I := t.ex.hidden, t.ex.inner
	s := &t.scratch[w]
	for c := range t.ex.count {
		p0, p1 := t.start[c], t.start[c+1]
		m := p1 - p0
		if m == 0 {
			continue
		}
		g, u := t.g[p0*I:p1*I], t.u[p0*I:p1*I]
		round1, round2 := t.rounded(c)
		if t.phase == 0 {
			xs := t.xs[p0*H : p1*H]
			xq := quantActs(t.xqs, c)
			t.ex.w1[c].mulRows(s, g, xs, xq, m, lo, hi, round1)
			t.ex.w3[c].mulRows(s, u, xs, xq, m, lo, hi, round1)
			for j := range m {
				row := g[j*I+lo : j*I+hi]
				kernels.SiLUMul(row, row, u[j*I+lo:j*I+hi])
				if round2 {
					kernels.RoundBF16(row, row)
				}
			}
			continue
		}
		y := t.y[p0*H : p1*H]
		t.ex.w2[c].mulRows(s, y, g, quantActs(t.gqs, c), m, lo, hi, round2)
		for j, tok := range t.tokens[p0:p1] {
			kernels.Axpy(t.gains[p0+j], y[j*H+lo:j*H+hi], t.dst[tok*H+lo:tok*H+hi])
		}
	}
}

// top sets choice to the indices of the len(choice) largest probabilities (the lower index
// first among equals) and weight to those probabilities divided by their sum.
func top(probs []float32, choice []int, weight []float32) {
	var total float32
	for k := range choice {
		best := -1
		for c, p := range probs {
			if !taken(choice[:k], c) && (best < 0 || p > probs[best]) {
				best = c
			}
		}
		choice[k], weight[k] = best, probs[best]
		total += probs[best]
	}
	for k := range weight {
		weight[k] /= total
	}
}

func taken(chosen []int, c int) bool {
	for _, x := range chosen {
		if x == c {
			return true
		}
	}
	return false
}

func growInts(s []int, n int) []int {
	if cap(s) < n {
		return make([]int, n, max(n, 2*cap(s)))
	}
	return s[:n]
}
