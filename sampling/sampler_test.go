package sampling

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

func seed(v int64) *int64 { return &v }

// randomLogits returns n logits drawn from rng, with a share of exact ties.
func randomLogits(rng *rand.Rand, n int, spread float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * spread)
		if i > 0 && rng.IntN(8) == 0 {
			x[i] = x[rng.IntN(i)]
		}
	}
	return x
}

// reference applies the processors one by one, in vLLM's order, to a copy of logits and
// returns the softmax (float64) of the result; filtered tokens get probability 0. For greedy
// parameters it returns the one-hot argmax.
func reference(p Params, logits []float32, prompt, output []int) []float64 {
	x := slices.Clone(logits)
	ApplyLogitBias(x, p.LogitBias)
	if r := p.repetition(); r != 1 {
		ApplyRepetitionPenalty(x, append(slices.Clone(prompt), output...), r)
	}
	ApplyFrequencyPresencePenalty(x, output, p.FrequencyPenalty, p.PresencePenalty)
	probs := make([]float64, len(x))
	if p.greedy() {
		probs[slices.Index(x, slices.Max(x))] = 1
		return probs
	}
	ApplyTemperature(x, p.Temperature)
	ApplyMinP(x, p.MinP)
	ApplyTopK(x, p.TopK)
	ApplyTopP(x, p.topP())
	top := float64(slices.Max(x))
	z := 0.0
	for i, v := range x {
		probs[i] = math.Exp(float64(v) - top)
		z += probs[i]
	}
	for i := range probs {
		probs[i] /= z
	}
	return probs
}

// filtered returns the Sampler's filtered distribution for logits, without drawing.
func filtered(t *testing.T, s *Sampler, logits []float32) []float64 {
	t.Helper()
	top, at := s.prepare(logits)
	probs := make([]float64, len(logits))
	if s.greedy {
		probs[at] = 1
		return probs
	}
	c, mass := s.filter(s.buf, top)
	for _, k := range c {
		probs[k.id] = float64(k.e) / mass
	}
	return probs
}

var filterCases = []struct {
	name string
	p    Params
}{
	{"greedy", Params{}},
	{"greedy with penalties", Params{RepetitionPenalty: 1.5, FrequencyPenalty: 0.7, PresencePenalty: 0.4, LogitBias: map[int]float64{3: 2.5}}},
	{"temperature", Params{Temperature: 0.7}},
	{"hot", Params{Temperature: 1.9}},
	{"top_k", Params{Temperature: 1, TopK: 5}},
	{"top_k 1", Params{Temperature: 1, TopK: 1}},
	{"top_p", Params{Temperature: 1, TopP: 0.8}},
	{"top_p small", Params{Temperature: 0.5, TopP: 0.05}},
	{"min_p", Params{Temperature: 1, MinP: 0.1}},
	{"min_p hot", Params{Temperature: 1.5, MinP: 0.3}},
	{"combined", Params{Temperature: 0.8, TopK: 12, TopP: 0.9, MinP: 0.02}},
	{"everything", Params{Temperature: 1.2, TopK: 30, TopP: 0.95, MinP: 0.05, RepetitionPenalty: 1.3,
		FrequencyPenalty: 0.5, PresencePenalty: -0.3, LogitBias: map[int]float64{0: -100, 7: 250, 9: 1}}},
	{"negative penalties", Params{Temperature: 1, RepetitionPenalty: 0.8, FrequencyPenalty: -1, PresencePenalty: 2}},
}

// TestFilterMatchesProcessors checks that the Sampler's filtered distribution is that of the
// processors applied one by one, over random logits with ties, a prompt and an output
// history.
func TestFilterMatchesProcessors(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const vocab = 300
	for _, tc := range filterCases {
		t.Run(tc.name, func(t *testing.T) {
			for trial := range 40 {
				prompt := make([]int, rng.IntN(20))
				for i := range prompt {
					prompt[i] = rng.IntN(vocab)
				}
				s, err := NewSampler(tc.p, vocab, prompt)
				if err != nil {
					t.Fatal(err)
				}
				var output []int
				for range rng.IntN(30) {
					id := rng.IntN(vocab / 3)
					output = append(output, id)
					s.record(id)
				}
				logits := randomLogits(rng, vocab, 1+3*rng.Float64())
				want := reference(tc.p, logits, prompt, output)
				got := filtered(t, s, logits)
				for i := range want {
					if (want[i] == 0) != (got[i] == 0) || math.Abs(got[i]-want[i]) > 1e-5*want[i] {
						t.Fatalf("trial %d, token %d: probability %v, want %v", trial, i, got[i], want[i])
					}
				}
			}
		})
	}
}

