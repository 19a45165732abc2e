package cuda

import (
	"errors"

	"github.com/fathom-llm/fathom/backend"
)

// Errors of the CUDA backend; test them with errors.Is.
var (
	// ErrNotBuilt: the program was built without CUDA support.
	ErrNotBuilt = errors.New("fathom: not built with CUDA (build with -tags cuda after make cuda)")
	// ErrNoDevice: no CUDA device with the requested ordinal is usable.
	ErrNoDevice = errors.New("cuda: no usable CUDA device")
	// ErrDevice: a CUDA call failed (out of device memory, a kernel fault, a driver error).
	ErrDevice = errors.New("cuda: device error")
)

// DefaultGroupSize is the number of consecutive inputs of a row that share one int8 scale.
const DefaultGroupSize = 128

// Options configure New. The zero value uses device 0 and bfloat16 weights.
type Options struct {
	// Device is the CUDA device ordinal.
	Device int
	// Int8Experts stores the expert weights of mixture-of-experts blocks as int8 with one
	// float32 scale per GroupSize inputs of a row (symmetric, round to nearest), so that
	// Mixtral 8x7B fits one 80 GB card. Other weights stay bfloat16.
	Int8Experts bool
	// GroupSize is the int8 group size, a positive multiple of 8; 0 means DefaultGroupSize.
	GroupSize int
	// BF16Activations rounds the activations of the tensor-core products (prefill, and MoE
	// blocks of more than a few tokens) to bfloat16. By default each activation is split into
	// two bfloat16 parts that are both multiplied, which keeps about 16 significant bits
	// (results near float32 accuracy, so that near-ties in expert routing fall as in a float32
	// reference) at twice the tensor-core work. Decode-sized products always use float32
	// activations.
	BF16Activations bool
}

// groupSize returns the effective group size, or an error for an invalid one.
func (o Options) groupSize() (int, error) {
	switch {
	case o.GroupSize == 0:
		return DefaultGroupSize, nil
	case o.GroupSize < 0 || o.GroupSize%8 != 0:
		return 0, backend.Shapef("int8 group size %d: want a positive multiple of 8", o.GroupSize)
	}
	return o.GroupSize, nil
}
