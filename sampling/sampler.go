package sampling

import (
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/fathom-llm/fathom/internal/kernels"
)

// ErrInvalidLogits is returned (wrapped) by Sample and Logprobs for a logits vector of the
// wrong length or one with no finite entry.
var ErrInvalidLogits = errors.New("sampling: invalid logits")

// ErrTokenID is returned (wrapped) by NewSampler for a prompt token id outside the
// vocabulary.
var ErrTokenID = errors.New("sampling: token id outside the vocabulary")

// seedStream is the PCG stream constant of every Sampler; the seed picks the state.
const seedStream = 0x9e3779b97f4a7c15

// Sampler draws the tokens of one sequence: it holds the request's parameters, its random
// stream, the token history the penalties need, and scratch buffers sized to the vocabulary,
// so that a step allocates nothing. A Sampler is not safe for concurrent use; each sequence
// (each choice of a request) has its own.
type Sampler struct {
	vocab    int
	seed     int64
	rng      rand.PCG
	greedy   bool
	temp     float64
	minP     float64
	topK     int
	topP     float64
	logprobK int

	// Logit bias and penalties touch few tokens: sparse lists them in ascending order, once.
	// flags[id] has flagPrompt, flagOutput and flagBias bits; bias[id] is the clamped bias
	// and counts[id] the number of times id was generated.
	penalties  bool
	repetition float32
	frequency  float32
	presence   float32
	sparse     []int32
	flags      []uint8
	bias       []float32
	counts     []int32

	generated int
	buf       []float32       // the penalised logits of the current step
	cands     []cand          // the candidates of the current step
	tmp       []float32       // expCands' scratch
	exps      []float32       // the exponentials of the vocabulary for top-p alone; else nil
	ids       []int32         // with exps: the tokens that top-p may keep
	heap      kHeap           // top-k selection; nil when top-k is off or decoding is greedy
	masked    []float32       // SampleAllowed's masked logits; nil until it is first called
	allowed   []cand          // SampleAllowed's allowed tokens, for a sparse mask
	bucketN   [nBuckets]int32 // drawUnfiltered's bucket counts
}

// NewSampler returns a Sampler for a request with parameters p over a vocabulary of vocab
// tokens, whose prompt is promptIDs (the repetition penalty counts them). It validates p
// (returning a *ParamError) and checks logit bias ids against the vocabulary. Without a
// seed it draws one from crypto/rand; Seed reports it either way.
func NewSampler(p Params, vocab int, promptIDs []int) (*Sampler, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if vocab <= 0 || vocab > math.MaxInt32 {
		return nil, paramErr("vocab", vocab, "between 1 and 2^31-1")
	}
	s := &Sampler{
		vocab:      vocab,
		greedy:     p.greedy(),
		temp:       p.Temperature,
		minP:       p.MinP,
		topK:       max(p.TopK, 0),
		topP:       p.topP(),
		logprobK:   p.TopLogprobs,
		repetition: float32(p.repetition()),
		frequency:  float32(p.FrequencyPenalty),
		presence:   float32(p.PresencePenalty),
		buf:        make([]float32, vocab),
	}
	if s.topK >= vocab {
		s.topK = 0
	}
	if p.Seed != nil {
		s.seed = *p.Seed
	} else {
		var b [8]byte
		_, _ = crand.Read(b[:]) // crypto/rand.Read never fails
		s.seed = int64(binary.LittleEndian.Uint64(b[:]))
	}
	s.rng.Seed(uint64(s.seed), seedStream)

	for _, id := range promptIDs {
		if id < 0 || id >= vocab {
			return nil, fmt.Errorf("%w: prompt token %d, vocabulary of %d", ErrTokenID, id, vocab)
		}
	}
	for id := range p.LogitBias {
		if id >= vocab {
			return nil, paramErr("logit_bias", id, fmt.Sprintf("keyed by token ids between 0 and %d", vocab-1))
		}
	}
	s.penalties = s.repetition != 1 || s.frequency != 0 || s.presence != 0
	if s.penalties || len(p.LogitBias) > 0 {
		s.flags = make([]uint8, vocab)
		s.sparse = make([]int32, 0, vocab)
	}
	if len(p.LogitBias) > 0 {
		s.bias = make([]float32, vocab)
		for id, b := range p.LogitBias {
			s.bias[id] = float32(ClampBias(b))
			s.flags[id] |= flagBias
		}
	}
	if s.penalties {
		s.counts = make([]int32, vocab)
		if s.repetition != 1 {
			for _, id := range promptIDs {
				s.flags[id] |= flagPrompt
			}
		}
	}
	for id, f := range s.flags {
		if f != 0 {
			s.sparse = append(s.sparse, int32(id))
		}
	}
	if !s.greedy {
		s.cands = make([]cand, 0, vocab)
		s.tmp = make([]float32, 2*expChunk)
		if s.topP > 0 && s.topP <= 1-minTail && s.minP <= 0 && s.topK <= 0 {
			s.exps, s.ids = make([]float32, vocab), make([]int32, vocab)
		}
		if s.topK > 0 {
			s.heap = make(kHeap, s.topK)
		}
	}
	return s, nil
}