// forgetOutput clears the record of generated tokens, so that the next draw has the same
// distribution as the first.
func (s *Sampler) forgetOutput() {
	for _, id := range s.sparse {
		s.flags[id] &^= flagOutput
	}
	clear(s.counts)
}

// chiSquare tests counts of draws against the probabilities want (significance 1e-4),
// pooling the tokens expected fewer than 5 times; a token of probability 0 must never be
// drawn.
func chiSquare(t *testing.T, counts []int, want []float64, draws int) {
	t.Helper()
	chi2, df := 0.0, -1
	var poolObs, poolExp float64
	for i, w := range want {
		if w == 0 {
			if counts[i] != 0 {
				t.Fatalf("token %d is filtered but was drawn %d times", i, counts[i])
			}
			continue
		}
		e := w * float64(draws)
		if e < 5 {
			poolObs += float64(counts[i])
			poolExp += e
			continue
		}
		chi2 += (float64(counts[i]) - e) * (float64(counts[i]) - e) / e
		df++
	}
	if poolExp >= 5 {
		chi2 += (poolObs - poolExp) * (poolObs - poolExp) / poolExp
		df++
	} else if poolObs > poolExp+10 {
		t.Errorf("tokens expected %.2f times in all were drawn %v times", poolExp, poolObs)
	}
	if df < 1 {
		t.Fatalf("only %d tokens kept", df+1)
	}
	crit := distuv.ChiSquared{K: float64(df)}.Quantile(1 - 1e-4)
	if chi2 > crit {
		t.Errorf("chi-square %.2f with %d degrees of freedom exceeds %.2f; counts %v, want %v", chi2, df, crit, counts, want)
	}
}

// TestSampleChiSquare draws 100,000 tokens per parameter set over a small vocabulary and
// tests the counts against the filtered distribution. The seeds are fixed, so the test is
// deterministic.
func TestSampleChiSquare(t *testing.T) {
	const draws = 100_000
	small := []float32{2.0, 1.5, 1.5, 1.0, 0.7, 0.3, 0, -0.4, -1, -1.5, -2, -3, -4.5, -6, -8, -30}
	// A wider vocabulary over many quarter-nat buckets, with filtered and far-off tokens.
	wide := make([]float32, 150)
	for i := range wide {
		wide[i] = 3 - float32(i)*0.23
	}
	wide[7], wide[40] = float32(math.Inf(-1)), float32(math.NaN())
	wide[99] = -1e30
	for i, tc := range []struct {
		name   string
		p      Params
		logits []float32
	}{
		{"temperature 0.7", Params{Temperature: 0.7}, small},
		{"temperature 1.5", Params{Temperature: 1.5}, small},
		{"top_k 5", Params{Temperature: 1, TopK: 5}, small},
		{"top_p 0.8", Params{Temperature: 1, TopP: 0.8}, small},
		{"min_p 0.1", Params{Temperature: 1, MinP: 0.1}, small},
		{"combined", Params{Temperature: 0.9, TopK: 8, TopP: 0.9, MinP: 0.05, LogitBias: map[int]float64{6: 1.2}}, small},
		{"wide temperature 1", Params{Temperature: 1}, wide},
		{"wide temperature 0.3", Params{Temperature: 0.3}, wide},
		{"wide temperature 2 with penalties", Params{Temperature: 2, RepetitionPenalty: 1.5, LogitBias: map[int]float64{120: 30}}, wide},
		{"wide top_p 0.95", Params{Temperature: 1.3, TopP: 0.95}, wide},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.p.Seed = seed(int64(1000 + i))
			prompt := []int{0, 3, 5}
			s, err := NewSampler(tc.p, len(tc.logits), prompt)
			if err != nil {
				t.Fatal(err)
			}
			// Penalties other than repetition would change the distribution as tokens are
			// drawn; the prompt's repetition penalty does not.
			want := reference(tc.p, tc.logits, prompt, nil)
			counts := make([]int, len(tc.logits))
			for range draws {
				id, err := s.Sample(tc.logits)
				if err != nil {
					t.Fatal(err)
				}
				counts[id]++
				s.forgetOutput()
			}
			chiSquare(t, counts, want, draws)
		})
	}
}

