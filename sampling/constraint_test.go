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

// TestSampleAllowedDistribution checks the draws under sparse and dense masks against the
// softmax of the allowed logits, and that top-k and top-p apply among the allowed tokens.
func TestSampleAllowedDistribution(t *testing.T) {
	const vocab = 1000
	logits := make([]float32, vocab)
	for i := range logits {
		logits[i] = float32(i%7)/2 + float32(i)*1e-4 // no ties
	}
	for _, tc := range []struct {
		name    string
		allowed []int
	}{
		{"sparse", []int{3, 10, 11, 500, 999}},
		{"dense", func() (ids []int) {
			for i := 0; i < vocab; i += 3 {
				ids = append(ids, i)
			}
			return ids
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seed := int64(9)
			s, err := NewSampler(Params{Temperature: 0.7, Seed: &seed}, vocab, nil)
			if err != nil {
				t.Fatal(err)
			}
			mask := maskOf(vocab, tc.allowed...)
			want := map[int]float64{}
			var z float64
			for _, id := range tc.allowed {
				want[id] = math.Exp(float64(logits[id]) / 0.7)
				z += want[id]
			}
			const draws = 40000
			got := map[int]float64{}
			for range draws {
				id, err := s.SampleAllowed(logits, mask)
				if err != nil {
					t.Fatal(err)
				}
				got[id]++
			}
			for id, p := range want {
				if d := math.Abs(got[id]/draws - p/z); d > 0.01 {
					t.Errorf("token %d drawn %.4f of the time, want %.4f", id, got[id]/draws, p/z)
				}
			}
			for _, p := range []Params{{Temperature: 1, TopK: 1, Seed: &seed}, {Temperature: 1, TopP: 1e-6, Seed: &seed}} {
				s, _ := NewSampler(p, vocab, nil)
				best := tc.allowed[0]
				for _, id := range tc.allowed {
					if logits[id] > logits[best] {
						best = id
					}
				}
				for range 50 {
					if id, err := s.SampleAllowed(logits, mask); err != nil || id != best {
						t.Fatalf("%+v: drew %d, %v; want %d", p, id, err, best)
					}
				}
			}
		})
	}
}
