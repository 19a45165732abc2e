package constrain

import (
	"encoding/binary"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/fathom-llm/fathom/sampling"
)

// Constraint is a grammar compiled against a vocabulary (Vocab.Compile). It is immutable but
// for its caches, safe for concurrent use, and starts one Matcher per generated sequence. It
// implements sampling.Constraint.
type Constraint struct {
	p     *program
	v     *Vocab
	words int // mask words: (vocabulary size + 63) / 64

	// The token masks of each (rule, state), computed on first use: for a frame with
	// unknown frames below it (inner), and for rule 0 at the bottom of the stack (bottom).
	inner  [][]atomic.Pointer[entry]
	bottom []atomic.Pointer[entry]
	// The states of a rule that no token can tell apart share their masks: classes[r][s]
	// is the slot of state s of rule r (nil: its own).
	classes [][]int32
	// The masks of the first token of the output, where tokens read as their start forms
	// (Vocab.start): one per configuration of a new matcher.
	initial []cfg
	first   []atomic.Pointer[entry]

	walkers sync.Pool // *walker

	// The distinct allow bitsets, by hash: frames that allow the same tokens (the positions
	// of a long string, for instance) share one.
	mu    sync.Mutex
	masks map[uint64][][]uint64
}

// entry is what a frame allows, whatever lies below it: allow holds the tokens the frame
// accepts in every context, maybe the tokens that read past the end of the frame and that
// some context may accept (checked against the actual stack at each step).
type entry struct {
	allow []uint64
	maybe []int32
}

func newConstraint(p *program, v *Vocab) *Constraint {
	c := &Constraint{p: p, v: v, words: (v.size + 63) / 64}
	c.inner = make([][]atomic.Pointer[entry], len(p.rules))
	c.classes = make([][]int32, len(p.rules))
	for r, d := range p.rules {
		n := d.states()
		if c.classes[r], n = lookaheadClasses(d, v.trie.maxD); c.classes[r] == nil {
			n = d.states()
		}
		c.inner[r] = make([]atomic.Pointer[entry], n)
	}
	c.bottom = make([]atomic.Pointer[entry], len(c.inner[0]))
	var a arena
	a.reset()
	ex := expander{p: p, a: &a, mode: bottomEnd}
	ex.expand(cfg{0, 0, -1, false})
	c.initial = ex.out
	c.first = make([]atomic.Pointer[entry], len(c.initial))
	return c
}

// Vocab returns the vocabulary c was compiled against.
func (c *Constraint) Vocab() *Vocab { return c.v }

// NewState returns c.NewMatcher(); it makes *Constraint a sampling.Constraint.
func (c *Constraint) NewState() sampling.ConstraintState { return c.NewMatcher() }

// entry returns the mask entry of frame (rule, state), computing it on first use.
func (c *Constraint) entry(rule, state int32, atBottom bool) *entry {
	k := state
	if cl := c.classes[rule]; cl != nil {
		k = cl[state]
	}
	slot := &c.inner[rule][k]
	mode := bottomAny
	if atBottom && rule == 0 {
		slot, mode = &c.bottom[k], bottomEnd
	}
	return c.load(slot, rule, state, mode, &c.v.trie)
}

// firstEntry returns the mask entry of the first token of the output at the i-th initial
// configuration (from whose top frame the walk starts: the stack below is empty or interned
// in the matcher's arena as in any new matcher).
func (c *Constraint) firstEntry(i int) *entry {
	k := c.initial[i]
	mode := bottomAny
	if k.parent < 0 {
		mode = bottomEnd
	}
	return c.load(&c.first[i], k.rule, k.state, mode, c.v.startTrie)
}

// load returns the entry in slot, computing it on first use by walking t from frame (rule,
// state).
func (c *Constraint) load(slot *atomic.Pointer[entry], rule, state int32, mode bottomMode, t *trie) *entry {
	if e := slot.Load(); e != nil {
		return e
	}
	e := c.compute(rule, state, mode, t)
	e.allow = c.intern(e.allow)
	if !slot.CompareAndSwap(nil, e) {
		return slot.Load()
	}
	return e
}

