package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/backend/backendtest"
	"github.com/fathom-llm/fathom/safetensors"
	"github.com/x448/float16"
)

func TestToBF16(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 1))
	for _, dt := range []safetensors.DType{safetensors.BF16, safetensors.F16, safetensors.F32} {
		t.Run(fmt.Sprint(dt), func(t *testing.T) {
			st, exact := backendtest.Weight(r, "w", dt, 3, 5, 7)
			dst := make([]uint16, 35)
			if _, err := toBF16(dst, st, nil); err != nil {
				t.Fatal(err)
			}
			for i, v := range exact {
				got := float64(math.Float32frombits(uint32(dst[i]) << 16))
				// Round to nearest: within half a bfloat16 unit in the last place (2^-8 relative).
				if math.Abs(got-v) > math.Abs(v)*(1.0/256) {
					t.Fatalf("element %d: %g from %g", i, got, v)
				}
				if dt == safetensors.BF16 && got != v {
					t.Fatalf("bf16 element %d changed: %g from %g", i, got, v)
				}
			}
		})
	}
}

func TestQuantizeInt8(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 2))
	const rows, cols, group = 3, 320, backend.QuantGroup
	w := make([]float32, rows*cols)
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	for k := 128; k < 160; k++ { // a zero group
		w[cols+k] = 0
	}
	const groups = cols / group
	q, scales := make([]int8, rows*cols), make([]float32, rows*groups)
	if err := quantizeInt8(q, scales, w, rows, cols, group); err != nil {
		t.Fatal(err)
	}
	for rr := range rows {
		for k := range cols {
			s := scales[rr*groups+k/group]
			got, want := float32(q[rr*cols+k])*s, w[rr*cols+k]
			// Half a step, and what rounding the scale to float16 moves the largest value.
			if math.Abs(float64(got-want)) > float64(s)/2*(1+1e-6)+127*float64(s)/2048 {
				t.Fatalf("(%d, %d): %g dequantised from %g with scale %g", rr, k, got, want, s)
			}
			if q[rr*cols+k] < -127 {
				t.Fatalf("(%d, %d): -128 used", rr, k)
			}
		}
	}
	if scales[groups+128/group] != 0 {
		t.Errorf("zero group has scale %g", scales[groups+128/group])
	}
	// The scale of each group is its largest magnitude over 127, rounded to float16.
	for g := range groups {
		var peak float32
		for k := g * group; k < (g+1)*group; k++ {
			peak = max(peak, float32(math.Abs(float64(w[k]))))
		}
		if want := float16.Fromfloat32(peak / 127).Float32(); scales[g] != want {
			t.Errorf("group %d: scale %g, want %g", g, scales[g], want)
		}
	}
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(-1)), 1e10} {
		v := make([]float32, group)
		v[3] = bad
		if err := quantizeInt8(make([]int8, group), make([]float32, 1), v, 1, group, group); err == nil {
			t.Errorf("value %g quantised", bad)
		}
	}
}

func TestPackBatch(t *testing.T) {
	tables := map[int][]int{7: {5, 2, 9}, 3: {1}, 4: {0, 8}}
	toks := []backend.Token{
		{Seq: 7, Pos: 33, ID: 11}, {Seq: 3, Pos: 0, ID: 12}, {Seq: 7, Pos: 34, ID: 13}, {Seq: 4, Pos: 16, ID: -5},
		{Seq: 4, Pos: 17, ID: 1 << 40},
	}
	const bs = 16
	packed, l := packBatch(nil, toks, bs, func(seq int) []int { return tables[seq] })
	if l.size != len(packed) || l.tables != 4*len(toks) || len(packed) != l.tables+3+1+2 {
		t.Fatalf("layout %+v for %d values", l, len(packed))
	}
	for i, tok := range toks {
		wantID := int32(tok.ID)
		if tok.ID < 0 || tok.ID > math.MaxInt32 {
			wantID = -1
		}
		if packed[l.ids+i] != wantID || packed[l.pos+i] != int32(tok.Pos) {
			t.Errorf("token %d: id %d pos %d", i, packed[l.ids+i], packed[l.pos+i])
		}
		tab := packed[l.tables+int(packed[l.tableOff+i]):]
		// The device computes a position's slot from the packed table exactly so.
		for _, p := range []int{tok.Pos, 0} {
			if got, want := int(tab[p/bs])*bs+p%bs, tables[tok.Seq][p/bs]*bs+p%bs; got != want {
				t.Errorf("token %d: slot of position %d is %d, want %d", i, p, got, want)
			}
		}
		if want := tables[tok.Seq][tok.Pos/bs]*bs + tok.Pos%bs; int(packed[l.slot+i]) != want {
			t.Errorf("token %d: slot %d, want %d", i, packed[l.slot+i], want)
		}
	}
	// Reuse of the destination.
	again, _ := packBatch(packed, toks[:1], bs, func(seq int) []int { return tables[seq] })
	if len(again) != 4+3 {
		t.Errorf("repacked into %d values", len(again))
	}
}

