//go:build cuda && cgo

package cuda

/*
#include "fathom_cuda.h"
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/fathom-llm/fathom/backend"
)

// Device memory: allocations, the activation buffers and the resolution of an operation's
// handles to device addresses. Every method here runs under the backend's lock.

// alloc returns zeroed device memory.
func (u *unlocked) alloc(bytes int, what string) (unsafe.Pointer, error) {
	var p unsafe.Pointer
	if code := C.fc_malloc(u.ctx, &p, C.size_t(bytes)); code != 0 {
		return nil, check(code, fmt.Sprintf("allocate %d bytes for %s", bytes, what))
	}
	u.allocs[p] = bytes
	return p, nil
}

// free releases memory from alloc.
func (u *unlocked) free(p unsafe.Pointer) {
	if _, ok := u.allocs[p]; ok && !u.closed {
		C.fc_free(u.ctx, p)
		delete(u.allocs, p)
		u.epoch++
	}
}

// scratch is a device allocation reused across calls.
type scratch struct {
	p     unsafe.Pointer
	bytes int
}

// grow makes s at least bytes long (at least doubling it), discarding its contents.
func (u *unlocked) grow(s *scratch, bytes int, what string) error {
	if s.bytes >= bytes {
		return nil
	}
	u.free(s.p)
	s.p, s.bytes = nil, 0
	bytes = max(bytes, 2*s.bytes)
	p, err := u.alloc(bytes, what)
	if err != nil {
		return err
	}
	s.p, s.bytes = p, bytes
	return nil
}

// upload copies host memory to the device.
func (u *unlocked) upload(dst unsafe.Pointer, src unsafe.Pointer, bytes int, what string) error {
	if bytes == 0 {
		return nil
	}
	return check(C.fc_upload(u.ctx, dst, src, C.size_t(bytes)), what)
}

// buffer is device memory holding float32 activations.
type buffer struct {
	owner *gpu
	p     unsafe.Pointer
	n     int
}

func (b *buffer) Len() int { return b.n }

// NewTensor allocates a zeroed rows×cols tensor in device memory.
func (u *unlocked) NewTensor(rows, cols int) (backend.Tensor, error) {
	if err := backend.CheckNewTensor(rows, cols); err != nil {
		return backend.Tensor{}, err
	}
	p, err := u.alloc(4*max(rows*cols, 1), "tensor")
	if err != nil {
		return backend.Tensor{}, err
	}
	return backend.Tensor{Buf: &buffer{owner: (*gpu)(u), p: p, n: rows * cols}, Rows: rows, Cols: cols}, nil
}

// operands resolves the handles of an operation, which its backend.Check function has
// checked, to the backend's own, keeping the first foreign one as err.
type operands struct {
	g   *gpu
	op  string
	err error
}

func (u *unlocked) operands(op string) operands { return operands{g: (*gpu)(u), op: op} }

func (o *operands) foreign(what string) {
	if o.err == nil {
		o.err = fmt.Errorf("%w: %s %s", backend.ErrForeign, o.op, what)
	}
}

// ptr returns the device address of a tensor.
func (o *operands) ptr(t backend.Tensor) *C.float {
	b, ok := t.Buf.(*buffer)
	if !ok || b.owner != o.g {
		o.foreign("tensor")
		return nil
	}
	return (*C.float)(b.p)
}

func (o *operands) weight(w backend.Weight) *weight {
	mw, ok := w.(*weight)
	if !ok || mw.owner != o.g {
		o.foreign("weight")
		return nil
	}
	return mw
}

func (o *operands) experts(e backend.Experts) *experts {
	ex, ok := e.(*experts)
	if !ok || ex.owner != o.g {
		o.foreign("experts")
		return nil
	}
	return ex
}

func (o *operands) batch(bt backend.Batch) *batch {
	b, ok := bt.(*batch)
	if !ok || b.cache.owner != o.g {
		o.foreign("batch")
		return nil
	}
	return b
}

// Write copies src into t.
func (u *unlocked) Write(t backend.Tensor, src []float32) error {
	if err := backend.CheckWrite(t, len(src)); err != nil {
		return err
	}
	o := u.operands("write")
	p := o.ptr(t)
	if o.err != nil || len(src) == 0 {
		return o.err
	}
	return u.upload(unsafe.Pointer(p), unsafe.Pointer(&src[0]), 4*len(src), "write")
}

// Read waits for the operations before it and copies t into dst.
func (u *unlocked) Read(dst []float32, t backend.Tensor) error {
	if err := backend.CheckRead(t, len(dst)); err != nil {
		return err
	}
	o := u.operands("read")
	p := o.ptr(t)
	if o.err != nil {
		return o.err
	}
	if len(dst) == 0 {
		return check(C.fc_sync(u.ctx), "read")
	}
	return check(C.fc_download(u.ctx, unsafe.Pointer(&dst[0]), unsafe.Pointer(p), C.size_t(4*len(dst))), "read")
}
