package constrain

import (
	"crypto/sha256"
	"encoding/binary"
	"sync/atomic"
)

// Grammar is a context-free language over bytes. Grammars are immutable values built from
// the constructors of this package (Literal, Bytes, Seq, Alt, Repeat, Recursive, ...) or from
// a JSON Schema, a regular expression or a choice of strings; they compose freely and are safe
// for concurrent use. A Grammar says nothing about tokens: Vocab.Compile binds it to a
// tokenizer's vocabulary.
type Grammar struct {
	kind   kind
	set    byteSet    // kBytes
	lit    string     // kLit
	subs   []*Grammar // kSeq, kAlt; kRepeat: the body
	min    int        // kRepeat
	max    int        // kRepeat; -1: unbounded
	rule   *rule      // kRule
	size   int        // estimated NFA states, saturated at sizeCap
	digest [32]byte   // structural identity, for the compile cache
	prog   atomic.Pointer[progResult]
}

type kind uint8

const (
	kEmpty  kind = iota // the empty string
	kNever              // no string at all
	kBytes              // one byte from a set
	kLit                // a byte string
	kSeq                // concatenation
	kAlt                // union
	kRepeat             // bounded or unbounded repetition
	kRule               // a nonterminal: a call, possibly recursive
)

// rule is a nonterminal. Its body is set once, when Recursive returns; its id makes the
// digest of every grammar that refers to it unique to this rule.
type rule struct {
	id   uint64
	body *Grammar
}

var ruleIDs atomic.Uint64

// sizeCap saturates Grammar.size so that sums never overflow.
const sizeCap = 1 << 40

// byteSet is a set of bytes.
type byteSet [4]uint64

func (s *byteSet) add(b byte)     { s[b>>6] |= 1 << (b & 63) }
func (s byteSet) has(b byte) bool { return s[b>>6]&(1<<(b&63)) != 0 }
func (s *byteSet) addRange(lo, hi byte) {
	for c := int(lo); c <= int(hi); c++ {
		s.add(byte(c))
	}
}
func (s byteSet) empty() bool { return s == byteSet{} }

// ranges returns the set as inclusive ranges, ascending.
func (s byteSet) ranges() [][2]byte {
	var out [][2]byte
	for c := 0; c < 256; {
		if !s.has(byte(c)) {
			c++
			continue
		}
		lo := c
		for c < 256 && s.has(byte(c)) {
			c++
		}
		out = append(out, [2]byte{byte(lo), byte(c - 1)})
	}
	return out
}

func satAdd(a, b int) int { return min(a+b, sizeCap) }
func satMul(a, b int) int {
	if a != 0 && b > sizeCap/a {
		return sizeCap
	}
	return min(a*b, sizeCap)
}

// finish computes the digest of g from its fields and its parts' digests.
func (g *Grammar) finish() *Grammar {
	h := sha256.New()
	var buf [8]byte
	put := func(v uint64) {
		binary.LittleEndian.PutUint64(buf[:], v)
		h.Write(buf[:])
	}
	put(uint64(g.kind))
	switch g.kind {
	case kBytes:
		for _, w := range g.set {
			put(w)
		}
	case kLit:
		put(uint64(len(g.lit)))
		h.Write([]byte(g.lit))
	case kRepeat:
		put(uint64(g.min))
		put(uint64(int64(g.max)))
	case kRule:
		put(g.rule.id)
	}
	put(uint64(len(g.subs)))
	for _, s := range g.subs {
		h.Write(s.digest[:])
	}
	h.Sum(g.digest[:0])
	return g
}

var (
	emptyGrammar = (&Grammar{kind: kEmpty}).finish()
	neverGrammar = (&Grammar{kind: kNever}).finish()
)

// Empty returns the grammar of the empty string alone.
func Empty() *Grammar { return emptyGrammar }

// Never returns the grammar that accepts nothing; Alt ignores it.
func Never() *Grammar { return neverGrammar }

// Literal returns the grammar of the string s alone (its bytes, which need not be UTF-8).
func Literal(s string) *Grammar {
	if s == "" {
		return emptyGrammar
	}
	return (&Grammar{kind: kLit, lit: s, size: len(s)}).finish()
}

