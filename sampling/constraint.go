package sampling

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
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
	if s.masked == nil {
		s.masked = make([]float32, s.vocab)
	}
	if !maskLogits(s.masked, logits, allowed) {
		return -1, ErrNoTokenAllowed
	}
	id, err := s.Sample(s.masked)
	if errors.Is(err, ErrInvalidLogits) {
		return -1, fmt.Errorf("%w: every allowed logit is -Inf or NaN", ErrNoTokenAllowed)
	}
	return id, err
}

// maskLogits writes to dst the logits of the tokens allowed and -Inf for the others, and
// reports whether any token is allowed.
func maskLogits(dst, logits []float32, allowed []uint64) bool {
	negInf := float32(math.Inf(-1))
	anyAllowed := false
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
			for j := range out {
				out[j] = negInf
			}
			for v := w; v != 0; v &= v - 1 {
				j := bits.TrailingZeros64(v)
				out[j] = src[j]
			}
		}
		anyAllowed = true
	}
	return anyAllowed
}
