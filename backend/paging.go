package backend

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// Pages is the host-side bookkeeping of a paged KV cache, shared by the backends: a pool of
// block numbers, each sequence's block table and length, and the check that a batch
// continues its sequences. The backend keeps the blocks' storage; slot s of the cache is
// offset s%BlockSize of block s/BlockSize.
//
// A backend's cache embeds a *Pages, which gives it the NewSequence, Free and Len methods of
// Cache, and implements Prepare with Extend and Close with Close. Its methods are safe for
// concurrent use, except Blocks and Slot, which read the tables for Extend's step function.
type Pages struct {
	mu        sync.Mutex
	closed    atomic.Bool
	blockSize int
	free      []int // free block numbers, used from the end
	seqs      map[int]*pageTable
	nextID    int
	epoch     int
}

// pageTable is one sequence's block table.
type pageTable struct {
	blocks []int
	len    int
	// next and epoch check an Extend without allocating; oldLen and oldBlocks undo it.
	next, epoch       int
	oldLen, oldBlocks int
}

// NewPages returns the bookkeeping of a cache of c.Blocks blocks of c.BlockSize positions,
// with no sequences. It fails with ErrShape unless every field of c is positive.
func NewPages(c CacheConfig) (*Pages, error) {
	if c.Layers <= 0 || c.KVHeads <= 0 || c.HeadDim <= 0 || c.BlockSize <= 0 || c.Blocks <= 0 {
		return nil, Shapef("cache config %+v", c)
	}
	p := &Pages{blockSize: c.BlockSize, free: make([]int, c.Blocks), seqs: map[int]*pageTable{}}
	for i := range p.free {
		p.free[i] = c.Blocks - 1 - i
	}
	return p, nil
}

// BlockSize is the number of positions in one block.
func (p *Pages) BlockSize() int { return p.blockSize }

// NewSequence starts an empty sequence and returns its id; after Close it fails with
// ErrClosed.
func (p *Pages) NewSequence() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() {
		return 0, ErrClosed
	}
	id := p.nextID
	p.nextID++
	p.seqs[id] = &pageTable{}
	return id, nil
}

// Free returns a sequence's blocks to the pool; freeing an unknown id does nothing.
func (p *Pages) Free(seq int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s, ok := p.seqs[seq]; ok {
		p.free = append(p.free, s.blocks...)
		delete(p.seqs, seq)
	}
}

// Len returns the number of positions a sequence holds (0 for an unknown id).
func (p *Pages) Len(seq int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s, ok := p.seqs[seq]; ok {
		return s.len
	}
	return 0
}

// Closed reports whether Close was called. It takes no lock, so a backend may call it while
// it holds its own.
func (p *Pages) Closed() bool { return p.closed.Load() }

// Close drops every sequence and, the first time, calls release (when not nil) to free the
// backend's storage. Later calls do nothing; NewSequence and Extend then fail with
// ErrClosed.
func (p *Pages) Close(release func()) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Swap(true) {
		return nil
	}
	p.seqs, p.free = map[int]*pageTable{}, nil
	if release != nil {
		release()
	}
	return nil
}

// Blocks returns a sequence's block table (nil for an unknown id): block i holds positions
// i·BlockSize to (i+1)·BlockSize−1. It is for Extend's step function, or for when no other
// goroutine uses p; the slice is valid until the sequence next changes.
func (p *Pages) Blocks(seq int) []int {
	if s, ok := p.seqs[seq]; ok {
		return s.blocks
	}
	return nil
}

// Slot returns the cache slot of a token that Extend accepted, block·BlockSize + offset. Like
// Blocks, it is for Extend's step function.
func (p *Pages) Slot(t Token) int {
	bs := p.blockSize
	return p.seqs[t.Seq].blocks[t.Pos/bs]*bs + t.Pos%bs
}

// Extend checks that every token continues its sequence (the tokens of one sequence in
// order, the first at position Len(seq)), takes the blocks the new positions need and
// extends the sequences. Then it calls step, when not nil, with p locked, to do the backend's
// part of preparing the batch (reading the new tables with Blocks and Slot); when step fails,
// Extend undoes the extension and returns its error. On any error nothing changes: a token
// that names no sequence or breaks its order fails with ErrSequence, a batch that needs more
// blocks than are free with ErrCacheFull, and after Close, Extend fails with ErrClosed.
func (p *Pages) Extend(tokens []Token, step func() error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() {
		return ErrClosed
	}
	p.epoch++
	need := 0
	bs := p.blockSize
	for _, t := range tokens {
		s, ok := p.seqs[t.Seq]
		if !ok {
			return fmt.Errorf("%w: no sequence %d", ErrSequence, t.Seq)
		}
		if s.epoch != p.epoch {
			s.epoch, s.next = p.epoch, s.len
			s.oldLen, s.oldBlocks = s.len, len(s.blocks)
		}
		if t.Pos != s.next {
			return fmt.Errorf("%w: sequence %d: position %d, want %d", ErrSequence, t.Seq, t.Pos, s.next)
		}
		if s.next%bs == 0 {
			need++
		}
		s.next++
	}
	if need > len(p.free) {
		return fmt.Errorf("%w: %d blocks needed, %d free", ErrCacheFull, need, len(p.free))
	}
	mark := len(p.free)
	for _, t := range tokens {
		s := p.seqs[t.Seq]
		if t.Pos%bs == 0 {
			s.blocks = append(s.blocks, p.free[len(p.free)-1])
			p.free = p.free[:len(p.free)-1]
		}
		s.len = t.Pos + 1
	}
	if step == nil {
		return nil
	}
	if err := step(); err != nil {
		// Taking blocks only shortened free, so its old entries are still in place.
		p.free = p.free[:mark]
		for _, t := range tokens {
			s := p.seqs[t.Seq]
			s.len, s.blocks = s.oldLen, s.blocks[:s.oldBlocks]
		}
		return err
	}
	return nil
}