// run samples n tokens with p from a fixed logits generator and returns them.
func run(t *testing.T, p Params, n int) []int {
	t.Helper()
	const vocab = 1000
	s, err := NewSampler(p, vocab, []int{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8)) // the "model": the same logits every run
	ids := make([]int, n)
	for i := range ids {
		id, err := s.Sample(randomLogits(rng, vocab, 2))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	return ids
}

func TestDeterminism(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Params
	}{
		{"temperature", Params{Temperature: 1, Seed: seed(42)}},
		{"top_p", Params{Temperature: 0.9, TopP: 0.9, Seed: seed(-7)}},
		{"everything", Params{Temperature: 1.3, TopK: 40, TopP: 0.95, MinP: 0.01, RepetitionPenalty: 1.2,
			FrequencyPenalty: 0.5, PresencePenalty: 0.5, Seed: seed(math.MaxInt64)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := run(t, tc.p, 50), run(t, tc.p, 50)
			if !slices.Equal(a, b) {
				t.Fatalf("same seed, different tokens:\n%v\n%v", a, b)
			}
			other := tc.p
			other.Seed = seed(*tc.p.Seed ^ 1)
			if slices.Equal(a, run(t, other, 50)) {
				t.Errorf("different seeds drew the same 50 tokens")
			}
			if slices.Equal(a, run(t, tc.p.ForChoice(1), 50)) {
				t.Errorf("choice 1 drew the same 50 tokens as choice 0")
			}
			want := *tc.p.Seed + 3
			if *tc.p.Seed >= 0 {
				want &= math.MaxInt64 // non-negative seeds stay non-negative
			}
			if got := tc.p.ForChoice(3); *got.Seed != want {
				t.Errorf("ForChoice(3) seed %d, want %d", *got.Seed, want)
			}
		})
	}
	// Unseeded samplers draw their own seeds, reported by Seed; reusing it reproduces the run.
	p := Params{Temperature: 1}
	s1, _ := NewSampler(p, 10, nil)
	s2, _ := NewSampler(p, 10, nil)
	if s1.Seed() == s2.Seed() {
		t.Errorf("two unseeded samplers got the same seed %d", s1.Seed())
	}
	p.Seed = seed(s1.Seed())
	replay, _ := NewSampler(p, 10, nil)
	logits := []float32{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
	for range 20 {
		a, _ := s1.Sample(logits)
		b, _ := replay.Sample(logits)
		if a != b {
			t.Fatalf("replaying seed %d drew %d, want %d", s1.Seed(), b, a)
		}
	}
}

func TestGreedy(t *testing.T) {
	logits := []float32{0.5, 3, 1, 3, -2}
	for _, tc := range []struct {
		name   string
		p      Params
		prompt []int
		want   []int
	}{
		{"argmax, lowest id among ties", Params{}, nil, []int{1, 1, 1}},
		{"tiny temperature", Params{Temperature: 9e-6, TopK: 3}, nil, []int{1, 1, 1}},
		{"repetition over the prompt", Params{RepetitionPenalty: 2}, []int{1}, []int{3, 1, 1}},
		{"presence over the output", Params{PresencePenalty: 2}, nil, []int{1, 3, 1}},
		{"frequency over the output", Params{FrequencyPenalty: 1.2}, nil, []int{1, 3, 1}},
		{"frequency and presence", Params{FrequencyPenalty: 0.5, PresencePenalty: 2}, nil, []int{1, 3, 2}},
		{"logit bias", Params{LogitBias: map[int]float64{4: 5.5}}, nil, []int{4, 4, 4}},
		{"logit bias clamped", Params{LogitBias: map[int]float64{4: -1e9, 0: math.Inf(1)}}, nil, []int{0, 0, 0}},
		{"NaN is -Inf", Params{}, nil, []int{1, 1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSampler(tc.p, len(logits), tc.prompt)
			if err != nil {
				t.Fatal(err)
			}
			in := slices.Clone(logits)
			if tc.name == "NaN is -Inf" {
				in[0] = float32(math.NaN())
			}
			var got []int
			for range tc.want {
				id, err := s.Sample(in)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, id)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if s.Generated() != len(tc.want) {
				t.Errorf("Generated() = %d, want %d", s.Generated(), len(tc.want))
			}
		})
	}
}

func TestSampleDoesNotModifyLogits(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	logits := randomLogits(rng, 500, 2)
	orig := slices.Clone(logits)
	s, err := NewSampler(Params{Temperature: 0.8, TopK: 20, TopP: 0.9, MinP: 0.01, RepetitionPenalty: 1.4, LogitBias: map[int]float64{3: 4}}, 500, []int{5, 6})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := s.Sample(logits); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(logits, orig) {
		t.Fatal("Sample modified its input")
	}
}

func TestSamplerErrors(t *testing.T) {
	if _, err := NewSampler(Params{TopP: 2}, 10, nil); !errors.Is(err, ErrInvalidParam) {
		t.Errorf("invalid params: %v", err)
	}
	var pe *ParamError
	if _, err := NewSampler(Params{LogitBias: map[int]float64{10: 1}}, 10, nil); !errors.As(err, &pe) || pe.Field != "logit_bias" {
		t.Errorf("logit bias id past the vocabulary: %v", err)
	}
	if _, err := NewSampler(Params{}, 0, nil); !errors.Is(err, ErrInvalidParam) {
		t.Errorf("empty vocabulary: %v", err)
	}
	if _, err := NewSampler(Params{RepetitionPenalty: 1.1}, 10, []int{3, 10}); !errors.Is(err, ErrTokenID) {
		t.Errorf("prompt id past the vocabulary: %v", err)
	}
	for _, p := range []Params{{}, {Temperature: 1, TopP: 0.5}} {
		s, err := NewSampler(p, 4, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Sample(make([]float32, 5)); !errors.Is(err, ErrInvalidLogits) {
			t.Errorf("wrong length: %v", err)
		}
		nan := float32(math.NaN())
		if _, err := s.Sample([]float32{nan, float32(math.Inf(-1)), nan, nan}); !errors.Is(err, ErrInvalidLogits) {
			t.Errorf("no finite logit: %v", err)
		}
		if _, err := s.Logprobs(make([]float32, 4), 4); !errors.Is(err, ErrTokenID) {
			t.Errorf("logprobs of an id past the vocabulary: %v", err)
		}
		// +Inf is read as the largest float32: it is the only candidate.
		if id, err := s.Sample([]float32{0, float32(math.Inf(1)), 3, 1}); err != nil || id != 1 {
			t.Errorf("+Inf logit: got %d, %v; want 1", id, err)
		}
	}
}

func TestLogprobs(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	logits := randomLogits(rng, 700, 3)
	logits[10], logits[20] = 20, 20 // a tie at the top: the lower id first
	s, err := NewSampler(Params{Temperature: 0.5, RepetitionPenalty: 3, Logprobs: true, TopLogprobs: 5}, len(logits), []int{10})
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.Sample(logits)
	if err != nil {
		t.Fatal(err)
	}
	lp, err := s.Logprobs(logits, id)
	if err != nil {
		t.Fatal(err)
	}
	// Reference: float64 log-softmax of the raw logits.
	top := float64(slices.Max(logits))
	z := 0.0
	for _, v := range logits {
		z += math.Exp(float64(v) - top)
	}
	ref := func(i int) float64 { return float64(logits[i]) - top - math.Log(z) }
	if lp.Chosen.ID != id || math.Abs(lp.Chosen.Logprob-ref(id)) > 1e-6 {
		t.Errorf("chosen %+v, want id %d logprob %v", lp.Chosen, id, ref(id))
	}
	order := make([]int, len(logits))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return -cmpF(logits[a], logits[b]) })
	if len(lp.Top) != 5 {
		t.Fatalf("%d top logprobs, want 5", len(lp.Top))
	}
	for i, tl := range lp.Top {
		if tl.ID != order[i] || math.Abs(tl.Logprob-ref(order[i])) > 1e-6 {
			t.Errorf("top %d: %+v, want id %d logprob %v", i, tl, order[i], ref(order[i]))
		}
	}
	if lp.Top[0].ID != 10 || lp.Top[1].ID != 20 {
		t.Errorf("tie at the top ordered %d, %d; want 10, 20", lp.Top[0].ID, lp.Top[1].ID)
	}
	other, err := LogSoftmax(logits, id, 5)
	if err != nil || other.Chosen != lp.Chosen || !slices.Equal(other.Top, lp.Top) {
		t.Errorf("LogSoftmax = %+v, %v; want %+v", other, err, lp)
	}
}

