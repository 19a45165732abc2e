//go:build cuda && cgo

package cuda

/*
#cgo CFLAGS: -I${SRCDIR}/kernels
#cgo !cudaemu LDFLAGS: -L${SRCDIR}/lib -lfathomcuda -L/usr/local/cuda/lib64 -L/usr/local/cuda/targets/x86_64-linux/lib -lcudart_static -ldl -lrt -lpthread -lstdc++ -lm
#cgo cudaemu LDFLAGS: -L${SRCDIR}/lib/emu -lfathomcuda -lstdc++ -lpthread -lm
#include "fathom_cuda.h"
*/
import "C"

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"unsafe"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/safetensors"
)

// The host-side constants must match the kernels' (a negative untyped constant does not
// convert to uint: a mismatch fails to compile).
const (
	_ = uint(C.FC_GEMV_MAX_ROWS-gemvMaxRows) + uint(gemvMaxRows-C.FC_GEMV_MAX_ROWS)
	_ = uint(C.FC_GEMM_BM-gemmTileRows) + uint(gemmTileRows-C.FC_GEMM_BM)
	_ = uint(C.FC_MAX_EXPERTS-maxExperts) + uint(maxExperts-C.FC_MAX_EXPERTS)
	_ = uint(C.FC_MAX_HEAD_DIM-maxHeadDim) + uint(maxHeadDim-C.FC_MAX_HEAD_DIM)
)

// gpu is the CUDA backend on one device.
type gpu struct {
	mu     sync.Mutex // serialises operations and guards the fields below
	ctx    *C.fc_ctx
	closed bool
	opts   Options
	group  int

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

type ropeKey struct {
	headDim int
	theta   float64
}

// scratch is a device allocation reused across calls.
type scratch struct {
	p     unsafe.Pointer
	bytes int
}

var (
	_ backend.Backend        = (*gpu)(nil)
	_ backend.ResidualNormer = (*gpu)(nil)
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
	group, err := opts.groupSize()
	if err != nil {
		return nil, err
	}
	var n C.int
	if code := C.fc_device_count(&n); code != 0 {
		return nil, fmt.Errorf("%w: %s", ErrNoDevice, errorString(code))
	}
	if opts.Device < 0 || opts.Device >= int(n) {
		return nil, fmt.Errorf("%w: device %d of %d", ErrNoDevice, opts.Device, int(n))
	}
	g := &gpu{opts: opts, group: group, allocs: map[unsafe.Pointer]int{}, rope: map[ropeKey]unsafe.Pointer{}, graphs: map[any]*graph{}}
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

// String describes the device.
func (g *gpu) String() string {
	return fmt.Sprintf("cuda device %d: %s (sm_%d%d, %d SMs, %.1f GiB, %s)", g.opts.Device, g.device, g.major, g.minor, g.sms, float64(g.totalMem)/(1<<30), g.blasNote)
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
	g.dropGraphs()
	for p := range g.allocs {
		C.fc_free(g.ctx, p)
	}
	g.allocs = nil
	C.fc_destroy(g.ctx)
	g.ctx = nil
	return err
}

// lock takes the operation lock, failing when the backend is closed.
func (g *gpu) lock() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return backend.ErrClosed
	}
	return nil
}

// alloc returns zeroed device memory; the caller holds g.mu.
func (g *gpu) alloc(bytes int, what string) (unsafe.Pointer, error) {
	var p unsafe.Pointer
	if code := C.fc_malloc(g.ctx, &p, C.size_t(bytes)); code != 0 {
		return nil, check(code, fmt.Sprintf("allocate %d bytes for %s", bytes, what))
	}
	g.allocs[p] = bytes
	return p, nil
}

// free releases memory from alloc; the caller holds g.mu.
func (g *gpu) free(p unsafe.Pointer) {
	if _, ok := g.allocs[p]; ok && !g.closed {
		C.fc_free(g.ctx, p)
		delete(g.allocs, p)
		g.epoch++
	}
}

