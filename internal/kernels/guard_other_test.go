//go:build !linux

package kernels

import "testing"

// guarded returns a slice of n elements of T.
func guarded[T any](t *testing.T, n int) []T { return make([]T, n) }
