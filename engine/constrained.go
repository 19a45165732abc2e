package engine

import "github.com/fathom-llm/fathom/sampling"

// constrained is the sampling side of a request's constraint: the state of its sequence, the
// token mask, and the stop tokens it allows exactly where the constraint accepts the end. A
// nil *constrained samples without a constraint.
type constrained struct {
	state sampling.ConstraintState
	mask  []uint64
	stops []int
}

func newConstrained(c sampling.Constraint, vocab int, stopIDs, eos []int) *constrained {
	if c == nil {
		return nil
	}
	k := &constrained{state: c.NewState(), mask: make([]uint64, sampling.MaskWords(vocab))}
	for _, ids := range [][]int{stopIDs, eos} {
		for _, id := range ids {
			if id >= 0 && id < vocab {
				k.stops = append(k.stops, id)
			}
		}
	}
	return k
}

// sample draws the next token, within the constraint when there is one.
func (k *constrained) sample(s *sampling.Sampler, logits []float32) (int, error) {
	if k == nil {
		return s.Sample(logits)
	}
	if err := k.state.Allow(k.mask); err != nil {
		return -1, err
	}
	end := k.state.Accepting()
	for _, id := range k.stops {
		if end {
			k.mask[id/64] |= 1 << (id % 64)
		} else {
			k.mask[id/64] &^= 1 << (id % 64)
		}
	}
	return s.SampleAllowed(logits, k.mask)
}

// advance moves the constraint past a generated token that does not end generation.
func (k *constrained) advance(id int) error {
	if k == nil {
		return nil
	}
	return k.state.Advance(id)
}
