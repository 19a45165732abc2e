package safetensors

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/x448/float16"
)

// rawTensor returns a tensor of the given type holding the little-endian bytes of vals.
func rawTensor(dt DType, vals []uint64) Tensor {
	size := dt.Size()
	data := make([]byte, size*len(vals))
	for i, v := range vals {
		for b := range size {
			data[i*size+b] = byte(v >> (8 * b))
		}
	}
	return Tensor{Name: "t", DType: dt, Shape: []int{len(vals)}, Data: data}
}

func TestFloat32s(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		dt     DType
		decode func(uint64) float32
	}{
		{BF16, func(v uint64) float32 { return math.Float32frombits(uint32(v&0xffff) << 16) }},
		{F16, func(v uint64) float32 { return float16.Frombits(uint16(v)).Float32() }},
		{F32, func(v uint64) float32 { return math.Float32frombits(uint32(v)) }},
		{F64, func(v uint64) float32 { return float32(math.Float64frombits(v)) }},
	} {
		t.Run(string(tc.dt), func(t *testing.T) {
			for _, n := range []int{0, 1, 7, 8, 9, 31, 1000} {
				bits := make([]uint64, n)
				for i := range bits {
					bits[i] = r.Uint64()
				}
				tensor := rawTensor(tc.dt, bits)
				prefix := []float32{42}
				got, err := tensor.Float32s(prefix)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != n+1 || got[0] != 42 {
					t.Fatalf("n=%d: got %d values, first %v", n, len(got), got[0])
				}
				for i, v := range got[1:] {
					mask := uint64(1)<<(8*tc.dt.Size()) - 1
					if tc.dt.Size() == 8 {
						mask = math.MaxUint64
					}
					want := tc.decode(bits[i] & mask)
					if math.Float32bits(v) != math.Float32bits(want) && !(v != v && want != want) {
						t.Fatalf("n=%d [%d]: %v, want %v", n, i, v, want)
					}
				}
				// Unaligned data converts too.
				shifted := make([]byte, len(tensor.Data)+1)
				copy(shifted[1:], tensor.Data)
				tensor.Data = shifted[1:]
				again, err := tensor.Float32s(nil)
				if err != nil || len(again) != n {
					t.Fatalf("unaligned: %v, %d values", err, len(again))
				}
			}
		})
	}
}

func TestFloat32sErrors(t *testing.T) {
	if _, err := (Tensor{DType: I32, Shape: []int{1}, Data: make([]byte, 4)}).Float32s(nil); !errors.Is(err, ErrUnsupportedDType) {
		t.Errorf("I32: %v", err)
	}
	if _, err := (Tensor{DType: BF16, Shape: []int{3}, Data: make([]byte, 4)}).Float32s(nil); !errors.Is(err, ErrShapeMismatch) {
		t.Errorf("short data: %v", err)
	}
}

func TestView(t *testing.T) {
	buf := make([]uint64, 4) // 8-byte aligned backing store
	data := unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), 8*len(buf))
	binary.LittleEndian.PutUint16(data, 0x3f80)
	bf := Tensor{Name: "w", DType: BF16, Shape: []int{16}, Data: data}
	u, err := bf.Uint16s()
	if err != nil || len(u) != 16 || u[0] != 0x3f80 || &data[0] != (*byte)(unsafe.Pointer(&u[0])) {
		t.Fatalf("Uint16s = %v, %v", u, err)
	}
	if _, err := View[float32](bf); !errors.Is(err, ErrUnsupportedDType) {
		t.Errorf("float32 view of BF16: %v", err)
	}
	if _, err := View[int16](bf); !errors.Is(err, ErrUnsupportedDType) {
		t.Errorf("int16 view of BF16: %v", err)
	}
	f := Tensor{DType: F32, Shape: []int{7}, Data: data[4:32]}
	if v, err := View[float32](f); err != nil || len(v) != 7 {
		t.Errorf("float32 view: %v, %v", v, err)
	}
	if v, err := View[uint32](f); err != nil || len(v) != 7 {
		t.Errorf("uint32 view of F32: %v, %v", v, err)
	}
	if _, err := View[float64](Tensor{DType: F64, Shape: []int{3}, Data: data[4:28]}); !errors.Is(err, ErrMisaligned) {
		t.Errorf("misaligned: %v", err)
	}
	if _, err := (Tensor{DType: F16, Shape: []int{2}, Data: data[1:5]}).Uint16s(); !errors.Is(err, ErrMisaligned) {
		t.Errorf("misaligned: %v", err)
	}
	if v, err := (Tensor{DType: F16, Shape: []int{0}}).Uint16s(); err != nil || len(v) != 0 {
		t.Errorf("empty: %v, %v", v, err)
	}
}
