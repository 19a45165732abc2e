package constrain

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// A grammar compiles to a set of rules, one per nonterminal (rule 0 is the grammar itself).
// Each rule is a deterministic automaton over bytes whose states may also call other rules:
// a call edge (rule R, return state t) means "read a string of R, then continue from t". The
// automata together form a pushdown automaton; nondeterminism left between byte and call
// edges, or between several calls, is carried at run time as a set of stacks.

// Limits on the size of a compiled grammar; Compile fails with ErrTooComplex beyond them.
const (
	maxNFAStates = 1 << 20
	maxDFAStates = 1 << 17
)

// nfa is the Thompson automaton of one rule, with epsilon, byte-range and call edges.
type nfa struct {
	eps   [][]int32
	edges [][]nfaEdge
	calls [][]call
}

type nfaEdge struct {
	lo, hi byte
	to     int32
}

// call is an edge that reads a string of rule and continues at ret.
type call struct {
	rule, ret int32
}

func (n *nfa) newState() int32 {
	n.eps = append(n.eps, nil)
	n.edges = append(n.edges, nil)
	n.calls = append(n.calls, nil)
	return int32(len(n.eps) - 1)
}

// builder numbers the rules of a grammar and builds their automata.
type builder struct {
	rules   map[*rule]int32
	pending []*rule
	nfa     *nfa
	err     error
}

func (b *builder) ruleIndex(r *rule) int32 {
	if i, ok := b.rules[r]; ok {
		return i
	}
	i := int32(len(b.pending))
	b.rules[r] = i
	b.pending = append(b.pending, r)
	return i
}

// add adds the states reading g after from and returns the state where g ends.
func (b *builder) add(g *Grammar, from int32) int32 {
	n := b.nfa
	if b.err != nil {
		return from
	}
	if len(n.eps) > maxNFAStates {
		b.err = fmt.Errorf("%w: more than %d automaton states", ErrTooComplex, maxNFAStates)
		return from
	}
	switch g.kind {
	case kEmpty:
		return from
	case kNever:
		return n.newState() // unreachable
	case kBytes:
		to := n.newState()
		for _, r := range g.set.ranges() {
			n.edges[from] = append(n.edges[from], nfaEdge{r[0], r[1], to})
		}
		return to
	case kLit:
		at := from
		for i := 0; i < len(g.lit); i++ {
			to := n.newState()
			n.edges[at] = append(n.edges[at], nfaEdge{g.lit[i], g.lit[i], to})
			at = to
		}
		return at
	case kSeq:
		at := from
		for _, s := range g.subs {
			at = b.add(s, at)
		}
		return at
	case kAlt:
		end := n.newState()
		for _, s := range g.subs {
			// Each branch starts from a fresh state so that no branch loops back into
			// from, where the others start.
			start := n.newState()
			n.eps[from] = append(n.eps[from], start)
			e := b.add(s, start)
			n.eps[e] = append(n.eps[e], end)
		}
		return end
	case kRepeat:
		body := g.subs[0]
		at := from
		for range g.min {
			at = b.add(body, at)
		}
		if g.max < 0 {
			loop := n.newState()
			n.eps[at] = append(n.eps[at], loop)
			e := b.add(body, loop)
			n.eps[e] = append(n.eps[e], loop)
			return loop
		}
		end := n.newState()
		n.eps[at] = append(n.eps[at], end)
		for range g.max - g.min {
			start := n.newState()
			n.eps[at] = append(n.eps[at], start)
			at = b.add(body, start)
			n.eps[at] = append(n.eps[at], end)
		}
		return end
	case kRule:
		to := n.newState()
		n.calls[from] = append(n.calls[from], call{b.ruleIndex(g.rule), to})
		return to
	}
	panic("constrain: unknown grammar kind")
}

// dfa is the deterministic automaton of one rule. State 0 is the start; -1 is the dead state.
type dfa struct {
	class  [256]uint8 // byte -> byte class
	nclass int
	next   []int32  // state*nclass + class -> state or -1
	accept []bool   // the rule may end here
	calls  [][]call // the calls leaving each state
	bytes  []bool   // some byte edge leaves the state
}

func (d *dfa) states() int { return len(d.accept) }

// step returns the state after byte c from s, or -1.
func (d *dfa) step(s int32, c byte) int32 { return d.next[int(s)*d.nclass+int(d.class[c])] }

