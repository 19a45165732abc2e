package half

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/x448/float16"
)

func TestF16ToF32Exhaustive(t *testing.T) {
	for h := range 1 << 16 {
		got := math.Float32bits(F16ToF32(uint16(h)))
		want := math.Float32bits(float16.Frombits(uint16(h)).Float32())
		if got != want {
			t.Fatalf("F16ToF32(%#04x) = %#08x, want %#08x", h, got, want)
		}
	}
}

// TestF16RoundTrip checks that every finite half-precision value survives widening and
// rounding back, and that IsF16Finite tells the others.
func TestF16RoundTrip(t *testing.T) {
	for h := range 1 << 16 {
		f := F16ToF32(uint16(h))
		finite := !math.IsInf(float64(f), 0) && !math.IsNaN(float64(f))
		if IsF16Finite(uint16(h)) != finite {
			t.Fatalf("IsF16Finite(%#04x) = %v for %v", h, !finite, f)
		}
		if finite && F32ToF16(f) != uint16(h) {
			t.Fatalf("F32ToF16(F16ToF32(%#04x)) = %#04x", h, F32ToF16(f))
		}
	}
}

func TestF32ToF16(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   float32
		want uint16
	}{
		{"one", 1, 0x3c00},
		{"minus two", -2, 0xc000},
		{"zero", 0, 0},
		{"largest", 65504, 0x7bff},
		{"overflow", 65536, 0x7c00},
		{"smallest subnormal", 0x1p-24, 0x0001},
		{"underflow", 0x1p-26, 0x0000},
		{"tie to even, down", 1 + 0x1p-11, 0x3c00},
		{"tie to even, up", 1 + 3*0x1p-11, 0x3c02},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := F32ToF16(tc.in); got != tc.want {
				t.Errorf("F32ToF16(%g) = %#04x, want %#04x", tc.in, got, tc.want)
			}
		})
	}
}

func TestF32ToBF16(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   uint32 // float32 bits
		want uint16
	}{
		{"one", 0x3f800000, 0x3f80},
		{"minus two", 0xc0000000, 0xc000},
		{"zero", 0, 0},
		{"minus zero", 0x80000000, 0x8000},
		{"tie to even, down", 0x3f808000, 0x3f80},
		{"tie to even, up", 0x3f818000, 0x3f82},
		{"above the tie", 0x3f808001, 0x3f81},
		{"below the next", 0x3f80ffff, 0x3f81},
		{"negative tie", 0xbf808000, 0xbf80},
		{"largest float to infinity", 0x7f7fffff, 0x7f80},
		{"infinity", 0x7f800000, 0x7f80},
		{"minus infinity", 0xff800000, 0xff80},
		{"NaN with a low payload", 0x7f800001, 0x7fc0},
		{"smallest subnormal", 0x00000001, 0x0000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := F32ToBF16(math.Float32frombits(tc.in)); got != tc.want {
				t.Errorf("F32ToBF16(%#08x) = %#04x, want %#04x", tc.in, got, tc.want)
			}
		})
	}
	if got := F32ToBF16(float32(math.NaN())); got&0x7f80 != 0x7f80 || got&0x7f == 0 {
		t.Errorf("F32ToBF16(NaN) = %#04x, not a NaN", got)
	}
}

// TestBF16RoundTrip checks widening against the definition, and that rounding is to nearest:
// within half a unit in the last place.
func TestBF16RoundTrip(t *testing.T) {
	for b := range 1 << 16 {
		f := BF16ToF32(uint16(b))
		if math.Float32bits(f) != uint32(b)<<16 {
			t.Fatalf("BF16ToF32(%#04x) = %#08x", b, math.Float32bits(f))
		}
		if f == f && F32ToBF16(f) != uint16(b) {
			t.Fatalf("F32ToBF16(BF16ToF32(%#04x)) = %#04x", b, F32ToBF16(f))
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		f := float32(r.NormFloat64() * math.Exp(r.NormFloat64()*10))
		got := float64(BF16ToF32(F32ToBF16(f)))
		if math.Abs(got-float64(f)) > math.Abs(float64(f))*0x1p-8 {
			t.Fatalf("%g rounds to %g", f, got)
		}
	}
}

func TestDecode(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		name   string
		decode func(dst []float32, src []byte)
		one    func(uint16) float32
	}{
		{"bf16", DecodeBF16, BF16ToF32},
		{"f16", DecodeF16, F16ToF32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, n := range []int{0, 1, 7, 8, 9, 15, 16, 17, 100} {
				src := make([]byte, 2*n+1) // one byte more than needed: not read
				for i := range src {
					src[i] = byte(r.Uint32())
				}
				dst := make([]float32, n+1)
				dst[n] = 42
				tc.decode(dst[:n], src)
				for i := range n {
					want := tc.one(binary.LittleEndian.Uint16(src[2*i:]))
					if math.Float32bits(dst[i]) != math.Float32bits(want) {
						t.Fatalf("n=%d [%d] = %#08x, want %#08x", n, i, math.Float32bits(dst[i]), math.Float32bits(want))
					}
				}
				if dst[n] != 42 {
					t.Fatalf("n=%d wrote past its end", n)
				}
			}
		})
	}
}
