package safetensors

import (
	"os"

	"golang.org/x/sys/unix"
)

// dropCached asks the kernel to drop n bytes of f from offset lo from the page cache.
func dropCached(f *os.File, lo, n int) {
	_ = unix.Fadvise(int(f.Fd()), int64(lo), int64(n), unix.FADV_DONTNEED)
}
