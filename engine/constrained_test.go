package engine

import (
	"errors"
	"slices"
	"testing"

	"github.com/fathom-llm/fathom/sampling"
)

// evenConstraint allows even token ids only, and accepts the end after `after` tokens.
type evenConstraint struct{ after int }

func (c evenConstraint) NewState() sampling.ConstraintState { return &evenState{after: c.after} }

type evenState struct{ n, after int }

func (s *evenState) Allow(mask []uint64) error {
	clear(mask)
	for id := 2; id < 32; id += 2 {
		mask[id/64] |= 1 << (id % 64)
	}
	return nil
}

func (s *evenState) Accepting() bool { return s.n >= s.after }

func (s *evenState) Advance(id int) error {
	if id%2 != 0 {
		return errors.New("odd token")
	}
	s.n++
	return nil
}

// TestConstraint generates under a constraint, with and without preemptions: every token
// is allowed, the end-of-sequence token comes only where the constraint accepts, and the
// tokens do not depend on the preemptions.
func TestConstraint(t *testing.T) {
	var runs [][]result
	for _, blocks := range []int{64, 12} {
		e, f := start(t, Layout{BlockSize: 4, Blocks: blocks}, Options{})
		var reqs []Request
		for i := range 4 {
			reqs = append(reqs, Request{Prompt: prompt(uint64(40+i), 10), Params: seeded(int64(i), 30), N: 2, EOS: []int{3},
				Constraint: evenConstraint{after: 5}})
		}
		results := runAll(t, e, f, reqs)
		for _, res := range results {
			for _, ids := range res.ids {
				for i, id := range ids {
					last := i == len(ids)-1
					if id%2 != 0 && !(last && id == 3 && i >= 5) {
						t.Fatalf("token %d of %v not allowed", i, ids)
					}
				}
			}
		}
		if blocks == 12 && e.Metrics().Preemptions == 0 {
			t.Fatal("no preemption")
		}
		runs = append(runs, results)
	}
	for i := range runs[0] {
		for c := range runs[0][i].ids {
			if !slices.Equal(runs[0][i].ids[c], runs[1][i].ids[c]) {
				t.Errorf("request %d choice %d: %v alone, %v with preemptions", i, c, runs[0][i].ids[c], runs[1][i].ids[c])
			}
		}
	}
}
