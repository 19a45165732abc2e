//go:build !linux

package safetensors

import "os"

// adviseHuge does nothing where transparent huge pages cannot be requested.
func adviseHuge(mem []byte) {}

// dropCached does nothing where the page cache takes no advice.
func dropCached(f *os.File, lo, n int) {}
