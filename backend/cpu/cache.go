package cpu

import (
	"math"

	"github.com/fathom-llm/fathom/backend"
)

// cache is a paged KV cache in host memory. The keys (and values) of one layer, block and KV
// head are a contiguous [blockSize, headDim] matrix, so attention scores a block with one
// matrix-vector product: position o of block p, head h of layer l starts at
// (((l*blocks+p)*kvHeads+h)*blockSize+o)*headDim of k and v.
type cache struct {
	*backend.Pages // sequences and block tables
	owner          *Backend
	cfg            backend.CacheConfig
	kvDim          int
	k, v           []float32
	batch          batch // the batch of the last Prepare
}

// NewCache allocates a KV cache of cfg.Blocks blocks of cfg.BlockSize positions.
func (b *Backend) NewCache(cfg backend.CacheConfig) (backend.Cache, error) {
	pages, err := backend.NewPages(cfg)
	if err != nil {
		return nil, err
	}
	kvDim := cfg.KVHeads * cfg.HeadDim
	size := float64(cfg.Layers) * float64(cfg.Blocks) * float64(cfg.BlockSize) * float64(kvDim)
	if size > math.MaxInt32*8 {
		return nil, backend.Shapef("cache config %+v: %g values", cfg, size)
	}
	c := &cache{Pages: pages, owner: b, cfg: cfg, kvDim: kvDim}
	c.k = make([]float32, int(size))
	c.v = make([]float32, int(size))
	c.batch.cache = c
	return c, nil
}

// Close drops the cache's memory; later calls fail with backend.ErrClosed.
func (c *cache) Close() error {
	return c.Pages.Close(func() {
		// Attention uses k and v under the backend's lock.
		c.owner.mu.Lock()
		defer c.owner.mu.Unlock()
		c.k, c.v = nil, nil
	})
}

// Prepare checks that tokens continue their sequences, takes the blocks they need and
// returns the step's batch, reused by the next Prepare.
func (c *cache) Prepare(tokens []backend.Token) (backend.Batch, error) {
	bt := &c.batch
	err := c.Extend(tokens, func() error {
		bt.tokens = append(bt.tokens[:0], tokens...)
		bt.slots = bt.slots[:0]
		bt.tables = bt.tables[:0]
		bt.ropeDim = 0
		for _, t := range tokens {
			bt.slots = append(bt.slots, c.Slot(t))
			bt.tables = append(bt.tables, c.Blocks(t.Seq))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return bt, nil
}

// batch is a prepared step: the tokens, each token's cache slot, its sequence's block table,
// and the RoPE angles of the last RoPE call.
type batch struct {
	cache  *cache
	tokens []backend.Token
	slots  []int
	tables [][]int

	ropeDim   int
	ropeTheta float64
	cos, sin  []float32 // [token][ropeDim/2]
}

// Len is the number of tokens in the batch.
func (bt *batch) Len() int { return len(bt.tokens) }

// at returns the offset in k and v of the key of layer l, KV head h and cache slot
// (block·blockSize + offset).
func (c *cache) at(l, h, slot int) int {
	bs := c.cfg.BlockSize
	return (((l*c.cfg.Blocks+slot/bs)*c.cfg.KVHeads+h)*bs + slot%bs) * c.cfg.HeadDim
}
