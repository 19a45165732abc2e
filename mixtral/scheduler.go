package mixtral

import (
	"context"
	"fmt"
	"sync"

	"github.com/fathom-llm/fathom/backend"
)

// scheduler runs the forward steps of concurrent requests in one goroutine, batching the
// steps that are waiting at the same time into one forward pass: each generating request
// submits one token per step, so concurrent decodes share the weight reads.
//
// It also rations the KV cache: a request reserves the blocks its longest possible
// sequence needs before it starts, and waits while they are taken; a Sequence reserves
// blocks as it grows, failing when none are free.
type scheduler struct {
	m      *Model
	submit chan *step
	quit   chan struct{}
	exited chan struct{}

	mu      sync.Mutex
	free    int           // unreserved cache blocks
	total   int           // all cache blocks
	changed chan struct{} // closed and replaced when blocks are released
	closed  bool

	// The loop's reused state.
	pending []*step
	tokens  []backend.Token
	rows    []int
	logits  []float32
}

// step is one request's next forward step: ids appended to sequence seq from position pos;
// the scheduler writes the logits of the last one into logits, sets err and signals done.
type step struct {
	seq, pos int
	ids      []int
	logits   []float32
	err      error
	done     chan struct{}
}

func newScheduler(m *Model, blocks int) *scheduler {
	s := &scheduler{
		m: m, submit: make(chan *step), quit: make(chan struct{}), exited: make(chan struct{}),
		free: blocks, total: blocks, changed: make(chan struct{}),
	}
	go s.loop()
	return s
}

// reserve takes blocks for a sequence of up to positions positions, waiting for them.
func (s *scheduler) reserve(ctx context.Context, positions int) (int, error) {
	need := (positions + blockSize - 1) / blockSize
	if need > s.total {
		return 0, fmt.Errorf("%w: %d positions, KV cache of %d", ErrContextLength, positions, s.total*blockSize)
	}
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return 0, ErrClosed
		}
		if s.free >= need {
			s.free -= need
			s.mu.Unlock()
			return need, nil
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// tryReserve takes blocks without waiting, reporting whether they were free.
func (s *scheduler) tryReserve(blocks int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.free < blocks {
		return false
	}
	s.free -= blocks
	return true
}

// release returns reserved blocks.
func (s *scheduler) release(blocks int) {
	s.mu.Lock()
	s.free += blocks
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// run submits st and waits for its result. A step once submitted always completes, so
// cancellation is noticed between steps, within one token.
func (s *scheduler) run(st *step) error {
	select {
	case s.submit <- st:
	case <-s.quit:
		return ErrClosed
	}
	<-st.done
	return st.err
}

func (s *scheduler) loop() {
	defer close(s.exited)
	for {
		select {
		case st := <-s.submit:
			s.pending = append(s.pending, st)
		case <-s.quit:
			for _, st := range s.pending {
				st.err = ErrClosed
				st.done <- struct{}{}
			}
			return
		}
		// Take every step that is waiting too, then run them in batches.
		for more := true; more; {
			select {
			case st := <-s.submit:
				s.pending = append(s.pending, st)
			default:
				more = false
			}
		}
		for i := 0; i < len(s.pending); {
			i += s.batch(s.pending[i:])
		}
		clear(s.pending)
		s.pending = s.pending[:0]
	}
}

// batch runs the leading steps that fit in one forward pass together and returns how many
// it ran.
func (s *scheduler) batch(steps []*step) int {
	m := s.m
	s.tokens, s.rows = s.tokens[:0], s.rows[:0]
	n := 0
	for _, st := range steps {
		if n > 0 && len(s.tokens)+len(st.ids) > m.maxBatch {
			break
		}
		for i, id := range st.ids {
			s.tokens = append(s.tokens, backend.Token{Seq: st.seq, Pos: st.pos + i, ID: id})
		}
		s.rows = append(s.rows, len(s.tokens)-1)
		n++
	}
	V := m.cfg.VocabSize
	if cap(s.logits) < n*V {
		s.logits = make([]float32, n*V)
	}
	out := s.logits[:n*V]
	m.mu.Lock()
	err := ErrClosed
	if !m.closed {
		err = m.forward(s.tokens, s.rows, out, nil)
	}
	m.mu.Unlock()
	for i, st := range steps[:n] {
		st.err = err
		if err == nil {
			copy(st.logits, out[i*V:(i+1)*V])
		}
		st.done <- struct{}{}
	}
	return n
}

// close stops the loop, failing the steps and reservations that wait.
func (s *scheduler) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	close(s.quit)
	<-s.exited
}