// grow makes s at least bytes long (at least doubling it), discarding its contents.
func (g *gpu) grow(s *scratch, bytes int, what string) error {
	if s.bytes >= bytes {
		return nil
	}
	g.free(s.p)
	s.p, s.bytes = nil, 0
	bytes = max(bytes, 2*s.bytes)
	p, err := g.alloc(bytes, what)
	if err != nil {
		return err
	}
	s.p, s.bytes = p, bytes
	return nil
}

// upload copies host memory to the device; the caller holds g.mu.
func (g *gpu) upload(dst unsafe.Pointer, src unsafe.Pointer, bytes int, what string) error {
	if bytes == 0 {
		return nil
	}
	return check(C.fc_upload(g.ctx, dst, src, C.size_t(bytes)), what)
}

// buffer is device memory holding float32 activations.
type buffer struct {
	owner *gpu
	p     unsafe.Pointer
	n     int
}

func (b *buffer) Len() int { return b.n }

// NewTensor allocates a zeroed rows×cols tensor in device memory.
func (g *gpu) NewTensor(rows, cols int) (backend.Tensor, error) {
	if rows < 0 || cols < 0 || (cols > 0 && rows > math.MaxInt32/cols) {
		return backend.Tensor{}, backend.Shapef("tensor %dx%d", rows, cols)
	}
	if err := g.lock(); err != nil {
		return backend.Tensor{}, err
	}
	defer g.mu.Unlock()
	p, err := g.alloc(4*max(rows*cols, 1), "tensor")
	if err != nil {
		return backend.Tensor{}, err
	}
	return backend.Tensor{Buf: &buffer{owner: g, p: p, n: rows * cols}, Rows: rows, Cols: cols}, nil
}

// ptr returns the device address of a tensor of this backend.
func (g *gpu) ptr(t backend.Tensor, what string) (*C.float, error) {
	b, ok := t.Buf.(*buffer)
	if !ok || b.owner != g {
		return nil, fmt.Errorf("%w: %s", backend.ErrForeign, what)
	}
	if !t.Valid() {
		return nil, backend.Shapef("%s: %dx%d in a buffer of %d", what, t.Rows, t.Cols, b.n)
	}
	return (*C.float)(b.p), nil
}

// same reports whether two tensors share a buffer.
func same(a, b backend.Tensor) bool { return a.Buf != nil && a.Buf == b.Buf }

// Write copies src into t.
func (g *gpu) Write(t backend.Tensor, src []float32) error {
	p, err := g.ptr(t, "write")
	if err != nil {
		return err
	}
	if len(src) != t.Rows*t.Cols {
		return backend.Shapef("write %d values into %dx%d", len(src), t.Rows, t.Cols)
	}
	if err := g.lock(); err != nil {
		return err
	}
	defer g.mu.Unlock()
	if len(src) == 0 {
		return nil
	}
	return g.upload(unsafe.Pointer(p), unsafe.Pointer(&src[0]), 4*len(src), "write")
}

// Read waits for the operations before it and copies t into dst.
func (g *gpu) Read(dst []float32, t backend.Tensor) error {
	p, err := g.ptr(t, "read")
	if err != nil {
		return err
	}
	if len(dst) != t.Rows*t.Cols {
		return backend.Shapef("read %dx%d into %d values", t.Rows, t.Cols, len(dst))
	}
	if err := g.lock(); err != nil {
		return err
	}
	defer g.mu.Unlock()
	if len(dst) == 0 {
		return check(C.fc_sync(g.ctx), "read")
	}
	return check(C.fc_download(g.ctx, unsafe.Pointer(&dst[0]), unsafe.Pointer(p), C.size_t(4*len(dst))), "read")
}

// weight is a matrix in device memory.
type weight struct {
	owner      *gpu
	rows, cols int
	stored     safetensors.DType
	w          C.fc_weight
}

func (w *weight) Rows() int                { return w.rows }
func (w *weight) Cols() int                { return w.cols }
func (w *weight) DType() safetensors.DType { return w.stored }

