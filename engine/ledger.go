package engine

// ledger keeps the blocks of the sequences: the pool, and the geometry that says which
// blocks a sequence needs.
type ledger struct {
	*pool
	size, window int
}

func newLedger(blocks, size, window int, caching bool) *ledger {
	return &ledger{pool: newPool(blocks, caching), size: size, window: window}
}

// blocks returns the number of blocks that hold n positions.
func (l *ledger) blocks(n int) int { return (n + l.size - 1) / l.size }

// first returns the first block that the token at position pos reads.
func (l *ledger) first(pos int) int {
	if l.window == 0 || pos < l.window {
		return 0
	}
	return (pos - l.window + 1) / l.size
}

// held returns the number of blocks a sequence holds while it computes positions [a, b).
func (l *ledger) held(a, b int) int { return l.blocks(b) - l.first(a) }

// fitLength returns the longest sequence, up to n positions, that the cache holds when it
// holds nothing else, computed one token at a time.
func (l *ledger) fitLength(n int) int {
	total := len(l.meta)
	if l.window == 0 {
		return min(n, total*l.size)
	}
	for p := range n {
		if l.held(p, p+1) > total {
			return p
		}
	}
	return n
}

// hashes extends h, the hashes of the first full blocks of tokens, to every full block of
// tokens. Without prefix caching it returns h.
func (l *ledger) hashes(h []blockHash, tokens []int) []blockHash {
	if !l.caching {
		return h
	}
	for i := len(h); (i+1)*l.size <= len(tokens); i++ {
		var parent blockHash
		if i > 0 {
			parent = h[i-1]
		}
		h = append(h, hashBlock(parent, tokens[i*l.size:(i+1)*l.size]))
	}
	return h
}

// match finds the longest run of cached blocks that starts s's tokens, leaving at least one
// token to compute: it returns the number k of blocks hit and the block table they make.
// With a sliding window only the hit blocks that the first token to compute reads must be
// cached; the table has noBlock before them.
func (l *ledger) match(s *seq) (k int, table []int) {
	limit := min(len(s.hashes), (len(s.tokens)-1)/l.size)
	if !l.caching || limit == 0 {
		return 0, nil
	}
	ids := make([]int, limit)
	run := 0
	for i := range limit {
		b, ok := l.lookup(s.hashes[i])
		if !ok {
			b, run = noBlock, 0
		} else {
			run++
		}
		ids[i] = b
		// Hitting i+1 blocks needs blocks first((i+1)·size) to i cached.
		if n := i + 1; run >= n-l.first(n*l.size) {
			k = n
		}
	}
	ids = ids[:k]
	for i := range l.first(k * l.size) {
		ids[i] = noBlock
	}
	return k, ids
}

// admitNeed returns the free blocks that admitting s with the hit table needs: room for
// every block of its tokens that is not hit, and the hit blocks that no sequence holds (they
// are counted free), but never more than the whole cache (a prompt runs in chunks that fit),
// nor, with a sliding window, more than the chunks of budget tokens hold.
func (l *ledger) admitNeed(s *seq, k int, table []int, budget int) int {
	need := l.held(k*l.size, len(s.tokens))
	if l.window > 0 {
		need = min(need, l.blocks(l.window-1+budget)+1)
	}
	for _, b := range table {
		if b != noBlock && l.meta[b].ref > 0 {
			need--
		}
	}
	return min(need, len(l.meta))
}

// admit gives s the hit blocks of match.
func (l *ledger) admit(s *seq, k int, table []int) {
	s.table = append(s.table[:0], table...)
	for _, b := range table {
		if b != noBlock {
			l.use(b)
		}
	}
	s.computed, s.registered = k*l.size, k
}

// slide releases the blocks of s that no token from its next position on reads.
func (l *ledger) slide(s *seq) {
	for i := range min(l.first(s.computed), len(s.table)) {
		if s.table[i] != noBlock {
			l.release(s.table[i])
			s.table[i] = noBlock
		}
	}
}

// fit returns how many of the next n tokens of s the free blocks can hold (call slide
// first).
func (l *ledger) fit(s *seq, n int) int {
	return max(0, min(n, (len(s.table)+l.nfree)*l.size-s.computed))
}

// grow takes the blocks that s's next n tokens need (fit said they are free) and offers the
// blocks these tokens fill to the prefix cache.
func (l *ledger) grow(s *seq, n int) {
	end := s.computed + n
	for len(s.table)*l.size < end {
		s.table = append(s.table, l.take())
	}
	for ; s.registered < len(s.hashes) && (s.registered+1)*l.size <= end; s.registered++ {
		if b := s.table[s.registered]; b != noBlock {
			l.register(b, s.hashes[s.registered])
		}
	}
}

// unregister withdraws from the prefix cache the blocks of s offered since it had offered
// from blocks: their contents were never computed.
func (l *ledger) unregister(s *seq, from int) {
	for i := from; i < s.registered; i++ {
		if b := s.table[i]; b != noBlock {
			l.forget(b)
		}
	}
	s.registered = from
}

// drop releases every block of s, the last first.
func (l *ledger) drop(s *seq) {
	for i := len(s.table) - 1; i >= 0; i-- {
		if b := s.table[i]; b != noBlock {
			l.release(b)
		}
	}
	s.table = s.table[:0]
	s.computed, s.registered = 0, 0
}
