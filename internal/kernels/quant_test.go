package kernels

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fathom-llm/fathom/internal/half"
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
	if d := half.F16ToF32(uint16(b[32]) | uint16(b[33])<<8); math.Abs(float64(d-16.0/127)) > 1e-3 {
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
	if d, m := half.F16ToF32(uint16(q4[0])|uint16(q4[1])<<8), half.F16ToF32(uint16(q4[2])|uint16(q4[3])<<8); math.Abs(float64(d)-31.0/15) > 1e-2 || m != -16 {
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
				t.Run(fmt.Sprintf("%d tokens %dx%d rows %d-%d", s.tokens, s.rows, cols, s.lo, s.hi), func(t *testing.T) {
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
						// The same product from activations quantized beforehand, as rows of
						// a larger set, must be the same bit for bit.
						var qa QuantActs
						qa.Quantize(append(randRows(r, cols), x...), s.tokens+1, cols)
						view := qa.Slice(1, s.tokens+1)
						outQ, checkQ := withGuards(t, s.tokens*s.rows)
						if q4 {
							MatMulQ4RowsQ(outQ, wb, &view, s.rows, s.lo, s.hi)
						} else {
							MatMulQ8RowsQ(outQ, wb, &view, s.rows, s.lo, s.hi)
						}
						checkQ()
						for i := range out {
							if math.Float32bits(out[i]) != math.Float32bits(outQ[i]) {
								t.Fatalf("q4=%v cols=%d %+v: [%d] %v from quantized activations, %v", q4, cols, s, i, outQ[i], out[i])
							}
						}
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
				})
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
	want := func() *QuantActs {
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

// TestQuantActsReuse checks that products from activations quantized into reused memory
// allocate nothing.
func TestQuantActsReuse(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	r := rand.New(rand.NewPCG(21, 22))
	const rows, cols = 24, 1024 + 64
	w := randRows(r, rows*cols)
	q8, q4 := make([]byte, rows*Q8RowBytes(cols)), make([]byte, rows*Q4RowBytes(cols))
	if err := QuantizeQ8(q8, w, cols); err != nil {
		t.Fatal(err)
	}
	if err := QuantizeQ4(q4, w, cols); err != nil {
		t.Fatal(err)
	}
	a := new(QuantActs)
	out := make([]float32, 3*rows)
	for _, tokens := range []int{3, 1} {
		x := randRows(r, tokens*cols)
		a.Reset(3, cols) // grown once to the largest size
		n := testing.AllocsPerRun(5, func() {
			a.Quantize(x, tokens, cols)
			MatMulQ8RowsQ(out, q8, a, rows, 0, rows)
			MatMulQ4RowsQ(out, q4, a, rows, 8, rows)
		})
		if n != 0 {
			t.Errorf("%d tokens: %v allocations", tokens, n)
		}
	}
}

// TestQuantizeVectorExact checks that every implementation quantizes to the same bytes as the
// generic code, and fails the same way: random rows of every super-block shape, groups of
// zeros of either sign, halfway cases, large and tiny values, and non-finite ones.
func TestQuantizeVectorExact(t *testing.T) {
	r := rand.New(rand.NewPCG(29, 30))
	group := func(kind int) []float32 {
		v := make([]float32, GroupSize)
		switch kind {
		case 0: // random
			s := math.Exp(r.NormFloat64() * 3)
			for i := range v {
				v[i] = float32(r.NormFloat64() * s)
			}
		case 1: // zeros of both signs
			for i := range v {
				v[i] = float32(math.Copysign(0, float64(r.IntN(2)*2-1)))
			}
		case 2: // halfway cases for q8: scale 2⁻³, values (k+½)/8
			for i := range v {
				v[i] = (float32(r.IntN(254)-127) + 0.5) / 8
			}
			v[0] = 127.0 / 8
		case 3: // halfway cases for q4: minimum 0, scale 2⁻³
			for i := range v {
				v[i] = (float32(r.IntN(15)) + 0.5) / 8
			}
			v[0], v[1] = 0, 15.0/8
		case 4: // non-negative with zeros of both signs as the minimum
			for i := range v {
				v[i] = float32(r.Float64())
			}
			v[3], v[9] = float32(math.Copysign(0, -1)), 0
		case 5: // tiny values: subnormal or zero scales
			for i := range v {
				v[i] = float32(r.NormFloat64() * 1e-6)
			}
		case 6: // integers: exact scales
			for i := range v {
				v[i] = float32(r.IntN(255) - 127)
			}
		}
		return v
	}
	type result struct {
		b   []byte
		err error
	}
	run := func(q4 bool, src []float32, cols int) result {
		rb := Q8RowBytes(cols)
		f := QuantizeQ8
		if q4 {
			rb, f = Q4RowBytes(cols), QuantizeQ4
		}
		b := make([]byte, len(src)/cols*rb)
		for i := range b {
			b[i] = 0xa5 // every byte must be written
		}
		return result{b, f(b, src, cols)}
	}
	for trial := range 60 {
		cols := GroupSize * []int{1, 3, 4, 10, 16, 17, 32, 45}[trial%8]
		rows := 1 + r.IntN(3)
		src := make([]float32, 0, rows*cols)
		for range rows * cols / GroupSize {
			src = append(src, group(r.IntN(7))...)
		}
		switch trial % 10 {
		case 7:
			src[r.IntN(len(src))] = float32(math.NaN())
		case 8:
			src[r.IntN(len(src))] = float32(math.Inf(2*r.IntN(2) - 1))
		case 9:
			src[r.IntN(len(src))] = 1e7 // a q8 scale past float16's range
		}
		for _, q4 := range []bool{false, true} {
			want := func() result {
				defer useFeatures(features{})()
				return run(q4, src, cols)
			}()
			forEachImpl(t, func(t *testing.T) {
				got := run(q4, src, cols)
				if got.err != want.err {
					t.Fatalf("trial %d q4=%v: error %v, want %v", trial, q4, got.err, want.err)
				}
				if want.err == nil && !bytes.Equal(got.b, want.b) {
					i := 0
					for got.b[i] == want.b[i] {
						i++
					}
					t.Fatalf("trial %d q4=%v cols=%d: byte %d is %#x, want %#x", trial, q4, cols, i, got.b[i], want.b[i])
				}
			})
		}
	}
}

func BenchmarkQuantize(b *testing.B) {
	r := rand.New(rand.NewPCG(31, 32))
	const rows, cols = 64, 4096
	src := randRows(r, rows*cols)
	q8, q4 := make([]byte, rows*Q8RowBytes(cols)), make([]byte, rows*Q4RowBytes(cols))
	for _, q := range []string{"q8", "q4"} {
		b.Run(q, func(b *testing.B) {
			benchImpls(b, func(b *testing.B) {
				for b.Loop() {
					if q == "q8" {
						_ = QuantizeQ8(q8, src, cols)
					} else {
						_ = QuantizeQ4(q4, src, cols)
					}
				}
				b.ReportMetric(float64(len(src))*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gparams/s")
			})
		})
	}
}

func ExampleQuantActs() {
	const rows, cols = 2, 64
	w := make([]float32, rows*cols)
	for i := range w {
		w[i] = float32(i%cols) / cols
	}
	q := make([]byte, rows*Q8RowBytes(cols))
	if err := QuantizeQ8(q, w, cols); err != nil {
		fmt.Println(err)
		return
	}
	x := make([]float32, cols)
	x[cols-1] = 1
	// Quantize the activations once; every share of rows reuses them, allocating nothing.
	var xq QuantActs
	xq.Quantize(x, 1, cols)
	out := make([]float32, rows)
	MatMulQ8RowsQ(out, q, &xq, rows, 0, 1)
	MatMulQ8RowsQ(out, q, &xq, rows, 1, 2)
	fmt.Printf("%.2f %.2f\n", out[0], out[1])
	// Output: 0.98 0.98
}

// TestQuantActsColumns checks that a column view of quantized activations is what quantizing
// those columns alone makes: products of a column panel of quantized weights with the view and
// with the columns quantized on their own agree bit for bit.
func TestQuantActsColumns(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	const tokens, rows, cols = 3, 20, 2*PanelAlign + 2*GroupSize
	x := randRows(r, tokens*cols)
	var a QuantActs
	a.Quantize(x, tokens, cols)
	for _, span := range [][2]int{{0, PanelAlign}, {PanelAlign, cols}, {0, cols}, {PanelAlign, 2 * PanelAlign}, {2 * PanelAlign, cols}, {PanelAlign, PanelAlign}} {
		lo, hi := span[0], span[1]
		n := hi - lo
		view := a.Columns(lo, hi)
		if view.Tokens() != tokens || view.Cols() != n {
			t.Fatalf("%v: a view of %dx%d", span, view.Tokens(), view.Cols())
		}
		if n == 0 {
			continue
		}
		part := make([]float32, tokens*n)
		for tk := range tokens {
			copy(part[tk*n:(tk+1)*n], x[tk*cols+lo:tk*cols+hi])
		}
		var own QuantActs
		own.Quantize(part, tokens, n)
		w := randRows(r, rows*n)
		for _, q4 := range []bool{false, true} {
			rb, quant, mul := Q8RowBytes(n), QuantizeQ8, MatMulQ8RowsQ
			if q4 {
				rb, quant, mul = Q4RowBytes(n), QuantizeQ4, MatMulQ4RowsQ
			}
			wq := make([]byte, rows*rb)
			if err := quant(wq, w, n); err != nil {
				t.Fatal(err)
			}
			got, want := make([]float32, tokens*rows), make([]float32, tokens*rows)
			mul(got, wq, &view, rows, 0, rows)
			mul(want, wq, &own, rows, 0, rows)
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%v q4=%v: [%d] %v through the view, %v quantized alone", span, q4, i, got[i], want[i])
				}
			}
		}
	}
	for _, span := range [][2]int{{GroupSize, PanelAlign}, {0, PanelAlign + GroupSize}, {PanelAlign, cols + GroupSize}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Columns%v: no panic", span)
				}
			}()
			a.Columns(span[0], span[1])
		}()
	}
}

func TestPanelCols(t *testing.T) {
	for _, l1 := range []int{0, 32 << 10, 48 << 10, 64 << 10, 4 << 10} {
		w := newPanelWidths(l1)
		for i, width := range w {
			if width%PanelAlign != 0 || width <= 0 {
				t.Errorf("L1 %d: panel width %d", l1, width)
			}
			if act := []int{4, 1}[i]; l1 >= 32<<10 && width*act > l1/4 {
				t.Errorf("L1 %d: a panel of %d takes %d bytes of activations", l1, width, width*act)
			}
		}
	}
	for _, quantized := range []bool{false, true} {
		wide := 0
		for cols := 1; cols < 1<<16; cols += 97 {
			p := PanelCols(cols, quantized)
			if p != cols && (p%PanelAlign != 0 || p >= cols || 2*p >= cols) {
				t.Fatalf("PanelCols(%d, %v) = %d", cols, quantized, p)
			}
			if p != cols {
				wide++
			}
		}
		if wide == 0 {
			t.Errorf("quantized=%v: no width is split", quantized)
		}
	}
	if p := PanelCols(14336, false); p == 14336 && panelWidths[0] == 2048 {
		t.Errorf("a Mixtral expert's w2 rows stay whole")
	}
}