// program is a compiled grammar: its rules, and for each rule the places a call to it
// returns to (which the mask computation uses to look past the end of a rule).
type program struct {
	rules   []*dfa
	returns [][]frame // rule -> the (rule, state) pairs its calls return to
	endsTop bool      // rule 0 may be called too (it is recursive)
}

// frame is a rule and a state of its automaton.
type frame struct{ rule, state int32 }

// compileGrammar builds the program of g.
func compileGrammar(g *Grammar) (*program, error) {
	b := &builder{rules: map[*rule]int32{}}
	root := &rule{body: g}
	b.ruleIndex(root)
	p := &program{}
	for i := 0; i < len(b.pending); i++ {
		b.nfa = &nfa{}
		start := b.nfa.newState()
		end := b.add(b.pending[i].body, start)
		if b.err != nil {
			return nil, b.err
		}
		d, err := determinize(b.nfa, start, end)
		if err != nil {
			return nil, err
		}
		p.rules = append(p.rules, minimize(d))
	}
	if err := p.prune(); err != nil {
		return nil, err
	}
	p.returns = make([][]frame, len(p.rules))
	for r, d := range p.rules {
		for _, cs := range d.calls {
			for _, c := range cs {
				p.returns[c.rule] = append(p.returns[c.rule], frame{int32(r), c.ret})
			}
		}
	}
	p.endsTop = len(p.returns[0]) > 0
	if err := p.checkLeftRecursion(); err != nil {
		return nil, err
	}
	return p, nil
}

// determinize runs the subset construction on the NFA of one rule (start and final states
// given), over byte classes, keeping call edges as symbols of their own.
func determinize(n *nfa, start, final int32) (*dfa, error) {
	d := &dfa{}
	// Byte classes: bytes that every edge treats alike.
	var bound [257]bool
	bound[0], bound[256] = true, true
	for _, es := range n.edges {
		for _, e := range es {
			bound[e.lo], bound[int(e.hi)+1] = true, true
		}
	}
	var reps []byte // a representative byte of each class
	c := -1
	for x := range 256 {
		if bound[x] {
			c++
			reps = append(reps, byte(x))
		}
		d.class[x] = uint8(c)
	}
	d.nclass = c + 1

	mark := make([]int32, len(n.eps)) // epsilon-closure marks, by generation
	gen := int32(0)
	var stack []int32
	closure := func(set []int32) []int32 {
		gen++
		out := set[:0:0]
		stack = append(stack[:0], set...)
		for len(stack) > 0 {
			s := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if mark[s] == gen {
				continue
			}
			mark[s] = gen
			out = append(out, s)
			stack = append(stack, n.eps[s]...)
		}
		slices.Sort(out)
		return out
	}
	index := map[string]int32{}
	var sets [][]int32
	key := func(set []int32) string {
		b := make([]byte, 4*len(set))
		for i, s := range set {
			binary.LittleEndian.PutUint32(b[4*i:], uint32(s))
		}
		return string(b)
	}
	intern := func(set []int32) (int32, error) {
		if len(set) == 0 {
			return -1, nil
		}
		k := key(set)
		if i, ok := index[k]; ok {
			return i, nil
		}
		if len(sets) >= maxDFAStates {
			return 0, fmt.Errorf("%w: more than %d automaton states", ErrTooComplex, maxDFAStates)
		}
		i := int32(len(sets))
		index[k] = i
		sets = append(sets, set)
		return i, nil
	}
	if _, err := intern(closure([]int32{start})); err != nil {
		return nil, err
	}
	var targets []int32
	for i := 0; i < len(sets); i++ {
		set := sets[i]
		acc := slices.Contains(set, final)
		d.accept = append(d.accept, acc)
		hasBytes := false
		for _, rep := range reps {
			targets = targets[:0]
			for _, s := range set {
				for _, e := range n.edges[s] {
					if e.lo <= rep && rep <= e.hi {
						targets = append(targets, e.to)
					}
				}
			}
			t, err := intern(closure(targets))
			if err != nil {
				return nil, err
			}
			d.next = append(d.next, t)
			hasBytes = hasBytes || t >= 0
		}
		d.bytes = append(d.bytes, hasBytes)
		var cs []call
		var rules []int32
		for _, s := range set {
			for _, c := range n.calls[s] {
				if !slices.Contains(rules, c.rule) {
					rules = append(rules, c.rule)
				}
			}
		}
		slices.Sort(rules)
		for _, r := range rules {
			targets = targets[:0]
			for _, s := range set {
				for _, c := range n.calls[s] {
					if c.rule == r {
						targets = append(targets, c.ret)
					}
				}
			}
			t, err := intern(closure(targets))
			if err != nil {
				return nil, err
			}
			cs = append(cs, call{r, t})
		}
		d.calls = append(d.calls, cs)
	}
	return d, nil
}

