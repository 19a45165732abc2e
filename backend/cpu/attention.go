package cpu

import (
	"math"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/internal/kernels"
	"github.com/fathom-llm/fathom/safetensors"
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
	hd := p.HeadDim
	for t, slot := range batch.Slots {
		for h := range p.KVHeads {
			from := t*kvDim + h*hd
			c.store(c.at(p.Layer, h, slot), ks[from:from+hd], vs[from:from+hd])
		}
	}
	t := &b.attention
	t.b, t.p, t.batch, t.dst, t.q = b, p, batch, d, qs
	t.plan()
	longest := 0
	for _, i := range t.single {
		longest = max(longest, batch.Tokens[i].Pos+1)
	}
	b.grow(longest)
	for i := range b.scratch {
		growAligned(&b.scratch[i].v, c.cfg.BlockSize*hd)
	}
	b.pool.each(len(t.gathers), 1, len(t.gathers), (*gatherTask)(t))
	b.pool.each(len(t.items)+len(t.single)*p.Heads, 1, len(t.items)+len(t.single)*p.Heads, t)
	t.b, t.batch, t.dst, t.q = nil, nil, nil, nil
	return nil
}

// Prefill attention is tiled. The tokens of a step that continue one sequence at consecutive
// positions (a prompt, or a chunk of one) form a run; for each KV head, the keys that a run
// attends to are gathered from the cache's blocks in tiles of tileKeys positions, each tile's
// keys transposed ([headDim, width]) and its values as they are ([width, headDim]), the
// width padded with zeros to a multiple of tilePad. A tile of queries (up to tileRows rows: a
// few of the run's tokens, each with the query heads that share the KV head) then meets one
// key tile after another in two unpacked products (kernels.MatMulAdd: scores = Q·Kᵀ, then
// O += P·V), with the softmax kept online: each row's running maximum and sum rescale what
// earlier tiles added. Tokens attended one by one (decoding) score the cache's blocks in
// place.
const (
	// tiledTokens is the fewest tokens of a run for which it takes the tiled path.
	tiledTokens = 4
	// tileRows is the most query rows of a tile.
	tileRows = 64
	// tileKeys is the number of key positions of a key tile.
	tileKeys = 256
	// tilePad is the multiple to which a key tile's width is padded: the width of the
	// products' vector panels.
	tilePad = 32
)

// attentionRun is a run of a step's tokens: batch tokens [i0, i1), consecutive positions of
// one sequence, which attend to the positions [k0, k1). Key tile j of KV head h starts at
// kv[off + (h·tiles + j)·2·tileKeys·headDim] of the task, tiles = ⌈(k1-k0)/tileKeys⌉: the
// transposed keys, then the values.
type attentionRun struct {
	i0, i1, k0, k1, off int
}

// tiles returns the number of key tiles of r.
func (r *attentionRun) tiles() int { return (r.k1 - r.k0 + tileKeys - 1) / tileKeys }

// keyTile returns the transposed keys ([headDim, width]) and the values ([width, headDim]) of
// key tile j of KV head h of r in kv, and the tile's width padded to tilePad.
func (r *attentionRun) keyTile(kv []float32, h, j, hd int) (keys, values []float32, width int) {
	width = (min(tileKeys, r.k1-r.k0-j*tileKeys) + tilePad - 1) / tilePad * tilePad
	at := r.off + (h*r.tiles()+j)*2*tileKeys*hd
	return kv[at : at+hd*width], kv[at+hd*width : at+2*hd*width], width
}

// attentionItem is a unit of the tiled attention: for KV head h of run r, the query tile of
// the batch tokens [t0, t1); or, for gathering, key tile t0.
type attentionItem struct {
	r, h, t0, t1 int
}

// attentionTask is one Attention call: the tiled items of its runs, then the (token, query
// head) pairs of its single tokens. Its buffers are kept from call to call.
type attentionTask struct {
	b      *Backend
	p      backend.AttentionParams
	batch  *batch
	dst, q []float32

	runs    []attentionRun
	gathers []attentionItem // key tiles to gather
	items   []attentionItem // query tiles
	single  []int           // batch indices of the tokens attended one by one
	kv      []float32       // the runs' gathered keys and values
	tiles   []tileScratch   // per worker
}

// tileScratch is a worker's memory for one query tile: the scaled queries, a key tile's
// scores (then probabilities), the output, each row's running maximum and sum; and for
// gathering, a block of keys widened to float32.
type tileScratch struct {
	q, s, o, k []float32
	max        []float32
	sum        []float64
}