// ByteRange returns the grammar of one byte between lo and hi inclusive (Never when lo > hi).
func ByteRange(lo, hi byte) *Grammar {
	var s byteSet
	if lo > hi {
		return neverGrammar
	}
	s.addRange(lo, hi)
	return bytesOf(s)
}

// bytesOf returns the grammar of one byte of s.
func bytesOf(s byteSet) *Grammar {
	if s.empty() {
		return neverGrammar
	}
	return (&Grammar{kind: kBytes, set: s, size: 1}).finish()
}

// Seq returns the concatenation of gs (Empty when there are none).
func Seq(gs ...*Grammar) *Grammar {
	subs := make([]*Grammar, 0, len(gs))
	size := 0
	for _, g := range gs {
		switch g.kind {
		case kEmpty:
			continue
		case kNever:
			return neverGrammar
		case kSeq:
			subs = append(subs, g.subs...)
		default:
			subs = append(subs, g)
		}
		size = satAdd(size, g.size)
	}
	switch len(subs) {
	case 0:
		return emptyGrammar
	case 1:
		return subs[0]
	}
	return (&Grammar{kind: kSeq, subs: subs, size: size}).finish()
}

// Alt returns the union of gs: a string of any of them (Never when there are none).
func Alt(gs ...*Grammar) *Grammar {
	subs := make([]*Grammar, 0, len(gs))
	size := 1
	for _, g := range gs {
		switch g.kind {
		case kNever:
			continue
		case kAlt:
			subs = append(subs, g.subs...)
		default:
			subs = append(subs, g)
		}
		size = satAdd(size, g.size)
	}
	switch len(subs) {
	case 0:
		return neverGrammar
	case 1:
		return subs[0]
	}
	return (&Grammar{kind: kAlt, subs: subs, size: size}).finish()
}

// Repeat returns g repeated at least min and at most max times; a negative max means no
// upper bound. Repeat(g, 0, 1) is Optional(g).
func Repeat(g *Grammar, min, max int) *Grammar {
	min = maxInt(min, 0)
	switch {
	case max >= 0 && max < min:
		return neverGrammar
	case max == 0 || g.kind == kEmpty:
		return emptyGrammar
	case min == 1 && max == 1:
		return g
	case g.kind == kNever:
		if min == 0 {
			return emptyGrammar
		}
		return neverGrammar
	}
	copies := max
	if max < 0 {
		copies = min + 1
	}
	return (&Grammar{kind: kRepeat, subs: []*Grammar{g}, min: min, max: max,
		size: satAdd(satMul(g.size, copies), copies+1)}).finish()
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// Optional returns g or the empty string.
func Optional(g *Grammar) *Grammar { return Repeat(g, 0, 1) }

// Star returns g repeated any number of times, none included.
func Star(g *Grammar) *Grammar { return Repeat(g, 0, -1) }

// Plus returns g repeated at least once.
func Plus(g *Grammar) *Grammar { return Repeat(g, 1, -1) }

// Choice returns the grammar of exactly one of the given strings.
func Choice(options ...string) *Grammar {
	gs := make([]*Grammar, len(options))
	for i, o := range options {
		gs[i] = Literal(o)
	}
	return Alt(gs...)
}

// Recursive returns a nonterminal whose body is define(self): self stands for the grammar
// being defined, so the body may refer to itself (nested JSON values, for instance). A
// reference to self that can be reached before any byte is read (left recursion) makes
// Compile fail with ErrLeftRecursion.
//
// The digest under which Vocab.Compile caches a grammar includes the identity of each
// nonterminal: build a recursive grammar once and reuse it, rather than build an equal one
// for each request.
func Recursive(define func(self *Grammar) *Grammar) *Grammar {
	r := &rule{id: ruleIDs.Add(1)}
	self := (&Grammar{kind: kRule, rule: r, size: 1}).finish()
	r.body = define(self)
	if r.body == nil {
		r.body = neverGrammar
	}
	return self
}

// Rule returns g as a nonterminal of its own: the same language, compiled once however many
// times it is used (without it each use of g is expanded where it occurs). Useful for large
// grammars repeated many times, such as the items of a long array.
func Rule(g *Grammar) *Grammar {
	if g.kind == kRule || g.kind == kEmpty || g.kind == kNever {
		return g
	}
	return Recursive(func(*Grammar) *Grammar { return g })
}