// minimize merges the equivalent states of d (Moore's partition refinement), dropping states
// from which no accepting state can be reached.
func minimize(d *dfa) *dfa {
	n := d.states()
	// Live states: those that can reach an accepting state.
	live := make([]bool, n)
	rev := make([][]int32, n)
	for s := range n {
		for c := range d.nclass {
			if t := d.next[s*d.nclass+c]; t >= 0 {
				rev[t] = append(rev[t], int32(s))
			}
		}
		for _, c := range d.calls[s] {
			rev[c.ret] = append(rev[c.ret], int32(s))
		}
	}
	var stack []int32
	for s := range n {
		if d.accept[s] {
			live[s] = true
			stack = append(stack, int32(s))
		}
	}
	for len(stack) > 0 {
		s := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, p := range rev[s] {
			if !live[p] {
				live[p] = true
				stack = append(stack, p)
			}
		}
	}
	tgt := func(t int32) int32 {
		if t >= 0 && !live[t] {
			return -1
		}
		return t
	}
	// Refine blocks until stable; block -1 is the dead state.
	block := make([]int32, n)
	for s := range n {
		block[s] = -1
		if live[s] {
			block[s] = 0
			if d.accept[s] {
				block[s] = 1
			}
		}
	}
	blockOf := func(t int32) int32 {
		if t = tgt(t); t < 0 {
			return -1
		}
		return block[t]
	}
	nblocks := -1
	sig := make([]byte, 0, 64)
	for {
		index := map[string]int32{}
		next := make([]int32, n)
		for s := range n {
			if block[s] < 0 {
				next[s] = -1
				continue
			}
			sig = sig[:0]
			sig = binary.LittleEndian.AppendUint32(sig, uint32(block[s]))
			for c := range d.nclass {
				sig = binary.LittleEndian.AppendUint32(sig, uint32(blockOf(d.next[s*d.nclass+c])))
			}
			for _, c := range d.calls[s] {
				if b := blockOf(c.ret); b >= 0 {
					sig = binary.LittleEndian.AppendUint32(sig, uint32(c.rule))
					sig = binary.LittleEndian.AppendUint32(sig, uint32(b))
				}
			}
			k := string(sig)
			i, ok := index[k]
			if !ok {
				i = int32(len(index))
				index[k] = i
			}
			next[s] = i
		}
		block = next
		if len(index) == nblocks {
			break
		}
		nblocks = len(index)
	}
	// Renumber so that the start state's block is 0; the start may be dead (an empty
	// language): it then becomes a state with no edge that does not accept.
	order := make([]int32, maxInt(nblocks, 0)+1)
	for i := range order {
		order[i] = -1
	}
	newState := int32(0)
	assign := func(b int32) int32 {
		if order[b] < 0 {
			order[b] = newState
			newState++
		}
		return order[b]
	}
	m := &dfa{class: d.class, nclass: d.nclass}
	if block[0] < 0 {
		m.next = make([]int32, d.nclass)
		for i := range m.next {
			m.next[i] = -1
		}
		m.accept, m.calls, m.bytes = []bool{false}, [][]call{nil}, []bool{false}
		return m
	}
	// Breadth-first from the start so that reachable blocks get numbers.
	assign(block[0])
	rep := make([]int32, nblocks) // a state of each block
	for s := n - 1; s >= 0; s-- {
		if block[s] >= 0 {
			rep[block[s]] = int32(s)
		}
	}
	queue := []int32{block[0]}
	for q := 0; q < len(queue); q++ {
		s := rep[queue[q]]
		visit := func(t int32) {
			if b := blockOf(t); b >= 0 && order[b] < 0 {
				assign(b)
				queue = append(queue, b)
			}
		}
		for c := range d.nclass {
			visit(d.next[int(s)*d.nclass+c])
		}
		for _, c := range d.calls[s] {
			visit(c.ret)
		}
	}
	states := int(newState)
	m.next = make([]int32, states*d.nclass)
	m.accept = make([]bool, states)
	m.calls = make([][]call, states)
	m.bytes = make([]bool, states)
	for _, b := range queue {
		s, ns := rep[b], order[b]
		m.accept[ns] = d.accept[s]
		for c := range d.nclass {
			t := int32(-1)
			if tb := blockOf(d.next[int(s)*d.nclass+c]); tb >= 0 {
				t = order[tb]
			}
			m.next[int(ns)*d.nclass+c] = t
			m.bytes[ns] = m.bytes[ns] || t >= 0
		}
		for _, c := range d.calls[s] {
			if tb := blockOf(c.ret); tb >= 0 {
				m.calls[ns] = append(m.calls[ns], call{c.rule, order[tb]})
			}
		}
	}
	return m
}

