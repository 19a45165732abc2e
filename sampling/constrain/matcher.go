package constrain

import (
	"fmt"
)

// Matcher follows one generated sequence through a Constraint: Allow gives the tokens
// allowed next, Advance (or AdvanceBytes) moves past the chosen one, and Accepting says
// whether the text so far is a complete string of the grammar. A Matcher is not safe for
// concurrent use; each sequence has its own. It implements sampling.ConstraintState.
type Matcher struct {
	c         *Constraint
	a, spare  arena
	ready     []cfg // the byte-ready configurations
	accepting bool
	ex        expander
	check     []cfg
	atStart   bool // the next token is the first of the output
}

// NewMatcher returns a Matcher at the start of the grammar and of the output: its first
// token is read as the tokenizer's decoder writes the first token of a text (for
// SentencePiece vocabularies, without the leading space of "▁Hello"), so that the text a
// generation returns is what the grammar accepts.
func (c *Constraint) NewMatcher() *Matcher {
	m := c.NewMatcherMidText()
	m.atStart = c.v.startTrie != nil
	return m
}

// NewMatcherMidText returns a Matcher at the start of the grammar for a constraint that
// begins after some output (for instance once a model has written the start of a tool
// call): every token is read as its text in the middle of the output.
func (c *Constraint) NewMatcherMidText() *Matcher {
	m := &Matcher{c: c}
	m.a.reset()
	m.spare.reset()
	m.ex = expander{p: c.p, a: &m.a, mode: bottomEnd}
	m.ex.expand(cfg{0, 0, -1, false})
	m.ready = append(m.ready, m.ex.out...)
	m.accepting = m.ex.ended
	return m
}

// Accepting reports whether the text so far is a complete string of the grammar, so that
// generation may end here.
func (m *Matcher) Accepting() bool { return m.accepting }

// Done reports whether nothing may follow: the grammar is complete and allows no more
// bytes.
func (m *Matcher) Done() bool { return len(m.ready) == 0 }

// Allow writes to mask the tokens allowed next: bit id%64 of mask[id/64] is set when token
// id may be generated. The bits of ids beyond the vocabulary, and of the tokens the Vocab
// never allows (special tokens such as end-of-sequence), are cleared; tokens beyond the mask
// (a model with fewer ids than its tokenizer) are left out. Generation adds the
// end-of-sequence tokens itself where Accepting is true.
func (m *Matcher) Allow(mask []uint64) error {
	clear(mask)
	limit := int32(min(64*len(mask), m.c.v.size))
	v := m.c.v
	for i, c := range m.ready {
		var e *entry
		if m.atStart {
			e = m.c.firstEntry(i)
		} else {
			e = m.c.entry(c.rule, c.state, c.parent < 0)
		}
		for i, w := range e.allow[:min(len(e.allow), len(mask))] {
			mask[i] |= w
		}
		for _, id := range e.maybe {
			if id >= limit || mask[id>>6]&(1<<(id&63)) != 0 {
				continue
			}
			b := v.tokens[id]
			if m.atStart {
				b = v.startBytes(int(id))
			}
			if m.reads(c, b) {
				mask[id>>6] |= 1 << (id & 63)
			}
		}
	}
	return nil
}

// reads reports whether the bytes b can be read from configuration c.
func (m *Matcher) reads(c cfg, b []byte) bool {
	m.check = append(m.check[:0], c)
	for i, x := range b {
		if ok, _ := m.ex.step(m.check, x); !ok {
			return false
		}
		m.check = append(m.check[:0], m.ex.out...)
		if len(m.check) == 0 && i < len(b)-1 {
			return false // the grammar ended before the token did
		}
	}
	return true
}

// Advance moves past token id. It fails with ErrRejected (and leaves the Matcher as it was)
// when the grammar does not allow the token here.
func (m *Matcher) Advance(id int) error {
	b := m.c.v.TokenBytes(id)
	if m.atStart {
		b = m.c.v.startBytes(id)
	}
	if len(b) == 0 {
		return fmt.Errorf("%w: token %d has no text", ErrRejected, id)
	}
	if err := m.AdvanceBytes(b); err != nil {
		return fmt.Errorf("%w (token %d)", err, id)
	}
	return nil
}

// AdvanceBytes moves past the bytes b, which need not end on a token boundary. It fails
// with ErrRejected (and leaves the Matcher as it was) when the grammar does not allow them
// here.
func (m *Matcher) AdvanceBytes(b []byte) error {
	cur := append(m.check[:0], m.ready...)
	ended := m.accepting
	for i, x := range b {
		ok, _ := m.ex.step(cur, x)
		if !ok {
			m.check = cur
			return fmt.Errorf("%w: byte %d (%q) of %q", ErrRejected, i, x, b)
		}
		cur = append(cur[:0], m.ex.out...)
		ended = m.ex.ended
		if len(cur) == 0 && i < len(b)-1 {
			m.check = cur
			return fmt.Errorf("%w: %q goes past the end", ErrRejected, b)
		}
	}
	m.ready, m.check = append(m.ready[:0], cur...), cur
	m.accepting, m.atStart = ended, false
	m.compact()
	return nil
}

// compact copies the stacks of the ready configurations into the spare arena and swaps the
// arenas, dropping the nodes that mask checks and earlier steps left behind.
func (m *Matcher) compact() {
	if len(m.a.nodes) < 256 {
		return
	}
	m.spare.reset()
	moved := map[int32]int32{}
	var move func(i int32) int32
	move = func(i int32) int32 {
		if i < 0 {
			return -1
		}
		if j, ok := moved[i]; ok {
			return j
		}
		n := m.a.nodes[i]
		j := m.spare.push(n.frame, move(n.parent))
		moved[i] = j
		return j
	}
	for k := range m.ready {
		m.ready[k].parent = move(m.ready[k].parent)
	}
	m.a, m.spare = m.spare, m.a
	m.ex.a = &m.a
}
