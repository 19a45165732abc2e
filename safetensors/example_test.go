package safetensors_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/fathom-llm/fathom/safetensors"
)

func ExampleWrite() {
	// Two bfloat16 values, 1.5 and -2, and a metadata entry.
	data := binary.LittleEndian.AppendUint16(nil, uint16(math.Float32bits(1.5)>>16))
	data = binary.LittleEndian.AppendUint16(data, uint16(math.Float32bits(-2)>>16))
	tensors := []safetensors.Tensor{{Name: "w", DType: safetensors.BF16, Shape: []int{1, 2}, Data: data}}

	var buf bytes.Buffer
	if err := safetensors.Write(&buf, tensors, map[string]string{"format": "pt"}); err != nil {
		fmt.Println(err)
		return
	}
	f, err := safetensors.Parse(buf.Bytes())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	w, _ := f.Tensor("w")
	values, _ := w.Float32s(nil)
	fmt.Println(f.Names(), f.Metadata())
	fmt.Println(w.DType, w.Shape, w.NumElements(), values)
	// Output:
	// [w] map[format:pt]
	// BF16 [1 2] 2 [1.5 -2]
}

func ExampleOpenDir() {
	dir, _ := os.MkdirTemp("", "checkpoint")
	defer os.RemoveAll(dir)
	f32 := func(name string, v float32) safetensors.Tensor {
		return safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: []int{1},
			Data: binary.LittleEndian.AppendUint32(nil, math.Float32bits(v))}
	}
	// Two shards and model.safetensors.index.json.
	shards := [][]safetensors.Tensor{{f32("a", 1)}, {f32("b", 2)}}
	if err := safetensors.WriteDir(dir, shards, nil); err != nil {
		fmt.Println(err)
		return
	}
	c, err := safetensors.OpenDir(dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	for _, name := range c.Names() {
		t, _ := c.Tensor(name)
		v, _ := safetensors.View[float32](t)
		fmt.Println(name, v)
	}
	_, err = c.Tensor("c")
	fmt.Println(errors.Is(err, safetensors.ErrNotFound))
	for _, f := range c.Files() {
		fmt.Println(filepath.Base(f.Path()))
	}
	// Output:
	// a [1]
	// b [2]
	// true
	// model-00001-of-00002.safetensors
	// model-00002-of-00002.safetensors
}
