package mixtral

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/fathom-llm/fathom/sampling"
)

// sequenceConstraint allows exactly the tokens of seq, in order, and accepts the end only
// after all of them.
type sequenceConstraint []int

func (c sequenceConstraint) NewState() sampling.ConstraintState {
	return &sequenceState{seq: c}
}

type sequenceState struct {
	seq  []int
	next int
}

func (s *sequenceState) Allow(mask []uint64) error {
	clear(mask)
	if s.next < len(s.seq) {
		id := s.seq[s.next]
		mask[id/64] |= 1 << (id % 64)
	}
	return nil
}

func (s *sequenceState) Accepting() bool { return s.next == len(s.seq) }

func (s *sequenceState) Advance(id int) error {
	if s.next >= len(s.seq) || s.seq[s.next] != id {
		return fmt.Errorf("token %d not allowed", id)
	}
	s.next++
	return nil
}

// TestGenerateConstraint checks that a constraint decides every token, that the stop and
// end-of-sequence tokens come only where it accepts the end, and that each choice of a
// request follows its own state.
func TestGenerateConstraint(t *testing.T) {
	m := sharedModel(t, "tiny-code-mixtral")
	seq := sequenceConstraint{300, 301, 302}
	stop := 999
	for seed := range int64(4) {
		req := Request{PromptIDs: []int{1, 415}, Constraint: seq,
			Params: sampling.Params{Temperature: 1, Seed: &seed, StopTokenIDs: []int{stop, 301}, MaxTokens: 10}}
		resp, err := m.Generate(context.Background(), req)
		if err == nil {
			t.Fatalf("seed %d: a stop token the constraint needs before its end: generated %v", seed, resp.IDs)
		}
		req.Params.StopTokenIDs = []int{stop}
		for ev, err := range m.Stream(context.Background(), req) {
			if err != nil {
				t.Fatal(err)
			}
			if ev.Done {
				if ev.FinishReason != sampling.FinishStop {
					t.Errorf("finish %q, want stop", ev.FinishReason)
				}
			}
		}
		resp, err = m.Generate(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.IDs) != 4 || !slices.Equal(resp.IDs[:3], seq) || !req.Params.IsStopToken(resp.IDs[3], m.EOSTokenIDs()...) {
			t.Errorf("seed %d: generated %v, want %v and a stop token", seed, resp.IDs, seq)
		}
	}
	// Cut by max_tokens before the constraint ends.
	resp, err := m.Generate(context.Background(), Request{PromptIDs: []int{1}, Constraint: seq, Params: sampling.Params{MaxTokens: 2}})
	if err != nil || !slices.Equal(resp.IDs, []int{300, 301}) || resp.FinishReason != sampling.FinishLength {
		t.Errorf("generated %v (%q), %v; want [300 301], length", resp.IDs, resp.FinishReason, err)
	}
}
