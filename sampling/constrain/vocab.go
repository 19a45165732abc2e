package constrain

import (
	"bytes"
	"container/list"
	"runtime"
	"slices"
	"sync"
	"weak"

	"github.com/fathom-llm/fathom/tokenizer"
)

// Vocab indexes the byte strings of a tokenizer's tokens in a prefix tree, against which
// compiled grammars compute their masks. It also caches compiled grammars (see Compile). A
// Vocab is safe for concurrent use; build it once per tokenizer (VocabFor does).
type Vocab struct {
	size   int
	tokens [][]byte // id -> bytes; nil for tokens never allowed (special, empty)
	trie   trie

	// The bytes of the tokens whose text differs at the start of the output (a leading
	// space that the tokenizer's decoder strips there), and the prefix tree of every
	// token's text at the start; nil when no token differs.
	start     map[int32][]byte
	startTrie *trie

	mu    sync.Mutex
	lru   *list.List // of *cached, most recent first
	byKey map[[32]byte]*list.Element
	limit int
}

// cached is one compiled grammar in a Vocab's cache.
type cached struct {
	key  [32]byte
	once sync.Once
	c    *Constraint
	err  error
}

// DefaultCacheSize is the number of compiled grammars a Vocab keeps.
const DefaultCacheSize = 128

// NewVocab indexes tokens: tokens[id] is the text token id adds to the output, as raw bytes
// (a byte-fallback token is its one byte). A nil or empty entry is a token the constraints
// never allow (special tokens such as end-of-sequence, which generation adds itself where
// the constraint accepts the end).
func NewVocab(tokens [][]byte) *Vocab {
	v := &Vocab{size: len(tokens), tokens: make([][]byte, len(tokens)),
		lru: list.New(), byKey: map[[32]byte]*list.Element{}, limit: DefaultCacheSize}
	for id, b := range tokens {
		if len(b) > 0 {
			v.tokens[id] = slices.Clone(b)
		}
	}
	v.trie = buildTrie(v.tokens)
	return v
}

// NewTokenizerVocab indexes the vocabulary of tok: each token's bytes as
// tokenizer.Tokenizer.TokenBytes gives them (byte-fallback tokens as their byte, "▁" as a
// space), special tokens left out.
func NewTokenizerVocab(tok *tokenizer.Tokenizer) *Vocab {
	tokens := make([][]byte, tok.VocabSize())
	start := map[int32][]byte{}
	for id := range tokens {
		if tok.IsSpecial(id) {
			continue
		}
		b := tok.TokenBytes(id)
		tokens[id] = b
		// The decoder strips the leading space of the first token of a text ("▁Hello" is
		// "Hello" there): what a token adds at the start is its text decoded alone.
		if len(b) > 0 && b[0] == ' ' {
			if alone := tok.Decode([]int{id}, false); alone == string(b[1:]) {
				start[int32(id)] = []byte(alone)
			}
		}
	}
	v := NewVocab(tokens)
	if len(start) > 0 {
		v.start = start
		st := make([][]byte, len(v.tokens))
		for id, b := range v.tokens {
			if s, ok := start[int32(id)]; ok {
				b = s
			}
			st[id] = b
		}
		t := buildTrie(st)
		v.startTrie = &t
	}
	return v
}

// startBytes returns what token id adds at the start of the output.
func (v *Vocab) startBytes(id int) []byte {
	if s, ok := v.start[int32(id)]; ok {
		return s
	}
	return v.TokenBytes(id)
}

var vocabs sync.Map // weak.Pointer[tokenizer.Tokenizer] -> *Vocab

// VocabFor returns the Vocab of tok, built on first use and kept while tok is reachable.
func VocabFor(tok *tokenizer.Tokenizer) *Vocab {
	key := weak.Make(tok)
	if v, ok := vocabs.Load(key); ok {
		return v.(*Vocab)
	}
	v, loaded := vocabs.LoadOrStore(key, NewTokenizerVocab(tok))
	if !loaded {
		runtime.AddCleanup(tok, func(k weak.Pointer[tokenizer.Tokenizer]) { vocabs.Delete(k) }, key)
	}
	return v.(*Vocab)
}

// Size returns the number of token ids of the vocabulary.
func (v *Vocab) Size() int { return v.size }

// TokenBytes returns the bytes of token id, or nil for a token the constraints never allow.
func (v *Vocab) TokenBytes(id int) []byte {
	if id < 0 || id >= v.size {
		return nil
	}
	return v.tokens[id]
}

// SetCacheSize sets the number of compiled grammars v keeps (DefaultCacheSize at first); 0
// turns the cache off.
func (v *Vocab) SetCacheSize(n int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.limit = max(n, 0)
	v.trim()
}

func (v *Vocab) trim() {
	for v.lru.Len() > v.limit {
		e := v.lru.Back()
		delete(v.byKey, e.Value.(*cached).key)
		v.lru.Remove(e)
	}
}

// Compile binds g to the vocabulary. Compiled grammars are cached by g's structure (a
// bounded cache, least recently used first out), so compiling the same grammar again, such
// as the grammar of a JSON Schema seen before, returns the same *Constraint with the masks
// it has computed so far. It fails with ErrLeftRecursion or ErrTooComplex.
func (v *Vocab) Compile(g *Grammar) (*Constraint, error) {
	v.mu.Lock()
	var c *cached
	if e, ok := v.byKey[g.digest]; ok {
		v.lru.MoveToFront(e)
		c = e.Value.(*cached)
	} else {
		c = &cached{key: g.digest}
		if v.limit > 0 {
			v.byKey[g.digest] = v.lru.PushFront(c)
			v.trim()
		}
	}
	v.mu.Unlock()
	c.once.Do(func() {
		var p *program
		if p, c.err = g.program(); c.err == nil {
			c.c = newConstraint(p, v)
		}
	})
	return c.c, c.err
}

// trie is the prefix tree of the token strings, stored in preorder: node i reads byte
// char[i] at depth depth[i] (the children of the root have depth 1), its subtree ends before
// node end[i], and the tokens that end at it are ids[first[i]:first[i+1]].
type trie struct {
	char  []byte
	depth []int32
	end   []int32
	first []int32
	ids   []int32
	maxD  int
}

func buildTrie(tokens [][]byte) trie {
	order := make([]int32, 0, len(tokens))
	for id, b := range tokens {
		if len(b) > 0 {
			order = append(order, int32(id))
		}
	}
	slices.SortStableFunc(order, func(a, b int32) int { return bytes.Compare(tokens[a], tokens[b]) })
	var t trie
	var path []int32 // the open nodes, by depth-1
	var prev []byte
	closeTo := func(d int) {
		for len(path) > d {
			t.end[path[len(path)-1]] = int32(len(t.char))
			path = path[:len(path)-1]
		}
	}
	for _, id := range order {
		b := tokens[id]
		lcp := 0
		for lcp < len(b) && lcp < len(prev) && b[lcp] == prev[lcp] {
			lcp++
		}
		closeTo(lcp)
		for d := lcp; d < len(b); d++ {
			path = append(path, int32(len(t.char)))
			t.char = append(t.char, b[d])
			t.depth = append(t.depth, int32(d+1))
			t.end = append(t.end, 0)
			t.first = append(t.first, int32(len(t.ids)))
		}
		t.ids = append(t.ids, id)
		t.maxD = max(t.maxD, len(b))
		prev = b
	}
	closeTo(0)
	t.first = append(t.first, int32(len(t.ids)))
	return t
}