// The flags of a token that the logit bias or the penalties adjust.
const (
	flagPrompt uint8 = 1 << iota // in the prompt (repetition penalty)
	flagOutput                   // generated (all three penalties)
	flagBias                     // has a logit bias
)

// mark sets flag f of token id, inserting id into sparse, in order, the first time.
func (s *Sampler) mark(id int, f uint8) {
	if s.flags[id] == 0 {
		if i, found := slices.BinarySearch(s.sparse, int32(id)); !found {
			s.sparse = slices.Insert(s.sparse, i, int32(id)) // within capacity: no allocation
		}
	}
	s.flags[id] |= f
}

// Seed returns the seed of the Sampler's random stream: Params.Seed, or the one drawn for
// an unseeded request (rerunning with it reproduces the run).
func (s *Sampler) Seed() int64 { return s.seed }

// Generated returns the number of tokens sampled so far.
func (s *Sampler) Generated() int { return s.generated }

// Sample picks the next token from logits (one entry per vocabulary token, as the model
// produced them) and records it as generated, for the penalties of later steps. It never
// modifies logits, so the caller may pass the same slice to Logprobs afterwards.
//
// The steps are vLLM's V1 sampler's: logit bias, then the repetition, frequency and presence
// penalties; greedy decoding takes the argmax of the result (the lowest id among equal
// maxima). Otherwise the logits are divided by the temperature, min-p, top-k and top-p
// filter them, and the token is drawn from the softmax of what is left with the Sampler's
// random stream. NaN logits are read as -Inf and +Inf as the largest float32. A step
// allocates nothing.
func (s *Sampler) Sample(logits []float32) (int, error) {
	if len(logits) != s.vocab {
		return -1, fmt.Errorf("%w: %d values for a vocabulary of %d", ErrInvalidLogits, len(logits), s.vocab)
	}
	top, id := s.prepare(logits)
	if id >= 0 && !s.greedy {
		id = s.draw(s.buf, top)
	}
	if id < 0 {
		return -1, fmt.Errorf("%w: every logit is -Inf or NaN", ErrInvalidLogits)
	}
	s.record(id)
	return id, nil
}

// prepare computes the penalised logits in one pass: each entry cleaned (see clean), then
// the logit bias and the repetition, frequency and presence penalties applied, in that
// order, to the tokens they concern. It returns the largest and its id (the lowest among
// equals), or -1 when no entry is finite. Unless decoding is greedy it writes them to s.buf,
// and with top-k on it leaves the k largest in s.heap.
func (s *Sampler) prepare(logits []float32) (float32, int) {
	s.heap.reset()
	top, at, from := negInf, -1, 0
	for _, id := range s.sparse {
		top, at = s.copyRange(logits, from, int(id), top, at)
		v := s.adjust(id, clean(logits[id]))
		s.buf[id] = v
		if v > top {
			top, at = v, int(id)
		}
		if s.heap != nil {
			s.heap.offer(v)
		}
		from = int(id) + 1
	}
	top, at = s.copyRange(logits, from, len(logits), top, at)
	if top == negInf {
		at = -1
	}
	return top, at
}

