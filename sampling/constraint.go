package sampling

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// Constraint restricts the token sequences a request may generate, for instance to the
// strings of a grammar or a JSON Schema (package sampling/constrain builds them). It is
// shared by the sequences of a request and starts one ConstraintState for each.
type Constraint interface {
	// NewState returns the state of a new sequence, at the start of its generated text.
	NewState() ConstraintState
}

// ConstraintState follows one sequence under a Constraint. Before each step, Allow gives the
// tokens allowed next; after it, Advance moves past the chosen token. Generation allows the
// stop and end-of-sequence tokens exactly where Accepting is true, whether or not Allow set
// them.
type ConstraintState interface {
	// Allow writes to mask (MaskWords(vocabulary) words) the tokens allowed next: bit id%64
	// of mask[id/64] for token id.
	Allow(mask []uint64) error
	// Accepting reports whether the text so far is complete, so that generation may end.
	Accepting() bool
	// Advance moves past token id, one that Allow allowed.
	Advance(id int) error
}

// ErrNoTokenAllowed is returned (wrapped) by SampleAllowed when the mask allows no token,
// or only tokens whose logits are -Inf or NaN.
var ErrNoTokenAllowed = errors.New("sampling: no token allowed")

// MaskWords returns the number of 64-bit words of a token mask over a vocabulary of vocab
// tokens.
func MaskWords(vocab int) int { return (vocab + 63) / 64 }

// SampleAllowed is Sample restricted to the tokens whose bits are set in allowed (bit id%64
// of allowed[id/64]). The other tokens are masked, their logits set to -Inf, before every
// other step (logit bias, penalties, temperature, filters): they are never drawn and weigh
// nothing in min-p, top-k and top-p. Logprobs is unchanged: it reports the model's raw
// distribution.
func (s *Sampler) SampleAllowed(logits []float32, allowed []uint64) (int, error) {
	if len(logits) != s.vocab {
		return -1, fmt.Errorf("%w: %d values for a vocabulary of %d", ErrInvalidLogits, len(logits), s.vocab)
	}
	if len(allowed) < MaskWords(s.vocab) {
		return -1, fmt.Errorf("%w: mask of %d words for a vocabulary of %d", ErrInvalidLogits, len(allowed), s.vocab)
	}
	n := 0
	for i, w := range allowed[:MaskWords(s.vocab)] {
		if rest := s.vocab - 64*i; rest < 64 {
			w &= 1<<rest - 1
		}
		n += bits.OnesCount64(w)
	}
	if n == 0 {
		return -1, ErrNoTokenAllowed
	}
	if n <= s.vocab/sparseShare {
		return s.sampleSparse(logits, allowed, n)
	}
	if s.masked == nil {
		s.masked = make([]float32, s.vocab)
	}
	maskLogits(s.masked, logits, allowed)
	id, err := s.Sample(s.masked)
	if errors.Is(err, ErrInvalidLogits) {
		return -1, fmt.Errorf("%w: every allowed logit is -Inf or NaN", ErrNoTokenAllowed)
	}
	return id, err
}

// sparseShare: a mask that allows at most 1/sparseShare of the vocabulary is sampled over
// the allowed tokens alone.
const sparseShare = 16

// sampleSparse is SampleAllowed over the n allowed tokens alone, with the same steps and
// distribution as Sample over the masked logits: logit bias and penalties, then greedy
// decoding, or temperature, min-p, top-k and top-p and the draw.
func (s *Sampler) sampleSparse(logits []float32, allowed []uint64, n int) (int, error) {
	if cap(s.allowed) < n {
		s.allowed = make([]cand, 0, max(n, s.vocab/sparseShare))
	}
	c := s.allowed[:0]
	top, at := negInf, -1
	for i, w := range allowed[:MaskWords(s.vocab)] {
		for ; w != 0; w &= w - 1 {
			id := 64*i + bits.TrailingZeros64(w)
			if id >= s.vocab {
				break
			}
			v := clean(logits[id])
			if s.flags != nil {
				v = s.adjust(int32(id), v)
			}
			c = append(c, cand{v: v, id: int32(id)})
			if v > top {
				top, at = v, id
			}
		}
	}
	if at < 0 {
		return -1, fmt.Errorf("%w: every allowed logit is -Inf or NaN", ErrNoTokenAllowed)
	}
	if s.greedy {
		s.record(at)
		return at, nil
	}
	thr := max(minPThreshold(top, s.minP, s.temp), -math.MaxFloat32)
	if s.topK > 0 && s.topK < len(c) {
		vs := s.tmp[:0]
		for _, x := range c {
			vs = append(vs, x.v)
		}
		slices.Sort(vs)
		thr = max(thr, vs[len(vs)-s.topK])
	}
	kept := c[:0]
	for _, x := range c {
		if x.v >= thr {
			kept = append(kept, x)
		}
	}
	mass := expCands(kept, top, float32(1/s.temp), s.tmp)
	if s.topP < 1 {
		var k int
		k, mass = nucleus(kept, s.topP*mass)
		kept = kept[:k]
	}
	i := pick(kept, s.uniform()*mass)
	if i < 0 {
		return -1, fmt.Errorf("%w: every allowed logit is -Inf or NaN", ErrNoTokenAllowed)
	}
	id := int(kept[i].id)
	s.record(id)
	return id, nil
}

// maskLogits writes to dst the logits of the tokens allowed and -Inf for the others.
func maskLogits(dst, logits []float32, allowed []uint64) {
	for i := 0; i < len(logits); i += 64 {
		n := min(64, len(logits)-i)
		w := allowed[i/64]
		if n < 64 {
			w &= 1<<n - 1
		}
		src, out := logits[i:i+n], dst[i:i+n]
		switch w {
		case 0:
			for j := range out {
				out[j] = negInf
			}
			continue
		case ^uint64(0):
			copy(out, src)
		default:
			// Write the fewer entries one by one: the allowed ones or the others.
			if bits.OnesCount64(w) > n/2 {
				copy(out, src)
				for v := ^w & (1<<n - 1); v != 0; v &= v - 1 {
					out[bits.TrailingZeros64(v)] = negInf
				}
				continue
			}
			for j := range out {
				out[j] = negInf
			}
			for v := w; v != 0; v &= v - 1 {
				j := bits.TrailingZeros64(v)
				out[j] = src[j]
			}
		}
	}
}
