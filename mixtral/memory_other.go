//go:build !linux

package mixtral

// totalMemory returns the machine's memory in bytes (0 when unknown).
func totalMemory() uint64 { return 0 }
