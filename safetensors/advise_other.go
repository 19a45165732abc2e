//go:build !linux

package safetensors

import "os"

// dropCached does nothing where the page cache takes no advice.
func dropCached(f *os.File, lo, n int) {}
