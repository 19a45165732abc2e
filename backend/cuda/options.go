package cuda

import "errors"

// Errors of the CUDA backend; test them with errors.Is.
var (
	// ErrNotBuilt: the program was built without CUDA support.
	ErrNotBuilt = errors.New("fathom: not built with CUDA (build with -tags cuda after make cuda)")
	// ErrNoDevice: no CUDA device with the requested ordinal is usable.
	ErrNoDevice = errors.New("cuda: no usable CUDA device")
	// ErrDevice: a CUDA call failed (out of device memory, a kernel fault, a driver error).
	ErrDevice = errors.New("cuda: device error")
)

// Options configure New. The zero value uses device 0 and exact activations. How weights are
// stored is chosen per weight when it is bound: as stored (Bind), or quantized as
// backend.Q8 (backend.Quantizer, which mixtral.Options.Quantize uses).
type Options struct {
	// Device is the CUDA device ordinal.
	Device int
	// BF16Activations rounds the activations of the tensor-core products (prefill, and MoE
	// blocks of more than a few tokens) to bfloat16. By default each activation is split into
	// two bfloat16 parts that are both multiplied, which keeps about 16 significant bits
	// (results near float32 accuracy, so that near-ties in expert routing fall as in a float32
	// reference) at twice the tensor-core work. Decode-sized products always use float32
	// activations.
	BF16Activations bool
}
