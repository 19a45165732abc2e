package server

import (
	"context"
	"errors"
	"sync"
)

// errQueueFull is returned by limiter.acquire when every slot is taken and the queue is full.
var errQueueFull = errors.New("server: queue full")

// limiter admits at most `slots` holders at once, with at most `queue` more waiting.
type limiter struct {
	sem   chan struct{}
	mu    sync.Mutex
	wait  int
	queue int
}

func newLimiter(slots, queue int) *limiter {
	return &limiter{sem: make(chan struct{}, slots), queue: queue}
}

// acquire takes a slot, waiting in the queue while none is free. It fails with errQueueFull
// when the queue is full, or with ctx's error when ctx ends first. release frees the slot.
func (l *limiter) acquire(ctx context.Context) (release func(), err error) {
	release = func() { <-l.sem }
	select {
	case l.sem <- struct{}{}:
		return release, nil
	default:
	}
	l.mu.Lock()
	if l.wait >= l.queue {
		l.mu.Unlock()
		return nil, errQueueFull
	}
	l.wait++
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.wait--
		l.mu.Unlock()
	}()
	select {
	case l.sem <- struct{}{}:
		return release, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
