//go:build cuda && cgo

package cuda

/*
#include "fathom_cuda.h"
*/
import "C"

import (
	"unsafe"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/safetensors"
)

// Device-side random weights, for benchmarks at full model shapes without host-side data.

// randomWeight returns a rows×cols weight of the backend's matrix format (int8 when int8 is
// set) filled on the device with values in [-scale, scale].
func (g *gpu) randomWeight(rows, cols int, int8 bool, seed uint64, scale float32) (backend.Weight, error) {
	u, err := g.lock()
	if err != nil {
		return nil, err
	}
	defer g.mu.Unlock()
	dtype := C.FC_BF16
	if int8 {
		dtype = C.FC_I8
	}
	w, err := u.newWeight(dtype, 1, rows, cols, "random weight")
	if err != nil {
		return nil, err
	}
	if err := u.fillRandom(w, 1, seed, scale); err != nil {
		u.freeWeight(w)
		return nil, err
	}
	return &weight{owner: g, rows: rows, cols: cols, stored: safetensors.BF16, w: w}, nil
}

// fillRandom fills a stack of count matrices (int8 scales with scale/127).
func (u *unlocked) fillRandom(w C.fc_weight, count int, seed uint64, scale float32) error {
	n := count * int(w.rows) * int(w.cols)
	if err := check(C.fc_fill_random(u.ctx, unsafe.Pointer(w.data), w.dtype, C.size_t(n), C.uint64_t(seed), C.float(scale)), "fill"); err != nil {
		return err
	}
	if w.scales != nil {
		groups := (int(w.cols) + int(w.group) - 1) / int(w.group)
		return check(C.fc_fill_f32(u.ctx, w.scales, C.size_t(count*int(w.rows)*groups), C.float(scale/127)), "fill scales")
	}
	return nil
}

// randomExperts returns an MoE block of the given shape with random weights on the device,
// the experts int8 when int8 is set.
func (g *gpu) randomExperts(count, hidden, inner int, int8 bool, seed uint64) (backend.Experts, error) {
	u, err := g.lock()
	if err != nil {
		return nil, err
	}
	defer g.mu.Unlock()
	dtype := C.FC_BF16
	if int8 {
		dtype = C.FC_I8
	}
	ex := &experts{owner: g, count: count, hidden: hidden, inner: inner}
	gate, err := u.newWeight(C.FC_F32, 1, count, hidden, "router")
	if err != nil {
		return nil, err
	}
	if err := u.fillRandom(gate, 1, seed, 0.05); err != nil {
		return nil, err
	}
	ex.gate = unsafe.Pointer(gate.data)
	for i, p := range []struct {
		w          *C.fc_weight
		rows, cols int
	}{{&ex.w1, inner, hidden}, {&ex.w3, inner, hidden}, {&ex.w2, hidden, inner}} {
		if *p.w, err = u.newWeight(dtype, count, p.rows, p.cols, "experts"); err != nil {
			return nil, err
		}
		if err := u.fillRandom(*p.w, count, seed+uint64(i)+1, 0.02); err != nil {
			return nil, err
		}
	}
	return ex, nil
}

// fillTensor fills a tensor with random values in [-scale, scale].
func (g *gpu) fillTensor(t backend.Tensor, seed uint64, scale float32) error {
	u, err := g.lock()
	if err != nil {
		return err
	}
	defer g.mu.Unlock()
	if err := backend.CheckWrite(t, t.Rows*t.Cols); err != nil {
		return err
	}
	o := u.operands("fill")
	p := o.ptr(t)
	if o.err != nil {
		return o.err
	}
	return check(C.fc_fill_random(u.ctx, unsafe.Pointer(p), C.FC_F32, C.size_t(t.Rows*t.Cols), C.uint64_t(seed), C.float(scale)), "fill")
}

// copyBytes copies between device buffers (bytes <= both lengths×4), for the copy benchmark.
func (g *gpu) copyBytes(dst, src backend.Tensor, bytes int) error {
	u, err := g.lock()
	if err != nil {
		return err
	}
	defer g.mu.Unlock()
	if bytes > 4*dst.Rows*dst.Cols || bytes > 4*src.Rows*src.Cols {
		return backend.Shapef("copy of %d bytes", bytes)
	}
	o := u.operands("copy")
	d, s := o.ptr(dst), o.ptr(src)
	if o.err != nil {
		return o.err
	}
	return check(C.fc_copy(u.ctx, unsafe.Pointer(d), unsafe.Pointer(s), C.size_t(bytes)), "copy")
}

// onesWeight returns a 1×cols float32 weight of ones (an RMSNorm gain).
func (g *gpu) onesWeight(cols int) (backend.Weight, error) {
	u, err := g.lock()
	if err != nil {
		return nil, err
	}
	defer g.mu.Unlock()
	w, err := u.newWeight(C.FC_F32, 1, 1, cols, "norm gain")
	if err != nil {
		return nil, err
	}
	if err := check(C.fc_fill_f32(u.ctx, (*C.float)(unsafe.Pointer(w.data)), C.size_t(cols), 1), "fill"); err != nil {
		u.freeWeight(w)
		return nil, err
	}
	return &weight{owner: g, rows: 1, cols: cols, stored: safetensors.F32, w: w}, nil
}
