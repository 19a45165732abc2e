package cpu_test

import (
	"encoding/binary"
	"fmt"
	"log"
	"math"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/backend/cpu"
	"github.com/fathom-llm/fathom/safetensors"
)

// Quantize a weight once, keep its bytes (a checkpoint stored quantized holds them), and bind
// them later as they are: the bound weight views the data and multiplies as the weight that
// BindQuantized quantizes at binding.
func ExampleBackend_QuantizeWeight() {
	be := cpu.New(2)
	defer be.Close()

	data := make([]byte, 0, 4*64)
	for i := range 64 { // a 1×64 float32 weight: 0, 1, ..., 63 scaled down
		data = binary.LittleEndian.AppendUint32(data, math.Float32bits(float32(i)/64))
	}
	stored := safetensors.Tensor{Name: "w", DType: safetensors.F32, Shape: []int{1, 64}, Data: data}
	qw, err := be.QuantizeWeight(stored, backend.Q8)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d×%d from %s in %d bytes\n", qw.Quant, qw.Rows, qw.Cols, qw.DType, len(qw.Data))

	w, err := be.BindQuantizedWeight(qw)
	if err != nil {
		log.Fatal(err)
	}
	x, _ := be.NewTensor(1, 64)
	y, _ := be.NewTensor(1, 1)
	ones := make([]float32, 64)
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
	fmt.Printf("sum of the row: %.2f (exactly %.2f: q8 rounds)\n", out[0], 63.0*64/2/64)
	// Output:
	// q8: 1×64 from F32 in 68 bytes
	// sum of the row: 31.56 (exactly 31.50: q8 rounds)
}
