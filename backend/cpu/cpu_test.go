package cpu_test

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/backend/backendtest"
	"github.com/fathom-llm/fathom/backend/cpu"
	"github.com/fathom-llm/fathom/safetensors"
)

// TestConformance runs the suite with one worker and with three; the larger cases, whose
// float64 references are slow under the race detector, run in the other test runs.
func TestConformance(t *testing.T) {
	for _, workers := range []int{1, 3} {
		t.Run(fmt.Sprint(workers, " workers"), func(t *testing.T) {
			opts := backendtest.Options{Large: workers == 3 && !raceEnabled}
			backendtest.RunOptions(t, func() backend.Backend { return cpu.New(workers) }, opts)
		})
	}
}

// TestBindAliases checks that a bound weight reads the stored bytes in place (for the memory
// map, no copy).
func TestBindAliases(t *testing.T) {
	be := cpu.New(1)
	defer be.Close()
	data := make([]byte, 8) // two bfloat16 zeros, then set to 1 and 2 after binding
	w, err := be.Bind(safetensors.Tensor{Name: "w", DType: safetensors.BF16, Shape: []int{1, 2}, Data: data[:4]})
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint16(data[0:], 0x3f80)
	binary.LittleEndian.PutUint16(data[2:], 0x4000)
	x, _ := be.NewTensor(1, 2)
	y, _ := be.NewTensor(1, 1)
	if err := be.Write(x, []float32{1, 1}); err != nil {
		t.Fatal(err)
	}
	if err := be.MatMul(y, x, w); err != nil {
		t.Fatal(err)
	}
	out := []float32{0}
	if err := be.Read(out, y); err != nil {
		t.Fatal(err)
	}
	if out[0] != 3 {
		t.Errorf("MatMul read %v: the weight was copied at Bind", out[0])
	}
}

// BenchmarkMatMulBF16 measures a decode-sized product with a 4096×14336 bfloat16 weight
// (one Mixtral expert projection), reporting the weight bytes streamed per second.
func BenchmarkMatMulBF16(b *testing.B) {
	const rows, cols = 14336, 4096
	be := cpu.New(0)
	defer be.Close()
	data := make([]byte, rows*cols*2)
	for i := range data {
		data[i] = byte(i*7) & 0x3f // small finite values
	}
	w, err := be.Bind(safetensors.Tensor{Name: "w", DType: safetensors.BF16, Shape: []int{rows, cols}, Data: data})
	if err != nil {
		b.Fatal(err)
	}
	x, _ := be.NewTensor(1, cols)
	y, _ := be.NewTensor(1, rows)
	for b.Loop() {
		if err := be.MatMul(y, x, w); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(data))*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
}
