package safetensors

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fathom-llm/fathom/internal/fixtures"
	"github.com/x448/float16"
)

// benchmarkFloat32s converts 2²⁰ values drawn like weights, from N(0, 0.02²). GB/s counts
// the bytes read plus the bytes written.
func benchmarkFloat32s(b *testing.B, dt DType) {
	const n = 1 << 20
	r := rand.New(rand.NewPCG(1, 1))
	var data []byte
	for range n {
		v := r.NormFloat64() * 0.02
		switch dt {
		case BF16:
			data = binary.LittleEndian.AppendUint16(data, uint16(math.Float32bits(float32(v))>>16))
		case F16:
			data = binary.LittleEndian.AppendUint16(data, float16.Fromfloat32(float32(v)).Bits())
		case F32:
			data = binary.LittleEndian.AppendUint32(data, math.Float32bits(float32(v)))
		case F64:
			data = binary.LittleEndian.AppendUint64(data, math.Float64bits(v))
		}
	}
	t := Tensor{DType: dt, Shape: []int{n}, Data: data}
	dst := make([]float32, 0, n)
	t.Float32s(dst)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := t.Float32s(dst); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
	b.ReportMetric(float64(len(data)+4*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
}

func BenchmarkFloat32sBF16(b *testing.B) { benchmarkFloat32s(b, BF16) }
func BenchmarkFloat32sF16(b *testing.B)  { benchmarkFloat32s(b, F16) }
func BenchmarkFloat32sF32(b *testing.B)  { benchmarkFloat32s(b, F32) }
func BenchmarkFloat32sF64(b *testing.B)  { benchmarkFloat32s(b, F64) }

// BenchmarkOpenDir measures opening a sharded checkpoint: headers only.
func BenchmarkOpenDir(b *testing.B) {
	dir := fixtures.Bundled(b)
	for b.Loop() {
		c, err := OpenDir(dir)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