// copyRange copies logits[from:to] to s.buf, cleaned, and returns the largest of top and
// those entries with its id, the first among equals. It offers the entries to s.heap.
// Greedy decoding needs only the largest entry: it copies nothing.
func (s *Sampler) copyRange(logits []float32, from, to int, top float32, at int) (float32, int) {
	src, dst, h := logits[from:to], s.buf[from:to], s.heap
	switch {
	case s.greedy:
		// Find the largest in vectors, then its first index; a NaN or +Inf, which need
		// cleaning, sends the range through the loop below.
		if m := kernels.Max(src); m <= math.MaxFloat32 {
			if m > top {
				top, at = m, from+slices.Index(src, m)
			}
			return top, at
		}
		for i, v := range src {
			if !(v <= math.MaxFloat32) { // NaN or +Inf; -Inf passes
				v = clean(v)
			}
			if v > top {
				top, at = v, from+i
			}
		}
	case h == nil:
		// Copy in bulk and find the largest in vectors; a NaN or +Inf, which need cleaning,
		// sends the range through the loop below.
		copy(dst, src)
		if m := kernels.Max(dst); m <= math.MaxFloat32 {
			if m > top {
				top, at = m, from+slices.Index(dst, m)
			}
			return top, at
		}
		for i, v := range src {
			if !(v <= math.MaxFloat32) {
				v = clean(v)
			}
			dst[i] = v
			if v > top {
				top, at = v, from+i
			}
		}
	default:
		for i, v := range src {
			if !(v <= math.MaxFloat32) {
				v = clean(v)
			}
			dst[i] = v
			if v > top {
				top, at = v, from+i
			}
			if v > h[0] {
				h[0] = v
				siftDown(h, 0)
			}
		}
	}
	return top, at
}

// adjust applies the logit bias and the penalties to v, the logit of token id.
func (s *Sampler) adjust(id int32, v float32) float32 {
	f := s.flags[id]
	if f&flagBias != 0 {
		v += s.bias[id]
	}
	if s.repetition != 1 && f&(flagPrompt|flagOutput) != 0 {
		v = repeat(v, s.repetition)
	}
	if f&flagOutput != 0 {
		v = penalise(v, s.counts[id], s.frequency, s.presence)
	}
	return v
}

// record notes id as generated.
func (s *Sampler) record(id int) {
	s.generated++
	if s.penalties {
		s.mark(id, flagOutput)
		s.counts[id]++
	}
}

// draw draws a token from the penalised logits buf, whose largest entry is top, with filter;
// -1 when no logit is finite. Without min-p, top-k and top-p it draws by rejection instead
// (drawUnfiltered), which needs no exponential of most tokens.
func (s *Sampler) draw(buf []float32, top float32) int {
	if s.minP <= 0 && s.heap == nil && s.topP >= 1 {
		if id := s.drawUnfiltered(buf, top); id >= 0 {
			return id
		}
	}
	c, mass := s.filter(buf, top)
	if len(c) == 0 {
		return -1
	}
	i := pick(c, s.uniform()*mass)
	if i < 0 {
		return -1
	}
	return int(c[i].id)
}

// uniform returns a number in [0, 1) from the Sampler's random stream.
func (s *Sampler) uniform() float64 { return float64(s.rng.Uint64()>>11) / (1 << 53) }

