package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/fathom-llm/fathom/internal/half"
)

// invariantCase is one stored type's product for TestProductsBatchInvariant.
type invariantCase struct {
	name string
	// mul is the Scratch method MatMul*Rows of the type, over weights made by make.
	mul func(s *Scratch, out []float32, x []float32, tokens, rows, cols, lo, hi int)
}

// invariantCases returns the products of the three stored types over random weights of
// [rows, cols], every value of its type (not only values that all types share).
func invariantCases(r *rand.Rand, rows, cols int) []invariantCase {
	bf, f16 := make([]uint16, rows*cols), make([]uint16, rows*cols)
	f32 := make([]float32, rows*cols)
	for i := range f32 {
		v := float32(r.NormFloat64() * 0.05)
		f32[i], bf[i], f16[i] = v, half.F32ToBF16(v), half.F32ToF16(v)
	}
	// The bfloat16 weights again, 48 bytes into a cache line, as a mapped checkpoint's
	// tensors may start.
	at48 := lineOffset(rows*cols, 48)
	copy(at48, bf)
	return []invariantCase{
		{"bf16", func(s *Scratch, out, x []float32, tokens, rows, cols, lo, hi int) {
			s.MatMulBF16Rows(out, bf, x, tokens, rows, cols, lo, hi)
		}},
		{"bf16-at48", func(s *Scratch, out, x []float32, tokens, rows, cols, lo, hi int) {
			s.MatMulBF16Rows(out, at48, x, tokens, rows, cols, lo, hi)
		}},
		{"f16", func(s *Scratch, out, x []float32, tokens, rows, cols, lo, hi int) {
			s.MatMulF16Rows(out, f16, x, tokens, rows, cols, lo, hi)
		}},
		{"f32", func(s *Scratch, out, x []float32, tokens, rows, cols, lo, hi int) {
			s.MatMulF32Rows(out, f32, x, tokens, rows, cols, lo, hi)
		}},
	}
}

// TestProductsBatchInvariant checks that every product computes each output the same way
// whatever else it computes: a token's outputs in a product over many tokens, or over a
// range of rows, are bit for bit those of the product of that token alone over all rows
// (the property the prefix cache and seeded sampling rest on). Token counts cross every
// path (one token, a few, many) and its tiles' edges, columns cross whole lines and the
// blocks of columns.
func TestProductsBatchInvariant(t *testing.T) {
	type shape struct {
		rows, cols int
		tokens     []int
	}
	shapes := []shape{
		{37, 70, []int{2, 3, 4, 5, 7, 8, 9, 31, 32, 33, 34, 37, 40, 63, 64, 65, 80, 512}},
		{37, 4096, []int{2, 3, 5, 8, 17, 32, 33, 35, 40, 80, 512}},
		{21, 4100, []int{3, 6, 32, 33, 38, 80}},
		{13, 8736, []int{4, 9, 34, 41, 512}},
	}
	if testing.Short() || raceEnabled {
		shapes = shapes[:3]
		shapes[1].tokens = []int{3, 33, 40}
		shapes[2].tokens = []int{6, 38}
	}
	forEachImpl(t, func(t *testing.T) {
		for _, sh := range shapes {
			r := rand.New(rand.NewPCG(uint64(sh.rows), uint64(sh.cols)))
			most := 0
			for _, n := range sh.tokens {
				most = max(most, n)
			}
			x := make([]float32, most*sh.cols)
			for i := range x {
				x[i] = float32(r.NormFloat64())
			}
			for _, c := range invariantCases(r, sh.rows, sh.cols) {
				t.Run(fmt.Sprintf("%s/cols=%d", c.name, sh.cols), func(t *testing.T) {
					var s Scratch
					// Each token alone, over all rows.
					alone := make([]float32, most*sh.rows)
					for tok := range most {
						c.mul(&s, alone[tok*sh.rows:(tok+1)*sh.rows], x[tok*sh.cols:(tok+1)*sh.cols], 1, sh.rows, sh.cols, 0, sh.rows)
					}
					check := func(what string, out []float32, tokens, lo, hi int) {
						t.Helper()
						for tok := range tokens {
							for row := lo; row < hi; row++ {
								got, want := out[tok*sh.rows+row], alone[tok*sh.rows+row]
								if math.Float32bits(got) != math.Float32bits(want) {
									t.Fatalf("%s: token %d row %d: %v, alone %v", what, tok, row, got, want)
								}
							}
						}
					}
					for _, tokens := range sh.tokens {
						out := make([]float32, tokens*sh.rows)
						c.mul(&s, out, x, tokens, sh.rows, sh.cols, 0, sh.rows)
						check(fmt.Sprintf("%d tokens", tokens), out, tokens, 0, sh.rows)
						// Row ranges as workers take them, and odd ones.
						for _, rg := range [][2]int{{0, 16}, {16, sh.rows}, {1, 4}, {3, sh.rows - 2}, {sh.rows - 1, sh.rows}} {
							hi := min(rg[1], sh.rows)
							lo := min(rg[0], hi)
							clear(out)
							c.mul(&s, out, x, tokens, sh.rows, sh.cols, lo, hi)
							check(fmt.Sprintf("%d tokens, rows [%d, %d)", tokens, lo, hi), out, tokens, lo, hi)
						}
					}
					// A token among others at another place in the batch.
					if most > 5 {
						tokens := most - 5
						out := make([]float32, tokens*sh.rows)
						c.mul(&s, out, x[5*sh.cols:], tokens, sh.rows, sh.cols, 0, sh.rows)
						for tok := range tokens {
							for row := range sh.rows {
								if got, want := out[tok*sh.rows+row], alone[(tok+5)*sh.rows+row]; math.Float32bits(got) != math.Float32bits(want) {
									t.Fatalf("token %d of the batch from 5, row %d: %v, alone %v", tok, row, got, want)
								}
							}
						}
					}
				})
			}
		}
	})
}

// lineOffset returns n zeroed values starting off bytes (even) past the start of a cache line.
func lineOffset(n, off int) []uint16 {
	buf := make([]uint16, n+cacheLine)
	at := lineSkip(unsafe.Pointer(&buf[0]), off) / 2
	return buf[at : at+n]
}
