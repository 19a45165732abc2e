package sampling

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fathom-llm/fathom/internal/kernels"
)

func TestExpNegAccuracy(t *testing.T) {
	worst := 0.0
	for x := float32(-87); x <= 0; x += 0.0007 {
		want := math.Exp(float64(x))
		got := float64(kernels.ExpNeg(x))
		worst = max(worst, math.Abs(got/want-1))
	}
	if worst > 3e-7 {
		t.Errorf("worst relative error %g, want <= 3e-7", worst)
	}
	if got := kernels.ExpNeg(0); got != 1 {
		t.Errorf("ExpNeg(0) = %v, want 1", got)
	}
	// Below ExpMin, -Inf and NaN count as 0.
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	x := []float32{0, -87.31, -100, -1e30, -inf, nan, -1}
	if got, want := sumExp(x, 0), 1+math.Exp(-1); math.Abs(got-want) > 1e-7 {
		t.Errorf("sumExp = %v, want %v", got, want)
	}
	c := []cand{{v: 0}, {v: -174.7}, {v: -inf}, {v: nan}, {v: -2}}
	if got, want := expCands(c, 0, 0.5, make([]float32, 2*expChunk)), 1+math.Exp(-1); math.Abs(got-want) > 1e-7 {
		t.Errorf("expCands = %v, want %v", got, want)
	}
	for i, want := range []float32{1, 0, 0, 0, kernels.ExpNeg(-1)} {
		if c[i].e != want {
			t.Errorf("expCands: e[%d] = %v, want %v", i, c[i].e, want)
		}
	}
}

// sortCands sorts c by rank, best first.
func sortCands(c []cand) {
	slices.SortFunc(c, func(a, b cand) int {
		return -cmp.Or(cmp.Compare(a.v, b.v), cmp.Compare(a.id, b.id))
	})
}

// TestNucleusMatchesSortedScan compares nucleus with the plain definition: sort by rank and
// keep each candidate whose preceding mass is below the target. The masses are multiples
// of 1/64 and the targets too, so that every sum is exact and the boundary cases (a
// preceding mass equal to the target) are decided exactly.
func TestNucleusMatchesSortedScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 2000 {
		n := 1 + rng.IntN(300)
		c := make([]cand, n)
		total := 0.0
		for i := range c {
			// Few distinct logits, so that ties are common.
			c[i] = cand{v: float32(rng.IntN(20)), id: int32(i)}
			c[i].e = float32(1+rng.IntN(64)) / 64
			total += float64(c[i].e)
		}
		target := float64(rng.IntN(int(total*64)+2)) / 64
		if trial%7 == 0 {
			target = 0
		}
		ref := slices.Clone(c)
		sortCands(ref)
		wantN, before := len(ref), 0.0
		for i, x := range ref {
			if before >= target && i > 0 {
				wantN = i
				break
			}
			before += float64(x.e)
		}
		want := map[int32]bool{}
		wantMass := 0.0
		for _, x := range ref[:wantN] {
			want[x.id] = true
			wantMass += float64(x.e)
		}
		got := slices.Clone(c)
		gotN, gotMass := nucleus(got, target)
		if gotN != wantN || gotMass != wantMass {
			t.Fatalf("trial %d: kept %d (mass %v), want %d (mass %v)", trial, gotN, gotMass, wantN, wantMass)
		}
		for _, x := range got[:gotN] {
			if !want[x.id] {
				t.Fatalf("trial %d: kept id %d, not in the reference set", trial, x.id)
			}
		}
	}
}

func TestTopKHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 500 {
		x := make([]float32, 1+rng.IntN(200))
		for i := range x {
			x[i] = float32(rng.IntN(30)) - 15
		}
		k := 1 + rng.IntN(len(x))
		s := slices.Clone(x)
		slices.Sort(s)
		h := make(kHeap, k)
		h.reset()
		for _, v := range x {
			h.offer(v)
		}
		if got, want := h[0], s[len(s)-k]; got != want {
			t.Fatalf("k-th largest (k=%d) = %v, want %v", k, got, want)
		}
	}
}

func TestPick(t *testing.T) {
	// 600 candidates across three blocks, every third with weight zero.
	c := make([]cand, 600)
	total := 0.0
	for i := range c {
		if i%3 != 0 {
			c[i].e = 0.5
		}
		c[i].id = int32(i)
		total += float64(c[i].e)
	}
	if total != 200 {
		t.Fatalf("total %v", total)
	}
	for _, tc := range []struct {
		r    float64
		want int
	}{
		{0, 1}, {0.49, 1}, {0.5, 2}, {1.0, 4}, {127.9, 383}, {128, 385}, {199.99, 599},
		{200, 599}, {1e9, 599}, // rounding past the end falls back to the last weighted one
	} {
		t.Run(fmt.Sprint(tc.r), func(t *testing.T) {
			if got := pick(c, tc.r); got != tc.want {
				t.Errorf("pick(%v) = %d, want %d", tc.r, got, tc.want)
			}
		})
	}
	// Trailing blocks without weight fall back to the last weighted candidate.
	d := slices.Clone(c)
	for i := 250; i < 600; i++ {
		d[i].e = 0
	}
	if got := pick(d, 1e9); got != 248 {
		t.Errorf("pick past the weighted blocks = %d, want 248", got)
	}
	if got := pick(make([]cand, 10), 0); got != -1 {
		t.Errorf("pick without weight = %d, want -1", got)
	}
}
