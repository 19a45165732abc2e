//go:build unix

package mem

import "golang.org/x/sys/unix"

// Anon returns n zeroed bytes of anonymous memory mapped outside the Go heap (asking for huge
// pages), and the function that unmaps them; calls after the first do nothing. Where the
// system refuses the mapping, the bytes come from the Go heap and release does nothing.
func Anon(n int) (b []byte, release func()) {
	if n <= 0 {
		return nil, func() {}
	}
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return make([]byte, n), func() {}
	}
	AdviseHuge(b)
	return b, once(func() { _ = unix.Munmap(b) })
}
