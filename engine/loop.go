package engine

import (
	"slices"
	"time"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/sampling"
)

// scheduled is a sequence's part of the step being planned: n tokens from its position
// computed; regFrom is the number of blocks it had offered to the prefix cache before.
type scheduled struct {
	s       *seq
	n       int
	regFrom int
	cost    float64 // what it counts against the step's token budget
	row     bool    // whether the step computes the logits of its last token
}

// loop runs the engine: it takes the events posted to it, then plans and runs a step, until
// the engine is closed.
func (e *Engine) loop() {
	defer close(e.exited)
	var inbox []event
	for {
		e.mu.Lock()
		inbox, e.inbox = e.inbox, inbox[:0]
		closed := e.closed
		e.mu.Unlock()
		for i, ev := range inbox {
			e.handle(ev, closed)
			inbox[i] = event{}
		}
		if closed {
			e.shutdown()
			return
		}
		e.schedule()
		if len(e.batch) > 0 {
			e.run()
		}
		e.gauges()
		if len(e.batch) == 0 {
			<-e.wake
		}
	}
}

// handle acts on one event.
func (e *Engine) handle(ev event, closed bool) {
	switch {
	case ev.submit != nil:
		r := ev.submit
		for _, s := range r.seqs {
			e.waiting = append(e.waiting, s)
		}
		e.stats.update(func(m *Metrics) { m.PromptTokens += int64(r.seqs[0].promptLen) })
	case ev.cancel != nil:
		r := ev.cancel
		for _, s := range r.seqs {
			if s.state != stateDone && (ev.choice < 0 || ev.choice == s.choice) {
				e.remove(s)
				e.endChoice(s, ev.reason)
			}
		}
	case ev.job != nil:
		if closed {
			ev.job.done <- ErrClosed
			return
		}
		ev.job.done <- ev.job.run()
	}
}

// shutdown fails every request with ErrClosed.
func (e *Engine) shutdown() {
	for len(e.running) > 0 {
		e.fail(e.running[0].req, ErrClosed)
	}
	for len(e.waiting) > 0 {
		e.fail(e.waiting[0].req, ErrClosed)
	}
	e.gauges()
}

// schedule plans the next step into e.batch: the running decodes first, then the running
// prompts' next chunks, then, unless the step had to preempt, the waiting sequences in
// order, as far as the token budget (see chunkCost), the free blocks and MaxRunning allow.
func (e *Engine) schedule() {
	e.batch = e.batch[:0]
	budget := float64(e.opts.TokenBudget)
	preempted := false
	// place schedules up to n tokens of running sequence s (a decode needs all of them),
	// preempting the most recently admitted running sequences while no block is free.
	place := func(s *seq, n int) {
		for {
			e.kv.slide(s)
			if m := e.kv.fit(s, n); m == n || m > 0 && n > 1 {
				e.add(s, m, &budget)
				return
			}
			victim := e.running[len(e.running)-1]
			if i := slices.IndexFunc(e.batch, func(b scheduled) bool { return b.s == victim }); i >= 0 {
				budget += e.batch[i].cost
				e.kv.unregister(victim, e.batch[i].regFrom)
				e.batch = slices.Delete(e.batch, i, i+1)
			}
			e.preempt(victim)
			preempted = true
			if victim == s {
				return
			}
		}
	}
	for i := 0; i < len(e.running) && budget >= 1; i++ {
		if s := e.running[i]; len(s.tokens)-s.computed == 1 {
			place(s, 1)
		}
	}
	for i := 0; i < len(e.running) && budget >= 1; i++ {
		if s := e.running[i]; len(s.tokens)-s.computed > 1 {
			place(s, e.chunk(s.computed, len(s.tokens)-s.computed, budget))
		}
	}
	if preempted {
		return
	}
	for len(e.waiting) > 0 && budget >= 1 && len(e.running) < e.opts.MaxRunning {
		s := e.waiting[0]
		k, table := e.kv.match(s)
		if e.kv.admitNeed(s, k, table, int(budget)) > e.kv.nfree {
			return
		}
		e.kv.admit(s, k, table)
		e.kv.slide(s)
		n := e.kv.fit(s, e.chunk(s.computed, len(s.tokens)-s.computed, budget))
		if n == 0 {
			e.kv.drop(s)
			return
		}
		e.waiting[0] = nil
		e.waiting = e.waiting[1:]
		s.state = stateRunning
		e.running = append(e.running, s)
		if !s.admitted {
			s.admitted = true
			s.cached = min(k*e.lay.BlockSize, s.promptLen)
			now := time.Now()
			s.timing.Scheduled = now
			e.stats.update(func(m *Metrics) {
				m.PrefixQueries += int64(s.promptLen)
				m.PrefixHits += int64(s.cached)
				m.QueueTime.observe(seconds(now.Sub(s.timing.Arrival)))
			})
		}
		e.add(s, n, &budget)
	}
}

// add puts the next n tokens of s in the step, taking their blocks and their cost from the
// budget: a decode counts 1, a prompt chunk its chunkCost.
func (e *Engine) add(s *seq, n int, budget *float64) {
	cost := 1.0
	if len(s.tokens)-s.computed > 1 {
		cost = e.chunkCost(s.computed, n)
	}
	e.batch = append(e.batch, scheduled{s: s, n: n, regFrom: s.registered, cost: cost})
	e.kv.grow(s, n)
	*budget -= cost
}

