package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/fathom-llm/fathom/internal/half"
)

// forEachImpl runs f once for every implementation set this CPU supports, the generic one
// first.
func forEachImpl(t *testing.T, f func(t *testing.T)) {
	for _, fs := range supportedFeatureSets() {
		restore := useFeatures(fs)
		t.Run(impl.name, f)
		restore()
	}
}

// guardVal marks the guard regions around outputs.
var guardVal = math.Float32frombits(0x7fc0beef)

// withGuards returns a slice of n elements with guard elements on both sides, and a check
// that the guards are intact.
func withGuards(t *testing.T, n int) ([]float32, func()) {
	const g = 40
	buf := make([]float32, n+2*g)
	for i := range buf {
		buf[i] = guardVal
	}
	return buf[g : g+n : g+n], func() {
		t.Helper()
		for i := range g {
			if math.Float32bits(buf[i]) != math.Float32bits(guardVal) || math.Float32bits(buf[g+n+i]) != math.Float32bits(guardVal) {
				t.Fatalf("write outside the output (guard %d clobbered)", i)
			}
		}
	}
}

type weights struct {
	f32  []float32 // the exact values
	bf16 []uint16  // the same values as bfloat16 (exactly representable)
	f16  []uint16  // the same values as float16
}

// randWeights returns n values exactly representable as both bfloat16 and float16, in memory
// that faults past its end.
func randWeights(t *testing.T, r *rand.Rand, n int) weights {
	w := weights{guarded[float32](t, n), guarded[uint16](t, n), guarded[uint16](t, n)}
	for i := range n {
		// 8 significant bits and a small exponent range fit both formats.
		v := float32(r.IntN(256)-128) / float32(int(1)<<r.IntN(8))
		w.f32[i] = v
		w.bf16[i] = half.F32ToBF16(v)
		w.f16[i] = half.F32ToF16(v)
		if half.BF16ToF32(w.bf16[i]) != v || half.F16ToF32(w.f16[i]) != v {
			t.Fatalf("%v is not exact", v)
		}
	}
	return w
}

func randVec(t *testing.T, r *rand.Rand, n int) []float32 {
	x := guarded[float32](t, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

// ref returns the float64 dot product of w and x and the sum of the magnitudes of the terms.
func ref(w, x []float32) (sum, mag float64) {
	for i := range w {
		p := float64(w[i]) * float64(x[i])
		sum += p
		mag += math.Abs(p)
	}
	return sum, mag
}

// close reports whether a float32 sum of n terms is within rounding of the exact one.
func close(got float32, want, mag float64, n int) bool {
	return math.Abs(float64(got)-want) <= 1e-6*math.Sqrt(float64(n+1))*mag+1e-30
}

var sizes = []int{0, 1, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 255, 1000, 4101}

// TestConversions checks the slice conversions and RoundBF16 of every implementation against
// half's.
func TestConversions(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	forEachImpl(t, func(t *testing.T) {
		for _, n := range sizes {
			src := guarded[uint16](t, n)
			for i := range src {
				src[i] = uint16(r.Uint32())
			}
			dst, check := withGuards(t, n)
			BF16ToF32Slice(dst, src)
			check()
			for i, v := range src {
				if math.Float32bits(dst[i]) != math.Float32bits(half.BF16ToF32(v)) {
					t.Fatalf("BF16ToF32Slice n=%d [%d]: %v want %v", n, i, dst[i], half.BF16ToF32(v))
				}
			}
			// Random bits, then ties, NaNs, infinities and subnormals among them.
			x := guarded[float32](t, n)
			for i := range x {
				bits := r.Uint32()
				switch i % 5 {
				case 1:
					bits = bits&^0xffff | 0x8000 // a tie
				case 3:
					bits |= 0x7f800000 // Inf or NaN
				case 4:
					bits &^= 0x7f800000 // zero or subnormal
				}
				x[i] = math.Float32frombits(bits)
			}
			want := make([]float32, n)
			for i, v := range x {
				want[i] = half.BF16ToF32(half.F32ToBF16(v))
			}
			for _, inPlace := range []bool{false, true} {
				out := dst
				if inPlace {
					out = x
				}
				RoundBF16(out, x)
				check()
				for i := range want {
					if math.Float32bits(out[i]) != math.Float32bits(want[i]) {
						t.Fatalf("RoundBF16 n=%d in place %v [%d]: %#x want %#x", n, inPlace, i, math.Float32bits(out[i]), math.Float32bits(want[i]))
					}
				}
			}
			F16ToF32Slice(dst, src)
			check()
			for i, v := range src {
				want := half.F16ToF32(v)
				if math.Float32bits(dst[i]) != math.Float32bits(want) && !(want != want && dst[i] != dst[i]) {
					t.Fatalf("F16ToF32Slice n=%d [%d] %#x: %v want %v", n, i, v, dst[i], want)
				}
			}
		}
	})
}

func TestDots(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		for _, n := range sizes {
			w := randWeights(t, r, n)
			x := randVec(t, r, n)
			want, mag := ref(w.f32, x)
			for name, got := range map[string]float32{
				"DotF32": DotF32(w.f32, x), "DotBF16": DotBF16(w.bf16, x), "DotF16": DotF16(w.f16, x),
			} {
				if !close(got, want, mag, n) {
					t.Errorf("%s n=%d: %v want %v", name, n, got, want)
				}
			}
		}
	})
}

