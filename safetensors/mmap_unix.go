//go:build unix

package safetensors

import (
	"os"

	"golang.org/x/sys/unix"
)

// mapFile maps the first size bytes of f read-only; release unmaps them.
func mapFile(f *os.File, size int) (buf []byte, release func() error, err error) {
	if size == 0 {
		return nil, func() error { return nil }, nil
	}
	buf, err = unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return buf, func() error { return unix.Munmap(buf) }, nil
}

// adviseWillNeed asks the kernel to read the mapped data ahead; a failure only loses the hint.
func adviseWillNeed(data []byte) {
	if len(data) > 0 {
		_ = unix.Madvise(data, unix.MADV_WILLNEED)
	}
}
