package kernels

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

func TestQuantLayout(t *testing.T) {
	// One group: the interleaving is the identity, so the bytes read plainly.
	v := make([]float32, 32)
	for i := range v {
		v[i] = float32(i - 16)
	}
	b := make([]byte, Q8RowBytes(32))
	if err := QuantizeQ8(b, v, 32); err != nil {
		t.Fatal(err)
	}
	// The 32 values, then the scale.
	if d := F16ToF32(uint16(b[32]) | uint16(b[33])<<8); math.Abs(float64(d-16.0/127)) > 1e-3 {
		t.Errorf("scale %v", d)
	}
	if int8(b[0]) != -127 || int8(b[16]) != 0 || int8(b[31]) != 119 {
		t.Errorf("values % d", b[:32])
	}
	q4 := make([]byte, Q4RowBytes(32))
	if err := QuantizeQ4(q4, v, 32); err != nil {
		t.Fatal(err)
	}
	// The scale, the minimum, then value e of the single group at position e, vector e/4:
	// bytes 0..3 hold values 0..3 (low) and 4..7 (high).
	if q4[4]&15 != 0 || q4[4]>>4 != 2 || q4[4+15]>>4 != 15 || q4[4+12]&15 != 12 {
		t.Errorf("q4 bytes % x", q4[4:])
	}
	if d, m := F16ToF32(uint16(q4[0])|uint16(q4[1])<<8), F16ToF32(uint16(q4[2])|uint16(q4[3])<<8); math.Abs(float64(d)-31.0/15) > 1e-2 || m != -16 {
		t.Errorf("q4 scale %v, minimum %v", d, m)
	}
	// Sixteen groups: value 0 of group 1 is the fifth byte.
	if p := pos(0, 1, 16); p != 4 {
		t.Errorf("pos(0, 1, 16) = %d", p)
	}
	if p := pos(5, 2, 16); p != 64+8+1 {
		t.Errorf("pos(5, 2, 16) = %d", p)
	}
}

func TestQuantizeErrors(t *testing.T) {
	if err := QuantizeQ8(make([]byte, 34), make([]float32, 33), 33); !errors.Is(err, ErrShape) {
		t.Errorf("cols 33: %v", err)
	}
	if err := QuantizeQ4(make([]byte, 19), make([]float32, 32), 32); !errors.Is(err, ErrShape) {
		t.Errorf("short dst: %v", err)
	}
	nan := make([]float32, 32)
	nan[3] = float32(math.NaN())
	if err := QuantizeQ8(make([]byte, 34), nan, 32); !errors.Is(err, ErrRange) {
		t.Errorf("NaN: %v", err)
	}
	big := make([]float32, 32)
	big[0] = 1e30
	if err := QuantizeQ4(make([]byte, 20), big, 32); !errors.Is(err, ErrRange) {
		t.Errorf("1e30: %v", err)
	}
	if err := DequantizeQ8(make([]float32, 64), make([]byte, 34), 32); !errors.Is(err, ErrShape) {
		t.Errorf("dequantize: %v", err)
	}
}

func randRows(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64()) * 0.1
		if i%97 == 5 {
			v[i] *= 20 // outliers
		}
	}
	return v
}

func TestQuantizeRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for _, cols := range []int{32, 64, 544, 1056} {
		v := randRows(r, 3*cols)
		for _, q4 := range []bool{false, true} {
			b := make([]byte, 3*Q8RowBytes(cols))
			quant, dequant := QuantizeQ8, DequantizeQ8
			if q4 {
				b = make([]byte, 3*Q4RowBytes(cols))
				quant, dequant = QuantizeQ4, DequantizeQ4
			}
			if err := quant(b, v, cols); err != nil {
				t.Fatal(err)
			}
			back := make([]float32, len(v))
			if err := dequant(back, b, cols); err != nil {
				t.Fatal(err)
			}
			for g := 0; g < len(v); g += 32 {
				lo, hi := v[g], v[g]
				for _, x := range v[g : g+32] {
					lo, hi = min(lo, x), max(hi, x)
				}
				step := max(hi, -lo) / 127
				if q4 {
					step = (hi - lo) / 15
				}
				for i := g; i < g+32; i++ {
					if d := math.Abs(float64(back[i] - v[i])); d > 0.51*float64(step)+2e-3*float64(max(hi, -lo)) {
						t.Fatalf("q4=%v cols=%d [%d]: %v back %v (step %v)", q4, cols, i, v[i], back[i], step)
					}
				}
			}
		}
	}
}

// refQuantActs quantizes x as the kernels do, per group of 32: d = max|x|/127, q = x·127/max|x|
// rounded to the nearest integer, ties to even.
func refQuantActs(x []float32) []float64 {
	out := make([]float64, len(x))
	for g := 0; g < len(x); g += 32 {
		var amax float32
		for _, v := range x[g : g+32] {
			amax = max(amax, abs(v))
		}
		if amax == 0 {
			continue
		}
		inv, d := 127/amax, amax/127
		for i := g; i < g+32; i++ {
			out[i] = float64(d) * math.RoundToEven(float64(x[i]*inv))
		}
	}
	return out
}

