package backendtest_test

import (
	"fmt"
	"math/rand/v2"

	"github.com/fathom-llm/fathom/backend/backendtest"
	"github.com/fathom-llm/fathom/safetensors"
)

// A backend's test file runs the whole suite with
//
//	func TestConformance(t *testing.T) {
//		backendtest.Run(t, func() backend.Backend { return mybackend.New() })
//	}
//
// The helpers make stored weights with known exact values and measure errors the way the
// suite does.
func ExampleRelErr() {
	r := rand.New(rand.NewPCG(1, 2))
	w, exact := backendtest.Weight(r, "w", safetensors.BF16, 1, 2, 3)
	fmt.Println(w.DType, w.Shape, len(w.Data), len(exact))

	got := []float32{1, 2.001, 3}
	fmt.Printf("%.1e\n", backendtest.RelErr(got, []float64{1, 2, 3}))
	// Output:
	// BF16 [2 3] 12 6
	// 2.7e-04
}
