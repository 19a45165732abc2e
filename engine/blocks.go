package engine

import (
	"crypto/sha256"
	"encoding/binary"
)

// blockHash identifies a full block by its content: the SHA-256 of the previous block's hash
// and this block's token ids, so equal hashes mean equal tokens from the start of the
// sequence up to the end of the block.
type blockHash [sha256.Size]byte

// hashBlock returns the hash of a block holding ids after a block whose hash is parent (the
// zero hash for the first block).
func hashBlock(parent blockHash, ids []int) blockHash {
	var small [sha256.Size + 4*64]byte // blocks of up to 64 positions hash without allocating
	buf := append(small[:0], parent[:]...)
	for _, id := range ids {
		buf = binary.LittleEndian.AppendUint32(buf, uint32(id))
	}
	return sha256.Sum256(buf)
}

// noBlock marks an entry of a block table whose block was released: it slid out of the
// attention window, or it was never needed (a cache hit's blocks before the window).
const noBlock = -1

// pool is the one ledger of the KV cache's blocks: which are referenced, by how many
// sequences, which hold a cached full block (and its hash), and the order in which
// unreferenced blocks are reused.
//
// Every block is either referenced (ref > 0) or on the free list. The free list runs from
// the block to reuse first to the one to reuse last: blocks that hold nothing worth keeping
// at the head, cached blocks behind them in the order they were last released, so that
// taking from the head evicts the least recently used cached block only when no empty
// block is left. A sequence releases its blocks last first, so of one sequence the blocks
// deepest in its prefix are evicted first.
type pool struct {
	meta       []blockMeta
	head, tail int // free list ends, noBlock when empty
	nfree      int // blocks on the free list
	cached     map[blockHash]int
	caching    bool
}

type blockMeta struct {
	ref        int
	prev, next int // free list links
	hashed     bool
	hash       blockHash
}

func newPool(blocks int, caching bool) *pool {
	p := &pool{meta: make([]blockMeta, blocks), head: noBlock, tail: noBlock, cached: map[blockHash]int{}, caching: caching}
	for b := range p.meta {
		p.pushTail(b)
	}
	return p
}

func (p *pool) pushTail(b int) {
	m := &p.meta[b]
	m.prev, m.next = p.tail, noBlock
	if p.tail != noBlock {
		p.meta[p.tail].next = b
	} else {
		p.head = b
	}
	p.tail = b
	p.nfree++
}

func (p *pool) pushHead(b int) {
	m := &p.meta[b]
	m.prev, m.next = noBlock, p.head
	if p.head != noBlock {
		p.meta[p.head].prev = b
	} else {
		p.tail = b
	}
	p.head = b
	p.nfree++
}

func (p *pool) unlink(b int) {
	m := &p.meta[b]
	if m.prev != noBlock {
		p.meta[m.prev].next = m.next
	} else {
		p.head = m.next
	}
	if m.next != noBlock {
		p.meta[m.next].prev = m.prev
	} else {
		p.tail = m.prev
	}
	m.prev, m.next = noBlock, noBlock
	p.nfree--
}

// take returns a block for new content, referenced once: the free list's head, evicted from
// the prefix cache if it held a cached block. The caller checks that a block is free.
func (p *pool) take() int {
	b := p.head
	p.unlink(b)
	p.forget(b)
	p.meta[b].ref = 1
	return b
}

// use adds a reference to block b (a cache hit), taking it off the free list if needed.
func (p *pool) use(b int) {
	if p.meta[b].ref == 0 {
		p.unlink(b)
	}
	p.meta[b].ref++
}

// release drops a reference to block b; once unreferenced it joins the free list: at the
// tail when it holds a cached block, at the head otherwise.
func (p *pool) release(b int) {
	m := &p.meta[b]
	m.ref--
	if m.ref > 0 {
		return
	}
	if m.hashed {
		p.pushTail(b)
	} else {
		p.pushHead(b)
	}
}

// lookup returns the block that caches the content h, if any.
func (p *pool) lookup(h blockHash) (int, bool) {
	if !p.caching {
		return noBlock, false
	}
	b, ok := p.cached[h]
	return b, ok
}

// register records that block b holds the full block h, unless caching is off or another
// block already holds it (then b stays uncached: a block table never changes once written).
func (p *pool) register(b int, h blockHash) {
	if !p.caching || p.meta[b].hashed {
		return
	}
	if _, ok := p.cached[h]; ok {
		return
	}
	p.cached[h] = b
	p.meta[b].hashed, p.meta[b].hash = true, h
}

// forget drops block b from the prefix cache.
func (p *pool) forget(b int) {
	m := &p.meta[b]
	if !m.hashed {
		return
	}
	if p.cached[m.hash] == b {
		delete(p.cached, m.hash)
	}
	m.hashed = false
}

// used returns the number of referenced blocks.
func (p *pool) used() int { return len(p.meta) - p.nfree }

// cachedBlocks returns the number of blocks that hold a cached full block.
func (p *pool) cachedBlocks() int { return len(p.cached) }