func cmpF(a, b float32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TestNoAllocations checks that a sampling step allocates nothing, and Logprobs only its
// result.
func TestNoAllocations(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	logits := randomLogits(rng, 32002, 3)
	for _, tc := range filterCases {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.p
			p.Logprobs = true
			s, err := NewSampler(p, len(logits), []int{1, 2, 3, 4})
			if err != nil {
				t.Fatal(err)
			}
			if n := testing.AllocsPerRun(20, func() { _, _ = s.Sample(logits) }); n != 0 {
				t.Errorf("Sample allocates %v times per step", n)
			}
			if n := testing.AllocsPerRun(5, func() { _, _ = s.Logprobs(logits, 7) }); n != 0 {
				t.Errorf("Logprobs without top logprobs allocates %v times", n)
			}
		})
	}
	s, _ := NewSampler(Params{Logprobs: true, TopLogprobs: 20}, len(logits), nil)
	if n := testing.AllocsPerRun(5, func() { _, _ = s.Logprobs(logits, 7) }); n != 1 {
		t.Errorf("Logprobs with top logprobs allocates %v times, want 1", n)
	}
}

func TestStopTokensAndLength(t *testing.T) {
	p := Params{StopTokenIDs: []int{7, 9}}
	for _, tc := range []struct {
		name string
		id   int
		eos  []int
		want bool
	}{
		{"stop token", 7, nil, true},
		{"stop token beside EOS", 9, []int{2}, true},
		{"EOS", 2, []int{2}, true},
		{"no EOS given", 2, nil, false},
		{"neither", 8, []int{2, 32000}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.IsStopToken(tc.id, tc.eos...); got != tc.want {
				t.Errorf("IsStopToken(%d, %v) = %v, want %v", tc.id, tc.eos, got, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name                   string
		max, prompt, ctx, want int
	}{
		{"no limit: the context's room", 0, 10, 100, 90},
		{"limit", 20, 10, 100, 20},
		{"limit past the context", 200, 10, 100, 90},
		{"full context", 5, 100, 100, 0},
		{"prompt past the context", 0, 120, 100, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := (Params{MaxTokens: tc.max}).MaxNewTokens(tc.prompt, tc.ctx); got != tc.want {
				t.Errorf("MaxNewTokens(max %d, prompt %d, context %d) = %d, want %d", tc.max, tc.prompt, tc.ctx, got, tc.want)
			}
		})
	}
}

// TestSampleOddInputs feeds logits full of NaN, ±Inf, huge and tiny values to every
// parameter set: Sample must return a token that is not NaN or -Inf whenever one exists,
// or ErrInvalidLogits.
func TestSampleOddInputs(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	odd := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), math.MaxFloat32,
		-math.MaxFloat32, 1e-45, 0, 88, -88, 1e30, -1e30}
	for _, tc := range filterCases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSampler(tc.p, 64, []int{1, 2})
			if err != nil {
				t.Fatal(err)
			}
			for range 300 {
				logits := make([]float32, 64)
				for i := range logits {
					logits[i] = odd[rng.IntN(len(odd))]
				}
				id, err := s.Sample(logits)
				finite := slices.ContainsFunc(logits, func(v float32) bool { return v == v && !math.IsInf(float64(v), -1) })
				if !finite {
					if !errors.Is(err, ErrInvalidLogits) {
						t.Fatalf("no usable logit, got %d, %v", id, err)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if v := logits[id]; v != v || math.IsInf(float64(v), -1) {
					t.Fatalf("drew token %d with logit %v from %v", id, v, logits)
				}
				if _, err := s.Logprobs(logits, id); err != nil {
					t.Fatalf("Logprobs: %v", err)
				}
			}
		})
	}
}