func TestQuantMatMul(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(15, 16))
		for _, cols := range []int{32, 96, 512, 544, 1024, 1568} {
			for _, s := range []struct{ tokens, rows, lo, hi int }{{1, 1, 0, 1}, {1, 9, 0, 9}, {3, 17, 2, 15}, {2, 4, 0, 4}} {
				w := randRows(r, s.rows*cols)
				x := randRows(r, s.tokens*cols)
				xq := refQuantActs(x)
				xstep := make([]float64, len(x)/32) // the activations' quantization steps
				for g := range xstep {
					for _, v := range x[32*g : 32*g+32] {
						xstep[g] = max(xstep[g], math.Abs(float64(v))/127)
					}
				}
				for _, q4 := range []bool{false, true} {
					rb := Q8RowBytes(cols)
					quant, dequant := QuantizeQ8, DequantizeQ8
					if q4 {
						rb, quant, dequant = Q4RowBytes(cols), QuantizeQ4, DequantizeQ4
					}
					wb := guarded[byte](t, s.rows*rb)
					if err := quant(wb, w, cols); err != nil {
						t.Fatal(err)
					}
					wd := make([]float32, len(w))
					if err := dequant(wd, wb, cols); err != nil {
						t.Fatal(err)
					}
					out, check := withGuards(t, s.tokens*s.rows)
					if q4 {
						MatMulQ4Rows(out, wb, x, s.tokens, s.rows, cols, s.lo, s.hi)
					} else {
						MatMulQ8Rows(out, wb, x, s.tokens, s.rows, cols, s.lo, s.hi)
					}
					check()
					for tk := range s.tokens {
						for i := range s.rows {
							got := out[tk*s.rows+i]
							if i < s.lo || i >= s.hi {
								if math.Float32bits(got) != math.Float32bits(guardVal) {
									t.Fatalf("wrote row %d outside the range", i)
								}
								continue
							}
							var want, mag, exact, bound float64
							for c := range cols {
								p := float64(wd[i*cols+c]) * xq[tk*cols+c]
								want += p
								mag += math.Abs(p)
								// The weights as stored (the round trip is tested above), the
								// activations unquantized.
								exact += float64(wd[i*cols+c]) * float64(x[tk*cols+c])
								bound += math.Abs(float64(wd[i*cols+c])) * xstep[(tk*cols+c)/32] / 2
							}
							if math.Abs(float64(got)-want) > 1e-5*mag+1e-6 {
								t.Fatalf("q4=%v cols=%d %+v token %d row %d: %v want %v", q4, cols, s, tk, i, got, want)
							}
							if math.Abs(float64(got)-exact) > bound*1.001+1e-5*mag+1e-6 {
								t.Fatalf("q4=%v cols=%d: %v far from the product with unquantized activations %v", q4, cols, got, exact)
							}
						}
					}
					if s.tokens == 1 && s.lo == 0 && s.hi == s.rows {
						mv := make([]float32, s.rows)
						if q4 {
							MatVecQ4(mv, wb, x, cols)
						} else {
							MatVecQ8(mv, wb, x, cols)
						}
						for i := range mv {
							if mv[i] != out[i] {
								t.Fatalf("MatVec and MatMul differ: %v %v", mv[i], out[i])
							}
						}
					}
				}
			}
		}
	})
}

func ExampleQuantizeQ8() {
	w := make([]float32, 2*32) // two rows of 32
	for i := range w {
		w[i] = float32(i%32) / 31
	}
	q := make([]byte, 2*Q8RowBytes(32))
	if err := QuantizeQ8(q, w, 32); err != nil {
		fmt.Println(err)
		return
	}
	x := make([]float32, 32)
	x[31] = 2
	out := make([]float32, 2)
	MatVecQ8(out, q, x, 32)
	fmt.Printf("%.2f %.2f\n", out[0], out[1])
	// Output: 2.00 2.00
}

func TestQuantizeActs(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	const cols = 1024 + 64 // two full super-blocks and a partial one
	x := randRows(r, 3*cols)
	for i := range x {
		if i%31 == 0 {
			x[i] = float32(int(x[i]*100)) / 100 * 127 // ties after scaling, sometimes
		}
	}
	clear(x[32:64]) // a zero group
	for i := 96; i < 128; i++ {
		x[i] = 1e-38 // a tiny group
	}
	x[160] = float32(math.NaN())        // a NaN group
	x[cols+200] = float32(math.Inf(-1)) // an infinite group
	want := func() *qActs {
		defer useFeatures(features{})()
		return quantizeActs(x, cols)
	}()
	forEachImpl(t, func(t *testing.T) {
		got := quantizeActs(x, cols)
		for i := range want.q {
			if got.q[i] != want.q[i] {
				t.Fatalf("q[%d] = %d, want %d", i, got.q[i], want.q[i])
			}
		}
		for g := range want.d {
			same := func(a, b float32) bool { return a == b || (a != a && b != b) }
			if !same(got.d[g], want.d[g]) || !same(got.ds[g], want.ds[g]) || got.o[g] != want.o[g] {
				t.Fatalf("group %d: %v %v %v, want %v %v %v", g, got.d[g], got.ds[g], got.o[g], want.d[g], want.ds[g], want.o[g])
			}
		}
	})
	if want.d[1] != 0 || want.d[3] != 0 || want.d[5] == want.d[5] || want.d[(cols+200)/32] == want.d[(cols+200)/32] {
		t.Errorf("edge groups: d = %v %v %v", want.d[1], want.d[3], want.d[5])
	}
}
