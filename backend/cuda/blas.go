//go:build cuda && cgo

package cuda

/*
#include <stdlib.h>
#include "fathom_cuda.h"
*/
import "C"

import (
	"fmt"
	"os"
	"unsafe"
)

// blasEnv names the cuBLASLt library file to load; "off" keeps the package's own kernels.
// Unset, libcublasLt.so and its versioned names are tried.
const blasEnv = "FATHOM_CUBLASLT"

// openBLAS loads cuBLASLt for the dense products and the experts (kernels/blas.cu); without
// it the package's own kernels run them. The caller is newGPU.
func (g *gpu) openBLAS() {
	path := os.Getenv(blasEnv)
	if path == "off" {
		g.blasNote = "cuBLASLt off"
		return
	}
	var cpath *C.char
	if path != "" {
		cpath = C.CString(path)
		defer C.free(unsafe.Pointer(cpath))
	}
	var version C.int
	if code := C.fc_blas_open(g.ctx, cpath, &version); code != 0 {
		g.blasNote = "no cuBLASLt: " + errorString(code)
		return
	}
	g.blas = int(version)
	g.blasNote = fmt.Sprintf("cuBLASLt %d", g.blas)
}

// blasExperts reports whether an MoE block of n tokens runs its experts through cuBLASLt.
func (u *unlocked) blasExperts(ex *experts, n int) bool {
	return u.blas > 0 && ex.w1.dtype == C.FC_BF16 && n > moeGEMVTokens
}

// moeBLAS runs a block whose arguments are filled but for the experts' buffers: routing,
// then the experts through cuBLASLt (the grouped GEMMs where it has no algorithm).
func (u *unlocked) moeBLAS(a *C.fc_moe_args) error {
	if err := check(C.fc_moe_route(u.ctx, a), "moe routing"); err != nil {
		return err
	}
	n, experts := int(a.n), int(a.experts)
	capacity := n
	if n > moeBLASReadTokens {
		offsets := make([]int32, experts+1)
		if err := check(C.fc_download(u.ctx, unsafe.Pointer(&offsets[0]), unsafe.Pointer(a.offsets), C.size_t(4*len(offsets))), "moe counts"); err != nil {
			return err
		}
		capacity = moeCapacity(offsets, n)
	}
	parts := 1
	if a.exact != 0 {
		parts = 2
	}
	l := planMoEBLAS(experts, capacity, parts, int(a.hidden), int(a.inner))
	if err := u.grow(&u.moeExperts, l.bytes, "moe expert buffers"); err != nil {
		return err
	}
	at := func(off int) unsafe.Pointer { return unsafe.Add(u.moeExperts.p, off) }
	a.cap, a.bx, a.bd1, a.bd3 = C.int(capacity), at(l.x), (*C.float)(at(l.d1)), (*C.float)(at(l.d3))
	a.xa, a.h, a.y = a.bx, unsafe.Pointer(a.bd3), a.bd1
	code := C.fc_moe_blas(u.ctx, a)
	if code == C.FC_ERR_UNSUPPORTED {
		code = C.fc_moe_grouped(u.ctx, a)
	}
	return check(code, "moe")
}
