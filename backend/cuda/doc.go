// Package cuda is the CUDA backend: weights, activations and the paged KV cache live in GPU
// memory, and every operation of backend.Backend is a CUDA kernel (the mixture-of-experts block
// a fused routing kernel and grouped tensor-core GEMMs).
//
// The backend needs cgo and the build tag cuda, after `make cuda` has built the kernels into
// backend/cuda/lib/libfathomcuda.a (nvcc, sm_80 and sm_90):
//
//	make cuda
//	go build -tags cuda ./...
//
// Without the tag New returns an error wrapping ErrNotBuilt, so the rest of the module builds
// and tests without CUDA. Tests that need a device skip without one, or fail when the
// environment variable FATHOM_REQUIRE_CUDA is set.
//
// Dense products of more than a few rows and the expert products of larger MoE blocks run
// through cuBLASLt when the machine has it: the library is loaded at run time, from the file
// that the environment variable FATHOM_CUBLASLT names, else as libcublasLt.so or a versioned
// name the dynamic loader finds; FATHOM_CUBLASLT=off keeps the package's own kernels, which
// also run float16 and int8 weights. The backend's String says which is in use.
//
// The kernels also build against a CPU emulation of CUDA (emu/build.sh, then the build tags
// cuda and cudaemu), which runs the backend's tests slowly on a machine without a GPU.
//
// Numerics: weights are stored on the device in bfloat16 (float16 checkpoints stay float16;
// float32 ones become bfloat16), or the experts in int8 with one float32 scale per group of
// inputs (Options.Int8Experts); 1-row weights (norm gains) and the router stay float32.
// Activations are float32 between operations. The GEMVs used for a few rows (decode) keep
// them float32; the tensor-core GEMMs (prefill) split each activation into two bfloat16 parts
// that are both multiplied, about 16 significant bits (Options.BF16Activations rounds them to
// one bfloat16 instead: twice as fast, about 1e-3 relative error). Keys and values are cached
// in float16. Accumulation, softmax and normalisation are float32. With bfloat16 or float16
// weights the logits of the fixture models stay within about 5e-4 of a float64 reference.
//
// Decode steps are recorded as CUDA graphs (backend.StepRecorder): after two steps of one
// shape, a step is one graph launch instead of some 500 kernel launches.
package cuda
