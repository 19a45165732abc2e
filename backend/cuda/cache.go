//go:build cuda && cgo

package cuda

/*
#include "fathom_cuda.h"
*/
import "C"

import (
	"fmt"
	"math"
	"sync"
	"unsafe"

	"github.com/fathom-llm/fathom/backend"
)

// cache is a paged KV cache in device memory: keys and values in bfloat16, laid out
// [layer][block][offset][kv head][head dim]. The block tables live on the host; each Prepare
// uploads the batch's slots and tables.
type cache struct {
	owner *gpu
	cfg   backend.CacheConfig
	kvDim int
	k, v  unsafe.Pointer

	mu     sync.Mutex
	closed bool
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

// batch is a prepared step: the tokens on the host, their packed description on the device.
type batch struct {
	cache  *cache
	tokens []backend.Token
	packed []int32
	layout batchLayout
	mem    scratch // device copy of packed
}

func (b *batch) Len() int { return len(b.tokens) }

// dev returns the device address of the packed int32 array at offset off.
func (b *batch) dev(off int) *C.int32_t {
	return (*C.int32_t)(unsafe.Add(b.mem.p, 4*off))
}

func (g *gpu) batch(bt backend.Batch) (*batch, error) {
	b, ok := bt.(*batch)
	if !ok || b.cache.owner != g {
		return nil, fmt.Errorf("%w: batch", backend.ErrForeign)
	}
	return b, nil
}

// NewCache allocates a KV cache of cfg.Blocks blocks of cfg.BlockSize positions.
func (g *gpu) NewCache(cfg backend.CacheConfig) (backend.Cache, error) {
	if cfg.Layers <= 0 || cfg.KVHeads <= 0 || cfg.HeadDim <= 0 || cfg.BlockSize <= 0 || cfg.Blocks <= 0 ||
		cfg.HeadDim > maxHeadDim {
		return nil, backend.Shapef("cache config %+v", cfg)
	}
	kvDim := cfg.KVHeads * cfg.HeadDim
	slots := float64(cfg.Blocks) * float64(cfg.BlockSize)
	size := float64(cfg.Layers) * slots * float64(kvDim)
	if slots > math.MaxInt32 || size > math.MaxInt64/4 {
		return nil, backend.Shapef("cache config %+v: %g values", cfg, size)
	}
	if err := g.lock(); err != nil {
		return nil, err
	}
	defer g.mu.Unlock()
	c := &cache{owner: g, cfg: cfg, kvDim: kvDim, seqs: map[int]*sequence{}}
	var err error
	if c.k, err = g.alloc(2*int(size), "key cache"); err != nil {
		return nil, err
	}
	if c.v, err = g.alloc(2*int(size), "value cache"); err != nil {
		g.free(c.k)
		return nil, err
	}
	c.free = make([]int, cfg.Blocks)
	for i := range c.free {
		c.free[i] = cfg.Blocks - 1 - i
	}
	c.batch.cache = c
	return c, nil
}

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

func (c *cache) Free(seq int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.seqs[seq]; ok {
		c.free = append(c.free, s.blocks...)
		delete(c.seqs, seq)
	}
}

func (c *cache) Len(seq int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.seqs[seq]; ok {
		return s.len
	}
	return 0
}

// Close releases the cache's device memory.
func (c *cache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	c.seqs, c.free = map[int]*sequence{}, nil
	g := c.owner
	g.mu.Lock()
	defer g.mu.Unlock()
	g.free(c.k)
	g.free(c.v)
	g.free(c.batch.mem.p)
	c.batch.mem = scratch{}
	return nil
}

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
	g := c.owner
	if err := g.lock(); err != nil {
		return nil, err
	}
	defer g.mu.Unlock()
	// Pack against the block tables as they will be, then make room on the device, and only
	// then commit, so that a failure changes nothing.
	free := len(c.free)
	grown := map[int][]int{}
	for _, t := range tokens {
		s := c.seqs[t.Seq]
		tab, ok := grown[t.Seq]
		if !ok {
			tab = s.blocks
		}
		if t.Pos%bs == 0 {
			free--
			tab = append(tab[:len(tab):len(tab)], c.free[free])
		}
		grown[t.Seq] = tab
	}
	bt := &c.batch
	packed, layout := packBatch(bt.packed, tokens, bs, func(seq int) []int { return grown[seq] })
	if err := g.grow(&bt.mem, 4*max(1, len(packed)), "batch"); err != nil {
		return nil, err
	}
	if len(packed) > 0 {
		if err := g.upload(bt.mem.p, unsafe.Pointer(&packed[0]), 4*len(packed), "batch"); err != nil {
			return nil, err
		}
	}
	for seq, tab := range grown {
		s := c.seqs[seq]
		s.blocks = tab
	}
	for _, t := range tokens {
		c.seqs[t.Seq].len = t.Pos + 1
	}
	c.free = c.free[:free]
	bt.tokens = append(bt.tokens[:0], tokens...)
	bt.packed, bt.layout = packed, layout
	return bt, nil
}
