package cpu

import (
	"math"
	"sync/atomic"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/internal/half"
	"github.com/fathom-llm/fathom/internal/kernels"
	"github.com/fathom-llm/fathom/safetensors"
)

// cache is a paged KV cache in host memory, its keys and values stored in float16 (the
// default), bfloat16 or float32. The keys (and values) of one layer, block and KV head are a
// contiguous [blockSize, headDim] matrix, so attention scores a block with one
// matrix-vector product: position o of block p, head h of layer l starts at
// (((l*blocks+p)*kvHeads+h)*blockSize+o)*headDim of k and v.
type cache struct {
	owner  *Backend
	cfg    backend.CacheConfig
	closed atomic.Bool
	// k and v hold float32 values in k32, v32, or 16-bit ones in k16, v16.
	k32, v32 []float32
	k16, v16 []uint16
	batch    batch // the batch of the last Prepare
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
	if cfg.DType == safetensors.F32 {
		c.k32, c.v32 = make([]float32, int(size)), make([]float32, int(size))
	} else {
		c.k16, c.v16 = make([]uint16, int(size)), make([]uint16, int(size))
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

// at returns the offset in the keys and values of the key of layer l, KV head h and cache
// slot (block·blockSize + offset).
func (c *cache) at(l, h, slot int) int {
	bs := c.cfg.BlockSize
	return (((l*c.cfg.Blocks+slot/bs)*c.cfg.KVHeads+h)*bs + slot%bs) * c.cfg.HeadDim
}

// store writes one head's key and value at offset at, converted to the stored type.
func (c *cache) store(at int, k, v []float32) {
	switch c.cfg.DType {
	case safetensors.F32:
		copy(c.k32[at:at+len(k)], k)
		copy(c.v32[at:at+len(v)], v)
	case safetensors.BF16:
		for i := range k {
			c.k16[at+i], c.v16[at+i] = half.F32ToBF16(k[i]), half.F32ToBF16(v[i])
		}
	default:
		for i := range k {
			c.k16[at+i], c.v16[at+i] = half.F32ToF16(k[i]), half.F32ToF16(v[i])
		}
	}
}

// scores sets out[r*n+j] = q_r·key_j for the m query rows q_r of q ([m, headDim]) and the n
// positions from offset at, by the kernels' canonical products (the same bits for any m and
// n), with the working memory s.
func (c *cache) scores(s *kernels.Scratch, out []float32, at int, q []float32, m, n int) {
	hd := c.cfg.HeadDim
	switch c.cfg.DType {
	case safetensors.F32:
		s.MatMulF32Rows(out, c.k32[at:at+n*hd], q, m, n, hd, 0, n)
	case safetensors.BF16:
		s.MatMulBF16Rows(out, c.k16[at:at+n*hd], q, m, n, hd, 0, n)
	default:
		s.MatMulF16Rows(out, c.k16[at:at+n*hd], q, m, n, hd, 0, n)
	}
}

// values returns the values of n positions from offset at as float32, in tmp when they are
// stored in 16 bits.
func (c *cache) values(tmp []float32, at, n, hd int) []float32 {
	switch c.cfg.DType {
	case safetensors.F32:
		return c.v32[at : at+n*hd]
	case safetensors.BF16:
		kernels.BF16ToF32Slice(tmp[:n*hd], c.v16[at:at+n*hd])
	default:
		kernels.F16ToF32Slice(tmp[:n*hd], c.v16[at:at+n*hd])
	}
	return tmp[:n*hd]
}
