package cpu

import (
	"math"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/internal/kernels"
)

// RoPE rotates each head of x in place by its token's position (rotate-half convention).
//
// The angles follow the reference exactly: inverse frequencies theta^(-2i/headDim) and the
// products position·frequency are float32, their cosine and sine rounded to float32.
func (b *Backend) RoPE(x backend.Tensor, bt backend.Batch, headDim int, theta float64) error {
	o := operands{b: b, op: "rope"}
	batch := o.batch(bt)
	if o.err != nil {
		return o.err
	}
	if err := backend.CheckRoPE(x, len(batch.tokens), headDim, theta); err != nil {
		return err
	}
	xs := o.data(x)
	if o.err != nil {
		return o.err
	}
	if err := b.lock(); err != nil {
		return err
	}
	defer b.mu.Unlock()
	half := headDim / 2
	if batch.ropeDim != headDim || batch.ropeTheta != theta {
		batch.ropeDim, batch.ropeTheta = headDim, theta
		n := len(batch.tokens) * half
		batch.cos, batch.sin = grow(batch.cos, n), grow(batch.sin, n)
		for i := range half {
			inv := float32(1 / float64(float32(math.Pow(theta, float64(float32(2*i)/float32(headDim))))))
			for t, tok := range batch.tokens {
				angle := float64(inv * float32(tok.Pos))
				batch.cos[t*half+i] = float32(math.Cos(angle))
				batch.sin[t*half+i] = float32(math.Sin(angle))
			}
		}
	}
	for t := range batch.tokens {
		cos, sin := batch.cos[t*half:(t+1)*half], batch.sin[t*half:(t+1)*half]
		row := xs[t*x.Cols : (t+1)*x.Cols]
		for h := 0; h < x.Cols; h += headDim {
			rotateHalf(row[h:h+headDim], cos, sin)
		}
	}
	return nil
}

// rotateHalf applies the rotation to one head: (x1, x2) → (x1·cos − x2·sin, x2·cos + x1·sin)
// with x1 the first half of the head and x2 the second. Kernel seam: belongs with
// internal/kernels.
func rotateHalf(x, cos, sin []float32) {
	half := len(x) / 2
	x1, x2 := x[:half], x[half:]
	for i := range x1 {
		a, c := x1[i], x2[i]
		x1[i] = a*cos[i] - c*sin[i]
		x2[i] = c*cos[i] + a*sin[i]
	}
}

// grow returns s resliced, or reallocated with room to spare, to length n.
func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n, max(n, 2*cap(s)))
	}
	return s[:n]
}

// Attention stores k and v in the cache, then attends each query head over its sequence.
func (b *Backend) Attention(dst, q, k, v backend.Tensor, bt backend.Batch, p backend.AttentionParams) error {
	o := operands{b: b, op: "attention"}
	batch := o.batch(bt)
	if o.err != nil {
		return o.err
	}
	c := batch.cache
	n := len(batch.tokens)
	if err := backend.CheckAttention(dst, q, k, v, n, c.cfg, p); err != nil {
		return err
	}
	d, qs, ks, vs := o.data(dst), o.data(q), o.data(k), o.data(v)
	if o.err != nil {
		return o.err
	}
	kvDim := p.KVHeads * p.HeadDim
	if err := b.lock(); err != nil {
		return err
	}
	defer b.mu.Unlock()
	if c.Closed() {
		return backend.ErrClosed
	}
	hd := p.HeadDim
	for t, slot := range batch.slots {
		for h := range p.KVHeads {
			at, from := c.at(p.Layer, h, slot), t*kvDim+h*hd
			copy(c.k[at:at+hd], ks[from:from+hd])
			copy(c.v[at:at+hd], vs[from:from+hd])
		}
	}
	longest := 0
	for _, tok := range batch.tokens {
		longest = max(longest, tok.Pos+1)
	}
	b.grow(longest)
	b.attention = attentionTask{b: b, p: p, batch: batch, dst: d, q: qs}
	b.pool.each(n*p.Heads, 1, 1, &b.attention)
	b.attention = attentionTask{}
	return nil
}

// attentionTask computes the (token, query head) pairs [lo, hi) of an attention step.
type attentionTask struct {
	b      *Backend
	p      backend.AttentionParams
	batch  *batch
	dst, q []float32
}

func (t *attentionTask) run(worker, lo, hi int) {
	p, c := &t.p, t.batch.cache
	hd, bs, group := p.HeadDim, c.cfg.BlockSize, p.Heads/p.KVHeads
	for item := lo; item < hi; item++ {
		i, h := item/p.Heads, item%p.Heads
		tok, table := t.batch.tokens[i], t.batch.tables[i]
		off := (i*p.Heads + h) * hd
		q, out := t.q[off:off+hd], t.dst[off:off+hd]
		first := 0
		if p.SlidingWindow > 0 {
			first = max(0, tok.Pos-p.SlidingWindow+1)
		}
		// Scores q·k of positions [first, tok.Pos], a block at a time, then their softmax.
		scores := t.b.scratch[worker].a[:tok.Pos+1-first]
		for pos := first; pos <= tok.Pos; {
			n := min(bs-pos%bs, tok.Pos+1-pos) // positions left in this block
			at := c.at(p.Layer, h/group, table[pos/bs]*bs+pos%bs)
			kernels.MatVecF32(scores[pos-first:pos-first+n], c.k[at:at+n*hd], q, hd)
			pos += n
		}
		kernels.Scale(scores, p.Scale)
		kernels.Softmax(scores)
		clear(out)
		for j, w := range scores {
			pos := first + j
			at := c.at(p.Layer, h/group, table[pos/bs]*bs+pos%bs)
			kernels.Axpy(w, c.v[at:at+hd], out)
		}
	}
}
