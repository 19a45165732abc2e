package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/x448/float16"
)

func TestConversions(t *testing.T) {
	for _, f := range []float32{0, 1, -2.5, 65504, 1e-3} {
		if got := F16ToF32(float16.Fromfloat32(f).Bits()); math.Abs(float64(got-f)) > 1e-3*math.Abs(float64(f)) {
			t.Errorf("F16ToF32(%v) = %v", f, got)
		}
		b := uint16(math.Float32bits(f) >> 16)
		if got := BF16ToF32(b); got != math.Float32frombits(uint32(b)<<16) {
			t.Errorf("BF16ToF32 = %v", got)
		}
	}
}

func TestDotsAgainstFloat64(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 3, 4, 7, 64, 1001} {
		x := make([]float32, n)
		w := make([]uint16, n)
		wf := make([]float32, n)
		var want float64
		for i := range x {
			x[i] = float32(r.NormFloat64())
			wf[i] = BF16ToF32(uint16(math.Float32bits(float32(r.NormFloat64())) >> 16))
			w[i] = uint16(math.Float32bits(wf[i]) >> 16)
			want += float64(x[i]) * float64(wf[i])
		}
		tol := 1e-5 * float64(n+1)
		if got := DotBF16(w, x); math.Abs(float64(got)-want) > tol {
			t.Errorf("DotBF16 n=%d: %v want %v", n, got, want)
		}
		if got := DotF32(wf, x); math.Abs(float64(got)-want) > tol {
			t.Errorf("DotF32 n=%d: %v want %v", n, got, want)
		}
		h := make([]uint16, n)
		var wantH float64
		for i := range h {
			h[i] = float16.Fromfloat32(wf[i]).Bits()
			wantH += float64(F16ToF32(h[i])) * float64(x[i])
		}
		if got := DotF16(h, x); math.Abs(float64(got)-wantH) > tol {
			t.Errorf("DotF16 n=%d: %v want %v", n, got, wantH)
		}
	}
}