// drawUnfiltered draws a token from the softmax of buf / temperature by rejection sampling.
// The tokens fall into buckets a quarter of a nat wide by x = (v - top) / temperature; a
// token of bucket b has probability at most proportional to envelope[b] = e^(-b/4).
// Proposing a bucket in proportion to its count times envelope[b], then one of its tokens
// uniformly, and accepting it with probability e^x / envelope[b] draws each token in proportion to e^x, exactly,
// computing one exponential per proposal instead of one per token. The expected number of
// proposals is at most e^(1/4). It returns -1, to fall back to the full softmax, in the
// unlikely case that many proposals in a row are rejected.
func (s *Sampler) drawUnfiltered(buf []float32, top float32) int {
	const last = nBuckets - 1
	bk := buckets{top, float32(bucketsPerNat / s.temp)} // -Inf entries fall in the last, never accepted
	counts := &s.bucketN
	*counts = [nBuckets]int32{}
	for _, v := range buf {
		counts[bk.of(v)]++
	}
	total := 0.0
	for b, n := range counts {
		total += float64(n) * envelope[b]
	}
	invT := float32(1 / s.temp)
	for range 64 {
		// Propose a bucket, then the k-th of its tokens.
		r, b := s.uniform()*total, 0
		for ; b < last; b++ {
			if r -= float64(counts[b]) * envelope[b]; r < 0 {
				break
			}
		}
		if counts[b] == 0 {
			continue // rounding at the end of the buckets
		}
		k := int(s.rng.Uint64() % uint64(counts[b]))
		id := -1
		for i, v := range buf {
			if bk.of(v) == b {
				if k == 0 {
					id = i
					break
				}
				k--
			}
		}
		if id < 0 {
			continue // not reached: bucket b holds counts[b] tokens
		}
		var e float32
		if x := (buf[id] - top) * invT; x >= kernels.ExpMin {
			e = kernels.ExpNeg(x)
		}
		if s.uniform()*envelope[b] < float64(e) {
			return id
		}
	}
	return -1
}

// buckets maps a logit v to its log-probability bucket, floor((top - v) * scale) with scale
// bucketsPerNat / temperature, the last bucket holding everything below (and -Inf).
type buckets struct{ top, scale float32 }

// of returns the bucket of v.
func (b buckets) of(v float32) int {
	y := (b.top - v) * b.scale
	if !(y < nBuckets-1) { // also +Inf
		return nBuckets - 1
	}
	return int(y)
}

// drawUnfiltered's log-probability buckets: bucketsPerNat buckets per nat of
// (v - top) / temperature, nBuckets of them; the last also holds everything further down.
const (
	bucketsPerNat = 4
	nBuckets      = 128
)

// envelope[b] bounds e^x over the bucket b of drawUnfiltered, x in (-(b+1)/4, -b/4], with a
// margin for float32 rounding.
var envelope = func() (env [nBuckets]float64) {
	for b := range env {
		env[b] = math.Exp(-float64(b)/bucketsPerNat) * (1 + 1e-5)
	}
	return env
}()

// filter applies temperature, min-p, top-k and top-p to the penalised logits buf. It returns
// the tokens left, in no particular order, with their unnormalised probabilities, and the
// sum of those. top is the largest entry of buf, which is finite.
func (s *Sampler) filter(buf []float32, top float32) ([]cand, float64) {
	// min-p and top-k both keep the tokens at or above a logit threshold; applied one after
	// the other they keep those at or above the larger threshold. -Inf is never kept.
	thr := max(minPThreshold(top, s.minP, s.temp), -math.MaxFloat32)
	if s.heap != nil {
		thr = max(thr, s.heap[0]) // the k-th largest, from prepare
	}
	scale := float32(1 / s.temp)
	if s.exps != nil && thr == -math.MaxFloat32 {
		return s.nucleusAll(buf, top, scale)
	}
	c := s.cands[:0]
	for i, v := range buf {
		if v >= thr {
			c = append(c, cand{v: v, id: int32(i)})
		}
	}
	mass := expCands(c, top, scale, s.tmp)
	if s.topP < 1 {
		var n int
		n, mass = nucleus(c, s.topP*mass)
		c = c[:n]
	}
	return c, mass
}

// minTail is the least 1 - top-p for which nucleusAll leaves the least likely tokens out
// before selecting: it keeps a margin of (1-p)/2 of the mass, far above rounding.
const minTail = 1e-3

