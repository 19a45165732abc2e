package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestHelpers(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(17, 18))
		for _, n := range sizes {
			x := randVec(t, r, n)
			w := randVec(t, r, n)
			var ss float64
			for _, v := range x {
				ss += float64(v) * float64(v)
			}
			if got := SumSquares(x); !close(got, ss, ss, n) {
				t.Fatalf("SumSquares n=%d: %v want %v", n, got, ss)
			}
			dst, check := withGuards(t, n)
			RMSNorm(dst, x, w, 1e-5)
			check()
			rs := 1 / math.Sqrt(ss/float64(max(n, 1))+1e-5)
			for i := range dst {
				want := float64(x[i]) * rs * float64(w[i])
				if math.Abs(float64(dst[i])-want) > 1e-5*math.Abs(want)+1e-7 {
					t.Fatalf("RMSNorm n=%d [%d]: %v want %v", n, i, dst[i], want)
				}
			}
			SiLUMul(dst, x, w)
			check()
			for i := range dst {
				g := float64(x[i])
				want := g / (1 + math.Exp(-g)) * float64(w[i])
				if math.Abs(float64(dst[i])-want) > 1e-6*math.Abs(want)+1e-30 {
					t.Fatalf("SiLUMul n=%d [%d]: %v want %v", n, i, dst[i], want)
				}
			}
			copy(dst, x)
			Add(dst, w)
			check()
			for i := range dst {
				if dst[i] != x[i]+w[i] {
					t.Fatalf("Add n=%d [%d]: %v want %v", n, i, dst[i], x[i]+w[i])
				}
			}
			copy(dst, x)
			Scale(dst, 3)
			for i := range dst {
				if dst[i] != 3*x[i] {
					t.Fatalf("Scale [%d]", i)
				}
			}
			copy(dst, x)
			Softmax(dst)
			check()
			var sum float64
			for i := range dst {
				sum += float64(dst[i])
				if i > 0 && (x[i] > x[i-1]) != (dst[i] > dst[i-1]) && x[i] != x[i-1] {
					t.Fatalf("Softmax not monotone at %d", i)
				}
			}
			if n > 0 && math.Abs(sum-1) > 1e-5 {
				t.Fatalf("Softmax n=%d sums to %v", n, sum)
			}
		}
	})
}

func TestSoftmaxEdges(t *testing.T) {
	inf := float32(math.Inf(1))
	x := []float32{-inf, 0, 1000, 1000}
	Softmax(x)
	if x[0] != 0 || x[1] != 0 || x[2] != 0.5 || x[3] != 0.5 {
		t.Errorf("got %v", x)
	}
	y := []float32{-inf, -inf}
	Softmax(y)
	if y[0] == y[0] {
		t.Errorf("all -Inf: got %v, want NaN", y)
	}
	z := []float32{1, float32(math.NaN()), 2}
	Softmax(z)
	if z[0] == z[0] {
		t.Errorf("NaN input: got %v, want NaN", z)
	}
	g := []float32{-200, 200}
	SiLUMul(g, g, []float32{1, 1})
	if g[0] != 0 || g[1] != 200 {
		t.Errorf("SiLU saturation: %v", g)
	}
}

func ExampleSoftmax() {
	x := []float32{1, 2, 3}
	Softmax(x)
	fmt.Printf("%.4f\n", x)
	// Output: [0.0900 0.2447 0.6652]
}

func TestExpAccuracy(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		var xs []float32
		for v := -110.0; v < 92; v += 0.0137 {
			xs = append(xs, float32(v))
		}
		inf := float32(math.Inf(1))
		xs = append(xs, 0, -0.0, 88.72, 88.73, -87.33, -103.97, -103.2, inf, -inf, float32(math.NaN()), 1e-8, -1e-8)
		x := append([]float32(nil), xs...)
		impl.softmaxExp(x, 0)
		tiny := 0x1p-149 // subnormal results are right to the last bit...
		if impl.name == "avx2" {
			tiny = 0x1p-124 // ...but AVX2 flushes results below 2.5e-38 to zero
		}
		for i, v := range xs {
			want := math.Exp(float64(v))
			got := float64(x[i])
			switch {
			case v != v:
				if got == got {
					t.Errorf("exp(NaN) = %v", got)
				}
			case want > math.MaxFloat32:
				if !math.IsInf(got, 1) {
					t.Errorf("exp(%v) = %v, want +Inf", v, got)
				}
			case !(math.Abs(got-want) <= 3e-7*want+tiny):
				t.Errorf("exp(%v) = %v, want %v", v, got, want)
			}
		}
		// SiLU at the extremes.
		g := []float32{-inf, inf, -100, 100, 0, float32(math.NaN()), -88.8, 88.8, -20, 20, 1, -1, 2, 3, 4, 5}
		d := make([]float32, len(g))
		ones := make([]float32, len(g))
		for i := range ones {
			ones[i] = 1
		}
		SiLUMul(d, g, ones)
		for i, v := range g {
			want := float64(v) / (1 + math.Exp(-float64(v)))
			got := float64(d[i])
			if math.IsInf(float64(v), -1) {
				// The limit is 0; -Inf/Inf is NaN, as PyTorch has it too. Either will do.
				if got != 0 && got == got {
					t.Errorf("silu(-Inf) = %v", got)
				}
				continue
			}
			if v != v || math.IsInf(float64(v), 1) {
				if v != v && got == got || math.IsInf(float64(v), 1) && got == got && !math.IsInf(got, 1) {
					t.Errorf("silu(%v) = %v", v, got)
				}
				continue
			}
			if !(math.Abs(got-want) <= 3e-7*math.Abs(want)+1e-30) {
				t.Errorf("silu(%v) = %v, want %v", v, got, want)
			}
		}
	})
}

