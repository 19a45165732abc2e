//go:build cuda && cgo

package cuda

/*
#include "fathom_cuda.h"
*/
import "C"

import (
	"fmt"
	"slices"
	"unsafe"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/safetensors"
)

// Binding: stored tensors converted (or quantized) and uploaded as device weights. Every
// method here runs under the backend's lock.

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

// Bind uploads a stored tensor: a 1-row tensor (a norm gain) as float32, a float16 matrix as
// float16, other matrices as bfloat16.
func (u *unlocked) Bind(t safetensors.Tensor) (backend.Weight, error) {
	return u.bindQuantized(t, backend.AsStored)
}

// BindQuantized binds t stored as q (backend.Quantizer). The backend stores backend.Q8: int8
// values with one scale per backend.QuantGroup inputs of a row, rounded to float16 as the
// format defines (and held as float32 on the device). A weight whose rows are not a multiple
// of QuantGroup long stays as stored; backend.Q4 is an error wrapping
// backend.ErrQuantization.
func (u *unlocked) BindQuantized(t safetensors.Tensor, q backend.Quantization) (backend.Weight, error) {
	if err := storable(q); err != nil {
		return nil, err
	}
	return u.bindQuantized(t, q)
}

// storable checks that the backend stores weights as q.
func storable(q backend.Quantization) error {
	switch q {
	case backend.AsStored, backend.Q8:
		return nil
	case backend.Q4:
		return fmt.Errorf("%w: the cuda backend stores %s weights, not %s", backend.ErrQuantization, backend.Q8, q)
	}
	return fmt.Errorf("%w: %q", backend.ErrQuantization, string(q))
}