func TestAttentionSplits(t *testing.T) {
	for _, tc := range []struct{ n, kvHeads, maxLen, sms int }{
		{1, 8, 1, 132}, {1, 8, 4096, 132}, {1, 8, 33, 132}, {16, 8, 4096, 132}, {2048, 8, 2048, 132},
		{3, 1, 20, 108}, {1, 1, 100000, 132}, {0, 8, 0, 0},
	} {
		t.Run(fmt.Sprintf("n=%d,kv=%d,len=%d,sms=%d", tc.n, tc.kvHeads, tc.maxLen, tc.sms), func(t *testing.T) {
			splits := attentionSplits(tc.n, tc.kvHeads, tc.maxLen, tc.sms)
			if splits < 1 {
				t.Errorf("%d splits", splits)
			}
			if splits > 1 && (splits-1)*attentionMinTiles*attentionTile >= tc.maxLen {
				t.Errorf("%d splits leave one empty at the longest window", splits)
			}
			if tc.n*tc.kvHeads >= attentionWaves*tc.sms && splits != 1 {
				t.Errorf("%d splits although the batch fills the device", splits)
			}
		})
	}
	if splits := attentionSplits(1, 8, 4096, 132); splits < 2 {
		t.Errorf("decode over 4096 positions is not split")
	}
}

func TestMoEScratchLayout(t *testing.T) {
	for _, tc := range []struct{ n, topK, experts, hidden, inner int }{
		{1, 2, 8, 4096, 14336}, {2048, 2, 8, 4096, 14336}, {13, 3, 8, 16, 20}, {300, 2, 8, 64, 96},
	} {
		t.Run(fmt.Sprintf("n=%d,top=%d,experts=%d,hidden=%d,inner=%d", tc.n, tc.topK, tc.experts, tc.hidden, tc.inner), func(t *testing.T) {
			l := moeScratchLayout(tc.n, tc.topK, tc.experts, tc.hidden, tc.inner)
			pairs := tc.n * tc.topK
			// Arrays in order, aligned, not overlapping, inside the allocation.
			spans := []struct{ off, bytes int }{
				{l.choice, 4 * pairs}, {l.gain, 4 * pairs}, {l.offsets, 4 * (tc.experts + 1)}, {l.sortedToken, 4 * pairs},
				{l.sortedGain, 4 * pairs}, {l.inv, 4 * pairs}, {l.tiles, 8 * l.maxTiles}, {l.tileCount, 4},
				{l.xa, 4 * pairs * pad8(tc.hidden)}, {l.h, 4 * pairs * pad8(tc.inner)}, {l.y, 4 * pairs * tc.hidden},
			}
			end := 0
			for i, s := range spans {
				if s.off%scratchAlign != 0 || s.off < end {
					t.Errorf("%+v: array %d at %d (previous ends at %d)", tc, i, s.off, end)
				}
				end = s.off + s.bytes
			}
			if end > l.bytes {
				t.Errorf("%+v: arrays end at %d beyond %d bytes", tc, end, l.bytes)
			}
			// The tile list bound holds for the worst distribution of pairs over experts.
			worst := 0
			for e := range tc.experts {
				c := pairs / tc.experts
				if e < pairs%tc.experts {
					c++
				}
				worst += (c + gemmTileRows - 1) / gemmTileRows
			}
			if worst > l.maxTiles {
				t.Errorf("%+v: %d tiles needed, room for %d", tc, worst, l.maxTiles)
			}
		})
	}
}

func TestRopeInverseFrequencies(t *testing.T) {
	inv := ropeInverseFrequencies(128, 1e6)
	if len(inv) != 64 || inv[0] != 1 {
		t.Fatalf("%d frequencies, first %g", len(inv), inv[0])
	}
	for i, v := range inv {
		want := math.Pow(1e6, -float64(2*i)/128)
		if math.Abs(float64(v)-want) > want*1e-6 {
			t.Errorf("frequency %d: %g, want %g", i, v, want)
		}
	}
}
