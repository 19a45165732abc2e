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
		if size := b.pending[i].body.size; size > maxNFAStates {
			return nil, fmt.Errorf("%w: about %d automaton states, more than %d", ErrTooComplex, size, maxNFAStates)
		}
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
	c := -1
	for x := range 256 {
		if bound[x] {
			c++
		}
		d.class[x] = uint8(c)
	}
	d.nclass = c + 1

	mark := make([]int32, len(n.eps)) // epsilon-closure marks, by generation
	gen := int32(0)
	var stack []int32
	// closure returns the sorted epsilon closure of set, in a new slice.
	closure := func(set []int32) []int32 {
		gen++
		out := make([]int32, 0, len(set)+4)
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
	var key []byte
	intern := func(targets []int32) (int32, error) {
		if len(targets) == 0 {
			return -1, nil
		}
		set := closure(targets)
		key = key[:0]
		for _, s := range set {
			key = binary.LittleEndian.AppendUint32(key, uint32(s))
		}
		if i, ok := index[string(key)]; ok {
			return i, nil
		}
		if len(sets) >= maxDFAStates {
			return 0, fmt.Errorf("%w: more than %d automaton states", ErrTooComplex, maxDFAStates)
		}
		i := int32(len(sets))
		index[string(key)] = i
		sets = append(sets, set)
		return i, nil
	}
	if _, err := intern([]int32{start}); err != nil {
		return nil, err
	}
	targets := make([][]int32, d.nclass) // per class, the NFA states reached
	var calls []call
	for i := 0; i < len(sets); i++ {
		set := sets[i]
		d.accept = append(d.accept, slices.Contains(set, final))
		for k := range targets {
			targets[k] = targets[k][:0]
		}
		calls = calls[:0]
		for _, s := range set {
			for _, e := range n.edges[s] {
				for k := d.class[e.lo]; ; k++ {
					targets[k] = append(targets[k], e.to)
					if k == d.class[e.hi] {
						break
					}
				}
			}
			calls = append(calls, n.calls[s]...)
		}
		hasBytes := false
		for k := range targets {
			t, err := intern(targets[k])
			if err != nil {
				return nil, err
			}
			d.next = append(d.next, t)
			hasBytes = hasBytes || t >= 0
		}
		d.bytes = append(d.bytes, hasBytes)
		// One call edge per rule called, to the union of its return states.
		slices.SortFunc(calls, func(a, b call) int { return int(a.rule - b.rule) })
		var cs []call
		for j := 0; j < len(calls); {
			r := calls[j].rule
			var rets []int32
			for ; j < len(calls) && calls[j].rule == r; j++ {
				rets = append(rets, calls[j].ret)
			}
			t, err := intern(rets)
			if err != nil {
				return nil, err
			}
			cs = append(cs, call{r, t})
		}
		d.calls = append(d.calls, cs)
	}
	return d, nil
}