// checkLeftRecursion fails when a rule can call itself before reading a byte, which would
// make the set of stacks infinite.
func (p *program) checkLeftRecursion() error {
	n := len(p.rules)
	// nullable[r]: rule r accepts the empty string.
	nullable := make([]bool, n)
	for changed := true; changed; {
		changed = false
		for r, d := range p.rules {
			if !nullable[r] && p.reachEmpty(d, nullable, nil) {
				nullable[r] = true
				changed = true
			}
		}
	}
	// first[r]: the rules r may call before reading a byte.
	first := make([][]int32, n)
	for r, d := range p.rules {
		p.reachEmpty(d, nullable, func(c call) { first[r] = append(first[r], c.rule) })
	}
	// A cycle in first is left recursion.
	const (
		white = iota
		grey
		black
	)
	color := make([]uint8, n)
	var visit func(r int32) bool
	visit = func(r int32) bool {
		color[r] = grey
		for _, c := range first[r] {
			if color[c] == grey || color[c] == white && visit(c) {
				return true
			}
		}
		color[r] = black
		return false
	}
	for r := range n {
		if color[r] == white && visit(int32(r)) {
			return ErrLeftRecursion
		}
	}
	return nil
}

// reachEmpty walks the states of d reachable from the start without reading a byte (through
// calls of nullable rules), reporting each call met to onCall, and says whether an accepting
// state is among them.
func (p *program) reachEmpty(d *dfa, nullable []bool, onCall func(call)) bool {
	seen := map[int32]bool{0: true}
	stack := []int32{0}
	acc := false
	for len(stack) > 0 {
		s := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		acc = acc || d.accept[s]
		for _, c := range d.calls[s] {
			if onCall != nil {
				onCall(c)
			}
			if nullable[c.rule] && !seen[c.ret] {
				seen[c.ret] = true
				stack = append(stack, c.ret)
			}
		}
	}
	return acc
}

// prune removes the calls of rules that accept no string (a rule that can only end by
// calling itself again, for instance), and the states left with no way to an end, so that
// every configuration the matcher reaches can be completed. It fails with ErrEmptyLanguage
// when the grammar itself accepts nothing.
func (p *program) prune() error {
	productive := make([]bool, len(p.rules))
	for changed := true; changed; {
		changed = false
		for r, d := range p.rules {
			if !productive[r] && d.canEnd(productive) {
				productive[r] = true
				changed = true
			}
		}
	}
	for r, d := range p.rules {
		cut := false
		for s, cs := range d.calls {
			kept := cs[:0]
			for _, c := range cs {
				if productive[c.rule] {
					kept = append(kept, c)
				}
			}
			cut = cut || len(kept) < len(cs)
			d.calls[s] = kept
		}
		if cut {
			p.rules[r] = minimize(d)
		}
	}
	if !productive[0] {
		return fmt.Errorf("%w: the grammar accepts no string", ErrEmptyLanguage)
	}
	return nil
}

// canEnd reports whether an accepting state of d can be reached from its start through
// byte edges and calls of productive rules.
func (d *dfa) canEnd(productive []bool) bool {
	seen := make([]bool, d.states())
	stack := []int32{0}
	seen[0] = true
	for len(stack) > 0 {
		s := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if d.accept[s] {
			return true
		}
		visit := func(t int32) {
			if t >= 0 && !seen[t] {
				seen[t] = true
				stack = append(stack, t)
			}
		}
		for c := range d.nclass {
			visit(d.next[int(s)*d.nclass+c])
		}
		for _, c := range d.calls[s] {
			if productive[c.rule] {
				visit(c.ret)
			}
		}
	}
	return false
}
