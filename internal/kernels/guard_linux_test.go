//go:build linux

package kernels

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// guarded returns a slice of n elements of T that ends where an inaccessible page begins, so
// that a kernel reading past its end faults.
func guarded[T any](t *testing.T, n int) []T {
	t.Helper()
	var z T
	size := int(unsafe.Sizeof(z))
	page := unix.Getpagesize()
	data := (n*size + page - 1) / page * page
	mem, err := unix.Mmap(-1, 0, data+page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Munmap(mem) })
	if err := unix.Mprotect(mem[data:], unix.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		return []T{}
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&mem[data-n*size])), n)
}