func TestAxpy(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 4))
		for _, n := range sizes {
			x := randVec(t, r, n)
			y, check := withGuards(t, n)
			y0 := make([]float32, n)
			for i := range y {
				y[i] = float32(r.NormFloat64())
				y0[i] = y[i]
			}
			a := float32(r.NormFloat64())
			Axpy(a, x, y)
			check()
			for i := range y {
				want := float64(y0[i]) + float64(a)*float64(x[i])
				if math.Abs(float64(y[i])-want) > 2e-7*(math.Abs(float64(y0[i]))+math.Abs(float64(a*x[i]))) {
					t.Fatalf("Axpy n=%d [%d]: %v want %v", n, i, y[i], want)
				}
			}
		}
	})
}

// matVecCase runs the three matrix-vector products on one shape.
func TestMatVec(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(5, 6))
		for _, rows := range []int{0, 1, 3, 4, 5, 8, 9, 17} {
			for _, cols := range []int{0, 1, 7, 16, 33, 64, 100, 256, 1031} {
				w := randWeights(t, r, rows*cols)
				x := randVec(t, r, cols)
				for _, dt := range []string{"f32", "bf16", "f16"} {
					out, check := withGuards(t, rows)
					switch dt {
					case "f32":
						MatVecF32(out, w.f32, x, cols)
					case "bf16":
						MatVecBF16(out, w.bf16, x, cols)
					case "f16":
						MatVecF16(out, w.f16, x, cols)
					}
					check()
					for i := range rows {
						want, mag := ref(w.f32[i*cols:(i+1)*cols], x)
						if !close(out[i], want, mag, cols) {
							t.Fatalf("MatVec %s %dx%d row %d: %v want %v", dt, rows, cols, i, out[i], want)
						}
					}
				}
			}
		}
	})
}

// matMulShapes cover the one- and few-token paths, whole and partial tiles of the blocked
// loops (more than 4 tokens; more than 3 with rounded activations) and their cache-block
// edges (rows past one block of rows, columns past one block of columns and past the last
// whole line).
var matMulShapes = []struct{ tokens, rows, cols, lo, hi int }{
	{1, 5, 17, 0, 5}, {3, 9, 64, 0, 9}, {4, 8, 33, 4, 8}, {5, 1, 1, 0, 1}, {5, 33, 100, 0, 33},
	{13, 70, 300, 0, 70}, {12, 32, 64, 0, 32}, {25, 130, 97, 16, 112}, {30, 64, 129, 0, 64},
	{7, 20, 0, 0, 20}, {0, 4, 4, 0, 4}, {6, 10, 10, 5, 5}, {20, 45, 70, 0, 45}, {17, 80, 336, 8, 72},
	{40, 45, 70, 0, 45}, {37, 80, 336, 8, 72}, {33, 33, 65, 0, 33}, {38, 70, 4130, 4, 70},
}

