package cpu

import (
	"sync"
	"sync/atomic"
)

// task is one parallel operation: run handles items [lo, hi) on worker w (0 ≤ w < workers),
// which may use that worker's scratch space.
type task interface {
	run(w, lo, hi int)
}

// job is one call of each: the items [0, n) in shares of per items, claimed in order.
type job struct {
	t      task
	n, per int
	next   atomic.Int64 // the next share to claim
}

// pool is a fixed set of worker goroutines, started once. The caller of each acts as worker
// 0, so a pool of n workers runs n-1 goroutines. One each runs at a time (the backend's lock
// serialises them); nothing is allocated per call.
type pool struct {
	workers int
	jobs    []chan *job // jobs[w] wakes worker w (w ≥ 1)
	wg      sync.WaitGroup
	job     job
}

func newPool(workers int) *pool {
	p := &pool{workers: workers, jobs: make([]chan *job, workers)}
	for w := 1; w < workers; w++ {
		p.jobs[w] = make(chan *job, 1)
		go p.work(w)
	}
	return p
}

func (p *pool) work(w int) {
	for j := range p.jobs[w] {
		j.run(w)
		p.wg.Done()
	}
}

// run claims shares of j and runs them on worker w until none is left.
func (j *job) run(w int) {
	for {
		lo := int(j.next.Add(1)-1) * j.per
		if lo >= j.n {
			return
		}
		j.t.run(w, lo, min(j.n, lo+j.per))
	}
}

// each splits the items [0, n) into contiguous shares, each a multiple of grain items
// (except the last), runs them on the workers and waits. With spread 1 there is one share
// per worker; with a larger spread up to spread times as many smaller ones. The workers
// claim shares one after another, so that a worker that other work on the machine holds up
// takes fewer of them. A grain of 16 float32 output columns keeps workers' writes on
// separate cache lines.
func (p *pool) each(n, grain, spread int, t task) {
	if n <= 0 {
		return
	}
	grains := (n + grain - 1) / grain
	shares := min(p.workers*max(spread, 1), grains)
	per := (grains + shares - 1) / shares * grain
	j := &p.job
	j.t, j.n, j.per = t, n, per
	j.next.Store(0)
	helpers := min(p.workers, shares) - 1
	p.wg.Add(helpers)
	for w := 1; w <= helpers; w++ {
		p.jobs[w] <- j
	}
	j.run(0)
	p.wg.Wait()
	j.t = nil
}

// close stops the workers.
func (p *pool) close() {
	for w := 1; w < p.workers; w++ {
		close(p.jobs[w])
	}
}
