package bench

import (
	"os"

	"golang.org/x/sys/unix"
)

// evict asks the kernel to drop the file at path from the page cache (pages that no mapping
// holds), so that the next reads come from the disk.
func evict(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}