func TestMatMul(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(7, 8))
		sc := new(Scratch) // reused by every shape, holding the last one's data
		for _, s := range matMulShapes {
			t.Run(fmt.Sprintf("%d tokens %dx%d rows %d-%d", s.tokens, s.rows, s.cols, s.lo, s.hi), func(t *testing.T) {
				w := randWeights(t, r, s.rows*s.cols)
				x := randVec(t, r, s.tokens*s.cols)
				xr := make([]float32, len(x))
				for i, v := range x {
					xr[i] = half.BF16ToF32(half.F32ToBF16(v))
				}
				for _, dt := range []string{"f32", "bf16", "f16", "bf16-rounded"} {
					out, check := withGuards(t, s.tokens*s.rows)
					switch dt {
					case "f32":
						MatMulF32Rows(out, w.f32, x, s.tokens, s.rows, s.cols, s.lo, s.hi)
					case "bf16":
						MatMulBF16Rows(out, w.bf16, x, s.tokens, s.rows, s.cols, s.lo, s.hi)
					case "f16":
						MatMulF16Rows(out, w.f16, x, s.tokens, s.rows, s.cols, s.lo, s.hi)
					case "bf16-rounded":
						MatMulBF16RoundedRows(out, w.bf16, x, s.tokens, s.rows, s.cols, s.lo, s.hi)
					}
					check()
					// The same product with its working memory in a reused Scratch.
					outS, checkS := withGuards(t, s.tokens*s.rows)
					switch dt {
					case "f32":
						sc.MatMulF32Rows(outS, w.f32, x, s.tokens, s.rows, s.cols, s.lo, s.hi)
					case "bf16":
						sc.MatMulBF16Rows(outS, w.bf16, x, s.tokens, s.rows, s.cols, s.lo, s.hi)
					case "f16":
						sc.MatMulF16Rows(outS, w.f16, x, s.tokens, s.rows, s.cols, s.lo, s.hi)
					case "bf16-rounded":
						sc.MatMulBF16RoundedRows(outS, w.bf16, x, s.tokens, s.rows, s.cols, s.lo, s.hi)
					}
					checkS()
					for i := range out {
						if math.Float32bits(out[i]) != math.Float32bits(outS[i]) {
							t.Fatalf("%s %+v: [%d] %v through a Scratch, %v", dt, s, i, outS[i], out[i])
						}
					}
					xs := x
					if dt == "bf16-rounded" {
						xs = xr
					}
					for tk := range s.tokens {
						for i := range s.rows {
							got := out[tk*s.rows+i]
							if i < s.lo || i >= s.hi {
								if math.Float32bits(got) != math.Float32bits(guardVal) {
									t.Fatalf("%s %+v: wrote row %d outside the range", dt, s, i)
								}
								continue
							}
							want, mag := ref(w.f32[i*s.cols:(i+1)*s.cols], xs[tk*s.cols:(tk+1)*s.cols])
							if !close(got, want, mag, s.cols) {
								t.Fatalf("%s %+v token %d row %d: %v want %v", dt, s, tk, i, got, want)
							}
						}
					}
				}
			})
		}
	})
}

// TestTokenTile checks how the blocked products split their tokens into tiles: every token
// once, and tiles of one token only where the two largest sizes cannot make up the count.
func TestTokenTile(t *testing.T) {
	for _, sizes := range [][]int{{5, 4, 1}, {6, 4, 1}, {6, 1}} {
		k := tiled[uint16, float32]{tileTokens: sizes}
		for tokens := 1; tokens <= 200; tokens++ {
			var ones int
			for left := tokens; left > 0; {
				n := sizes[k.tokenTile(left)]
				if n > left {
					t.Fatalf("%v, %d tokens: a tile of %d with %d left", sizes, tokens, n, left)
				}
				if n == 1 {
					ones++
				}
				left -= n
			}
			// The fewest tiles of one token: the least remainder of tokens less a sum of the
			// two largest sizes.
			want := tokens
			for a := 0; a*sizes[0] <= tokens; a++ {
				if len(sizes) == 2 {
					want = min(want, tokens-a*sizes[0])
					continue
				}
				for b := 0; a*sizes[0]+b*sizes[1] <= tokens; b++ {
					want = min(want, tokens-a*sizes[0]-b*sizes[1])
				}
			}
			if ones != want {
				t.Errorf("%v, %d tokens: %d tiles of one token, want %d", sizes, tokens, ones, want)
			}
		}
	}
}

// TestScratchAllocs checks that products through a Scratch allocate nothing once it has
// grown, for every way of multiplying: a few tokens, many, and many with rounded activations.
func TestScratchAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	r := rand.New(rand.NewPCG(23, 24))
	const rows, cols = 40, 72
	w := randWeights(t, r, rows*cols)
	out := make([]float32, 64*rows)
	sc := new(Scratch)
	for _, tokens := range []int{1, 5, 12, 40, 64} {
		x := randVec(t, r, tokens*cols)
		run := func() {
			sc.MatMulBF16Rows(out, w.bf16, x, tokens, rows, cols, 0, rows)
			sc.MatMulF16Rows(out, w.f16, x, tokens, rows, cols, 3, rows-5)
			sc.MatMulF32Rows(out, w.f32, x, tokens, rows, cols, 0, rows)
			sc.MatMulBF16RoundedRows(out, w.bf16, x, tokens, rows, cols, 16, rows)
		}
		run()
		if n := testing.AllocsPerRun(3, run); n != 0 {
			t.Errorf("%d tokens: %v allocations", tokens, n)
		}
	}
}

