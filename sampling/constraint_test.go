package sampling

import (
	"errors"
	"math"
	"testing"
)

func maskOf(vocab int, ids ...int) []uint64 {
	m := make([]uint64, MaskWords(vocab))
	for _, id := range ids {
		m[id/64] |= 1 << (id % 64)
	}
	return m
}

func TestSampleAllowed(t *testing.T) {
	const vocab = 200
	logits := make([]float32, vocab)
	for i := range logits {
		logits[i] = float32(i % 17)
	}
	seed := int64(3)
	for _, tc := range []struct {
		name    string
		p       Params
		allowed []int
	}{
		{"greedy", Params{}, []int{3, 70, 150}},
		{"sampled", Params{Temperature: 1.5, Seed: &seed}, []int{0, 64, 65, 127, 199}},
		{"top-k and top-p", Params{Temperature: 1, TopK: 2, TopP: 0.5, Seed: &seed}, []int{5, 190}},
		{"bias and penalties", Params{Temperature: 1, Seed: &seed, LogitBias: map[int]float64{16: 100, 7: 100},
			RepetitionPenalty: 2, PresencePenalty: 2}, []int{7, 8}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSampler(tc.p, vocab, []int{8})
			if err != nil {
				t.Fatal(err)
			}
			mask := maskOf(vocab, tc.allowed...)
			seen := map[int]bool{}
			for range 300 {
				id, err := s.SampleAllowed(logits, mask)
				if err != nil {
					t.Fatal(err)
				}
				seen[id] = true
			}
			for id := range seen {
				if mask[id/64]&(1<<(id%64)) == 0 {
					t.Errorf("drew %d, not allowed", id)
				}
			}
			if tc.name == "greedy" && (len(seen) != 1 || !seen[150]) { // 150%17 = 14 is the largest
				t.Errorf("greedy drew %v, want only 150", seen)
			}
			if tc.name == "bias and penalties" && !seen[7] {
				t.Errorf("drew %v: the bias of 7 has no effect", seen)
			}
		})
	}
}

func TestSampleAllowedErrors(t *testing.T) {
	s, err := NewSampler(Params{}, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	logits := make([]float32, 100)
	if _, err := s.SampleAllowed(logits, maskOf(100)); !errors.Is(err, ErrNoTokenAllowed) {
		t.Errorf("empty mask: %v", err)
	}
	logits[5] = float32(math.Inf(-1))
	if _, err := s.SampleAllowed(logits, maskOf(100, 5)); !errors.Is(err, ErrNoTokenAllowed) {
		t.Errorf("only -Inf allowed: %v", err)
	}
	if _, err := s.SampleAllowed(logits, make([]uint64, 1)); !errors.Is(err, ErrInvalidLogits) {
		t.Errorf("short mask: %v", err)
	}
	if _, err := s.SampleAllowed(logits[:99], maskOf(100, 1)); !errors.Is(err, ErrInvalidLogits) {
		t.Errorf("short logits: %v", err)
	}
	// Bits beyond the vocabulary are ignored.
	m := maskOf(128, 127)
	m[1] |= 1 << 1
	if id, err := s.SampleAllowed(make([]float32, 100), m); err != nil || id != 65 {
		t.Errorf("SampleAllowed = %d, %v; want 65", id, err)
	}
}
