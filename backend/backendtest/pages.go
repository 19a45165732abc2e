package backendtest

import (
	"fmt"

	"github.com/fathom-llm/fathom/backend"
)

// Pages gives the sequences of tests and benchmarks blocks of a cache, in order, as they grow:
// the simplest keeper of block tables, where nothing is shared or released.
type Pages struct {
	c      backend.Cache
	next   int
	tables [][]int
	lens   []int
}

// NewPages returns Pages over c with no sequences.
func NewPages(c backend.Cache) *Pages { return &Pages{c: c} }

// NewSequence starts a sequence; its id is the index of its table.
func (p *Pages) NewSequence() int {
	p.tables = append(p.tables, nil)
	p.lens = append(p.lens, 0)
	return len(p.tables) - 1
}

// Len returns the number of positions sequence s holds.
func (p *Pages) Len(s int) int { return p.lens[s] }

// Table returns sequence s's block table.
func (p *Pages) Table(s int) []int { return p.tables[s] }

// Prepare gives the tokens' sequences the blocks their positions need and prepares the step
// with every sequence's table (a token's Seq is its sequence's id). It fails when the cache
// has no block left.
func (p *Pages) Prepare(tokens []backend.Token) (backend.Batch, error) {
	cfg := p.c.Config()
	for _, t := range tokens {
		if t.Seq < 0 || t.Seq >= len(p.tables) {
			return p.c.Prepare(tokens, p.tables) // the cache reports it
		}
		for len(p.tables[t.Seq])*cfg.BlockSize <= t.Pos {
			if p.next == cfg.Blocks {
				return nil, fmt.Errorf("backendtest: all %d blocks taken", cfg.Blocks)
			}
			p.tables[t.Seq] = append(p.tables[t.Seq], p.next)
			p.next++
		}
		p.lens[t.Seq] = max(p.lens[t.Seq], t.Pos+1)
	}
	return p.c.Prepare(tokens, p.tables)
}
