//go:build unix

package safetensors

import (
	"io"
	"os"
	"sync"

	"github.com/fathom-llm/fathom/internal/mem"
	"golang.org/x/sys/unix"
)

// mapFile maps the first size bytes of f read-only, asking for huge pages (the pages that
// later reads from the disk bring in are then 2 MB where the file system caches in large
// folios); release unmaps them.
func mapFile(f *os.File, size int) (buf []byte, release func() error, err error) {
	if size == 0 {
		return nil, func() error { return nil }, nil
	}
	buf, err = unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	mem.AdviseHuge(buf)
	return buf, func() error { return unix.Munmap(buf) }, nil
}

// adviseWillNeed asks the kernel to read the mapped data ahead; a failure only loses the hint.
func adviseWillNeed(data []byte) {
	if len(data) > 0 {
		_ = unix.Madvise(data, unix.MADV_WILLNEED)
	}
}

// readChunk is the span of a file that one goroutine of readFile reads at a time.
const readChunk = 16 << 20

// readFile reads the first size bytes of f into anonymous memory, in huge pages where the
// kernel gives them on request, placed so that the data section after the header (whose
// length the first 8 bytes give) starts on a 64-byte boundary; chunks are read by a few
// goroutines at once and dropped from the page cache once read. release unmaps the memory.
func readFile(f *os.File, size int) (buf []byte, release func() error, err error) {
	if size == 0 {
		return nil, func() error { return nil }, nil
	}
	shift := 0
	var n [8]byte
	if size >= 8 {
		if _, err := f.ReadAt(n[:], 0); err != nil {
			return nil, nil, err
		}
		hdr := uint64(n[0]) | uint64(n[1])<<8 | uint64(n[2])<<16 | uint64(n[3])<<24 |
			uint64(n[4])<<32 | uint64(n[5])<<40 | uint64(n[6])<<48 | uint64(n[7])<<56
		shift = int((64 - (8+hdr%64)%64) % 64)
	}
	region, err := unix.Mmap(-1, 0, size+shift, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, nil, err
	}
	mem.AdviseHuge(region)
	buf = region[shift : shift+size]
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	next := make(chan int, (size+readChunk-1)/readChunk)
	for lo := 0; lo < size; lo += readChunk {
		next <- lo
	}
	close(next)
	for range min(cap(next), 8) {
		wg.Go(func() {
			for lo := range next {
				hi := min(size, lo+readChunk)
				if _, err := f.ReadAt(buf[lo:hi], int64(lo)); err != nil && err != io.EOF {
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
					continue
				}
				dropCached(f, lo, hi-lo)
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		unix.Munmap(region)
		return nil, nil, firstErr
	}
	return buf, func() error { return unix.Munmap(region) }, nil
}

// cmpErr keeps the first error.
func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}
