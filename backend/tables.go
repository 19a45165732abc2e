package backend

import (
	"fmt"
	"math"
	"slices"

	"github.com/fathom-llm/fathom/safetensors"
)

// CheckCacheConfig checks NewCache's configuration and returns it with DType resolved: every
// size positive (the window not negative), the slots (Blocks·BlockSize) within
// math.MaxInt32, and DType one of dtypes (the backend's, its default first) or zero for that
// default.
func CheckCacheConfig(c CacheConfig, dtypes ...safetensors.DType) (CacheConfig, error) {
	if c.Layers <= 0 || c.KVHeads <= 0 || c.HeadDim <= 0 || c.BlockSize <= 0 || c.Blocks <= 0 ||
		c.Blocks > math.MaxInt32/c.BlockSize || c.SlidingWindow < 0 {
		return c, Shapef("cache config %+v", c)
	}
	if c.DType == "" {
		c.DType = dtypes[0]
	}
	if !slices.Contains(dtypes, c.DType) {
		return c, fmt.Errorf("%w: KV cache of %s (the backend stores %v)", ErrDType, c.DType, dtypes)
	}
	return c, nil
}

// BatchTables is the host side of a prepared batch, shared by the backends' caches: the
// step's tokens, each token's cache slot and the first position its attention may read, and
// the block tables, copied one after another. Prepare fills it, reusing its memory.
type BatchTables struct {
	Tokens []Token
	// Slots[i] is token i's slot: block·BlockSize + offset.
	Slots []int
	// First[i] is the first position of token i's sequence in a held block from which every
	// block up to token i's own is held.
	First []int
	// Flat holds the tables; table s is Flat[Offsets[s]:Offsets[s+1]].
	Flat    []int
	Offsets []int
}

// Prepare checks the arguments of Cache.Prepare for a cache configured by c and fills t.
// On error t is left unusable.
func (t *BatchTables) Prepare(tokens []Token, tables [][]int, c CacheConfig) error {
	bs := c.BlockSize
	t.Tokens = append(t.Tokens[:0], tokens...)
	t.Slots, t.First = t.Slots[:0], t.First[:0]
	t.Flat, t.Offsets = t.Flat[:0], append(t.Offsets[:0], 0)
	for s, table := range tables {
		for _, b := range table {
			if b < -1 || b >= c.Blocks {
				return fmt.Errorf("%w: sequence %d: block %d in a cache of %d", ErrSequence, s, b, c.Blocks)
			}
		}
		t.Flat = append(t.Flat, table...)
		t.Offsets = append(t.Offsets, len(t.Flat))
	}
	lastSeq, lastBlock, first := -1, -1, 0 // the run of the previous token's block
	for _, tok := range tokens {
		if tok.Seq < 0 || tok.Seq >= len(tables) {
			return fmt.Errorf("%w: sequence %d of a step of %d", ErrSequence, tok.Seq, len(tables))
		}
		table := tables[tok.Seq]
		if tok.Pos < 0 || tok.Pos/bs >= len(table) || table[tok.Pos/bs] < 0 {
			return fmt.Errorf("%w: sequence %d holds no block for position %d", ErrSequence, tok.Seq, tok.Pos)
		}
		if k := tok.Pos / bs; tok.Seq != lastSeq || k != lastBlock {
			j := k
			for j > 0 && table[j-1] >= 0 {
				j--
			}
			lastSeq, lastBlock, first = tok.Seq, k, j*bs
		}
		t.Slots = append(t.Slots, table[tok.Pos/bs]*bs+tok.Pos%bs)
		t.First = append(t.First, first)
	}
	return t.CheckWindow(c.SlidingWindow)
}

// Table returns the block table of token i's sequence.
func (t *BatchTables) Table(i int) []int {
	s := t.Tokens[i].Seq
	return t.Flat[t.Offsets[s]:t.Offsets[s+1]]
}

// TableOf returns the block table of sequence s of the step.
func (t *BatchTables) TableOf(s int) []int { return t.Flat[t.Offsets[s]:t.Offsets[s+1]] }

// CheckWindow checks that every token's attention, over the last window positions (all
// positions when window is 0), reads only held blocks.
func (t *BatchTables) CheckWindow(window int) error {
	for i, tok := range t.Tokens {
		first := 0
		if window > 0 {
			first = max(0, tok.Pos-window+1)
		}
		if first < t.First[i] {
			return fmt.Errorf("%w: sequence %d position %d reads from position %d; its blocks start at %d",
				ErrSequence, tok.Seq, tok.Pos, first, t.First[i])
		}
	}
	return nil
}
