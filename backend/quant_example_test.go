package backend_test

import (
	"fmt"
	"log"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/backend/cpu"
)

// A weight bound as q8 keeps one int8 per input and a float16 scale per group of 32: a row of
// 32 values that are multiples of its largest/127 is stored exactly. The product quantizes the
// activations to int8 as well.
func ExampleBindAs() {
	q, err := backend.ParseQuantization("q8")
	if err != nil {
		log.Fatal(err)
	}
	be := cpu.New(1)
	defer be.Close()
	values := make([]float32, 32)
	for i := range values {
		values[i] = float32(i%8 - 4) // -4 … 3
	}
	values[0] = 127 // the scale is then exactly 1
	w, err := backend.BindAs(be, f32Tensor("w", []int{1, 32}, values...), q)
	if err != nil {
		log.Fatal(err)
	}
	x, _ := be.NewTensor(1, 32)
	y, _ := be.NewTensor(1, 1)
	ones := make([]float32, 32)
	for i := range ones {
		ones[i] = 1
	}
	if err := be.Write(x, ones); err != nil {
		log.Fatal(err)
	}
	if err := be.MatMul(y, x, w); err != nil {
		log.Fatal(err)
	}
	out := make([]float32, 1)
	if err := be.Read(out, y); err != nil {
		log.Fatal(err)
	}
	fmt.Println(q, out[0])
	_, err = backend.ParseQuantization("q3")
	fmt.Println(err)
	// Output:
	// q8 115
	// backend: unsupported quantization: "q3" (want q8 or q4)
}