func TestMatMulWhole(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	const tokens, rows, cols = 6, 7, 40
	w := randWeights(t, r, rows*cols)
	x := randVec(t, r, tokens*cols)
	a := make([]float32, tokens*rows)
	b := make([]float32, tokens*rows)
	MatMulBF16(a, w.bf16, x, tokens, rows, cols)
	MatMulF32(b, w.f32, x, tokens, rows, cols)
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-4 {
			t.Fatalf("MatMulBF16 and MatMulF32 differ at %d: %v %v", i, a[i], b[i])
		}
	}
	MatMulF16(b, w.f16, x, tokens, rows, cols)
	MatMulBF16Rounded(a, w.bf16, x, tokens, rows, cols)
	for tk := range tokens {
		for i := range rows {
			// Rounding x to bfloat16 moves each term by at most 2^-9 of its magnitude.
			_, mag := ref(w.f32[i*cols:(i+1)*cols], x[tk*cols:(tk+1)*cols])
			if d := math.Abs(float64(a[tk*rows+i] - b[tk*rows+i])); d > mag/512 {
				t.Fatalf("MatMulBF16Rounded strays at %d,%d by %v", tk, i, d)
			}
		}
	}
}

func TestBadShapePanics(t *testing.T) {
	for _, f := range []func(){
		func() { MatMulBF16Rows(make([]float32, 4), make([]uint16, 4), make([]float32, 2), 2, 2, 1, 1, 3) },
		func() { MatMulF32(make([]float32, 3), make([]float32, 4), make([]float32, 4), 2, 2, 2) },
		func() { DotBF16(make([]uint16, 5), make([]float32, 4)) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		}()
	}
}

func Example() {
	w := []uint16{half.F32ToBF16(1), half.F32ToBF16(2), half.F32ToBF16(3), half.F32ToBF16(4)} // [2, 2], row-major
	x := []float32{10, 100}
	out := make([]float32, 2)
	MatVecBF16(out, w, x, 2)
	fmt.Println(out)
	// Output: [210 430]
}

func TestPeakLoops(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		if got := FMALoop(10); got <= 0 || got%20 != 0 {
			t.Errorf("FMALoop(10) = %d", got)
		}
		if FMALoop(0) != 0 || BF16DotLoop(-1) != 0 {
			t.Error("loops of no iterations count operations")
		}
		got := BF16DotLoop(10)
		if strings.Contains(impl.name, "bf16") != (got > 0) {
			t.Errorf("%s: BF16DotLoop(10) = %d", impl.name, got)
		}
	})
}

// TestTablesComplete checks that every table sets every entry: the generic one, and the one
// of each feature set, whether or not this CPU runs it (building a table runs no kernel).
func TestTablesComplete(t *testing.T) {
	all := features{avx2: true, avx512: true, bf16: true, vnni: true}
	tables := map[string]table{"generic": genericTable()}
	for _, f := range append(supportedFeatureSets(), all, features{avx2: true}, features{avx2: true, avx512: true}) {
		tab := newTable(f)
		tables[tab.name] = tab
	}
	if haveAsm && len(tables) < 4 {
		t.Errorf("%d tables, want generic, avx2, avx512 and avx512+bf16+vnni", len(tables))
	}
	for name, tab := range tables {
		v := reflect.ValueOf(tab)
		for i := range v.NumField() {
			f := v.Field(i)
			switch f.Kind() {
			case reflect.Func, reflect.Pointer:
				if f.IsNil() {
					t.Errorf("%s: %s is not set", name, v.Type().Field(i).Name)
				}
			case reflect.String:
				if f.String() == "" {
					t.Errorf("%s: %s is empty", name, v.Type().Field(i).Name)
				}
			default:
				t.Errorf("%s: %s is a %s, neither a function nor a name", name, v.Type().Field(i).Name, f.Kind())
			}
		}
	}
}

func TestXORWords(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(11, 12))
		for _, n := range sizes {
			p := guarded[uint64](t, n)
			var want uint64
			for i := range p {
				p[i] = r.Uint64()
				want ^= p[i]
			}
			if got := XORWords(p); got != want {
				t.Fatalf("n=%d: %#x want %#x", n, got, want)
			}
		}
	})
}
