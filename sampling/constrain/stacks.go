package constrain

// The run-time state of a program is a set of configurations: each is the rule and state on
// top of a stack of pending returns. The frames below the top are interned in an arena, so
// that equal stacks are equal indices and configurations are small comparable values.

// cfg is one configuration: the top frame (rule, state) and the stack below it (parent, an
// index into an arena, or -1 for none). esc marks a configuration of a mask computation
// that has read past the end of the frame the computation started from, and so holds only
// for some of the contexts that frame may be in.
type cfg struct {
	rule, state int32
	parent      int32
	esc         bool
}

// node is a pending return: the frame to continue at, and the stack below it.
type node struct {
	frame
	parent int32
}

// arena interns stack nodes.
type arena struct {
	nodes []node
	index map[node]int32
}

func (a *arena) reset() {
	a.nodes = a.nodes[:0]
	if a.index == nil {
		a.index = map[node]int32{}
	}
	clear(a.index)
}

func (a *arena) push(f frame, parent int32) int32 {
	n := node{f, parent}
	if i, ok := a.index[n]; ok {
		return i
	}
	i := int32(len(a.nodes))
	a.nodes = append(a.nodes, n)
	a.index[n] = i
	return i
}

// bottomMode says what popping the last frame of a configuration means.
type bottomMode uint8

const (
	// bottomEnd: the grammar ends there (the frame is rule 0 at the bottom of the stack).
	bottomEnd bottomMode = iota
	// bottomAny: the frame may be any call of its rule; popping continues, escaped, at
	// every place a call of that rule returns to.
	bottomAny
)

// expander computes the configurations reachable without reading a byte.
type expander struct {
	p     *program
	a     *arena
	mode  bottomMode
	seen  []cfg
	out   []cfg
	ended bool // the end of the grammar was reached
}

// expand adds to e.out every byte-ready configuration (one whose top state reads bytes)
// reachable from c without reading a byte: through calls, which push, and accepting states,
// which pop.
func (e *expander) expand(c cfg) {
	d := e.p.rules[c.rule]
	calls, acc := d.calls[c.state], d.accept[c.state]
	if len(calls) == 0 && !acc {
		// The common case: no move without a byte.
		if d.bytes[c.state] && !e.has(c) {
			e.out = append(e.out, c)
		}
		return
	}
	for _, s := range e.seen {
		if s == c {
			return
		}
	}
	e.seen = append(e.seen, c)
	if d.bytes[c.state] {
		e.out = append(e.out, c)
	}
	for _, k := range calls {
		p := e.a.push(frame{c.rule, k.ret}, c.parent)
		e.expand(cfg{k.rule, 0, p, c.esc})
	}
	if !acc {
		return
	}
	if c.parent >= 0 {
		n := e.a.nodes[c.parent]
		e.expand(cfg{n.rule, n.state, n.parent, c.esc})
		return
	}
	if e.mode == bottomEnd && !c.esc {
		e.ended = true
		return
	}
	if c.rule == 0 {
		e.ended = true // rule 0 may also be the whole grammar
	}
	for _, f := range e.p.returns[c.rule] {
		e.expand(cfg{f.rule, f.state, -1, true})
	}
}

func (e *expander) has(c cfg) bool {
	for _, o := range e.out {
		if o == c {
			return true
		}
	}
	return false
}

// step reads byte b from every configuration of from and expands the results into e.out
// (which it resets first). It reports whether a configuration that had not escaped read b
// (ok) and whether an escaped one did (esc).
func (e *expander) step(from []cfg, b byte) (ok, esc bool) {
	e.out, e.seen, e.ended = e.out[:0], e.seen[:0], false
	for _, c := range from {
		d := e.p.rules[c.rule]
		t := d.step(c.state, b)
		if t < 0 {
			continue
		}
		if c.esc {
			esc = true
		} else {
			ok = true
		}
		e.expand(cfg{c.rule, t, c.parent, c.esc})
	}
	return ok, esc
}
