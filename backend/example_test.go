package backend_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"math"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/backend/cpu"
	"github.com/fathom-llm/fathom/safetensors"
)

// f32Tensor makes a stored float32 tensor.
func f32Tensor(name string, shape []int, values ...float32) safetensors.Tensor {
	data := make([]byte, 4*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
	}
	return safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: shape, Data: data}
}

// A batch of tokens from two sequences goes through embedding and RMSNorm in one step; the
// activations stay on the device until Read. The caller decides which cache blocks hold each
// sequence's positions: here sequence 0 has block 2 and sequence 1 block 0.
func Example() {
	var be backend.Backend = cpu.New(0)
	defer be.Close()

	embed, err := be.Bind(f32Tensor("embed", []int{3, 2}, 1, 0, 0, 2, 3, 4))
	if err != nil {
		log.Fatal(err)
	}
	norm, err := be.Bind(f32Tensor("norm", []int{2}, 1, 1))
	if err != nil {
		log.Fatal(err)
	}
	cache, err := be.NewCache(backend.CacheConfig{Layers: 1, KVHeads: 1, HeadDim: 2, BlockSize: 16, Blocks: 4})
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()
	tables := [][]int{{2}, {0}}
	batch, err := cache.Prepare([]backend.Token{{Seq: 0, Pos: 0, ID: 2}, {Seq: 1, Pos: 0, ID: 1}, {Seq: 0, Pos: 1, ID: 0}}, tables)
	if err != nil {
		log.Fatal(err)
	}

	x, _ := be.NewTensor(8, 2) // room for 8 tokens; this step uses 3
	y, _ := be.NewTensor(8, 2)
	x, y = x.Head(batch.Len()), y.Head(batch.Len())
	if err := be.Embed(x, embed, batch); err != nil {
		log.Fatal(err)
	}
	if err := be.RMSNorm(y, x, norm, 0); err != nil {
		log.Fatal(err)
	}
	out := make([]float32, 6)
	if err := be.Read(out, y); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%.3f\n", out)
	fmt.Println(cache.Config().DType, cache.Config().BlockBytes())
	// Output:
	// [0.849 1.131 0.000 1.414 1.414 0.000]
	// F16 128
}

// A backend's operation starts with the check of its operands, shared by every backend: a
// mismatch is an error wrapping ErrShape, and nothing runs.
func ExampleCheckMatMul() {
	be := cpu.New(1)
	defer be.Close()
	w, err := be.Bind(f32Tensor("w", []int{3, 2}, 1, 2, 3, 4, 5, 6))
	if err != nil {
		log.Fatal(err)
	}
	x, _ := be.NewTensor(4, 2)
	y, _ := be.NewTensor(4, 3)
	fmt.Println(backend.CheckMatMul(y, x, w))
	err = backend.CheckMatMul(y.Head(3), x, w)
	fmt.Println(errors.Is(err, backend.ErrShape))
	fmt.Println(err)
	fmt.Println(errors.Is(be.MatMul(y.Head(3), x, w), backend.ErrShape))
	// Output:
	// <nil>
	// true
	// backend: shape mismatch: matmul of 4x2 by (3x2)ᵀ into 3x3
	// true
}