// minimize merges the equivalent states of d (Hopcroft's partition refinement, call edges
// counted as symbols of their own), dropping the states from which no accepting state can
// be reached and those the start cannot reach.
func minimize(d *dfa) *dfa {
	n := d.states()
	live := liveStates(d)
	// Symbols: the byte classes, then one per rule called.
	symOf := map[int32]int{}
	for _, cs := range d.calls {
		for _, c := range cs {
			if _, ok := symOf[c.rule]; !ok {
				symOf[c.rule] = d.nclass + len(symOf)
			}
		}
	}
	nsym := d.nclass + len(symOf)
	dead := int32(n) // a sink for missing edges and states that cannot end
	total := n + 1
	tr := make([]int32, total*nsym)
	for i := range tr {
		tr[i] = dead
	}
	for s := range n {
		if !live[s] {
			continue
		}
		for c := range d.nclass {
			if t := d.next[s*d.nclass+c]; t >= 0 && live[t] {
				tr[s*nsym+c] = t
			}
		}
		for _, c := range d.calls[s] {
			if live[c.ret] {
				tr[s*nsym+symOf[c.rule]] = c.ret
			}
		}
	}
	// Inverse transitions, per symbol and target: sources in inv[invAt[k]:invAt[k+1]] for
	// k = sym*total + target.
	invAt := make([]int32, nsym*total+1)
	for s := range total {
		for c := range nsym {
			invAt[c*total+int(tr[s*nsym+c])+1]++
		}
	}
	for k := 1; k < len(invAt); k++ {
		invAt[k] += invAt[k-1]
	}
	inv := make([]int32, invAt[len(invAt)-1])
	fill := slices.Clone(invAt[:len(invAt)-1])
	for s := range total {
		for c := range nsym {
			k := c*total + int(tr[s*nsym+c])
			inv[fill[k]] = int32(s)
			fill[k]++
		}
	}
	// The partition: the states of block b are elems[start[b]:end[b]].
	elems := make([]int32, 0, total)
	var start, end []int32
	blockOf := make([]int32, total)
	for _, keep := range []func(s int) bool{
		func(s int) bool { return s == n || !live[s] },
		func(s int) bool { return s < n && live[s] && d.accept[s] },
		func(s int) bool { return s < n && live[s] && !d.accept[s] },
	} {
		from := int32(len(elems))
		for s := range total {
			if keep(s) {
				blockOf[s] = int32(len(start))
				elems = append(elems, int32(s))
			}
		}
		if int32(len(elems)) > from {
			start, end = append(start, from), append(end, int32(len(elems)))
		}
	}
	loc := make([]int32, total)
	for i, s := range elems {
		loc[s] = int32(i)
	}
	marked := make([]int32, len(start))
	type work struct{ block, sym int32 }
	var queue []work
	var inQueue []bool // block*nsym + sym
	push := func(w work) {
		k := int(w.block)*nsym + int(w.sym)
		for len(inQueue) <= k {
			inQueue = append(inQueue, false)
		}
		if !inQueue[k] {
			inQueue[k] = true
			queue = append(queue, w)
		}
	}
	for b := range start {
		for c := range nsym {
			push(work{int32(b), int32(c)})
		}
	}
	var x, touched []int32
	for len(queue) > 0 {
		w := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		inQueue[int(w.block)*nsym+int(w.sym)] = false
		// x: the states with a transition on w.sym into block w.block.
		x = x[:0]
		for _, t := range elems[start[w.block]:end[w.block]] {
			k := int(w.sym)*total + int(t)
			x = append(x, inv[invAt[k]:invAt[k+1]]...)
		}
		touched = touched[:0]
		for _, s := range x {
			b := blockOf[s]
			if marked[b] == 0 {
				touched = append(touched, b)
			}
			// Move s to the marked front of its block.
			i, j := loc[s], start[b]+marked[b]
			if i >= j {
				o := elems[j]
				elems[i], elems[j] = o, s
				loc[o], loc[s] = i, j
				marked[b]++
			}
		}
		for _, b := range touched {
			m := marked[b]
			marked[b] = 0
			if m == end[b]-start[b] {
				continue
			}
			// Split: the marked part becomes block nb.
			nb := int32(len(start))
			start, end = append(start, start[b]), append(end, start[b]+m)
			marked = append(marked, 0)
			start[b] += m
			for _, s := range elems[start[nb]:end[nb]] {
				blockOf[s] = nb
			}
			small := nb
			if end[b]-start[b] < m {
				small = b
			}
			for c := range nsym {
				if k := int(b)*nsym + c; k < len(inQueue) && inQueue[k] {
					push(work{nb, int32(c)})
				} else {
					push(work{small, int32(c)})
				}
			}
		}
	}
	// Number the blocks reachable from the start, breadth first; the dead block is -1.
	deadBlock := blockOf[dead]
	order := make([]int32, len(start))
	for i := range order {
		order[i] = -1
	}
	m := &dfa{class: d.class, nclass: d.nclass}
	if blockOf[0] == deadBlock {
		m.next = make([]int32, d.nclass)
		for i := range m.next {
			m.next[i] = -1
		}
		m.accept, m.calls, m.bytes = []bool{false}, [][]call{nil}, []bool{false}
		return m
	}
	rep := func(b int32) int32 { return elems[start[b]] }
	queueB := []int32{blockOf[0]}
	order[blockOf[0]] = 0
	target := func(t int32) int32 {
		b := blockOf[t]
		if b == deadBlock {
			return -1
		}
		if order[b] < 0 {
			order[b] = int32(len(queueB))
			queueB = append(queueB, b)
		}
		return order[b]
	}
	for q := 0; q < len(queueB); q++ {
		s := rep(queueB[q])
		m.accept = append(m.accept, d.accept[s])
		hasBytes := false
		for c := range d.nclass {
			t := target(tr[int(s)*nsym+c])
			m.next = append(m.next, t)
			hasBytes = hasBytes || t >= 0
		}
		m.bytes = append(m.bytes, hasBytes)
		var cs []call
		for _, c := range d.calls[s] {
			if t := target(tr[int(s)*nsym+symOf[c.rule]]); t >= 0 {
				cs = append(cs, call{c.rule, t})
			}
		}
		m.calls = append(m.calls, cs)
	}
	return m
}

// liveStates returns the states of d from which an accepting state can be reached.
func liveStates(d *dfa) []bool {
	n := d.states()
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
	return live
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
