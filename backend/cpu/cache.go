package cpu

import (
	"math"
	"sync/atomic"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/internal/half"
	"github.com/fathom-llm/fathom/internal/kernels"
	"github.com/fathom-llm/fathom/internal/mem"
	"github.com/fathom-llm/fathom/safetensors"
)

// cache is a paged KV cache in host memory, its keys and values stored in float16 (the
// default), bfloat16 or float32. The keys and the values of one layer, block and KV head
// start at the same offset ((l*blocks+p)*kvHeads+h)*blockSize*headDim of k and v (block p,
// head h, layer l): the values a [blockSize, headDim] matrix, a position per row; the keys
// its transpose, [headDim, blockSize], so that attention's scores of a block are one product
// of the query rows with the keys as they are stored, each score summed over the head in
// order (kernels.MatMulAdd), and its weighted values one product with the values.
type cache struct {
	owner  *Backend
	cfg    backend.CacheConfig
	closed atomic.Bool
	// k and v hold float32 values in k32, v32, or 16-bit ones in k16, v16.
	k32, v32 []float32
	k16, v16 []uint16
	release  func() // unmaps the memory of k and v, outside the Go heap (mem.Owned)
	batch    batch  // the batch of the last Prepare
}

// cacheTypes are the element types the CPU cache stores, its default first.
var cacheTypes = []safetensors.DType{safetensors.F16, safetensors.BF16, safetensors.F32}

// NewCache allocates a KV cache of cfg.Blocks blocks of cfg.BlockSize positions.
func (b *Backend) NewCache(cfg backend.CacheConfig) (backend.Cache, error) {
	cfg, err := backend.CheckCacheConfig(cfg, cacheTypes...)
	if err != nil {
		return nil, err
	}
	size := float64(cfg.Layers) * float64(cfg.Blocks) * float64(cfg.BlockSize) * float64(cfg.KVHeads*cfg.HeadDim)
	if size > math.MaxInt32*8 {
		return nil, backend.Shapef("cache config %+v: %g values", cfg, size)
	}
	c := &cache{owner: b, cfg: cfg}
	n := int(size)
	region, release := mem.Owned(c, 2*n*cfg.DType.Size()) // Close releases it, or the collector
	c.release = release
	if cfg.DType == safetensors.F32 {
		kv := view[float32](region)
		c.k32, c.v32 = kv[:n:n], kv[n:]
	} else {
		kv := view[uint16](region)
		c.k16, c.v16 = kv[:n:n], kv[n:]
	}
	c.batch.cache = c
	return c, nil
}

func (c *cache) Config() backend.CacheConfig { return c.cfg }

// Close drops the cache's memory; later calls fail with backend.ErrClosed.
func (c *cache) Close() error {
	// Attention uses the memory under the backend's lock.
	c.owner.mu.Lock()
	defer c.owner.mu.Unlock()
	c.closed.Store(true)
	c.k32, c.v32, c.k16, c.v16 = nil, nil, nil, nil
	c.release()
	return nil
}

// Prepare checks the step's tokens and tables and returns its batch, reused by the next
// Prepare.
func (c *cache) Prepare(tokens []backend.Token, tables [][]int) (backend.Batch, error) {
	if c.closed.Load() {
		return nil, backend.ErrClosed
	}
	bt := &c.batch
	bt.ropeDim = 0
	if err := bt.Prepare(tokens, tables, c.cfg); err != nil {
		bt.Tokens = bt.Tokens[:0]
		return nil, err
	}
	return bt, nil
}

// batch is a prepared step: its tokens and tables, and the RoPE angles of the last RoPE
// call.
type batch struct {
	cache *cache
	backend.BatchTables

	ropeDim   int
	ropeTheta float64
	cos, sin  []float32 // [token][ropeDim/2]
}

// Len is the number of tokens in the batch.
func (bt *batch) Len() int { return len(bt.Tokens) }

// block returns the offset in k and v of the keys and values of layer l, KV head h and
// cache block p.
func (c *cache) block(l, h, p int) int {
	return ((l*c.cfg.Blocks+p)*c.cfg.KVHeads + h) * c.cfg.BlockSize * c.cfg.HeadDim
}

// store writes one head's key and value at position o of the block at offset at, converted
// to the stored type.
func (c *cache) store(at, o int, k, v []float32) {
	bs := c.cfg.BlockSize
	kt, vt := at+o, at+o*len(v) // the key's first element, a column; the value's row
	switch c.cfg.DType {
	case safetensors.F32:
		for i := range k {
			c.k32[kt+i*bs] = k[i]
		}
		copy(c.v32[vt:vt+len(v)], v)
	case safetensors.BF16:
		for i := range k {
			c.k16[kt+i*bs], c.v16[vt+i] = half.F32ToBF16(k[i]), half.F32ToBF16(v[i])
		}
	default:
		for i := range k {
			c.k16[kt+i*bs], c.v16[vt+i] = half.F32ToF16(k[i]), half.F32ToF16(v[i])
		}
	}
}

// prefetch asks for the keys, or the values, of the block at offset at to be brought into
// L1 while attention computes over the block before it.
func (c *cache) prefetch(at int, values bool) {
	n := c.cfg.BlockSize * c.cfg.HeadDim
	s32, s16 := c.k32, c.k16
	if values {
		s32, s16 = c.v32, c.v16
	}
	if c.cfg.DType == safetensors.F32 {
		kernels.Prefetch(s32[at : at+n])
	} else {
		kernels.Prefetch(s16[at : at+n])
	}
}

// scores sets out[r*ldo+j] = q_r·key_j for the m query rows q_r of q ([m, headDim]) and the
// positions j of the block at offset at (all blockSize of them, whether written or not).
func (c *cache) scores(out []float32, ldo int, q []float32, m, at int) {
	hd, bs := c.cfg.HeadDim, c.cfg.BlockSize
	switch c.cfg.DType {
	case safetensors.F32:
		kernels.MatMulAdd(out, ldo, q, hd, c.k32[at:at+hd*bs], bs, m, hd, bs, false)
	case safetensors.BF16:
		kernels.MatMulAddBF16(out, ldo, q, hd, c.k16[at:at+hd*bs], bs, m, hd, bs, false)
	default:
		kernels.MatMulAddF16(out, ldo, q, hd, c.k16[at:at+hd*bs], bs, m, hd, bs, false)
	}
}

// weigh adds to out ([m, headDim]) the values of the n positions from position o of the
// block at offset at weighted by p (row r's weights from p[r*ldp]): Σ_j p[r*ldp+j]·value_{o+j},
// summed in position order, then added.
func (c *cache) weigh(out, p []float32, ldp, m, at, o, n int) {
	hd := c.cfg.HeadDim
	at += o * hd
	switch c.cfg.DType {
	case safetensors.F32:
		kernels.MatMulAdd(out, hd, p, ldp, c.v32[at:at+n*hd], hd, m, n, hd, true)
	case safetensors.BF16:
		kernels.MatMulAddBF16(out, hd, p, ldp, c.v16[at:at+n*hd], hd, m, n, hd, true)
	default:
		kernels.MatMulAddF16(out, hd, p, ldp, c.v16[at:at+n*hd], hd, m, n, hd, true)
	}
}