// preempt releases the blocks of running sequence s and puts it at the head of the queue,
// to compute its tokens again when it is readmitted.
func (e *Engine) preempt(s *seq) {
	e.remove(s)
	e.kv.drop(s)
	s.state = stateWaiting
	s.timing.Preemptions++
	e.waiting = slices.Insert(e.waiting, 0, s)
	e.stats.update(func(m *Metrics) { m.Preemptions++ })
}

// remove takes s off the running or waiting list and releases its blocks.
func (e *Engine) remove(s *seq) {
	list := &e.waiting
	if s.state == stateRunning {
		list = &e.running
	}
	if i := slices.Index(*list, s); i >= 0 {
		*list = slices.Delete(*list, i, i+1)
	}
	e.kv.drop(s)
}

// run runs the planned step and samples the sequences whose last token it computed.
func (e *Engine) run() {
	st := &e.step
	st.Tokens, st.Tables, st.Rows = st.Tokens[:0], st.Tables[:0], st.Rows[:0]
	for i, b := range e.batch {
		s := b.s
		for p := s.computed; p < s.computed+b.n; p++ {
			st.Tokens = append(st.Tokens, backend.Token{Seq: i, Pos: p, ID: s.tokens[p]})
		}
		st.Tables = append(st.Tables, s.table)
		e.batch[i].row = s.computed+b.n == len(s.tokens)
		if e.batch[i].row {
			st.Rows = append(st.Rows, len(st.Tokens)-1)
		}
	}
	V := e.lay.VocabSize
	if cap(e.logits) < len(st.Rows)*V {
		e.logits = make([]float32, len(st.Rows)*V)
	}
	logits := e.logits[:len(st.Rows)*V]
	if err := e.m.Forward(st, logits); err != nil {
		// The blocks the step was to fill hold nothing.
		for _, b := range e.batch {
			e.kv.unregister(b.s, b.regFrom)
		}
		for _, b := range e.batch {
			if b.s.state != stateDone {
				e.fail(b.s.req, err)
			}
		}
		return
	}
	row := 0
	for _, b := range e.batch {
		s := b.s
		if s.state == stateDone { // its request failed while sampling another choice
			if b.row {
				row++
			}
			continue
		}
		s.computed += b.n
		if b.row {
			e.sample(s, logits[row*V:(row+1)*V])
			row++
		}
	}
}

// sample draws the next token of s from its logits and delivers it.
func (e *Engine) sample(s *seq, logits []float32) {
	id, err := s.cons.sample(s.sampler, logits)
	if err != nil {
		e.fail(s.req, err)
		return
	}
	o := Output{Choice: s.choice, ID: id}
	if s.params.Logprobs || s.params.TopLogprobs > 0 {
		lp, err := s.sampler.Logprobs(logits, id)
		if err != nil {
			e.fail(s.req, err)
			return
		}
		o.Logprobs = &lp
	}
	now := time.Now()
	e.stats.update(func(m *Metrics) {
		m.GeneratedTokens++
		if s.generated == 0 {
			m.TimeToFirstToken.observe(seconds(now.Sub(s.timing.Arrival)))
		} else {
			m.TimePerOutputToken.observe(seconds(now.Sub(s.last)))
		}
	})
	if s.generated == 0 {
		s.timing.FirstToken = now
	}
	s.last = now
	s.generated++
	switch {
	case s.params.IsStopToken(id, s.req.eos...):
		o.Finish = sampling.FinishStop
	case s.generated >= s.maxNew:
		o.Finish = sampling.FinishLength
	default:
		if err := s.cons.advance(id); err != nil {
			e.fail(s.req, err)
			return
		}
		s.tokens = append(s.tokens, id)
		s.hashes = e.kv.hashes(s.hashes, s.tokens)
	}
	if o.Finish != "" {
		e.remove(s)
		s.timing.Finished = now
	}
	o.Usage = Usage{PromptTokens: s.promptLen, CachedTokens: s.cached, CompletionTokens: s.generated}
	o.Timing = s.timing
	s.req.push(o)
	if o.Finish != "" {
		e.endChoice(s, o.Finish)
	}
}

// endChoice marks s done (removed from its list already), ending its request after its last
// choice; reason is empty for a cancelled choice.
func (e *Engine) endChoice(s *seq, reason sampling.FinishReason) {
	s.state = stateDone
	r := s.req
	r.live--
	if r.live > 0 {
		return
	}
	now := time.Now()
	e.stats.update(func(m *Metrics) {
		if reason == "" {
			m.Aborted++
		} else {
			m.Finished[reason]++
		}
		m.Latency.observe(seconds(now.Sub(r.arrival)))
	})
	r.end(nil)
}

// fail ends every choice of r with err.
func (e *Engine) fail(r *request, err error) {
	for _, s := range r.seqs {
		if s.state != stateDone {
			e.remove(s)
			s.state = stateDone
		}
	}
	r.live = 0
	e.stats.update(func(m *Metrics) { m.Aborted++ })
	r.end(err)
}

// gauges publishes the loop's gauges.
func (e *Engine) gauges() {
	e.stats.update(func(m *Metrics) {
		m.Running, m.Waiting = len(e.running), len(e.waiting)
		m.BlocksUsed, m.BlocksCached = e.kv.used(), e.kv.cachedBlocks()
	})
}
