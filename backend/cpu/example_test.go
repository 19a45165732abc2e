package cpu_test

import (
	"encoding/binary"
	"fmt"
	"log"

	"github.com/fathom-llm/fathom/backend/cpu"
	"github.com/fathom-llm/fathom/safetensors"
)

// A bfloat16 weight stays in its stored form (here a 2×3 matrix of small integers, exact in
// bfloat16); MatMul converts on the fly and accumulates in float32.
func ExampleBackend_MatMul() {
	be := cpu.New(2)
	defer be.Close()

	data := make([]byte, 12)
	for i, v := range []uint16{0x3f80, 0x4000, 0x4040, 0x0000, 0xbf80, 0x4080} { // 1 2 3; 0 -1 4
		binary.LittleEndian.PutUint16(data[2*i:], v)
	}
	w, err := be.Bind(safetensors.Tensor{Name: "w", DType: safetensors.BF16, Shape: []int{2, 3}, Data: data})
	if err != nil {
		log.Fatal(err)
	}
	x, _ := be.NewTensor(1, 3)
	y, _ := be.NewTensor(1, 2)
	if err := be.Write(x, []float32{1, 1, 0.5}); err != nil {
		log.Fatal(err)
	}
	if err := be.MatMul(y, x, w); err != nil {
		log.Fatal(err)
	}
	out := make([]float32, 2)
	if err := be.Read(out, y); err != nil {
		log.Fatal(err)
	}
	fmt.Println(out)
	// Output:
	// [4.5 1]
}

// With BF16Activations, products with bfloat16 weights round their activations to bfloat16
// (here 1+2⁻¹⁰ becomes 1) before the exact products are summed in float32.
func ExampleNewWithOptions() {
	be := cpu.NewWithOptions(cpu.Options{Workers: 1, BF16Activations: true})
	defer be.Close()
	w, err := be.Bind(safetensors.Tensor{Name: "w", DType: safetensors.BF16, Shape: []int{1, 1}, Data: []byte{0x80, 0x3f}}) // 1
	if err != nil {
		log.Fatal(err)
	}
	x, _ := be.NewTensor(1, 1)
	y, _ := be.NewTensor(1, 1)
	if err := be.Write(x, []float32{1 + 1.0/1024}); err != nil {
		log.Fatal(err)
	}
	if err := be.MatMul(y, x, w); err != nil {
		log.Fatal(err)
	}
	out := make([]float32, 1)
	if err := be.Read(out, y); err != nil {
		log.Fatal(err)
	}
	fmt.Println(out[0])
	// Output:
	// 1
}