func (g *gpu) weight(w backend.Weight, what string) (*weight, error) {
	cw, ok := w.(*weight)
	if !ok || cw.owner != g {
		return nil, fmt.Errorf("%w: %s", backend.ErrForeign, what)
	}
	return cw, nil
}

// Bind uploads a stored tensor: a 1-row tensor (a norm gain) as float32, a float16 matrix as
// float16, other matrices as bfloat16.
func (g *gpu) Bind(t safetensors.Tensor) (backend.Weight, error) {
	rows, cols, err := weightShape(t)
	if err != nil {
		return nil, err
	}
	if err := g.lock(); err != nil {
		return nil, err
	}
	defer g.mu.Unlock()
	w := &weight{owner: g, rows: rows, cols: cols, stored: t.DType}
	dtype := matrixType(t.DType)
	if rows == 1 {
		dtype = C.FC_F32
	}
	if w.w, err = g.newWeight(dtype, 1, rows, cols, t.Name); err != nil {
		return nil, err
	}
	if err := g.fill(w.w, 0, t, rows, cols); err != nil {
		g.freeWeight(w.w)
		return nil, err
	}
	return w, nil
}

// matrixType is the device type of a stored matrix: float16 stays float16, the rest becomes
// bfloat16.
func matrixType(d safetensors.DType) int {
	if d == safetensors.F16 {
		return C.FC_F16
	}
	return C.FC_BF16
}

// newWeight allocates a stack of count rows×cols matrices of dtype (and int8 scales).
func (g *gpu) newWeight(dtype, count, rows, cols int, what string) (C.fc_weight, error) {
	w := C.fc_weight{dtype: C.int(dtype), rows: C.int(rows), cols: C.int(cols)}
	n := count * rows * cols
	size := map[int]int{C.FC_F32: 4, C.FC_BF16: 2, C.FC_F16: 2, C.FC_I8: 1}[dtype]
	p, err := g.alloc(n*size, what)
	if err != nil {
		return w, err
	}
	w.data = p
	if dtype == C.FC_I8 {
		w.group = C.int(g.group)
		groups := (cols + g.group - 1) / g.group
		s, err := g.alloc(4*count*rows*groups, what+" scales")
		if err != nil {
			g.free(p)
			return w, err
		}
		w.scales = (*C.float)(s)
	}
	return w, nil
}

func (g *gpu) freeWeight(w C.fc_weight) {
	g.free(unsafe.Pointer(w.data))
	if w.scales != nil {
		g.free(unsafe.Pointer(w.scales))
	}
}

