package reference

import (
	"math"

	"github.com/fathom-llm/fathom/backend"
)

// The float64 references of the operations of a Mixtral forward pass (the operations of
// backend.Backend), written plainly.

// MatMul returns x·wᵀ for x [n, in] and w [out, in].
func MatMul(x []float64, n int, w []float64, out int) []float64 {
	in := len(x) / max(n, 1)
	y := make([]float64, n*out)
	for i := range n {
		for r := range out {
			var s float64
			for k := range in {
				s += x[i*in+k] * w[r*in+k]
			}
			y[i*out+r] = s
		}
	}
	return y
}

// RMSNorm returns each row of x (rows of len(w) values) scaled by 1/sqrt(mean(row²)+eps),
// times w.
func RMSNorm(x, w []float64, eps float64) []float64 {
	d := len(w)
	y := make([]float64, len(x))
	for i := 0; i < len(x); i += d {
		var ss float64
		for _, v := range x[i : i+d] {
			ss += v * v
		}
		scale := 1 / math.Sqrt(ss/float64(d)+eps)
		for j := range d {
			y[i+j] = x[i+j] * scale * w[j]
		}
	}
	return y
}

// RoPE rotates one head x in place by position pos, in the rotate-half convention with base
// theta: the pair (x[i], x[i+len/2]) turns by pos·theta^(-2i/len).
func RoPE(x []float64, pos int, theta float64) {
	half := len(x) / 2
	for i := range half {
		angle := float64(pos) * math.Pow(theta, -float64(2*i)/float64(len(x)))
		c, s := math.Cos(angle), math.Sin(angle)
		a, d := x[i], x[i+half]
		x[i], x[i+half] = a*c-d*s, d*c+a*s
	}
}

// Attention returns the causal softmax attention of one token's query heads q (p.Heads
// heads of p.HeadDim) at position pos over its sequence's history: hist[j] holds the keys
// and the values (p.KVHeads heads each) of position j. Query head h reads key/value head
// h/(Heads/KVHeads); with p.SlidingWindow set, only the last SlidingWindow positions.
func Attention(q []float64, hist [][2][]float64, pos int, p backend.AttentionParams) []float64 {
	hd := p.HeadDim
	out := make([]float64, p.Heads*hd)
	first := 0
	if p.SlidingWindow > 0 {
		first = max(0, pos-p.SlidingWindow+1)
	}
	for h := range p.Heads {
		kvh := h / (p.Heads / p.KVHeads)
		qh := q[h*hd : (h+1)*hd]
		scores := make([]float64, pos+1-first)
		peak := math.Inf(-1)
		for j := range scores {
			k := hist[first+j][0][kvh*hd : (kvh+1)*hd]
			var s float64
			for i := range hd {
				s += qh[i] * k[i]
			}
			scores[j] = s * float64(p.Scale)
			peak = max(peak, scores[j])
		}
		var sum float64
		for j := range scores {
			scores[j] = math.Exp(scores[j] - peak)
			sum += scores[j]
		}
		for j, e := range scores {
			v := hist[first+j][1][kvh*hd : (kvh+1)*hd]
			for i := range hd {
				out[h*hd+i] += e / sum * v[i]
			}
		}
	}
	return out
}

// MoE returns the mixture-of-experts block applied to x [n, hidden], and the router logits
// [n, experts]: router logits x·gateᵀ, softmax over all experts, the topK most likely with
// their probabilities renormalised to sum 1, and the weighted sum of their outputs
// w2[e]·(silu(w1[e]·x) ⊙ w3[e]·x).
func MoE(x []float64, n, hidden, inner, experts, topK int, gate []float64, w1, w2, w3 [][]float64) (out, logits []float64) {
	logits = MatMul(x, n, gate, experts)
	out = make([]float64, n*hidden)
	for i := range n {
		l := logits[i*experts : (i+1)*experts]
		peak := math.Inf(-1)
		for _, v := range l {
			peak = max(peak, v)
		}
		p := make([]float64, experts)
		var sum float64
		for e, v := range l {
			p[e] = math.Exp(v - peak)
			sum += p[e]
		}
		chosen := map[int]bool{}
		var total float64
		var picks []int
		for range topK {
			best := -1
			for e := range experts {
				if !chosen[e] && (best < 0 || p[e] > p[best]) {
					best = e
				}
			}
			chosen[best] = true
			picks = append(picks, best)
			total += p[best] / sum
		}
		xi := x[i*hidden : (i+1)*hidden]
		for _, e := range picks {
			g, u := MatMul(xi, 1, w1[e], inner), MatMul(xi, 1, w3[e], inner)
			h := make([]float64, inner)
			for j := range h {
				h[j] = g[j] / (1 + math.Exp(-g[j])) * u[j]
			}
			y := MatMul(h, 1, w2[e], hidden)
			for j := range y {
				out[i*hidden+j] += p[e] / sum / total * y[j]
			}
		}
	}
	return out, logits
}
