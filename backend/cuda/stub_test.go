//go:build !cuda || !cgo

package cuda

import (
	"errors"
	"testing"
)

func TestStubNotBuilt(t *testing.T) {
	be, err := New(Options{})
	if be != nil || !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("New() = %v, %v; want an error wrapping ErrNotBuilt", be, err)
	}
	if Available() {
		t.Error("Available() = true without CUDA")
	}
}
