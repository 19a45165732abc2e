// Package mem provides memory outside the Go heap for the large, long-lived buffers of the
// backends (weights stored in a layout of their own, the KV cache), and the huge-page advice
// that the backends and the checkpoint mapping share.
//
// Gigabytes held in the Go heap count toward the garbage collector's goal, which is twice the
// live heap: the rest of a program may then grow by as much again before a collection. Memory
// from Anon is the operating system's, not the collector's.
package mem

import (
	"runtime"
	"sync"
)

// Owned returns n zeroed bytes from Anon that are released once owner is unreachable (a
// cleanup, see runtime.AddCleanup) or when release is called, whichever comes first: owner
// must stay reachable for as long as any slice of the memory is used, and the memory must not
// hold the only reference to anything.
func Owned[T any](owner *T, n int) (b []byte, release func()) {
	b, release = Anon(n)
	runtime.AddCleanup(owner, func(f func()) { f() }, release)
	return b, release
}

// once wraps release so that only its first call has an effect.
func once(release func()) func() {
	var o sync.Once
	return func() { o.Do(release) }
}
