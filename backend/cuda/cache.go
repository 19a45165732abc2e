//go:build cuda && cgo

package cuda

/*
#include "fathom_cuda.h"
*/
import "C"

import (
	"math"
	"sync/atomic"
	"unsafe"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/safetensors"
)

// cache is a paged KV cache in device memory: keys and values in float16, laid out
// [layer][block][offset][kv head][head dim]. Each Prepare uploads the batch's slots and
// tables.
type cache struct {
	owner  *gpu
	cfg    backend.CacheConfig
	kvDim  int
	closed atomic.Bool
	k, v   unsafe.Pointer
	batch  batch // the batch of the last Prepare
}

// batch is a prepared step: the tokens and tables on the host, their packed description on
// the device.
type batch struct {
	cache *cache
	backend.BatchTables
	packed []int32
	layout batchLayout
	mem    scratch // device copy of packed
}

func (b *batch) Len() int { return len(b.Tokens) }

// dev returns the device address of the packed int32 array at offset off.
func (b *batch) dev(off int) *C.int32_t {
	return (*C.int32_t)(unsafe.Add(b.mem.p, 4*off))
}

// NewCache allocates a KV cache of cfg.Blocks blocks of cfg.BlockSize positions, in float16.
func (u *unlocked) NewCache(cfg backend.CacheConfig) (backend.Cache, error) {
	cfg, err := backend.CheckCacheConfig(cfg, safetensors.F16)
	if err != nil {
		return nil, err
	}
	if cfg.HeadDim > maxHeadDim {
		return nil, backend.Shapef("cache config %+v", cfg)
	}
	kvDim := cfg.KVHeads * cfg.HeadDim
	slots := float64(cfg.Blocks) * float64(cfg.BlockSize)
	size := float64(cfg.Layers) * slots * float64(kvDim)
	if slots > math.MaxInt32 || size > math.MaxInt64/4 {
		return nil, backend.Shapef("cache config %+v: %g values", cfg, size)
	}
	c := &cache{owner: (*gpu)(u), cfg: cfg, kvDim: kvDim}
	if c.k, err = u.alloc(2*int(size), "key cache"); err != nil {
		return nil, err
	}
	if c.v, err = u.alloc(2*int(size), "value cache"); err != nil {
		u.free(c.k)
		return nil, err
	}
	c.batch.cache = c
	return c, nil
}

func (c *cache) Config() backend.CacheConfig { return c.cfg }

// Close releases the cache's device memory.
func (c *cache) Close() error {
	g := c.owner
	g.mu.Lock()
	defer g.mu.Unlock()
	if c.closed.Swap(true) {
		return nil
	}
	u := (*unlocked)(g)
	u.free(c.k)
	u.free(c.v)
	u.free(c.batch.mem.p)
	c.batch.mem = scratch{}
	return nil
}

// Prepare checks the step's tokens and tables, packs them and uploads them.
func (c *cache) Prepare(tokens []backend.Token, tables [][]int) (backend.Batch, error) {
	g, bt := c.owner, &c.batch
	u, err := g.lock()
	if err != nil {
		return nil, err
	}
	defer g.mu.Unlock()
	if c.closed.Load() {
		return nil, backend.ErrClosed
	}
	fail := func(err error) (backend.Batch, error) {
		bt.Tokens = bt.Tokens[:0]
		return nil, err
	}
	if err := bt.Prepare(tokens, tables, c.cfg); err != nil {
		return fail(err)
	}
	packed, layout := packBatch(bt.packed, tokens, c.cfg.BlockSize, bt.TableOf)
	if err := u.grow(&bt.mem, 4*max(1, len(packed)), "batch"); err != nil {
		return fail(err)
	}
	if len(packed) > 0 {
		if err := u.upload(bt.mem.p, unsafe.Pointer(&packed[0]), 4*len(packed), "batch"); err != nil {
			return fail(err)
		}
	}
	bt.packed, bt.layout = packed, layout
	return bt, nil
}
