package cuda

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/backend/backendtest"
	"github.com/fathom-llm/fathom/safetensors"
)

func TestToBF16(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 1))
	for _, dt := range []safetensors.DType{safetensors.BF16, safetensors.F16, safetensors.F32} {
		st, exact := backendtest.Weight(r, "w", dt, 3, 5, 7)
		dst := make([]uint16, 35)
		if _, err := toBF16(dst, st, nil); err != nil {
			t.Fatal(err)
		}
		for i, v := range exact {
			got := float64(math.Float32frombits(uint32(dst[i]) << 16))
			// Round to nearest: within half a bfloat16 unit in the last place (2^-8 relative).
			if math.Abs(got-v) > math.Abs(v)*(1.0/256) {
				t.Fatalf("%s element %d: %g from %g", dt, i, got, v)
			}
			if dt == safetensors.BF16 && got != v {
				t.Fatalf("bf16 element %d changed: %g from %g", i, got, v)
			}
		}
	}
}

func TestQuantizeInt8(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 2))
	const rows, cols, group = 3, 300, 128
	w := make([]float32, rows*cols)
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	for k := 128; k < 256; k++ { // a zero group
		w[cols+k] = 0
	}
	groups := (cols + group - 1) / group
	q, scales := make([]int8, rows*cols), make([]float32, rows*groups)
	quantizeInt8(q, scales, w, rows, cols, group)
	for rr := range rows {
		for k := range cols {
			s := scales[rr*groups+k/group]
			got, want := float32(q[rr*cols+k])*s, w[rr*cols+k]
			if math.Abs(float64(got-want)) > float64(s)/2*(1+1e-6) {
				t.Fatalf("(%d, %d): %g dequantised from %g with scale %g", rr, k, got, want, s)
			}
			if q[rr*cols+k] < -127 {
				t.Fatalf("(%d, %d): -128 used", rr, k)
			}
		}
	}
	if scales[groups+1] != 0 {
		t.Errorf("zero group has scale %g", scales[groups+1])
	}
	// The largest magnitude of each group maps to ±127.
	for g := range groups {
		var peak float32
		for k := g * group; k < min(cols, (g+1)*group); k++ {
			peak = max(peak, float32(math.Abs(float64(w[k]))))
		}
		if scales[g] != peak/127 {
			t.Errorf("group %d: scale %g, want %g", g, scales[g], peak/127)
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

func TestPlanAttention(t *testing.T) {
	for _, tc := range []struct{ n, kvHeads, maxLen, sms int }{
		{1, 8, 1, 132}, {1, 8, 4096, 132}, {1, 8, 33, 132}, {16, 8, 4096, 132}, {2048, 8, 2048, 132},
		{3, 1, 20, 108}, {1, 1, 100000, 132}, {0, 8, 0, 0},
	} {
		splits := planAttention(tc.n, tc.kvHeads, tc.maxLen, tc.sms)
		if splits < 1 {
			t.Errorf("%+v: %d splits", tc, splits)
		}
		if splits > 1 && (splits-1)*attentionMinTiles*attentionTile >= tc.maxLen {
			t.Errorf("%+v: %d splits leave one empty at the longest window", tc, splits)
		}
		if tc.n*tc.kvHeads >= attentionWaves*tc.sms && splits != 1 {
			t.Errorf("%+v: %d splits although the batch fills the device", tc, splits)
		}
	}
	if splits := planAttention(1, 8, 4096, 132); splits < 2 {
		t.Errorf("decode over 4096 positions is not split")
	}
}

func TestPlanMoE(t *testing.T) {
	for _, tc := range []struct{ n, topK, experts, hidden, inner int }{
		{1, 2, 8, 4096, 14336}, {2048, 2, 8, 4096, 14336}, {13, 3, 8, 16, 20}, {300, 2, 8, 64, 96},
	} {
		l := planMoE(tc.n, tc.topK, tc.experts, tc.hidden, tc.inner)
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

func TestShapes(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 3))
	st, _ := backendtest.Weight(r, "w", safetensors.F16, 1, 3, 5)
	if rows, cols, err := weightShape(st); err != nil || rows != 3 || cols != 5 {
		t.Errorf("weightShape = %d, %d, %v", rows, cols, err)
	}
	bad := []safetensors.Tensor{
		{Name: "i32", DType: safetensors.I32, Shape: []int{2}, Data: make([]byte, 8)},
		{Name: "short", DType: safetensors.F32, Shape: []int{2, 2}, Data: make([]byte, 12)},
		{Name: "3d", DType: safetensors.F32, Shape: []int{1, 1, 1}, Data: make([]byte, 4)},
		{Name: "empty", DType: safetensors.F32, Shape: []int{0, 4}},
	}
	for _, b := range bad {
		if _, _, err := weightShape(b); !errors.Is(err, backend.ErrShape) && !errors.Is(err, backend.ErrDType) {
			t.Errorf("weightShape(%s): %v", b.Name, err)
		}
	}
	mk := func(experts, hidden, inner int) backend.ExpertTensors {
		var e backend.ExpertTensors
		e.Gate, _ = backendtest.Weight(r, "gate", safetensors.BF16, 1, experts, hidden)
		for range experts {
			w1, _ := backendtest.Weight(r, "w1", safetensors.BF16, 1, inner, hidden)
			w2, _ := backendtest.Weight(r, "w2", safetensors.BF16, 1, hidden, inner)
			w3, _ := backendtest.Weight(r, "w3", safetensors.BF16, 1, inner, hidden)
			e.W1, e.W2, e.W3 = append(e.W1, w1), append(e.W2, w2), append(e.W3, w3)
		}
		return e
	}
	if E, H, I, err := expertShape(mk(4, 6, 10)); err != nil || E != 4 || H != 6 || I != 10 {
		t.Errorf("expertShape = %d, %d, %d, %v", E, H, I, err)
	}
	e := mk(4, 6, 10)
	e.W2[2], _ = backendtest.Weight(r, "w2", safetensors.BF16, 1, 6, 11)
	if _, _, _, err := expertShape(e); !errors.Is(err, backend.ErrShape) {
		t.Errorf("mismatched inner width: %v", err)
	}
	e = mk(4, 6, 10)
	e.W3 = e.W3[:3]
	if _, _, _, err := expertShape(e); !errors.Is(err, backend.ErrShape) {
		t.Errorf("an expert missing: %v", err)
	}
	if _, _, _, err := expertShape(mk(maxExperts+1, 2, 2)); !errors.Is(err, backend.ErrShape) {
		t.Errorf("too many experts: %v", err)
	}
}

func TestGroupSize(t *testing.T) {
	for _, tc := range []struct{ in, want int }{{0, DefaultGroupSize}, {64, 64}, {8, 8}, {12, -1}, {-8, -1}} {
		got, err := Options{GroupSize: tc.in}.groupSize()
		if tc.want < 0 {
			if !errors.Is(err, backend.ErrShape) {
				t.Errorf("group size %d: %v", tc.in, err)
			}
		} else if got != tc.want || err != nil {
			t.Errorf("group size %d: %d, %v", tc.in, got, err)
		}
	}
}
