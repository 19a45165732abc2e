//go:build !cuda || !cgo

package cuda_test

import (
	"errors"
	"fmt"

	"github.com/fathom-llm/fathom/backend/cuda"
)

// A program picks the CUDA backend when it is built in and falls back to the CPU otherwise.
func ExampleNew() {
	be, err := cuda.New(cuda.Options{Device: 0})
	if errors.Is(err, cuda.ErrNotBuilt) {
		fmt.Println("no CUDA in this build: use the CPU backend")
		return
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	defer be.Close()
	fmt.Println("running on", be.Name())
	// Output: no CUDA in this build: use the CPU backend
}