// intern returns the stored bitset equal to allow, storing allow if there is none.
func (c *Constraint) intern(allow []uint64) []uint64 {
	h := uint64(14695981039346656037)
	for _, w := range allow {
		h = (h ^ w) * 1099511628211
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.masks == nil {
		c.masks = map[uint64][][]uint64{}
	}
	for _, m := range c.masks[h] {
		if slices.Equal(m, allow) {
			return m
		}
	}
	c.masks[h] = append(c.masks[h], allow)
	return allow
}

// lookaheadClasses groups the states of d that read alike every string of up to depth bytes
// (Moore's refinement, stopped after depth rounds): from such states every token, which is
// at most depth bytes long, is read alike, so they have the same masks. It returns the class
// of each state and the number of classes, or nil for a rule that calls others (whose
// states it leaves apart) or whose states are all distinct.
func lookaheadClasses(d *dfa, depth int) ([]int32, int) {
	n := d.states()
	for _, cs := range d.calls {
		if len(cs) > 0 {
			return nil, 0
		}
	}
	class := make([]int32, n)
	for s := range n {
		if d.accept[s] {
			class[s] = 1
		}
	}
	count := 0
	sig := make([]byte, 0, 4*(d.nclass+1))
	next := make([]int32, n)
	for range depth {
		index := map[string]int32{}
		for s := range n {
			sig = binary.LittleEndian.AppendUint32(sig[:0], uint32(class[s]))
			for c := range d.nclass {
				t := d.next[s*d.nclass+c]
				if t >= 0 {
					t = class[t]
				}
				sig = binary.LittleEndian.AppendUint32(sig, uint32(t))
			}
			k, ok := index[string(sig)]
			if !ok {
				k = int32(len(index))
				index[string(sig)] = k
			}
			next[s] = k
		}
		class, next = next, class
		if len(index) == count || len(index) == n {
			break
		}
		count = len(index)
	}
	count = 0
	for _, k := range class {
		count = max(count, int(k)+1)
	}
	if count == n {
		return nil, 0
	}
	return class, count
}

// walker is the scratch space of a mask computation.
type walker struct {
	a      arena
	ex     expander
	levels [][]cfg // configurations after each depth of the trie
}

// compute walks the vocabulary's prefix tree from frame (rule, state): a token is allowed
// when its bytes can be read without leaving the frame, maybe allowed when they can only be
// read by leaving it (then the places its rule returns to stand for the unknown stack
// below), and refused otherwise. A subtree is skipped as soon as no configuration is left.
func (c *Constraint) compute(rule, state int32, mode bottomMode, t *trie) *entry {
	w, _ := c.walkers.Get().(*walker)
	if w == nil {
		w = &walker{}
	}
	defer c.walkers.Put(w)
	w.a.reset()
	w.ex = expander{p: c.p, a: &w.a, mode: mode, seen: w.ex.seen, out: w.ex.out}
	for len(w.levels) <= t.maxD {
		w.levels = append(w.levels, nil)
	}
	w.levels[0] = append(w.levels[0][:0], cfg{rule, state, -1, false})
	e := &entry{allow: make([]uint64, c.words)}
	rules := c.p.rules
	for i := 0; i < len(t.char); {
		d := t.depth[i]
		prev := w.levels[d-1]
		var ok, esc bool
		if len(prev) == 1 && !prev[0].esc {
			// The common case, one configuration: a plain step of its automaton, unless
			// the state reached calls or returns.
			k := prev[0]
			a := rules[k.rule]
			s := a.step(k.state, t.char[i])
			if s < 0 {
				i = int(t.end[i])
				continue
			}
			if len(a.calls[s]) == 0 && !a.accept[s] {
				for _, id := range t.ids[t.first[i]:t.first[i+1]] {
					e.allow[id>>6] |= 1 << (id & 63)
				}
				if !a.bytes[s] {
					i = int(t.end[i])
					continue
				}
				w.levels[d] = append(w.levels[d][:0], cfg{k.rule, s, k.parent, false})
				i++
				continue
			}
		}
		ok, esc = w.ex.step(prev, t.char[i])
		if !ok && !esc {
			i = int(t.end[i])
			continue
		}
		for _, id := range t.ids[t.first[i]:t.first[i+1]] {
			if ok {
				e.allow[id>>6] |= 1 << (id & 63)
			} else {
				e.maybe = append(e.maybe, id)
			}
		}
		if len(w.ex.out) == 0 {
			i = int(t.end[i])
			continue
		}
		w.levels[d] = append(w.levels[d][:0], w.ex.out...)
		i++
	}
	return e
}
