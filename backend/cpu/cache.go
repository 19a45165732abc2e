package cpu

import (
	"fmt"
	"math"
	"sync"

	"github.com/fathom-llm/fathom/backend"
)

// cache is a paged KV cache in host memory. The keys (and values) of one layer, block and KV
// head are a contiguous [blockSize, headDim] matrix, so attention scores a block with one
// matrix-vector product: position o of block p, head h of layer l starts at
// (((l*blocks+p)*kvHeads+h)*blockSize+o)*headDim of k and v.
type cache struct {
	owner *Backend
	cfg   backend.CacheConfig
	kvDim int

	mu     sync.Mutex
	closed bool
	k, v   []float32
	free   []int // free block numbers, used from the end
	seqs   map[int]*sequence
	nextID int
	epoch  int
	batch  batch // the batch of the last Prepare
}

// sequence is one sequence's block table.
type sequence struct {
	blocks []int
	len    int
	// next and epoch validate a Prepare without allocating.
	next, epoch int
}

// NewCache allocates a KV cache of cfg.Blocks blocks of cfg.BlockSize positions.
func (b *Backend) NewCache(cfg backend.CacheConfig) (backend.Cache, error) {
	if cfg.Layers <= 0 || cfg.KVHeads <= 0 || cfg.HeadDim <= 0 || cfg.BlockSize <= 0 || cfg.Blocks <= 0 {
		return nil, backend.Shapef("cache config %+v", cfg)
	}
	kvDim := cfg.KVHeads * cfg.HeadDim
	size := float64(cfg.Layers) * float64(cfg.Blocks) * float64(cfg.BlockSize) * float64(kvDim)
	if size > math.MaxInt32*8 {
		return nil, backend.Shapef("cache config %+v: %g values", cfg, size)
	}
	c := &cache{owner: b, cfg: cfg, kvDim: kvDim, seqs: map[int]*sequence{}}
	c.k = make([]float32, int(size))
	c.v = make([]float32, int(size))
	c.free = make([]int, cfg.Blocks)
	for i := range c.free {
		c.free[i] = cfg.Blocks - 1 - i
	}
	c.batch.cache = c
	return c, nil
}

// NewSequence starts an empty sequence.
func (c *cache) NewSequence() (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, backend.ErrClosed
	}
	id := c.nextID
	c.nextID++
	c.seqs[id] = &sequence{}
	return id, nil
}

// Free returns a sequence's blocks to the pool.
func (c *cache) Free(seq int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.seqs[seq]; ok {
		c.free = append(c.free, s.blocks...)
		delete(c.seqs, seq)
	}
}

// Len returns a sequence's length.
func (c *cache) Len(seq int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.seqs[seq]; ok {
		return s.len
	}
	return 0
}

// Close drops the cache's memory; later calls fail with backend.ErrClosed.
func (c *cache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.k, c.v, c.seqs, c.free = nil, nil, map[int]*sequence{}, nil
	return nil
}

// Prepare checks that tokens continue their sequences, takes the blocks they need and
// returns the step's batch, reused by the next Prepare.
func (c *cache) Prepare(tokens []backend.Token) (backend.Batch, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, backend.ErrClosed
	}
	// Check that every token continues its sequence, and count the blocks needed.
	c.epoch++
	need := 0
	bs := c.cfg.BlockSize
	for _, t := range tokens {
		s, ok := c.seqs[t.Seq]
		if !ok {
			return nil, fmt.Errorf("%w: no sequence %d", backend.ErrSequence, t.Seq)
		}
		if s.epoch != c.epoch {
			s.epoch, s.next = c.epoch, s.len
		}
		if t.Pos != s.next {
			return nil, fmt.Errorf("%w: sequence %d: position %d, want %d", backend.ErrSequence, t.Seq, t.Pos, s.next)
		}
		if s.next%bs == 0 {
			need++
		}
		s.next++
	}
	if need > len(c.free) {
		return nil, fmt.Errorf("%w: %d blocks needed, %d free", backend.ErrCacheFull, need, len(c.free))
	}
	// Commit: extend the sequences and note each token's slot.
	bt := &c.batch
	bt.tokens = append(bt.tokens[:0], tokens...)
	bt.slots = bt.slots[:0]
	bt.tables = bt.tables[:0]
	bt.ropeDim = 0
	for _, t := range tokens {
		s := c.seqs[t.Seq]
		if t.Pos%bs == 0 {
			s.blocks = append(s.blocks, c.free[len(c.free)-1])
			c.free = c.free[:len(c.free)-1]
		}
		s.len = t.Pos + 1
		bt.slots = append(bt.slots, s.blocks[t.Pos/bs]*bs+t.Pos%bs)
	}
	for _, t := range tokens {
		bt.tables = append(bt.tables, c.seqs[t.Seq].blocks)
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

func (b *Backend) batch(bt backend.Batch) (*batch, error) {
	cb, ok := bt.(*batch)
	if !ok || cb.cache.owner != b {
		return nil, fmt.Errorf("%w: batch", backend.ErrForeign)
	}
	return cb, nil
}

// at returns the offset in k and v of the key of layer l, KV head h and cache slot
// (block·blockSize + offset).
func (c *cache) at(l, h, slot int) int {
	bs := c.cfg.BlockSize
	return (((l*c.cfg.Blocks+slot/bs)*c.cfg.KVHeads+h)*bs + slot%bs) * c.cfg.HeadDim
}
