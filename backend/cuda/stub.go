//go:build !cuda || !cgo

package cuda

import (
	"fmt"

	"github.com/fathom-llm/fathom/backend"
)

// New would open a CUDA device; this build has no CUDA support, so it returns an error
// wrapping ErrNotBuilt.
func New(opts Options) (backend.Backend, error) {
	return nil, fmt.Errorf("cuda.New(device %d): %w", opts.Device, ErrNotBuilt)
}

// Available reports whether this build has CUDA support and a usable device: false here.
func Available() bool { return false }
