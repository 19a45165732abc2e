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
	if err := backend.CheckRoPE(x, len(batch.Tokens), headDim, theta); err != nil {
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
		n := len(batch.Tokens) * half
		batch.cos, batch.sin = grow(batch.cos, n), grow(batch.sin, n)
		for i := range half {
			inv := float32(1 / float64(float32(math.Pow(theta, float64(float32(2*i)/float32(headDim))))))
			for t, tok := range batch.Tokens {
				angle := float64(inv * float32(tok.Pos))
				batch.cos[t*half+i] = float32(math.Cos(angle))
				batch.sin[t*half+i] = float32(math.Sin(angle))
			}
		}
	}
	for t := range batch.Tokens {
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
	n := len(batch.Tokens)
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
	if c.closed.Load() {
		return backend.ErrClosed
	}
	if err := batch.CheckWindow(p.SlidingWindow); err != nil {
		return err
	}
	hd, bs := p.HeadDim, c.cfg.BlockSize
	for t, slot := range batch.Slots {
		for h := range p.KVHeads {
			from := t*kvDim + h*hd
			c.store(c.block(p.Layer, h, slot/bs), slot%bs, ks[from:from+hd], vs[from:from+hd])
		}
	}
	t := &b.attention
	t.b, t.p, t.batch, t.dst, t.q = b, p, batch, d, qs
	t.plan()
	b.pool.each(len(t.items), 1, len(t.items), t)
	t.b, t.batch, t.dst, t.q = nil, nil, nil, nil
	return nil
}

// Attention computes every query row (a token's query head) in one way, whatever else the
// step holds, so that a token's result does not depend on its batch (the prefix cache and
// seeded sampling rest on it): its scores q·k over the positions it attends to, each summed
// over the head in order (kernels.MatMulAdd, the same bits whatever rows and positions share
// the product); scaled, their softmax over the whole row; then for each cache block (blocks
// are aligned to absolute positions) the values weighted by the probabilities of the block's
// positions, summed in position order, added to the output. A tile of query rows (the query
// heads that share a KV head, of up to tileRows consecutive tokens of one sequence) shares
// the reading of the keys and values a block at a time: the keys meet all its rows in one
// product, and the values all its rows in another, the positions a row does not attend to
// adding exact zeros.
const tileRows = 64

// attentionItem is a unit of attention: KV head h for the batch tokens [t0, t1),
// consecutive positions of one sequence.
type attentionItem struct {
	h, t0, t1 int
}

// attentionTask is one Attention call: its query tiles. Its buffers are kept from call to
// call.
type attentionTask struct {
	b      *Backend
	p      backend.AttentionParams
	batch  *batch
	dst, q []float32

	items []attentionItem
	tiles []tileScratch // per worker
}

// tileScratch is a worker's memory for one query tile: the query rows and their outputs.
type tileScratch struct {
	q, o []float32
}

// first returns the first position that a token at pos attends to.
func (t *attentionTask) first(pos int) int {
	if t.p.SlidingWindow > 0 {
		return max(0, pos-t.p.SlidingWindow+1)
	}
	return 0
}

// plan lists the query tiles: for each run of tokens of one sequence at consecutive
// positions and each KV head, tiles of up to tileRows query rows, the last tokens of a run
// (which attend to the most positions) first.
func (t *attentionTask) plan() {
	p, toks := &t.p, t.batch.Tokens
	group := p.Heads / p.KVHeads
	perTile := max(1, tileRows/group)
	t.items = t.items[:0]
	for i := 0; i < len(toks); {
		j := i + 1
		for j < len(toks) && toks[j].Seq == toks[i].Seq && toks[j].Pos == toks[j-1].Pos+1 {
			j++
		}
		for h := range p.KVHeads {
			for q := j; q > i; q -= perTile {
				t.items = append(t.items, attentionItem{h, max(q-perTile, i), q})
			}
		}
		i = j
	}
	for len(t.tiles) < t.b.pool.workers {
		t.tiles = append(t.tiles, tileScratch{})
	}
}

func (t *attentionTask) run(worker, lo, hi int) {
	for _, it := range t.items[lo:hi] {
		t.tile(worker, it)
	}
}

// tile computes the attention of the query rows of one tile.
func (t *attentionTask) tile(worker int, it attentionItem) {
	p, c, toks := &t.p, t.batch.cache, t.batch.Tokens
	hd, bs, group := p.HeadDim, c.cfg.BlockSize, p.Heads/p.KVHeads
	i0, i1 := it.t0, it.t1
	m := (i1 - i0) * group
	s, w := &t.tiles[worker], &t.b.scratch[worker]
	s.q = grow(s.q, m*hd)
	for i := i0; i < i1; i++ {
		from := (i*p.Heads + it.h*group) * hd
		copy(s.q[(i-i0)*group*hd:], t.q[from:from+group*hd])
	}
	// The tile reads the positions [lo, hi), in the blocks [b0, b1); row r's scores, then
	// its probabilities, are a[r*width:][:width], position b0·bs + j at j.
	lo, hi := t.first(toks[i0].Pos), toks[i1-1].Pos+1
	b0, b1 := lo/bs, (hi+bs-1)/bs
	width := (b1 - b0) * bs
	growAligned(&w.a, m*width)
	a := w.a[:m*width]
	table := t.batch.Table(i0)
	for b := b0; b < b1; b++ {
		if b+1 < b1 {
			c.prefetch(c.block(p.Layer, it.h, table[b+1]), false)
		}
		c.scores(a[(b-b0)*bs:], width, s.q, m, c.block(p.Layer, it.h, table[b]))
	}
	for r := range m {
		pos := toks[i0+r/group].Pos
		f, e := t.first(pos)-b0*bs, pos+1-b0*bs
		row := a[r*width : (r+1)*width]
		kernels.Scale(row[f:e], p.Scale)
		kernels.Softmax(row[f:e])
		clear(row[:f])
		clear(row[e:])
	}
	s.o = grow(s.o, m*hd)
	clear(s.o)
	for b := b0; b < b1; b++ {
		if b+1 < b1 {
			c.prefetch(c.block(p.Layer, it.h, table[b+1]), true)
		}
		from, to := max(lo, b*bs), min(hi, (b+1)*bs)
		c.weigh(s.o, a[from-b0*bs:], width, m, c.block(p.Layer, it.h, table[b]), from-b*bs, to-from)
	}
	for r := range m {
		copy(t.out(i0, r, it.h), s.o[r*hd:(r+1)*hd])
	}
}

// out returns the output of row r of the tile of KV head h whose first token is i0.
func (t *attentionTask) out(i0, r, h int) []float32 {
	group, hd := t.p.Heads/t.p.KVHeads, t.p.HeadDim
	at := ((i0+r/group)*t.p.Heads + h*group + r%group) * hd
	return t.dst[at : at+hd]
}