// first returns the first position that a token at pos attends to.
func (t *attentionTask) first(pos int) int {
	if t.p.SlidingWindow > 0 {
		return max(0, pos-t.p.SlidingWindow+1)
	}
	return 0
}

// plan splits the batch into runs and single tokens and lists the work items.
func (t *attentionTask) plan() {
	p, toks := &t.p, t.batch.Tokens
	hd, group := p.HeadDim, p.Heads/p.KVHeads
	perTile := max(1, tileRows/group)
	t.runs, t.gathers, t.items, t.single = t.runs[:0], t.gathers[:0], t.items[:0], t.single[:0]
	size := 0
	for i := 0; i < len(toks); {
		j := i + 1
		for j < len(toks) && toks[j].Seq == toks[i].Seq && toks[j].Pos == toks[j-1].Pos+1 {
			j++
		}
		if j-i < tiledTokens {
			for k := i; k < j; k++ {
				t.single = append(t.single, k)
			}
			i = j
			continue
		}
		r := attentionRun{i0: i, i1: j, k0: t.first(toks[i].Pos), k1: toks[j-1].Pos + 1, off: size}
		size += p.KVHeads * r.tiles() * 2 * tileKeys * hd
		for h := range p.KVHeads {
			for k := range r.tiles() {
				t.gathers = append(t.gathers, attentionItem{r: len(t.runs), h: h, t0: k})
			}
			// The last query tiles attend to the most keys: they go first.
			for q := r.i1; q > r.i0; q -= perTile {
				t.items = append(t.items, attentionItem{len(t.runs), h, max(q-perTile, r.i0), q})
			}
		}
		t.runs = append(t.runs, r)
		i = j
	}
	t.kv = grow(t.kv, size)
	for len(t.tiles) < t.b.pool.workers {
		t.tiles = append(t.tiles, tileScratch{})
	}
	for i := range t.tiles {
		t.tiles[i].k = grow(t.tiles[i].k, t.batch.cache.cfg.BlockSize*hd)
	}
}

// gatherTask gathers key tiles of the runs (attentionTask.gathers).
type gatherTask attentionTask

func (g *gatherTask) run(worker, lo, hi int) {
	t := (*attentionTask)(g)
	p, c := &t.p, t.batch.cache
	hd, bs := p.HeadDim, c.cfg.BlockSize
	for _, it := range t.gathers[lo:hi] {
		r := &t.runs[it.r]
		keys, values, width := r.keyTile(t.kv, it.h, it.t0, hd)
		table := t.batch.Table(r.i0)
		tmp := t.tiles[worker].k[:bs*hd]
		k0 := it.t0 * tileKeys
		n := min(tileKeys, r.k1-r.k0-k0) // positions of the tile
		for k := 0; k < n; {
			pos := r.k0 + k0 + k
			m := min(bs-pos%bs, n-k) // positions left in this block
			at := c.at(p.Layer, it.h, table[pos/bs]*bs+pos%bs)
			c.load(values[k*hd:(k+m)*hd], at, false)
			c.load(tmp[:m*hd], at, true)
			for j := range m {
				for d, x := range tmp[j*hd : (j+1)*hd] {
					keys[d*width+k+j] = x
				}
			}
			k += m
		}
		clear(values[n*hd:])
		for d := range hd {
			clear(keys[d*width+n : (d+1)*width])
		}
	}
}

func (t *attentionTask) run(worker, lo, hi int) {
	for item := lo; item < hi; item++ {
		if item < len(t.items) {
			t.tile(worker, t.items[item])
			continue
		}
		k := item - len(t.items)
		t.one(worker, t.single[k/t.p.Heads], k%t.p.Heads)
	}
}