func (u *unlocked) bindQuantized(t safetensors.Tensor, q backend.Quantization) (backend.Weight, error) {
	rows, cols, err := backend.CheckWeight(t)
	if err != nil {
		return nil, err
	}
	w := &weight{owner: (*gpu)(u), rows: rows, cols: cols, stored: t.DType}
	dtype := matrixType(t.DType)
	switch {
	case q == backend.Q8 && cols%backend.QuantGroup == 0:
		dtype = C.FC_I8
	case rows == 1:
		dtype = C.FC_F32
	}
	if w.w, err = u.newWeight(dtype, 1, rows, cols, t.Name); err != nil {
		return nil, err
	}
	if err := u.fill(w.w, 0, t, rows, cols); err != nil {
		u.freeWeight(w.w)
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
func (u *unlocked) newWeight(dtype, count, rows, cols int, what string) (C.fc_weight, error) {
	w := C.fc_weight{dtype: C.int(dtype), rows: C.int(rows), cols: C.int(cols)}
	n := count * rows * cols
	size := map[int]int{C.FC_F32: 4, C.FC_BF16: 2, C.FC_F16: 2, C.FC_I8: 1}[dtype]
	p, err := u.alloc(n*size, what)
	if err != nil {
		return w, err
	}
	w.data = p
	if dtype == C.FC_I8 {
		w.group = backend.QuantGroup
		groups := (cols + backend.QuantGroup - 1) / backend.QuantGroup
		s, err := u.alloc(4*count*rows*groups, what+" scales")
		if err != nil {
			u.free(p)
			return w, err
		}
		w.scales = (*C.float)(s)
	}
	return w, nil
}

func (u *unlocked) freeWeight(w C.fc_weight) {
	u.free(unsafe.Pointer(w.data))
	if w.scales != nil {
		u.free(unsafe.Pointer(w.scales))
	}
}

// fill converts stored tensor t (rows×cols) into matrix e of the device stack w, a chunk of
// rows at a time so that the host needs little memory beyond the mapped file.
func (u *unlocked) fill(w C.fc_weight, e int, t safetensors.Tensor, rows, cols int) error {
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
				err = u.upload(unsafe.Add(unsafe.Pointer(w.data), 4*at), unsafe.Pointer(&f32[0]), 4*n, "bind "+t.Name)
			}
		case C.FC_F16:
			if part.DType != safetensors.F16 {
				return fmt.Errorf("%w: %s is %s, not float16", backend.ErrDType, t.Name, part.DType)
			}
			err = u.upload(unsafe.Add(unsafe.Pointer(w.data), 2*at), unsafe.Pointer(&part.Data[0]), 2*n, "bind "+t.Name)
		case C.FC_BF16:
			if part.DType == safetensors.BF16 {
				err = u.upload(unsafe.Add(unsafe.Pointer(w.data), 2*at), unsafe.Pointer(&part.Data[0]), 2*n, "bind "+t.Name)
				break
			}
			u16 = append(u16[:0], make([]uint16, n)...)
			if f32, err = toBF16(u16, part, f32); err == nil {
				err = u.upload(unsafe.Add(unsafe.Pointer(w.data), 2*at), unsafe.Pointer(&u16[0]), 2*n, "bind "+t.Name)
			}
		case C.FC_I8:
			if f32, err = part.Float32s(f32[:0]); err != nil {
				break
			}
			q = append(q[:0], make([]int8, n)...)
			scales = append(scales[:0], make([]float32, (hi-lo)*groups)...)
			if err := quantizeInt8(q, scales, f32, hi-lo, cols, int(w.group)); err != nil {
				return fmt.Errorf("%w: %s as %s: %w", backend.ErrQuantization, t.Name, backend.Q8, err)
			}
			err = u.upload(unsafe.Add(unsafe.Pointer(w.data), at), unsafe.Pointer(&q[0]), n, "bind "+t.Name)
			if err == nil {
				err = u.upload(unsafe.Add(unsafe.Pointer(w.scales), 4*(e*rows+lo)*groups), unsafe.Pointer(&scales[0]), 4*len(scales), "bind "+t.Name)
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
func (u *unlocked) BindExperts(t backend.ExpertTensors) (backend.Experts, error) {
	return u.bindExperts(t, backend.AsStored)
}

// BindExpertsQuantized uploads a mixture-of-experts block with the expert weights stored as
// q (backend.Quantizer; see BindQuantized), the router as stored. The experts of a block
// share one device format: unless both the model width and the experts' width are multiples
// of backend.QuantGroup, the whole block stays as stored.
func (u *unlocked) BindExpertsQuantized(t backend.ExpertTensors, q backend.Quantization) (backend.Experts, error) {
	if err := storable(q); err != nil {
		return nil, err
	}
	return u.bindExperts(t, q)
}

func (u *unlocked) bindExperts(t backend.ExpertTensors, q backend.Quantization) (backend.Experts, error) {
	E, H, I, err := backend.CheckExperts(t)
	if err != nil {
		return nil, err
	}
	if E > maxExperts {
		return nil, backend.Shapef("%d experts: the cuda backend routes over at most %d", E, maxExperts)
	}
	ex := &experts{owner: (*gpu)(u), count: E, hidden: H, inner: I}
	// Float16 experts stay float16 (converting them would round them); others become bfloat16.
	dtype := C.FC_F16
	for _, st := range slices.Concat(t.W1, t.W2, t.W3) {
		if st.DType != safetensors.F16 {
			dtype = C.FC_BF16
		}
	}
	if q == backend.Q8 && H%backend.QuantGroup == 0 && I%backend.QuantGroup == 0 {
		dtype = C.FC_I8
	}
	var gate C.fc_weight
	var made []C.fc_weight
	fail := func(err error) (backend.Experts, error) {
		for _, w := range made {
			u.freeWeight(w)
		}
		return nil, err
	}
	if gate, err = u.newWeight(C.FC_F32, 1, E, H, "router"); err != nil {
		return fail(err)
	}
	made = append(made, gate)
	if err := u.fill(gate, 0, t.Gate, E, H); err != nil {
		return fail(err)
	}
	ex.gate = unsafe.Pointer(gate.data)
	for _, p := range []struct {
		w          *C.fc_weight
		src        []safetensors.Tensor
		rows, cols int
	}{{&ex.w1, t.W1, I, H}, {&ex.w3, t.W3, I, H}, {&ex.w2, t.W2, H, I}} {
		if *p.w, err = u.newWeight(dtype, E, p.rows, p.cols, "experts"); err != nil {
			return fail(err)
		}
		made = append(made, *p.w)
		for e, st := range p.src {
			if err := u.fill(*p.w, e, st, p.rows, p.cols); err != nil {
				return fail(err)
			}
		}
	}
	return ex, nil
}
