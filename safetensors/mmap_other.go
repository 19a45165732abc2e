//go:build !unix

package safetensors

import (
	"io"
	"os"
)

// mapFile reads the first size bytes of f into memory, where memory mapping is unavailable.
func mapFile(f *os.File, size int) (buf []byte, release func() error, err error) {
	buf = make([]byte, size)
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil, nil, err
	}
	return buf, func() error { return nil }, nil
}

// adviseWillNeed does nothing where files are read into memory.
func adviseWillNeed(data []byte) {}

// readFile reads the file into memory, as mapFile does where there is no mapping.
func readFile(f *os.File, size int) (buf []byte, release func() error, err error) {
	return mapFile(f, size)
}
