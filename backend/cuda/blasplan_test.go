package cuda

import (
	"fmt"
	"testing"
)

func TestMoECapacity(t *testing.T) {
	for _, tc := range []struct {
		offsets []int32
		tokens  int
		want    int
	}{
		{[]int32{0, 3, 3, 10}, 100, 16},
		{[]int32{0, 16, 20}, 100, 16},
		{[]int32{0, 17, 20}, 100, 32},
		{[]int32{0, 90, 180}, 100, 96},
		{[]int32{0, 99, 198}, 100, 100},
		{[]int32{0, 0, 0}, 100, 16},
		{[]int32{0, 0}, 1, 1},
	} {
		t.Run(fmt.Sprint(tc.offsets, tc.tokens), func(t *testing.T) {
			if got := moeCapacity(tc.offsets, tc.tokens); got != tc.want {
				t.Errorf("moeCapacity = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestPlanMoEBLAS checks that the buffers hold the cuBLASLt products' rows and, at the
// smallest capacity routing allows, the grouped GEMMs' operands of the same block.
func TestPlanMoEBLAS(t *testing.T) {
	for _, tc := range []struct{ tokens, topK, experts, hidden, inner int }{
		{5, 2, 8, 64, 96}, {300, 2, 8, 4096, 14336}, {7, 3, 4, 100, 33}, {64, 1, 64, 48, 40},
	} {
		for parts := 1; parts <= 2; parts++ {
			t.Run(fmt.Sprintf("%+v/parts=%d", tc, parts), func(t *testing.T) {
				pairs := tc.tokens * tc.topK
				// The fewest rows per expert: the pairs spread evenly.
				capacity := (pairs + tc.experts - 1) / tc.experts
				l := planMoEBLAS(tc.experts, capacity, parts, tc.hidden, tc.inner)
				rows := tc.experts * parts * capacity
				wide := pad8(max(tc.hidden, tc.inner))
				need := []struct {
					name        string
					off, bytes  int
					limit       int // the next buffer's offset
					groupedNeed int // bytes of the grouped GEMMs' operand kept here
				}{
					{"x", l.x, 2 * rows * wide, l.d1, 2 * parts * pairs * pad8(tc.hidden)},
					{"d1", l.d1, 4 * rows * wide, l.d3, 4 * pairs * tc.hidden},
					{"d3", l.d3, 4 * rows * pad8(tc.inner), l.bytes, 2 * parts * pairs * pad8(tc.inner)},
				}
				for _, b := range need {
					if b.off%scratchAlign != 0 {
						t.Errorf("%s at %d: not aligned", b.name, b.off)
					}
					if b.off+b.bytes > b.limit || b.off+b.groupedNeed > b.limit {
						t.Errorf("%s: %d bytes (grouped %d) from %d overrun %d", b.name, b.bytes, b.groupedNeed, b.off, b.limit)
					}
				}
			})
		}
	}
}
