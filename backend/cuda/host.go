package cuda

import (
	"fmt"
	"math"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/internal/half"
	"github.com/fathom-llm/fathom/safetensors"
	"github.com/x448/float16"
)

// The host side of the kernels, free of cgo so that it is tested without a GPU: weight
// conversion and quantisation, batch packing, and the launch geometry (attention splits, MoE
// scratch layout). The constants
// mirror kernels/fathom_cuda.h (the cuda build checks that they agree).
const (
	gemvMaxRows       = 8   // FC_GEMV_MAX_ROWS: MatMul of at most this many rows uses the GEMV kernel
	gemmTileRows      = 128 // FC_GEMM_BM: rows of a GEMM tile
	maxExperts        = 64  // FC_MAX_EXPERTS
	maxHeadDim        = 256 // FC_MAX_HEAD_DIM
	attentionTile     = 32  // positions of one attention tile; a split is a multiple of it
	attentionMinTiles = 2   // ATT_MIN_TILES: the shortest split, in tiles
	moeGEMVTokens     = 4   // MoE of at most this many tokens streams the chosen experts (GEMV)
	scratchAlign      = 256 // byte alignment of the arrays carved from one scratch allocation
	convertChunk      = 1 << 22
	attentionWaves    = 2 // attention aims for this many blocks per multiprocessor
)

// rowsOf returns rows lo..hi of a 2-D (or 1-D, one row) tensor as a tensor of their own.
func rowsOf(t safetensors.Tensor, cols, lo, hi int) safetensors.Tensor {
	size := t.DType.Size()
	return safetensors.Tensor{Name: t.Name, DType: t.DType, Shape: []int{hi - lo, cols}, Data: t.Data[lo*cols*size : hi*cols*size]}
}

// toBF16 converts t's elements to bfloat16 bits in dst (len(dst) == elements).
func toBF16(dst []uint16, t safetensors.Tensor, scratch []float32) ([]float32, error) {
	if t.DType == safetensors.BF16 {
		for i := range dst {
			dst[i] = uint16(t.Data[2*i]) | uint16(t.Data[2*i+1])<<8
		}
		return scratch, nil
	}
	f, err := t.Float32s(scratch[:0])
	if err != nil {
		return scratch, err
	}
	if len(f) != len(dst) {
		return f, backend.Shapef("convert %q: %d values into %d", t.Name, len(f), len(dst))
	}
	for i, v := range f {
		dst[i] = half.F32ToBF16(v)
	}
	return f, nil
}

// quantizeInt8 quantises a rows×cols matrix (cols a multiple of group) to the q8 format of
// backend.Q8, symmetrically per group of group columns: the scale d is max|w|/127 over the
// group rounded to float16, q = round(w/d) clamped to [-127, 127] (a zero group has d = 0,
// q = 0). q has rows×cols elements, scales rows×cols/group. Values that are not finite, or a
// scale beyond float16, give an error.
func quantizeInt8(q []int8, scales []float32, w []float32, rows, cols, group int) error {
	groups := cols / group
	for r := range rows {
		row := w[r*cols : (r+1)*cols]
		for g := range groups {
			v := row[g*group : (g+1)*group]
			var peak float32
			for _, x := range v {
				if x != x || math.IsInf(float64(x), 0) {
					return fmt.Errorf("row %d: value %g", r, x)
				}
				peak = max(peak, float32(math.Abs(float64(x))))
			}
			h := float16.Fromfloat32(peak / 127)
			if h.IsInf(0) {
				return fmt.Errorf("row %d: magnitude %g beyond float16 scales", r, peak)
			}
			d := h.Float32()
			scales[r*groups+g] = d
			inv := float32(0)
			if d != 0 {
				inv = 1 / d
			}
			for k, x := range v {
				q[r*cols+g*group+k] = int8(max(-127, min(127, math.Round(float64(x*inv)))))
			}
		}
	}
	return nil
}

// batchLayout gives the offsets, in int32s, of a packed batch's arrays.
type batchLayout struct {
	ids, pos, slot, tableOff, tables, size int
}

