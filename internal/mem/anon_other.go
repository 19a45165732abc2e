//go:build !unix

package mem

// Anon returns n zeroed bytes from the Go heap where memory cannot be mapped; release does
// nothing.
func Anon(n int) (b []byte, release func()) {
	if n <= 0 {
		return nil, func() {}
	}
	return make([]byte, n), func() {}
}
