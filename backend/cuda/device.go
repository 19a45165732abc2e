//go:build cuda && cgo

package cuda

// The link flags name no CUDA installation: `make cuda` copies the CUDA runtime
// (libcudart_static.a) of the toolkit it is given (CUDA_HOME, by default the one of the nvcc
// on PATH) into lib/, beside libfathomcuda.a.

/*
#cgo CFLAGS: -I${SRCDIR}/kernels
#cgo !cudaemu LDFLAGS: -L${SRCDIR}/lib -lfathomcuda -lcudart_static -ldl -lrt -lpthread -lstdc++ -lm
#cgo cudaemu LDFLAGS: -L${SRCDIR}/lib/emu -lfathomcuda -lstdc++ -lpthread -lm
#include "fathom_cuda.h"
*/
import "C"

import (
	"fmt"
	"sync"
	"unsafe"

	"github.com/fathom-llm/fathom/backend"
)

// The host-side constants must match the kernels' (a negative untyped constant does not
// convert to uint: a mismatch fails to compile).
const (
	_ = uint(C.FC_GEMV_MAX_ROWS-gemvMaxRows) + uint(gemvMaxRows-C.FC_GEMV_MAX_ROWS)
	_ = uint(C.FC_GEMM_BM-gemmTileRows) + uint(gemmTileRows-C.FC_GEMM_BM)
	_ = uint(C.FC_MAX_EXPERTS-maxExperts) + uint(maxExperts-C.FC_MAX_EXPERTS)
	_ = uint(C.FC_MAX_HEAD_DIM-maxHeadDim) + uint(maxHeadDim-C.FC_MAX_HEAD_DIM)
)

// gpu is the CUDA backend on one device. Its methods take mu and run the operation of the
// same name on the backend's unlocked view, which Step hands to the step it records.
type gpu struct {
	mu     sync.Mutex // held by every method while it runs, and by Step for a whole step
	ctx    *C.fc_ctx
	closed bool
	opts   Options

	device       string
	sms          int
	major, minor int
	totalMem     int64

	allocs map[unsafe.Pointer]int // live device allocations and their sizes
	// epoch counts releases of device memory: recorded steps hold device addresses.
	epoch  uint64
	graphs map[any]*graph
	rope   map[ropeKey]unsafe.Pointer
	// Scratch memory, grown as operations need.
	gatherRows, attnPart, moeScratch, gemmA, moeExperts scratch
	// blas is cuBLASLt's version when loaded (blas.go), blasNote what String says of it.
	blas     int
	blasNote string
}

// unlocked is the backend without its lock: the operations themselves, for a caller that
// holds gpu.mu. Handles belong to the *gpu (an unlocked view converts back to it).
type unlocked gpu

type ropeKey struct {
	headDim int
	theta   float64
}

var (
	_ backend.Backend        = (*gpu)(nil)
	_ backend.ResidualNormer = (*gpu)(nil)
	_ backend.Quantizer      = (*gpu)(nil)
	_ backend.StepRecorder   = (*gpu)(nil)
	_ backend.Backend        = (*unlocked)(nil)
	_ backend.ResidualNormer = (*unlocked)(nil)
	_ backend.Quantizer      = (*unlocked)(nil)
)

// New opens CUDA device opts.Device. Close the backend to release its device memory.
func New(opts Options) (backend.Backend, error) {
	return newGPU(opts)
}

// Available reports whether this build has CUDA support and at least one device.
func Available() bool {
	var n C.int
	return C.fc_device_count(&n) == 0 && n > 0
}

func newGPU(opts Options) (*gpu, error) {
	var n C.int
	if code := C.fc_device_count(&n); code != 0 {
		return nil, fmt.Errorf("%w: %s", ErrNoDevice, errorString(code))
	}
	if opts.Device < 0 || opts.Device >= int(n) {
		return nil, fmt.Errorf("%w: device %d of %d", ErrNoDevice, opts.Device, int(n))
	}
	g := &gpu{opts: opts, allocs: map[unsafe.Pointer]int{}, rope: map[ropeKey]unsafe.Pointer{}, graphs: map[any]*graph{}}
	var name [256]C.char
	var total C.size_t
	var sms, major, minor C.int
	if code := C.fc_device_info(C.int(opts.Device), &name[0], C.int(len(name)), &total, &sms, &major, &minor); code != 0 {
		return nil, fmt.Errorf("%w: device %d: %s", ErrNoDevice, opts.Device, errorString(code))
	}
	g.device, g.totalMem, g.sms, g.major, g.minor = C.GoString(&name[0]), int64(total), int(sms), int(major), int(minor)
	if g.major < 8 {
		return nil, fmt.Errorf("%w: %s has compute capability %d.%d, the kernels need 8.0 or later", ErrNoDevice, g.device, g.major, g.minor)
	}
	if code := C.fc_create(C.int(opts.Device), &g.ctx); code != 0 {
		return nil, fmt.Errorf("%w: device %d: %s", ErrNoDevice, opts.Device, errorString(code))
	}
	g.openBLAS()
	return g, nil
}

func errorString(code C.int) string { return C.GoString(C.fc_error_string(code)) }

// check turns a kernel interface return code into an error.
func check(code C.int, what string) error {
	if code == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s: %s (%d)", ErrDevice, what, errorString(code), int(code))
}

// Name returns "cuda".
func (g *gpu) Name() string { return "cuda" }

// Name returns "cuda".
func (u *unlocked) Name() string { return "cuda" }

// String describes the device.
func (g *gpu) String() string {
	return fmt.Sprintf("cuda device %d: %s (sm_%d%d, %d SMs, %.1f GiB, %s)", g.opts.Device, g.device, g.major, g.minor, g.sms, float64(g.totalMem)/(1<<30), g.blasNote)
}

// lock takes the backend's lock and returns the unlocked view, failing when the backend is
// closed.
func (g *gpu) lock() (*unlocked, error) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil, backend.ErrClosed
	}
	return (*unlocked)(g), nil
}

// Close releases all device memory. Later operations fail with backend.ErrClosed.
func (g *gpu) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	var err error
	if code := C.fc_sync(g.ctx); code != 0 {
		err = check(code, "close")
	}
	u := (*unlocked)(g)
	u.dropGraphs()
	for p := range g.allocs {
		C.fc_free(g.ctx, p)
	}
	g.allocs = nil
	C.fc_destroy(g.ctx)
	g.ctx = nil
	return err
}

// Close fails: the view's backend is closed by its owner, not by a step.
func (u *unlocked) Close() error {
	return fmt.Errorf("cuda: Close of the backend a step runs on")
}

// exact is the kernels' flag for activations as bfloat16 pairs (see Options.BF16Activations).
func (u *unlocked) exact() C.int {
	if u.opts.BF16Activations {
		return 0
	}
	return 1
}

// sync waits for the device (for benchmarks).
func (g *gpu) sync() error {
	u, err := g.lock()
	if err != nil {
		return err
	}
	defer g.mu.Unlock()
	return check(C.fc_sync(u.ctx), "sync")
}
