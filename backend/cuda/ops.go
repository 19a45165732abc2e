//go:build cuda && cgo

package cuda

/*
#include "fathom_cuda.h"
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/fathom-llm/fathom/backend"
)

// The operations: each checks its operands with the backend package's check, resolves its
// handles to device addresses and launches its kernels. Every method here runs under the
// backend's lock.

// Embed copies the embedding rows of the batch's tokens into dst.
func (u *unlocked) Embed(dst backend.Tensor, table backend.Weight, bt backend.Batch) error {
	o := u.operands("embed")
	b := o.batch(bt)
	if o.err != nil {
		return o.err
	}
	if err := backend.CheckEmbed(dst, table, b.Tokens); err != nil {
		return err
	}
	d, w := o.ptr(dst), o.weight(table)
	if o.err != nil {
		return o.err
	}
	return check(C.fc_embed(u.ctx, d, w.w, b.dev(b.layout.ids), C.int(dst.Rows)), "embed")
}

// gain returns the device address of an RMSNorm gain, which the kernels read as float32.
func gain(op string, w *weight) (*C.float, error) {
	if w.w.dtype != C.FC_F32 {
		return nil, fmt.Errorf("%w: %s gain stored quantized: bind norm gains as stored", backend.ErrDType, op)
	}
	return (*C.float)(w.w.data), nil
}

// RMSNorm normalises each row of x into dst.
func (u *unlocked) RMSNorm(dst, x backend.Tensor, w backend.Weight, eps float32) error {
	if err := backend.CheckRMSNorm(dst, x, w); err != nil {
		return err
	}
	o := u.operands("rmsnorm")
	d, xs, nw := o.ptr(dst), o.ptr(x), o.weight(w)
	if o.err != nil {
		return o.err
	}
	g, err := gain("rmsnorm", nw)
	if err != nil {
		return err
	}
	return check(C.fc_rmsnorm(u.ctx, d, xs, g, C.int(x.Rows), C.int(x.Cols), C.float(eps)), "rmsnorm")
}

// AddRMSNorm sets x += r and dst = RMSNorm(x)·w in one kernel.
func (u *unlocked) AddRMSNorm(dst, x, r backend.Tensor, w backend.Weight, eps float32) error {
	if err := backend.CheckAddRMSNorm(dst, x, r, w); err != nil {
		return err
	}
	o := u.operands("add-rmsnorm")
	d, xs, rs, nw := o.ptr(dst), o.ptr(x), o.ptr(r), o.weight(w)
	if o.err != nil {
		return o.err
	}
	g, err := gain("add-rmsnorm", nw)
	if err != nil {
		return err
	}
	return check(C.fc_add_rmsnorm(u.ctx, d, xs, rs, g, C.int(x.Rows), C.int(x.Cols), C.float(eps)), "add-rmsnorm")
}

// MatMul sets dst = x·wᵀ: GEMV kernels for a few rows, tensor-core GEMM otherwise.
func (u *unlocked) MatMul(dst, x backend.Tensor, w backend.Weight) error {
	if err := backend.CheckMatMul(dst, x, w); err != nil {
		return err
	}
	o := u.operands("matmul")
	d, xs, mw := o.ptr(dst), o.ptr(x), o.weight(w)
	if o.err != nil {
		return o.err
	}
	return u.matmul(d, xs, mw.w, x.Rows)
}

// matmul launches the GEMV or GEMM kernel. The tensor cores take bfloat16, float16 and int8
// weights; a float32 weight (a single row) runs as GEMVs of a few rows.
func (u *unlocked) matmul(d, x *C.float, w C.fc_weight, n int) error {
	if n <= gemvMaxRows || w.dtype == C.FC_F32 {
		for lo := 0; lo < n; lo += gemvMaxRows {
			rows := min(gemvMaxRows, n-lo)
			dp := (*C.float)(unsafe.Add(unsafe.Pointer(d), 4*lo*int(w.rows)))
			xp := (*C.float)(unsafe.Add(unsafe.Pointer(x), 4*lo*int(w.cols)))
			if err := check(C.fc_gemv(u.ctx, dp, xp, w, C.int(rows)), "gemv"); err != nil {
				return err
			}
		}
		return nil
	}
	if err := u.grow(&u.gemmA, 4*n*pad8(int(w.cols)), "gemm operand"); err != nil {
		return err
	}
	return check(C.fc_gemm(u.ctx, d, x, w, C.int(n), u.gemmA.p, u.exact()), "gemm")
}

// Add sets dst += x.
func (u *unlocked) Add(dst, x backend.Tensor) error {
	if err := backend.CheckAdd(dst, x); err != nil {
		return err
	}
	o := u.operands("add")
	d, xs := o.ptr(dst), o.ptr(x)
	if o.err != nil {
		return o.err
	}
	return check(C.fc_add(u.ctx, d, xs, C.size_t(x.Rows*x.Cols)), "add")
}

// Gather copies rows of src into dst.
func (u *unlocked) Gather(dst, src backend.Tensor, rows []int) error {
	if err := backend.CheckGather(dst, src, rows); err != nil {
		return err
	}
	o := u.operands("gather")
	d, s := o.ptr(dst), o.ptr(src)
	if o.err != nil || len(rows) == 0 {
		return o.err
	}
	idx := make([]int32, len(rows))
	for i, r := range rows {
		idx[i] = int32(r)
	}
	if err := u.grow(&u.gatherRows, 4*len(idx), "gather rows"); err != nil {
		return err
	}
	if err := u.upload(u.gatherRows.p, unsafe.Pointer(&idx[0]), 4*len(idx), "gather rows"); err != nil {
		return err
	}
	return check(C.fc_gather(u.ctx, d, s, (*C.int32_t)(u.gatherRows.p), C.int(len(idx)), C.int(src.Cols)), "gather")
}

// RoPE rotates each head of x in place by its token's position.
func (u *unlocked) RoPE(x backend.Tensor, bt backend.Batch, headDim int, theta float64) error {
	o := u.operands("rope")
	b := o.batch(bt)
	if o.err != nil {
		return o.err
	}
	if err := backend.CheckRoPE(x, len(b.Tokens), headDim, theta); err != nil {
		return err
	}
	xs := o.ptr(x)
	if o.err != nil {
		return o.err
	}
	key := ropeKey{headDim, theta}
	inv, ok := u.rope[key]
	if !ok {
		freq := ropeInverseFrequencies(headDim, theta)
		var err error
		if inv, err = u.alloc(4*len(freq), "rope frequencies"); err != nil {
			return err
		}
		if err := u.upload(inv, unsafe.Pointer(&freq[0]), 4*len(freq), "rope frequencies"); err != nil {
			u.free(inv)
			return err
		}
		u.rope[key] = inv
	}
	return check(C.fc_rope(u.ctx, xs, b.dev(b.layout.pos), (*C.float)(inv), C.int(x.Rows), C.int(x.Cols), C.int(headDim)), "rope")
}

// Attention stores k and v in the cache and attends each query head over its sequence.
func (u *unlocked) Attention(dst, q, k, v backend.Tensor, bt backend.Batch, p backend.AttentionParams) error {
	o := u.operands("attention")
	b := o.batch(bt)
	if o.err != nil {
		return o.err
	}
	c, n := b.cache, len(b.Tokens)
	if err := backend.CheckAttention(dst, q, k, v, n, c.cfg, p); err != nil {
		return err
	}
	d, qs, ks, vs := o.ptr(dst), o.ptr(q), o.ptr(k), o.ptr(v)
	if o.err != nil {
		return o.err
	}
	if c.closed.Load() {
		return backend.ErrClosed
	}
	if err := b.CheckWindow(p.SlidingWindow); err != nil {
		return err
	}
	kvDim := p.KVHeads * p.HeadDim
	layerOff := C.size_t(p.Layer * c.cfg.Blocks * c.cfg.BlockSize * kvDim)
	if err := check(C.fc_kv_store(u.ctx, c.k, c.v, ks, vs, b.dev(b.layout.slot), C.int(n), C.int(kvDim), layerOff), "kv store"); err != nil {
		return err
	}
	// The split count depends on the longest window the cache can hold, not on the
	// positions, so that a recorded step replays for later positions.
	maxLen := c.cfg.Blocks * c.cfg.BlockSize
	if p.SlidingWindow > 0 {
		maxLen = min(maxLen, p.SlidingWindow)
	}
	splits := attentionSplits(n, p.KVHeads, maxLen, u.sms)
	var acc, ml *C.float
	if splits > 1 {
		parts := n * p.Heads * splits
		accBytes := (4*parts*p.HeadDim + scratchAlign - 1) / scratchAlign * scratchAlign
		if err := u.grow(&u.attnPart, accBytes+8*parts, "attention partials"); err != nil {
			return err
		}
		acc, ml = (*C.float)(u.attnPart.p), (*C.float)(unsafe.Add(u.attnPart.p, accBytes))
	}
	ap := C.fc_attn_params{
		n: C.int(n), heads: C.int(p.Heads), kv_heads: C.int(p.KVHeads), head_dim: C.int(p.HeadDim),
		block_size: C.int(c.cfg.BlockSize), window: C.int(p.SlidingWindow), splits: C.int(splits),
		layer_offset: layerOff, scale: C.float(p.Scale),
	}
	return check(C.fc_attention(u.ctx, d, qs, c.k, c.v, b.dev(b.layout.pos), b.dev(b.layout.tableOff),
		b.dev(b.layout.tables), ap, acc, ml), "attention")
}

// MoE runs a mixture-of-experts block: one routing kernel, then the experts as grouped GEMMs
// (or, for a few tokens, GEMVs over the chosen experts), then the weighted sum.
func (u *unlocked) MoE(dst, x backend.Tensor, e backend.Experts, topK int, router backend.Tensor) error {
	if err := backend.CheckMoE(dst, x, e, topK, router); err != nil {
		return err
	}
	o := u.operands("moe")
	d, xs, ex := o.ptr(dst), o.ptr(x), o.experts(e)
	var logits *C.float
	if router.Buf != nil {
		logits = o.ptr(router)
	}
	if o.err != nil {
		return o.err
	}
	n := x.Rows
	if n == 0 {
		return nil
	}
	l := moeScratchLayout(n, topK, ex.count, ex.hidden, ex.inner)
	blas := u.blasExperts(ex, n)
	bytes := l.bytes
	if blas {
		bytes = l.xa // the routing's arrays; moeBLAS places the experts' buffers
	}
	if err := u.grow(&u.moeScratch, bytes, "moe scratch"); err != nil {
		return err
	}
	at := func(off int) unsafe.Pointer { return unsafe.Add(u.moeScratch.p, off) }
	a := C.fc_moe_args{
		n: C.int(n), hidden: C.int(ex.hidden), inner: C.int(ex.inner), experts: C.int(ex.count), top_k: C.int(topK),
		x: xs, out: d, logits: logits, gate: (*C.float)(ex.gate), w1: ex.w1, w2: ex.w2, w3: ex.w3,
		choice: (*C.int32_t)(at(l.choice)), gain: (*C.float)(at(l.gain)), offsets: (*C.int32_t)(at(l.offsets)),
		sorted_token: (*C.int32_t)(at(l.sortedToken)), sorted_gain: (*C.float)(at(l.sortedGain)),
		inv: (*C.int32_t)(at(l.inv)), tiles: (*C.int32_t)(at(l.tiles)), max_tiles: C.int(l.maxTiles),
		tile_count: (*C.int32_t)(at(l.tileCount)), h: at(l.h), y: (*C.float)(at(l.y)),
	}
	if n <= moeGEMVTokens {
		a.gemv = 1
	}
	a.exact = u.exact()
	if blas {
		return u.moeBLAS(&a)
	}
	a.xa = at(l.xa)
	return check(C.fc_moe(u.ctx, &a), "moe")
}
