// Package cuda is the CUDA backend: weights, activations and the paged KV cache live in GPU
// memory, and every operation of backend.Backend is a CUDA kernel (the mixture-of-experts block
// a fused routing kernel and grouped tensor-core GEMMs).
//
// The backend needs cgo and the build tag cuda, after `make cuda` has built the kernels into
// backend/cuda/lib/libfathomcuda.a (nvcc, sm_80 and sm_90) and copied the CUDA runtime
// (libcudart_static.a) of its toolkit beside it: by default the toolkit of the nvcc on PATH,
// else the one CUDA_HOME names (/usr/local/cuda, /usr for Debian's nvidia-cuda-toolkit):
//
//	make cuda                      # or: make cuda CUDA_HOME=/usr/local/cuda-12.4
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
// float32 ones become bfloat16); 1-row weights (norm gains) and the router stay float32. The
// backend is a backend.Quantizer for backend.Q8 (what mixtral.Options.Quantize asks of it):
// int8 values with one scale per 32 inputs of a row, rounded to float16 as the q8 format
// defines, for any matrix whose rows split into such groups (mixtral quantizes the experts and
// the attention projections). The experts of one block share a format: a block whose widths do
// not both split into groups stays as stored. backend.Q4 is refused with an error wrapping
// backend.ErrQuantization, and a norm gain bound quantized is refused by RMSNorm.
// Activations are float32 between operations. The GEMVs used for a few rows (decode) keep
// them float32; the tensor-core GEMMs (prefill) split each activation into two bfloat16 parts
// that are both multiplied, about 16 significant bits (Options.BF16Activations rounds them to
// one bfloat16 instead: twice as fast, about 1e-3 relative error). Keys and values are cached
// in float16. Accumulation, softmax and normalisation are float32. With bfloat16 or float16
// weights the logits of the fixture models stay within about 5e-4 of a float64 reference.
//
// Decode steps are recorded as CUDA graphs (backend.StepRecorder): after two steps of one
// shape, a step is one graph launch instead of some 500 kernel launches. Step holds the
// backend's lock while the step's operations are issued, on the view of the backend it hands
// them, so that operations of other goroutines wait and never enter a record.
package cuda
