//go:build cuda && cgo

package cuda

/*
#include "fathom_cuda.h"
*/
import "C"

import (
	"math"
	"unsafe"

	"github.com/fathom-llm/fathom/backend"
)

// cache is a paged KV cache in device memory: keys and values in float16, laid out
// [layer][block][offset][kv head][head dim]. The block tables live on the host; each Prepare
// uploads the batch's slots and tables.
type cache struct {
	*backend.Pages // sequences and block tables
	owner          *gpu
	cfg            backend.CacheConfig
	kvDim          int
	k, v           unsafe.Pointer
	batch          batch // the batch of the last Prepare
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

// NewCache allocates a KV cache of cfg.Blocks blocks of cfg.BlockSize positions.
func (u *unlocked) NewCache(cfg backend.CacheConfig) (backend.Cache, error) {
	pages, err := backend.NewPages(cfg)
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
	c := &cache{Pages: pages, owner: (*gpu)(u), cfg: cfg, kvDim: kvDim}
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

// Close releases the cache's device memory.
func (c *cache) Close() error {
	return c.Pages.Close(func() {
		g := c.owner
		g.mu.Lock()
		defer g.mu.Unlock()
		u := (*unlocked)(g)
		u.free(c.k)
		u.free(c.v)
		u.free(c.batch.mem.p)
		c.batch.mem = scratch{}
	})
}

func (c *cache) Prepare(tokens []backend.Token) (backend.Batch, error) {
	// Pack against the extended block tables and upload; a failure undoes the extension.
	g, bt := c.owner, &c.batch
	err := c.Extend(tokens, func() error {
		u, err := g.lock()
		if err != nil {
			return err
		}
		defer g.mu.Unlock()
		packed, layout := packBatch(bt.packed, tokens, c.BlockSize(), c.Blocks)
		if err := u.grow(&bt.mem, 4*max(1, len(packed)), "batch"); err != nil {
			return err
		}
		if len(packed) > 0 {
			if err := u.upload(bt.mem.p, unsafe.Pointer(&packed[0]), 4*len(packed), "batch"); err != nil {
				return err
			}
		}
		bt.tokens = append(bt.tokens[:0], tokens...)
		bt.packed, bt.layout = packed, layout
		return nil
	})
	if err != nil {
		return nil, err
	}
	return bt, nil
}
