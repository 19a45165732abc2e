//go:build !linux

package mem

// AdviseHuge does nothing where transparent huge pages cannot be requested.
func AdviseHuge(b []byte) {}