// fill converts stored tensor t (rows×cols) into matrix e of the device stack w, a chunk of
// rows at a time so that the host needs little memory beyond the mapped file.
func (g *gpu) fill(w C.fc_weight, e int, t safetensors.Tensor, rows, cols int) error {
	step := max(1, convertChunk/cols)
	var f32 []float32
	var u16 []uint16
	var q []int8
	var scales []float32
	groups := 0
	if w.dtype == C.FC_I8 {
		groups = (cols + int(w.group) - 1) / int(w.group)
	}
	for lo := 0; lo < rows; lo += step {
		hi := min(rows, lo+step)
		part := rowsOf(t, cols, lo, hi)
		n := (hi - lo) * cols
		at := (e*rows + lo) * cols // element offset in the stack
		var err error
		switch w.dtype {
		case C.FC_F32:
			if f32, err = part.Float32s(f32[:0]); err == nil {
				err = g.upload(unsafe.Add(unsafe.Pointer(w.data), 4*at), unsafe.Pointer(&f32[0]), 4*n, "bind "+t.Name)
			}
		case C.FC_F16:
			if part.DType != safetensors.F16 {
				return fmt.Errorf("%w: %s is %s, not float16", backend.ErrDType, t.Name, part.DType)
			}
			err = g.upload(unsafe.Add(unsafe.Pointer(w.data), 2*at), unsafe.Pointer(&part.Data[0]), 2*n, "bind "+t.Name)
		case C.FC_BF16:
			if part.DType == safetensors.BF16 {
				err = g.upload(unsafe.Add(unsafe.Pointer(w.data), 2*at), unsafe.Pointer(&part.Data[0]), 2*n, "bind "+t.Name)
				break
			}
			u16 = append(u16[:0], make([]uint16, n)...)
			if f32, err = toBF16(u16, part, f32); err == nil {
				err = g.upload(unsafe.Add(unsafe.Pointer(w.data), 2*at), unsafe.Pointer(&u16[0]), 2*n, "bind "+t.Name)
			}
		case C.FC_I8:
			if f32, err = part.Float32s(f32[:0]); err != nil {
				break
			}
			q = append(q[:0], make([]int8, n)...)
			scales = append(scales[:0], make([]float32, (hi-lo)*groups)...)
			quantizeInt8(q, scales, f32, hi-lo, cols, int(w.group))
			err = g.upload(unsafe.Add(unsafe.Pointer(w.data), at), unsafe.Pointer(&q[0]), n, "bind "+t.Name)
			if err == nil {
				err = g.upload(unsafe.Add(unsafe.Pointer(w.scales), 4*(e*rows+lo)*groups), unsafe.Pointer(&scales[0]), 4*len(scales), "bind "+t.Name)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// experts are a mixture-of-experts block in device memory: the router in float32 and each
// projection as one stack of matrices.
type experts struct {
	owner                *gpu
	count, hidden, inner int
	gate                 unsafe.Pointer // [count, hidden] float32
	w1, w2, w3           C.fc_weight
}

func (e *experts) Shape() (int, int, int) { return e.count, e.hidden, e.inner }

// BindExperts uploads a mixture-of-experts block.
func (g *gpu) BindExperts(t backend.ExpertTensors) (backend.Experts, error) {
	E, H, I, err := expertShape(t)
	if err != nil {
		return nil, err
	}
	if err := g.lock(); err != nil {
		return nil, err
	}
	defer g.mu.Unlock()
	ex := &experts{owner: g, count: E, hidden: H, inner: I}
	// Float16 experts stay float16 (converting them would round them); others become bfloat16.
	dtype := C.FC_F16
	for _, st := range slices.Concat(t.W1, t.W2, t.W3) {
		if st.DType != safetensors.F16 {
			dtype = C.FC_BF16
		}
	}
	if g.opts.Int8Experts {
		dtype = C.FC_I8
	}
	var gate C.fc_weight
	var made []C.fc_weight
	fail := func(err error) (backend.Experts, error) {
		for _, w := range made {
			g.freeWeight(w)
		}
		return nil, err
	}
	if gate, err = g.newWeight(C.FC_F32, 1, E, H, "router"); err != nil {
		return fail(err)
	}
	made = append(made, gate)
	if err := g.fill(gate, 0, t.Gate, E, H); err != nil {
		return fail(err)
	}
	ex.gate = unsafe.Pointer(gate.data)
	for _, p := range []struct {
		w          *C.fc_weight
		src        []safetensors.Tensor
		rows, cols int
	}{{&ex.w1, t.W1, I, H}, {&ex.w3, t.W3, I, H}, {&ex.w2, t.W2, H, I}} {
		if *p.w, err = g.newWeight(dtype, E, p.rows, p.cols, "experts"); err != nil {
			return fail(err)
		}
		made = append(made, *p.w)
		for e, st := range p.src {
			if err := g.fill(*p.w, e, st, p.rows, p.cols); err != nil {
				return fail(err)
			}
		}
	}
	return ex, nil
}

// Embed copies the embedding rows of the batch's tokens into dst.
func (g *gpu) Embed(dst backend.Tensor, table backend.Weight, bt backend.Batch) error {
	d, err := g.ptr(dst, "embed dst")
	if err != nil {
		return err
	}
	w, err := g.weight(table, "embed table")
	if err != nil {
		return err
	}
	b, err := g.batch(bt)
	if err != nil {
		return err
	}
	if dst.Rows != len(b.tokens) || dst.Cols != w.cols {
		return backend.Shapef("embed %d tokens of width %d into %dx%d", len(b.tokens), w.cols, dst.Rows, dst.Cols)
	}
	for _, t := range b.tokens {
		if t.ID < 0 || t.ID >= w.rows {
			return backend.Shapef("token id %d outside the embedding table of %d rows", t.ID, w.rows)
		}
	}
	if err := g.lock(); err != nil {
		return err
	}
	defer g.mu.Unlock()
	return check(C.fc_embed(g.ctx, d, w.w, b.dev(b.layout.ids), C.int(dst.Rows)), "embed")
}

// norm checks an RMSNorm's gain.
func (g *gpu) norm(w backend.Weight, cols int) (*weight, error) {
	nw, err := g.weight(w, "rmsnorm weight")
	if err != nil {
		return nil, err
	}
	if nw.rows != 1 || nw.cols != cols {
		return nil, backend.Shapef("rmsnorm weight %dx%d for rows of %d", nw.rows, nw.cols, cols)
	}
	return nw, nil
}

// RMSNorm normalises each row of x into dst.
func (g *gpu) RMSNorm(dst, x backend.Tensor, w backend.Weight, eps float32) error {
	d, err := g.ptr(dst, "rmsnorm dst")
	if err != nil {
		return err
	}
	xs, err := g.ptr(x, "rmsnorm x")
	if err != nil {
		return err
	}
	if dst.Rows != x.Rows || dst.Cols != x.Cols {
		return backend.Shapef("rmsnorm of %dx%d into %dx%d", x.Rows, x.Cols, dst.Rows, dst.Cols)
	}
	nw, err := g.norm(w, x.Cols)
	if err != nil {
		return err
	}
	if err := g.lock(); err != nil {
		return err
	}
	defer g.mu.Unlock()
	return check(C.fc_rmsnorm(g.ctx, d, xs, (*C.float)(nw.w.data), C.int(x.Rows), C.int(x.Cols), C.float(eps)), "rmsnorm")
}

// AddRMSNorm sets x += r and dst = RMSNorm(x)·w in one kernel.
func (g *gpu) AddRMSNorm(dst, x, r backend.Tensor, w backend.Weight, eps float32) error {
	d, err := g.ptr(dst, "add-rmsnorm dst")
	if err != nil {
		return err
	}
	xs, err := g.ptr(x, "add-rmsnorm x")
	if err != nil {
		return err
	}
	rs, err := g.ptr(r, "add-rmsnorm r")
	if err != nil {
		return err
	}
	if dst.Rows != x.Rows || dst.Cols != x.Cols || r.Rows != x.Rows || r.Cols != x.Cols || same(dst, x) || same(dst, r) || same(x, r) {
		return backend.Shapef("add-rmsnorm of %dx%d and %dx%d into %dx%d (no aliasing)", x.Rows, x.Cols, r.Rows, r.Cols, dst.Rows, dst.Cols)
	}
	nw, err := g.norm(w, x.Cols)
	if err != nil {
		return err
	}
	if err := g.lock(); err != nil {
		return err
	}
	defer g.mu.Unlock()
	return check(C.fc_add_rmsnorm(g.ctx, d, xs, rs, (*C.float)(nw.w.data), C.int(x.Rows), C.int(x.Cols), C.float(eps)), "add-rmsnorm")
}

// MatMul sets dst = x·wᵀ: GEMV kernels for a few rows, tensor-core GEMM otherwise.
func (g *gpu) MatMul(dst, x backend.Tensor, w backend.Weight) error {
	d, err := g.ptr(dst, "matmul dst")
	if err != nil {
		return err
	}
	xs, err := g.ptr(x, "matmul x")
	if err != nil {
		return err
	}
	mw, err := g.weight(w, "matmul weight")
	if err != nil {
		return err
	}
	if x.Cols != mw.cols || dst.Cols != mw.rows || dst.Rows != x.Rows || same(dst, x) {
		return backend.Shapef("matmul of %dx%d by %dx%dᵀ into %dx%d", x.Rows, x.Cols, mw.rows, mw.cols, dst.Rows, dst.Cols)
	}
	if err := g.lock(); err != nil {
		return err
	}
	defer g.mu.Unlock()
	return g.matmul(d, xs, mw.w, x.Rows)
}

// matmul launches the GEMV or GEMM kernel; the caller holds g.mu. The tensor cores take
// bfloat16, float16 and int8 weights; a float32 weight (a single row) runs as GEMVs of a few
// rows.
func (g *gpu) matmul(d, x *C.float, w C.fc_weight, n int) error {
	if n <= gemvMaxRows || w.dtype == C.FC_F32 {
		for lo := 0; lo < n; lo += gemvMaxRows {
			rows := min(gemvMaxRows, n-lo)
			dp := (*C.float)(unsafe.Add(unsafe.Pointer(d), 4*lo*int(w.rows)))
			xp := (*C.float)(unsafe.Add(unsafe.Pointer(x), 4*lo*int(w.cols)))
			if err := check(C.fc_gemv(g.ctx, dp, xp, w, C.int(rows)), "gemv"); err != nil {
				return err
			}
		}
		return nil
	}
	if err := g.grow(&g.gemmA, 4*n*pad8(int(w.cols)), "gemm operand"); err != nil {
		return err
	}
	return check(C.fc_gemm(g.ctx, d, x, w, C.int(n), g.gemmA.p, g.exact()), "gemm")
}

// Add sets dst += x.
func (g *gpu) Add(dst, x backend.Tensor) error {
	d, err := g.ptr(dst, "add dst")
	if err != nil {
		return err
	}
	xs, err := g.ptr(x, "add x")
	if err != nil {
		return err
	}
	if dst.Rows != x.Rows || dst.Cols != x.Cols {
		return backend.Shapef("add of %dx%d to %dx%d", x.Rows, x.Cols, dst.Rows, dst.Cols)
	}
	if err := g.lock(); err != nil {
		return err
	}
	defer g.mu.Unlock()
	return check(C.fc_add(g.ctx, d, xs, C.size_t(x.Rows*x.Cols)), "add")
}

// Gather copies rows of src into dst.
func (g *gpu) Gather(dst, src backend.Tensor, rows []int) error {
	d, err := g.ptr(dst, "gather dst")
	if err != nil {
		return err
	}
	s, err := g.ptr(src, "gather src")
	if err != nil {
		return err
	}
	if dst.Rows != len(rows) || dst.Cols != src.Cols || same(dst, src) {
		return backend.Shapef("gather of %d rows of width %d into %dx%d", len(rows), src.Cols, dst.Rows, dst.Cols)
	}
	idx := make([]int32, len(rows))
	for i, r := range rows {
		if r < 0 || r >= src.Rows {
			return backend.Shapef("gather of row %d of %d", r, src.Rows)
		}
		idx[i] = int32(r)
	}
	if err := g.lock(); err != nil {
		return err
	}
	defer g.mu.Unlock()
	if len(idx) == 0 {
		return nil
	}
	if err := g.grow(&g.gatherRows, 4*len(idx), "gather rows"); err != nil {
		return err
	}
	if err := g.upload(g.gatherRows.p, unsafe.Pointer(&idx[0]), 4*len(idx), "gather rows"); err != nil {
		return err
	}
	return check(C.fc_gather(g.ctx, d, s, (*C.int32_t)(g.gatherRows.p), C.int(len(idx)), C.int(src.Cols)), "gather")
}

// RoPE rotates each head of x in place by its token's position.
func (g *gpu) RoPE(x backend.Tensor, bt backend.Batch, headDim int, theta float64) error {
	xs, err := g.ptr(x, "rope x")
	if err != nil {
		return err
	}
	b, err := g.batch(bt)
	if err != nil {
		return err
	}
	if headDim <= 0 || headDim%2 != 0 || x.Cols%headDim != 0 || x.Rows != len(b.tokens) || !(theta > 0) {
		return backend.Shapef("rope of %dx%d with head dim %d, theta %g, %d tokens", x.Rows, x.Cols, headDim, theta, len(b.tokens))
	}
	if err := g.lock(); err != nil {
		return err
	}
	defer g.mu.Unlock()
	key := ropeKey{headDim, theta}
	inv, ok := g.rope[key]
	if !ok {
		freq := ropeInverseFrequencies(headDim, theta)
		if inv, err = g.alloc(4*len(freq), "rope frequencies"); err != nil {
			return err
		}
		if err := g.upload(inv, unsafe.Pointer(&freq[0]), 4*len(freq), "rope frequencies"); err != nil {
			g.free(inv)
			return err
		}
		g.rope[key] = inv
	}
	return check(C.fc_rope(g.ctx, xs, b.dev(b.layout.pos), (*C.float)(inv), C.int(x.Rows), C.int(x.Cols), C.int(headDim)), "rope")
}

// Attention stores k and v in the cache and attends each query head over its sequence.
func (g *gpu) Attention(dst, q, k, v backend.Tensor, bt backend.Batch, p backend.AttentionParams) error {
	b, err := g.batch(bt)
	if err != nil {
		return err
	}
	c := b.cache
	var ptrs [4]*C.float
	for i, t := range []backend.Tensor{dst, q, k, v} {
		if ptrs[i], err = g.ptr(t, "attention operand"); err != nil {
			return err
		}
	}
	n := len(b.tokens)
	qDim, kvDim := p.Heads*p.HeadDim, p.KVHeads*p.HeadDim
	if p.Layer < 0 || p.Layer >= c.cfg.Layers || p.KVHeads != c.cfg.KVHeads || p.HeadDim != c.cfg.HeadDim ||
		p.Heads <= 0 || p.Heads%p.KVHeads != 0 || p.HeadDim > maxHeadDim || p.SlidingWindow < 0 ||
		q.Rows != n || k.Rows != n || v.Rows != n || dst.Rows != n ||
		q.Cols != qDim || dst.Cols != qDim || k.Cols != kvDim || v.Cols != kvDim ||
		same(dst, q) || same(dst, k) || same(dst, v) {
		return backend.Shapef("attention %+v of q %dx%d, k %dx%d, v %dx%d into %dx%d for %d tokens, cache %+v",
			p, q.Rows, q.Cols, k.Rows, k.Cols, v.Rows, v.Cols, dst.Rows, dst.Cols, n, c.cfg)
	}
	if err := g.lock(); err != nil {
		return err
	}
	defer g.mu.Unlock()
	if c.Closed() {
		return backend.ErrClosed
	}
	layerOff := C.size_t(p.Layer * c.cfg.Blocks * c.cfg.BlockSize * kvDim)
	if err := check(C.fc_kv_store(g.ctx, c.k, c.v, ptrs[2], ptrs[3], b.dev(b.layout.slot), C.int(n), C.int(kvDim), layerOff), "kv store"); err != nil {
		return err
	}
	// The split count depends on the longest window the cache can hold, not on the
	// positions, so that a recorded step replays for later positions.
	maxLen := c.cfg.Blocks * c.cfg.BlockSize
	if p.SlidingWindow > 0 {
		maxLen = min(maxLen, p.SlidingWindow)
	}
	splits := planAttention(n, p.KVHeads, maxLen, g.sms)
	var acc, ml *C.float
	if splits > 1 {
		parts := n * p.Heads * splits
		accBytes := (4*parts*p.HeadDim + scratchAlign - 1) / scratchAlign * scratchAlign
		if err := g.grow(&g.attnPart, accBytes+8*parts, "attention partials"); err != nil {
			return err
		}
		acc, ml = (*C.float)(g.attnPart.p), (*C.float)(unsafe.Add(g.attnPart.p, accBytes))
	}
	ap := C.fc_attn_params{
		n: C.int(n), heads: C.int(p.Heads), kv_heads: C.int(p.KVHeads), head_dim: C.int(p.HeadDim),
		block_size: C.int(c.cfg.BlockSize), window: C.int(p.SlidingWindow), splits: C.int(splits),
		layer_offset: layerOff, scale: C.float(p.Scale),
	}
	return check(C.fc_attention(g.ctx, ptrs[0], ptrs[1], c.k, c.v, b.dev(b.layout.pos), b.dev(b.layout.tableOff),
		b.dev(b.layout.tables), ap, acc, ml), "attention")
}

// MoE runs a mixture-of-experts block: one routing kernel, then the experts as grouped GEMMs
// (or, for a few tokens, GEMVs over the chosen experts), then the weighted sum.
func (g *gpu) MoE(dst, x backend.Tensor, e backend.Experts, topK int, router backend.Tensor) error {
	d, err := g.ptr(dst, "moe dst")
	if err != nil {
		return err
	}
	xs, err := g.ptr(x, "moe x")
	if err != nil {
		return err
	}
	ex, ok := e.(*experts)
	if !ok || ex.owner != g {
		return fmt.Errorf("%w: moe experts", backend.ErrForeign)
	}
	var logits *C.float
	if router.Buf != nil {
		if logits, err = g.ptr(router, "moe router"); err != nil {
			return err
		}
		if router.Rows != x.Rows || router.Cols != ex.count || same(router, x) || same(router, dst) {
			return backend.Shapef("router logits %dx%d for %d tokens and %d experts", router.Rows, router.Cols, x.Rows, ex.count)
		}
	}
	if x.Cols != ex.hidden || dst.Cols != ex.hidden || dst.Rows != x.Rows || topK <= 0 || topK > ex.count || same(dst, x) {
		return backend.Shapef("moe of %dx%d into %dx%d with %d experts of %dx%d, top %d",
			x.Rows, x.Cols, dst.Rows, dst.Cols, ex.count, ex.hidden, ex.inner, topK)
	}
	if err := g.lock(); err != nil {
		return err
	}
	defer g.mu.Unlock()
	n := x.Rows
	if n == 0 {
		return nil
	}
	l := planMoE(n, topK, ex.count, ex.hidden, ex.inner)
	blas := g.blasExperts(ex, n)
	bytes := l.bytes
	if blas {
		bytes = l.xa // the routing's arrays; moeBLAS places the experts' buffers
	}
	if err := g.grow(&g.moeScratch, bytes, "moe scratch"); err != nil {
		return err
	}
	at := func(off int) unsafe.Pointer { return unsafe.Add(g.moeScratch.p, off) }
	a := C.fc_moe_args{
		n: C.int(n), hidden: C.int(ex.hidden), inner: C.int(ex.inner), experts: C.int(ex.count), top_k: C.int(topK),
		x: xs, out: d, logits: logits, gate: (*C.float)(ex.gate), w1: ex.w1, w2: ex.w2, w3: ex.w3,
		choice: (*C.int32_t)(at(l.choice)), gain: (*C.float)(at(l.gain)), offsets: (*C.int32_t)(at(l.offsets)),
		sorted_token: (*C.int32_t)(at(l.sortedToken)), sorted_gain: (*C.float)(at(l.sortedGain)),
		inv: (*C.int32_t)(at(l.inv)), tiles: (*C.int32_t)(at(l.tiles)), max_tiles: C.int(l.maxTiles),
		tile_count: (*C.int32_t)(at(l.tileCount)), h: at(l.h), y: (*C.float)(at(l.y)),
	}
	if n <= moeGEMVTokens {
		a.gemv = 1
	}
	a.exact = g.exact()
	if blas {
		return g.moeBLAS(&a)
	}
	a.xa = at(l.xa)
	return check(C.fc_moe(g.ctx, &a), "moe")
}

// exact is the kernels' flag for activations as bfloat16 pairs (see Options.BF16Activations).
func (g *gpu) exact() C.int {
	if g.opts.BF16Activations {
		return 0
	}
	return 1
}

// sync waits for the device (for benchmarks).
func (g *gpu) sync() error {
	if err := g.lock(); err != nil {
		return err
	}
	defer g.mu.Unlock()
	return check(C.fc_sync(g.ctx), "sync")
}