func TestMax(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(21, 22))
		if m := Max(nil); !math.IsInf(float64(m), -1) {
			t.Fatalf("Max(nil) = %v", m)
		}
		for _, n := range sizes[1:] {
			x := randVec(t, r, n)
			want := x[0]
			for _, v := range x {
				want = max(want, v)
			}
			if got := Max(x); got != want {
				t.Fatalf("n=%d: max %v, want %v", n, got, want)
			}
			for _, at := range []int{0, n / 2, n - 1} {
				y := append([]float32(nil), x...)
				y[at] = float32(math.NaN())
				if got := impl.maxF32(y); got == got {
					t.Fatalf("n=%d, NaN at %d: max %v", n, at, got)
				}
				y[at] = float32(math.Inf(1))
				if got := impl.maxF32(y); !math.IsInf(float64(got), 1) {
					t.Fatalf("n=%d, +Inf at %d: max %v", n, at, got)
				}
			}
		}
	})
}

// TestExpNeg checks ExpNeg against math.Exp over [ExpMin, 0].
func TestExpNeg(t *testing.T) {
	worst := 0.0
	for a := float32(0); a >= ExpMin; a = math.Nextafter32(a, -1)*1.0001 - 1e-9 {
		want := math.Exp(float64(a))
		e := math.Abs(float64(ExpNeg(a))-want) / want
		worst = max(worst, e)
	}
	if worst > 4e-7 {
		t.Errorf("ExpNeg: relative error %.3g", worst)
	}
}

// TestExpSum checks ExpSum: every implementation gives the generic values bit for bit and
// sums within float32 rounding of the float64 sum, with and without dst, for arguments below
// ExpMin, -Inf, NaN and +Inf among them.
func TestExpSum(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 26))
	for _, n := range []int{0, 1, 15, 16, 17, 255, 256, 257, 600, 4096 + 33} {
		x := guarded[float32](t, n)
		for i := range x {
			x[i] = float32(r.NormFloat64() * 20)
		}
		if n > 20 {
			x[3], x[5], x[7], x[9] = float32(math.Inf(-1)), float32(math.NaN()), -1e30, float32(math.Inf(1))
		}
		shift, scale := float32(30), float32(1.25)
		want := make([]float32, n)
		func() {
			defer useFeatures(features{})()
			ExpSum(want, x, shift, scale)
		}()
		var ref float64
		for i, v := range x {
			a := float64(float32(v-shift) * scale)
			e := 0.0
			switch {
			case a > 0:
				e = 1
			case a >= ExpMin:
				e = math.Exp(a)
			}
			ref += e
			if d := math.Abs(float64(want[i]) - e); d > 4e-7*e {
				t.Fatalf("n=%d [%d] e^%v = %v, want %v", n, i, a, want[i], e)
			}
		}
		forEachImpl(t, func(t *testing.T) {
			dst, check := withGuards(t, n)
			got := ExpSum(dst, x, shift, scale)
			check()
			for i := range dst {
				if math.Float32bits(dst[i]) != math.Float32bits(want[i]) {
					t.Fatalf("n=%d [%d]: %v, want %v", n, i, dst[i], want[i])
				}
			}
			if math.Abs(got-ref) > 1e-6*ref {
				t.Fatalf("n=%d: sum %v, want %v", n, got, ref)
			}
			if s := ExpSum(nil, x, shift, scale); s != got {
				t.Fatalf("n=%d: sum without dst %v, with %v", n, s, got)
			}
		})
	}
}

func BenchmarkExpSum(b *testing.B) {
	r := rand.New(rand.NewPCG(27, 28))
	x := make([]float32, 32002)
	for i := range x {
		x[i] = float32(r.NormFloat64() * 2.5)
	}
	dst := make([]float32, len(x))
	benchImpls(b, func(b *testing.B) {
		for b.Loop() {
			ExpSum(dst, x, 12, 1)
		}
		b.ReportMetric(float64(len(x))*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gvalues/s")
	})
}

func TestIndexAtLeast(t *testing.T) {
	r := rand.New(rand.NewPCG(35, 36))
	forEachImpl(t, func(t *testing.T) {
		for _, n := range []int{0, 1, 15, 16, 17, 100, 1000} {
			x := guarded[float32](t, n)
			for i := range x {
				x[i] = float32(r.NormFloat64())
			}
			if n > 10 {
				x[3], x[7] = float32(math.NaN()), float32(math.Inf(1))
			}
			for _, th := range []float32{float32(math.Inf(-1)), -0.5, 0, 1, 5} {
				dst := guarded[int32](t, n)
				got := dst[:IndexAtLeast(dst, x, th)]
				var want []int32
				for i, v := range x {
					if v >= th {
						want = append(want, int32(i))
					}
				}
				if !slices.Equal(got, want) {
					t.Fatalf("n=%d t=%v: %v, want %v", n, th, got, want)
				}
			}
		}
	})
}
