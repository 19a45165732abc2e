package cpu

import "sync"

// task is one parallel operation: run handles items [lo, hi) on worker w (0 ≤ w < workers),
// which may use that worker's scratch space.
type task interface {
	run(w, lo, hi int)
}

// part is a share of a task sent to a worker.
type part struct {
	t      task
	lo, hi int
}

// pool is a fixed set of worker goroutines, started once. The caller of each acts as worker
// 0, so a pool of n workers runs n-1 goroutines. One each runs at a time (the backend's lock
// serialises them); nothing is allocated per call.
type pool struct {
	workers int
	parts   []chan part // parts[w] feeds worker w (w ≥ 1)
	wg      sync.WaitGroup
}

func newPool(workers int) *pool {
	p := &pool{workers: workers, parts: make([]chan part, workers)}
	for w := 1; w < workers; w++ {
		p.parts[w] = make(chan part, 1)
		go p.work(w)
	}
	return p
}

func (p *pool) work(w int) {
	for pt := range p.parts[w] {
		pt.t.run(w, pt.lo, pt.hi)
		p.wg.Done()
	}
}

// each splits the items [0, n) into at most one contiguous share per worker, each a multiple
// of grain items (except the last), runs them in parallel and waits. A grain of 16 float32
// output columns keeps workers' writes on separate cache lines.
func (p *pool) each(n, grain int, t task) {
	if n <= 0 {
		return
	}
	grains := (n + grain - 1) / grain
	shares := min(p.workers, grains)
	per := (grains + shares - 1) / shares * grain
	for w := 1; w < shares; w++ {
		lo := w * per
		if lo >= n {
			break
		}
		p.wg.Add(1)
		p.parts[w] <- part{t, lo, min(n, lo+per)}
	}
	t.run(0, 0, min(n, per))
	p.wg.Wait()
}

// close stops the workers.
func (p *pool) close() {
	for w := 1; w < p.workers; w++ {
		close(p.parts[w])
	}
}
