package sampling

import (
	"math/rand/v2"
	"testing"
)

// benchLogits returns a Mixtral-sized logits vector (32002 entries) shaped like a language
// model's: a broad normal bulk and a handful of likely tokens well above it.
func benchLogits() []float32 {
	rng := rand.New(rand.NewPCG(1, 1))
	x := make([]float32, 32002)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * 2.5)
	}
	for i := range 8 {
		x[rng.IntN(len(x))] = 12 - float32(i)
	}
	return x
}

func benchSample(b *testing.B, p Params) {
	logits := benchLogits()
	prompt := make([]int, 512)
	for i := range prompt {
		prompt[i] = (i * 7919) % len(logits)
	}
	p.Seed = seed(1)
	s, err := NewSampler(p, len(logits), prompt)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sample(logits); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkSampleFull runs every step: logit bias, the three penalties, temperature, min-p,
// top-k, top-p and the draw.
func BenchmarkSampleFull(b *testing.B) {
	benchSample(b, Params{Temperature: 0.8, TopP: 0.9, MinP: 0.05, TopK: 50, RepetitionPenalty: 1.1,
		FrequencyPenalty: 0.3, PresencePenalty: 0.3, LogitBias: map[int]float64{5: 2, 77: -100}})
}

// BenchmarkSampleGreedy is greedy decoding with penalties.
func BenchmarkSampleGreedy(b *testing.B) {
	benchSample(b, Params{RepetitionPenalty: 1.1, FrequencyPenalty: 0.3})
}

// BenchmarkSampleArgmax is greedy decoding alone (temperature 0, no penalties).
func BenchmarkSampleArgmax(b *testing.B) { benchSample(b, Params{}) }

// BenchmarkSampleTemperature draws from the whole vocabulary (a softmax over every entry).
func BenchmarkSampleTemperature(b *testing.B) { benchSample(b, Params{Temperature: 1}) }

// BenchmarkSampleTopP is top-p alone, over the whole vocabulary.
func BenchmarkSampleTopP(b *testing.B) { benchSample(b, Params{Temperature: 1, TopP: 0.9}) }

// BenchmarkSampleTopK is top-k alone.
func BenchmarkSampleTopK(b *testing.B) { benchSample(b, Params{Temperature: 1, TopK: 40}) }

// BenchmarkLogprobs computes the chosen token's and the top 20 log-probabilities.
func BenchmarkLogprobs(b *testing.B) {
	logits := benchLogits()
	s, err := NewSampler(Params{Logprobs: true, TopLogprobs: 20}, len(logits), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Logprobs(logits, 3); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSampleAllowed draws from the whole vocabulary under a mask: dense, allowing all
// but one token in 64 (as inside a JSON string), and sparse, allowing 20 tokens (as between
// JSON values). Compare with BenchmarkSampleTemperature for the cost of masking.
func BenchmarkSampleAllowed(b *testing.B) {
	logits := benchLogits()
	dense := make([]uint64, MaskWords(len(logits)))
	for i := range dense {
		dense[i] = ^uint64(0) &^ (1 << (i * 37 % 64))
	}
	sparse := make([]uint64, MaskWords(len(logits)))
	for i := range 20 {
		id := (i * 1543) % len(logits)
		sparse[id/64] |= 1 << (id % 64)
	}
	for _, tc := range []struct {
		name string
		mask []uint64
	}{{"dense", dense}, {"sparse", sparse}} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := NewSampler(Params{Temperature: 1, Seed: seed(1)}, len(logits), nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.SampleAllowed(logits, tc.mask); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