// packBatch packs a prepared batch for the device: per token its id (-1 when it does not fit
// an int32; Embed rejects it before any kernel), position, cache slot and the offset of its
// sequence's block table in the tables array; then the block tables of the batch's sequences,
// each once. table returns a sequence's block table.
func packBatch(dst []int32, tokens []backend.Token, blockSize int, table func(seq int) []int) ([]int32, batchLayout) {
	n := len(tokens)
	l := batchLayout{ids: 0, pos: n, slot: 2 * n, tableOff: 3 * n, tables: 4 * n}
	dst = append(dst[:0], make([]int32, 4*n)...)
	seen := map[int]int32{}
	for i, t := range tokens {
		id := int32(-1)
		if t.ID >= 0 && t.ID <= math.MaxInt32 {
			id = int32(t.ID)
		}
		tab := table(t.Seq)
		dst[l.ids+i] = id
		dst[l.pos+i] = int32(t.Pos)
		dst[l.slot+i] = int32(tab[t.Pos/blockSize]*blockSize + t.Pos%blockSize)
		off, ok := seen[t.Seq]
		if !ok {
			off = int32(len(dst) - l.tables)
			seen[t.Seq] = off
			for _, b := range tab {
				dst = append(dst, int32(b))
			}
		}
		dst[l.tableOff+i] = off
	}
	l.size = len(dst)
	return dst, l
}

// attentionSplits returns the number of splits of each token's window (at most maxLen
// positions): enough blocks to fill the device when the batch alone does not (decode), and
// no more than chunks of attentionMinTiles tiles of maxLen. The kernel cuts each token's
// actual window into that many chunks.
func attentionSplits(n, kvHeads, maxLen, sms int) (splits int) {
	blocks := max(n*kvHeads, 1)
	want := attentionWaves * max(sms, 1)
	if blocks >= want {
		return 1
	}
	minChunk := attentionMinTiles * attentionTile
	return max(1, min((want+blocks-1)/blocks, (max(maxLen, 1)+minChunk-1)/minChunk))
}

// moeLayout is the scratch memory of one MoE call: byte offsets of its arrays in one
// allocation of bytes bytes.
type moeLayout struct {
	choice, gain, offsets, sortedToken, sortedGain, inv, tiles, tileCount, xa, h, y int
	maxTiles, bytes                                                                 int
}

// moeScratchLayout lays out the scratch of an MoE call over n tokens. The tile list holds at most
// Σ_e ceil(count_e/tile) <= pairs/tile + experts tiles.
func moeScratchLayout(n, topK, experts, hidden, inner int) moeLayout {
	pairs := n * topK
	var l moeLayout
	l.maxTiles = (pairs+gemmTileRows-1)/gemmTileRows + experts
	at := 0
	take := func(bytes int) int {
		off := at
		at += (bytes + scratchAlign - 1) / scratchAlign * scratchAlign
		return off
	}
	l.choice = take(4 * pairs)
	l.gain = take(4 * pairs)
	l.offsets = take(4 * (experts + 1))
	l.sortedToken = take(4 * pairs)
	l.sortedGain = take(4 * pairs)
	l.inv = take(4 * pairs)
	l.tiles = take(8 * l.maxTiles)
	l.tileCount = take(4)
	// The GEMMs' operands as bfloat16 pairs (hi, lo) of rows padded to a multiple of 8; h is
	// float32 for the GEMVs.
	l.xa = take(4 * pairs * pad8(hidden))
	l.h = take(4 * pairs * pad8(inner))
	l.y = take(4 * pairs * hidden)
	l.bytes = at
	return l
}

// pad8 rounds k up to a multiple of 8 (fc_pad8).
func pad8(k int) int { return (k + 7) &^ 7 }

// ropeInverseFrequencies returns theta^(-2i/headDim) for i < headDim/2, rounded as the
// reference rounds them (the exponent and the power in float32).
func ropeInverseFrequencies(headDim int, theta float64) []float32 {
	inv := make([]float32, headDim/2)
	for i := range inv {
		inv[i] = float32(1 / float64(float32(math.Pow(theta, float64(float32(2*i)/float32(headDim))))))
	}
	return inv
}