// TestNucleusAll checks that top-p alone over the whole vocabulary, which leaves the least
// likely tokens out before selecting, keeps the same tokens with the same mass as the
// selection over every candidate.
func TestNucleusAll(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for trial := range 200 {
		vocab := 1 + rng.IntN(5000)
		p := []float64{0.001, 0.3, 0.9, 0.99, 0.999}[trial%5]
		temp := 0.2 + 1.8*rng.Float64()
		s, err := NewSampler(Params{Temperature: temp, TopP: p, Seed: seed(1)}, vocab, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.exps == nil {
			t.Fatal("top-p alone does not take the whole-vocabulary path")
		}
		logits := randomLogits(rng, vocab, []float64{0.1, 1, 3, 10, 50}[rng.IntN(5)])
		for i := range rng.IntN(5) {
			logits[rng.IntN(vocab)] = float32(math.Inf(-1))
			logits[rng.IntN(vocab)] = 10 + float32(i)
		}
		top := maxOf(logits)
		c, mass := s.filter(logits, top)
		got := make([]int32, 0, len(c))
		for _, k := range c {
			got = append(got, k.id)
		}
		s.exps = nil
		c, want := s.filter(logits, top)
		ids := make([]int32, 0, len(c))
		for _, k := range c {
			ids = append(ids, k.id)
		}
		slices.Sort(got)
		slices.Sort(ids)
		if !slices.Equal(got, ids) {
			t.Fatalf("trial %d (vocab %d, p %v): kept %d tokens, want %d", trial, vocab, p, len(got), len(ids))
		}
		if math.Abs(mass-want) > 1e-6*want {
			t.Fatalf("trial %d: mass %v, want %v", trial, mass, want)
		}
	}
}

// TestGreedyArgmax checks greedy decoding against a plain scan on vectors with ties, signed
// zeros, infinities and NaNs, with and without penalties that split the vocabulary into
// ranges: the largest cleaned entry, the lowest id among equals.
func TestGreedyArgmax(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	values := []float32{0, float32(math.Copysign(0, -1)), 1, 1, -3, float32(math.Inf(-1)),
		float32(math.Inf(1)), float32(math.NaN()), math.MaxFloat32}
	for _, tc := range []struct {
		name    string
		special int // how many entries take special values
		inf     bool
	}{
		{"normal", 0, false},
		{"ties and zeros", 40, false},
		{"infinities and NaN", 40, true},
		{"all -Inf but one", -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, penalties := range []bool{false, true} {
				logits := make([]float32, 1000)
				for i := range logits {
					logits[i] = float32(r.NormFloat64())
				}
				switch {
				case tc.special < 0:
					for i := range logits {
						logits[i] = float32(math.Inf(-1))
					}
					logits[r.IntN(len(logits))] = -5
				case tc.special > 0:
					choices := values[:5]
					if tc.inf {
						choices = values
					}
					for range tc.special {
						logits[r.IntN(len(logits))] = choices[r.IntN(len(choices))]
					}
					// Make the ties the largest finite entries.
					if !tc.inf {
						for i := range logits {
							logits[i] = min(logits[i], 1)
						}
					}
				}
				var p Params
				var prompt []int
				if penalties {
					// A repetition penalty of 1 changes no value but splits the scan into ranges.
					p.RepetitionPenalty = 1
					for i := 0; i < len(logits); i += 97 {
						prompt = append(prompt, i)
					}
				}
				s, err := NewSampler(p, len(logits), prompt)
				if err != nil {
					t.Fatal(err)
				}
				got, err := s.Sample(logits)
				if err != nil {
					t.Fatal(err)
				}
				want, top := -1, float32(math.Inf(-1))
				for i, v := range logits {
					if v = clean(v); v > top {
						want, top = i, v
					}
				}
				if got != want {
					t.Fatalf("penalties %v: token %d (%g), want %d (%g)", penalties, got, logits[got], want, logits[want])
				}
			}
		})
	}
}
