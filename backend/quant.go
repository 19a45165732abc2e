package backend

import (
	"errors"
	"fmt"

	"github.com/fathom-llm/fathom/safetensors"
)

// Quantization names a format a backend may store a weight in instead of the checkpoint's
// element type. The zero value, AsStored, keeps weights as stored.
type Quantization string

// The quantizations. Both quantize each row of a weight in groups of QuantGroup consecutive
// inputs; the products quantize the activations too (int8 per group, per row), so that the
// dot products run in integers.
const (
	// AsStored keeps a weight in its stored element type (bf16, f16 or f32).
	AsStored Quantization = ""
	// Q8 is int8, symmetric: per group one float16 scale d, values d·q with q in [-127, 127].
	// 8.5 bits per weight.
	Q8 Quantization = "q8"
	// Q4 is 4-bit, asymmetric: per group one float16 scale d and one float16 minimum m,
	// values d·q+m with q in [0, 15]. 5 bits per weight.
	Q4 Quantization = "q4"
)

// QuantGroup is the number of consecutive inputs of a row that share a scale. A weight
// whose rows are not a multiple of QuantGroup long stays as stored.
const QuantGroup = 32

// ErrQuantization reports a quantization that is unknown or that the backend cannot store.
var ErrQuantization = errors.New("backend: unsupported quantization")

// ParseQuantization parses the name of a quantization: "q8", "q4", or "" (also "none" or
// "bf16"/"f16"/"f32" as an explicit request for the stored type) for AsStored.
func ParseQuantization(s string) (Quantization, error) {
	switch s {
	case "", "none", "bf16", "f16", "f32":
		return AsStored, nil
	case string(Q8), string(Q4):
		return Quantization(s), nil
	}
	return AsStored, fmt.Errorf("%w: %q (want q8 or q4)", ErrQuantization, s)
}

// Valid reports whether q is one of the defined quantizations.
func (q Quantization) Valid() bool { return q == AsStored || q == Q8 || q == Q4 }

// String returns the quantization's name, "as stored" for AsStored.
func (q Quantization) String() string {
	if q == AsStored {
		return "as stored"
	}
	return string(q)
}

// Quantizer is implemented by backends that can store weights quantized. The quantized copy
// is made once, when the weight is bound, and replaces the stored data: the backend keeps no
// reference to t.Data afterwards. A quantized weight's DType stays the stored tensor's. A
// backend may store only some of the quantizations (the CPU stores Q8 and Q4, CUDA Q8); the
// others give an error wrapping ErrQuantization.
type Quantizer interface {
	// BindQuantized is Bind storing t as q (AsStored: exactly Bind). A weight whose rows are
	// not a multiple of QuantGroup long stays as stored. Values that do not quantize (NaN,
	// infinities, magnitudes beyond float16) give an error wrapping ErrQuantization.
	BindQuantized(t safetensors.Tensor, q Quantization) (Weight, error)
	// BindExpertsQuantized is BindExperts storing the expert weights (W1, W2, W3) as q, as
	// BindQuantized does; the router stays as stored. A backend that keeps a block's experts
	// in one format may keep the whole block as stored when some of its rows do not split
	// into groups.
	BindExpertsQuantized(e ExpertTensors, q Quantization) (Experts, error)
}

// BindAs binds t on b stored as q: by Bind for AsStored, otherwise by b's Quantizer. A
// backend that is no Quantizer gives an error wrapping ErrQuantization.
func BindAs(b Backend, t safetensors.Tensor, q Quantization) (Weight, error) {
	if q == AsStored {
		return b.Bind(t)
	}
	bq, err := quantizer(b, q)
	if err != nil {
		return nil, err
	}
	return bq.BindQuantized(t, q)
}

// BindExpertsAs is BindAs for a mixture-of-experts block.
func BindExpertsAs(b Backend, e ExpertTensors, q Quantization) (Experts, error) {
	if q == AsStored {
		return b.BindExperts(e)
	}
	bq, err := quantizer(b, q)
	if err != nil {
		return nil, err
	}
	return bq.BindExpertsQuantized(e, q)
}

func quantizer(b Backend, q Quantization) (Quantizer, error) {
	if !q.Valid() {
		return nil, fmt.Errorf("%w: %q", ErrQuantization, string(q))
	}
	bq, ok := b.(Quantizer)
	if !ok {
		return nil, fmt.Errorf("%w: the %s backend cannot store %s weights", ErrQuantization, b.Name(), q)
	}
	return bq, nil
}