// tile computes the attention of one query tile of a run over the run's gathered keys.
func (t *attentionTask) tile(worker int, it attentionItem) {
	p, r, toks := &t.p, &t.runs[it.r], t.batch.Tokens
	hd, group := p.HeadDim, p.Heads/p.KVHeads
	i0, i1 := it.t0, it.t1
	m := (i1 - i0) * group
	s := &t.tiles[worker]
	s.q, s.s, s.o = grow(s.q, m*hd), grow(s.s, m*tileKeys), grow(s.o, m*hd)
	s.max, s.sum = grow(s.max, m), growF64(s.sum, m)
	// The tile's query rows: token i's query heads of KV head h are contiguous in q.
	for i := i0; i < i1; i++ {
		from := (i*p.Heads + it.h*group) * hd
		copy(s.q[(i-i0)*group*hd:], t.q[from:from+group*hd])
	}
	kernels.Scale(s.q, p.Scale)
	clear(s.o)
	clear(s.sum)
	for i := range s.max {
		s.max[i] = float32(math.Inf(-1))
	}
	lo, hi := t.first(toks[i0].Pos)-r.k0, toks[i1-1].Pos+1-r.k0 // the keys of the tile's rows
	for j := lo / tileKeys; j*tileKeys < hi; j++ {
		keys, values, w := r.keyTile(t.kv, it.h, j, hd)
		k0 := j * tileKeys
		scores := s.s[:m*w]
		clear(scores)
		kernels.MatMulAdd(scores, s.q, keys, m, hd, w)
		for row := range m {
			pos := toks[i0+row/group].Pos
			a, b := max(0, t.first(pos)-r.k0-k0), min(w, pos+1-r.k0-k0)
			sr := scores[row*w : (row+1)*w]
			if a >= b {
				clear(sr)
				continue
			}
			clear(sr[:a])
			clear(sr[b:])
			seg := sr[a:b]
			top := max(s.max[row], kernels.Max(seg))
			sum := kernels.ExpSum(seg, seg, top, 1)
			if top != s.max[row] {
				if s.sum[row] != 0 {
					alpha := math.Exp(float64(s.max[row] - top))
					s.sum[row] *= alpha
					kernels.Scale(s.o[row*hd:(row+1)*hd], float32(alpha))
				}
				s.max[row] = top
			}
			s.sum[row] += sum
		}
		kernels.MatMulAdd(s.o, scores, values, m, w, hd)
	}
	for row := range m {
		o := s.o[row*hd : (row+1)*hd]
		kernels.Scale(o, float32(1/s.sum[row]))
		i, g := i0+row/group, row%group
		copy(t.dst[(i*p.Heads+it.h*group+g)*hd:], o)
	}
}

// one computes the attention of query head h of batch token i, block by block of the cache.
func (t *attentionTask) one(worker, i, h int) {
	p, c := &t.p, t.batch.cache
	hd, bs, group := p.HeadDim, c.cfg.BlockSize, p.Heads/p.KVHeads
	tok, table := t.batch.Tokens[i], t.batch.Table(i)
	off := (i*p.Heads + h) * hd
	q, out := t.q[off:off+hd], t.dst[off:off+hd]
	first := t.first(tok.Pos)
	// Scores q·k of positions [first, tok.Pos], a block at a time, then their softmax.
	scores := t.b.scratch[worker].a[:tok.Pos+1-first]
	for pos := first; pos <= tok.Pos; {
		n := min(bs-pos%bs, tok.Pos+1-pos) // positions left in this block
		at := c.at(p.Layer, h/group, table[pos/bs]*bs+pos%bs)
		c.scores(scores[pos-first:pos-first+n], at, q)
		pos += n
	}
	kernels.Scale(scores, p.Scale)
	kernels.Softmax(scores)
	// The values, weighted by the scores, a block at a time.
	clear(out)
	for pos := first; pos <= tok.Pos; {
		n := min(bs-pos%bs, tok.Pos+1-pos)
		at := c.at(p.Layer, h/group, table[pos/bs]*bs+pos%bs)
		vals := c.values(t.b.scratch[worker].v, at, n, hd)
		for j := range n {
			kernels.Axpy(scores[pos-first+j], vals[j*hd:(j+1)*hd], out)
		}
		pos += n
	}
}

// load sets dst to the len(dst)/headDim keys (or values) from offset at of c, widened to
// float32.
func (c *cache) load(dst []float32, at int, keys bool) {
	switch c.cfg.DType {
	case safetensors.F32:
		src := c.v32
		if keys {
			src = c.k32
		}
		copy(dst, src[at:at+len(dst)])
	case safetensors.BF16:
		src := c.v16
		if keys {
			src = c.k16
		}
		kernels.BF16ToF32Slice(dst, src[at:at+len(dst)])
	default:
		src := c.v16
		if keys {
			src = c.k16
		}
		kernels.F16ToF32Slice(dst, src[at:at+len(dst)])
	}
}

// growF64 is grow for float64s.
func growF64(s []float64, n int) []float64 {
	if cap(s) < n {
		return make([]float64, n, max(n, 2*cap(s)))
	}
	return s[:n]
}