// nucleusAll is filter for top-p over every finite logit of buf (no min-p, no top-k), with
// 0 < p <= 1-minTail. It computes the exponentials of the whole vocabulary at once, then
// leaves out of the selection the tokens of e below τ = (1-p)·mass/(2·len(buf)): together
// they and every token ranking below one of them weigh less than (1-p)·mass/2, so the mass
// ranking above each of them exceeds the top-p target by that margin, and top-p drops them
// anyway. Most of a language model's vocabulary falls below τ.
func (s *Sampler) nucleusAll(buf []float32, top, scale float32) ([]cand, float64) {
	es := s.exps[:len(buf)]
	mass := kernels.ExpSum(es, buf, top, scale)
	tau := float32((1 - s.topP) * mass / float64(2*len(buf)))
	tau = max(tau, math.SmallestNonzeroFloat32) // e = 0 never stays
	ids := s.ids[:kernels.IndexAtLeast(s.ids, es, tau)]
	c := s.cands[:len(ids)]
	for j, i := range ids {
		c[j] = cand{v: buf[i], e: es[i], id: i}
	}
	n, kept := nucleus(c, s.topP*mass)
	return c[:n], kept
}

// Logprobs returns the log-probabilities, the log-softmax of the raw logits (before any
// penalty or temperature, as vLLM reports them), of token id and of the Params.TopLogprobs
// most likely tokens, best first (equal logits by id, the lower first). Pass the logits
// that Sample was given. NaN logits are read as -Inf. It allocates only the returned Top
// slice, when Params.TopLogprobs > 0.
func (s *Sampler) Logprobs(logits []float32, id int) (Logprobs, error) {
	if len(logits) != s.vocab {
		return Logprobs{}, fmt.Errorf("%w: %d values for a vocabulary of %d", ErrInvalidLogits, len(logits), s.vocab)
	}
	if id < 0 || id >= s.vocab {
		return Logprobs{}, fmt.Errorf("%w: token %d, vocabulary of %d", ErrTokenID, id, s.vocab)
	}
	return logprobsOf(logits, id, s.logprobK, s.buf)
}

// logprobsOf computes Logprobs over logits, using scratch (len(logits) entries) only when
// a logit is +Inf.
func logprobsOf(logits []float32, id, k int, scratch []float32) (Logprobs, error) {
	x := logits
	top := kernels.Max(x)
	if top != top {
		top = maxOf(x) // NaN never compares greater
	}
	if top > math.MaxFloat32 {
		x = scratch[:len(logits)]
		for i, v := range logits {
			x[i] = clean(v)
		}
		top = maxOf(x)
	}
	if top == negInf {
		return Logprobs{}, fmt.Errorf("%w: every logit is -Inf or NaN", ErrInvalidLogits)
	}
	lse := float64(top) + math.Log(sumExp(x, top)) // NaN and -Inf count 0
	lp := Logprobs{Chosen: TokenLogprob{ID: id, Logprob: float64(clean(x[id])) - lse}}
	if k <= 0 {
		return lp, nil
	}
	k = min(k, len(x))
	// Keep the k best (value descending, id ascending) in t, sorted, by insertion.
	t := make([]TokenLogprob, 0, k)
	floor := float32(math.Inf(-1)) // t[k-1]'s value once t is full: only more enters
	for i, v := range x {
		if len(t) == k && !(v > floor) {
			continue
		}
		v = clean(v)
		if len(t) < k {
			t = append(t, TokenLogprob{})
		}
		j := len(t) - 1
		for ; j > 0 && float64(v) > t[j-1].Logprob; j-- {
			t[j] = t[j-1]
		}
		t[j] = TokenLogprob{ID: i, Logprob: float64(v)}
		if len(t) == k {
			floor = float32(t[k-1].Logprob) // exact: a float32 value
		}
	}
	for i := range t {
		t[i].Logprob -= lse
	}
	lp.Top = t
	return lp, nil
}

// LogSoftmax returns the log-softmax of logits with the most likely k tokens, as Logprobs
// reports them, for token id; a convenience for callers without a Sampler. It allocates.
func LogSoftmax(logits []float32, id, k int) (Logprobs, error) {
	if id < 0 || id >= len(logits) {
		return Logprobs{}, fmt.Errorf("%w: token %d, vocabulary of %d", ErrTokenID, id, len(logits))
	}
	return logprobsOf(logits, id, k, make([]float32, len(logits)))
}
