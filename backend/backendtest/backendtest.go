// Package backendtest is the conformance suite that every backend runs: each operation is
// checked against a plain float64 reference on random inputs, with weights in every stored
// dtype, ragged batches of several sequences, grouped-query attention and sliding windows.
package backendtest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/internal/reference"
	"github.com/fathom-llm/fathom/safetensors"
	"github.com/x448/float16"
)

// Tolerance is the largest relative error ‖out−ref‖/‖ref‖ an operation may show against
// the float64 reference.
const Tolerance = 2e-5

// Run runs the conformance suite at float32 tolerance; newBackend returns a fresh backend for
// each subtest, which the suite closes. RunOptions adapts it.
func Run(t *testing.T, newBackend func() backend.Backend) {
	RunOptions(t, newBackend, Options{})
}

var dtypes = []safetensors.DType{safetensors.BF16, safetensors.F16, safetensors.F32}

// Weight returns a random stored tensor of the given dtype and shape (values of standard
// deviation scale) and its exact values as float64.
func Weight(r *rand.Rand, name string, dtype safetensors.DType, scale float64, shape ...int) (safetensors.Tensor, []float64) {
	n := 1
	for _, d := range shape {
		n *= d
	}
	size := dtype.Size()
	data := make([]byte, n*size)
	exact := make([]float64, n)
	for i := range exact {
		f := float32(r.NormFloat64() * scale)
		switch dtype {
		case safetensors.BF16:
			bits := uint16(math.Float32bits(f) >> 16)
			binary.LittleEndian.PutUint16(data[2*i:], bits)
			exact[i] = float64(math.Float32frombits(uint32(bits) << 16))
		case safetensors.F16:
			h := float16.Fromfloat32(f)
			binary.LittleEndian.PutUint16(data[2*i:], h.Bits())
			exact[i] = float64(h.Float32())
		default:
			binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(f))
			exact[i] = float64(f)
		}
	}
	return safetensors.Tensor{Name: name, DType: dtype, Shape: shape, Data: data}, exact
}

// random returns n float32 values of standard deviation scale.
func random(r *rand.Rand, n int, scale float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(r.NormFloat64() * scale)
	}
	return out
}

func f64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

// RelErr returns ‖got−want‖/‖want‖ (or ‖got−want‖ when want is zero).
func RelErr(got []float32, want []float64) float64 {
	var num, den float64
	for i, w := range want {
		d := float64(got[i]) - w
		num += d * d
		den += w * w
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

func check(t *testing.T, what string, got []float32, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	if e := RelErr(got, want); !(e < Tolerance) {
		t.Errorf("%s: relative error %.3g (tolerance %g)", what, e, Tolerance)
	}
}

// must returns v, or a function failing the test with err: must(f())(t).
func must[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func ok(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// upload makes a rows×cols tensor holding values.
func upload(t *testing.T, b backend.Backend, rows, cols int, values []float32) backend.Tensor {
	t.Helper()
	x := must(b.NewTensor(rows, cols))(t)
	ok(t, b.Write(x, values))
	return x
}

func download(t *testing.T, b backend.Backend, x backend.Tensor) []float32 {
	t.Helper()
	out := make([]float32, x.Rows*x.Cols)
	ok(t, b.Read(out, x))
	return out
}

func testBind(t *testing.T, b backend.Backend) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, dt := range dtypes {
		st, _ := Weight(r, "w", dt, 1, 3, 5)
		w := must(b.Bind(st))(t)
		if w.Rows() != 3 || w.Cols() != 5 || w.DType() != dt {
			t.Errorf("%s: bound %dx%d %s", dt, w.Rows(), w.Cols(), w.DType())
		}
		st, _ = Weight(r, "v", dt, 1, 7)
		if w := must(b.Bind(st))(t); w.Rows() != 1 || w.Cols() != 7 {
			t.Errorf("%s 1-D: bound %dx%d", dt, w.Rows(), w.Cols())
		}
	}
	bad := []safetensors.Tensor{
		{Name: "i32", DType: safetensors.I32, Shape: []int{2}, Data: make([]byte, 8)},
		{Name: "short", DType: safetensors.F32, Shape: []int{2, 2}, Data: make([]byte, 12)},
		{Name: "3d", DType: safetensors.F32, Shape: []int{1, 1, 1}, Data: make([]byte, 4)},
		{Name: "empty", DType: safetensors.F32, Shape: []int{0, 4}},
	}
	for _, st := range bad {
		if _, err := b.Bind(st); err == nil {
			t.Errorf("Bind(%s) succeeded", st.Name)
		} else if !errors.Is(err, backend.ErrShape) && !errors.Is(err, backend.ErrDType) {
			t.Errorf("Bind(%s): %v, want ErrShape or ErrDType", st.Name, err)
		}
	}
}

func testWriteRead(t *testing.T, b backend.Backend) {
	r := rand.New(rand.NewPCG(1, 2))
	v := random(r, 12, 1)
	x := upload(t, b, 3, 4, v)
	check(t, "read back", download(t, b, x), f64(v))
	check(t, "head", download(t, b, x.Head(2)), f64(v[:8]))
	if err := b.Write(x, v[:5]); !errors.Is(err, backend.ErrShape) {
		t.Errorf("short Write: %v", err)
	}
	if err := b.Read(make([]float32, 3), x); !errors.Is(err, backend.ErrShape) {
		t.Errorf("short Read: %v", err)
	}
	if err := b.Read(make([]float32, 16), backend.Tensor{Buf: x.Buf, Rows: 4, Cols: 4}); !errors.Is(err, backend.ErrShape) {
		t.Errorf("Read past the buffer: %v", err)
	}
}

// newBatch makes a cache and prepares one batch holding tokens as a fresh sequence.
func newBatch(t *testing.T, b backend.Backend, ids []int) backend.Batch {
	t.Helper()
	c := must(b.NewCache(backend.CacheConfig{Layers: 1, KVHeads: 1, HeadDim: 2, BlockSize: 4, Blocks: 16}))(t)
	t.Cleanup(func() { c.Close() })
	pages := NewPages(c)
	seq := pages.NewSequence()
	toks := make([]backend.Token, len(ids))
	for i, id := range ids {
		toks[i] = backend.Token{Seq: seq, Pos: i, ID: id}
	}
	return must(pages.Prepare(toks))(t)
}

func testAddGather(t *testing.T, b backend.Backend) {
	r := rand.New(rand.NewPCG(1, 6))
	av, bv := random(r, 15, 1), random(r, 15, 1)
	a, x := upload(t, b, 5, 3, av), upload(t, b, 5, 3, bv)
	ok(t, b.Add(a, x))
	want := make([]float64, 15)
	for i := range want {
		want[i] = float64(av[i]) + float64(bv[i])
	}
	check(t, "add", download(t, b, a), want)
	rows := []int{4, 0, 4}
	g := must(b.NewTensor(3, 3))(t)
	ok(t, b.Gather(g, x, rows))
	var wantG []float64
	for _, row := range rows {
		wantG = append(wantG, f64(bv[row*3:row*3+3])...)
	}
	check(t, "gather", download(t, b, g), wantG)
	if err := b.Gather(g, x, []int{0, 5, 1}); !errors.Is(err, backend.ErrShape) {
		t.Errorf("gather of a missing row: %v", err)
	}
	if err := b.Add(a, x.Head(4)); !errors.Is(err, backend.ErrShape) {
		t.Errorf("add of different shapes: %v", err)
	}
}

func testRoPE(t *testing.T, b backend.Backend) {
	r := rand.New(rand.NewPCG(1, 7))
	const heads, hd, theta = 3, 8, 10000.0
	c := must(b.NewCache(backend.CacheConfig{Layers: 1, KVHeads: 1, HeadDim: hd, BlockSize: 4, Blocks: 16}))(t)
	defer c.Close()
	pages := NewPages(c)
	s0, s1 := pages.NewSequence(), pages.NewSequence()
	// Advance s0 by five positions so that the batch mixes positions.
	var first []backend.Token
	for p := range 5 {
		first = append(first, backend.Token{Seq: s0, Pos: p})
	}
	must(pages.Prepare(first))(t)
	toks := []backend.Token{{Seq: s1, Pos: 0}, {Seq: s0, Pos: 5}, {Seq: s1, Pos: 1}, {Seq: s0, Pos: 6}}
	bt := must(pages.Prepare(toks))(t)
	for _, th := range []float64{theta, 1e6} {
		xv := random(r, len(toks)*heads*hd, 1)
		x := upload(t, b, len(toks), heads*hd, xv)
		ok(t, b.RoPE(x, bt, hd, th))
		want := f64(xv)
		for i, tok := range toks {
			for h := range heads {
				ropeRef(want[(i*heads+h)*hd:(i*heads+h+1)*hd], tok.Pos, th)
			}
		}
		check(t, fmt.Sprint("rope theta ", th), download(t, b, x), want)
	}
	x := must(b.NewTensor(len(toks), heads*hd))(t)
	if err := b.RoPE(x, bt, 5, theta); !errors.Is(err, backend.ErrShape) {
		t.Errorf("odd head dim: %v", err)
	}
}

// refCache is the float64 reference's KV history: per layer and sequence, one row per
// position.
type refCache map[[2]int][][2][]float64

// The float64 references of the operations, shared with the reference forward pass.
var (
	matmulRef    = reference.MatMul
	ropeRef      = reference.RoPE
	attentionRef = reference.Attention
	moeRef       = reference.MoE
)

// interleave reorders tokens so that different sequences alternate, keeping each
// sequence's own order.
func interleave(toks []backend.Token) []backend.Token {
	bySeq := map[int][]backend.Token{}
	var order []int
	for _, tok := range toks {
		if _, ok := bySeq[tok.Seq]; !ok {
			order = append(order, tok.Seq)
		}
		bySeq[tok.Seq] = append(bySeq[tok.Seq], tok)
	}
	var out []backend.Token
	for len(out) < len(toks) {
		for _, s := range order {
			if q := bySeq[s]; len(q) > 0 {
				out = append(out, q[0])
				bySeq[s] = q[1:]
			}
		}
	}
	return out
}

func testCache(t *testing.T, b backend.Backend) {
	cfg := backend.CacheConfig{Layers: 1, KVHeads: 1, HeadDim: 2, BlockSize: 4, Blocks: 3}
	c := must(b.NewCache(cfg))(t)
	got := c.Config()
	if got.DType == "" || got.BlockBytes() != 2*4*2*int64(got.DType.Size()) {
		t.Errorf("Config() = %+v: %d bytes a block", got, got.BlockBytes())
	}
	toks := []backend.Token{{Seq: 0, Pos: 0}, {Seq: 0, Pos: 5}, {Seq: 1, Pos: 0}}
	if _, err := c.Prepare(toks, [][]int{{0, 1}, {0}}); err != nil {
		t.Errorf("two sequences sharing a block: %v", err)
	}
	for _, tc := range []struct {
		name   string
		toks   []backend.Token
		tables [][]int
	}{
		{"no table", []backend.Token{{Seq: 1, Pos: 0}}, [][]int{{0}}},
		{"negative sequence", []backend.Token{{Seq: -1, Pos: 0}}, [][]int{{0}}},
		{"negative position", []backend.Token{{Seq: 0, Pos: -1}}, [][]int{{0}}},
		{"past the table", []backend.Token{{Seq: 0, Pos: 4}}, [][]int{{0}}},
		{"released block", []backend.Token{{Seq: 0, Pos: 1}}, [][]int{{-1, 2}}},
		{"released block before", []backend.Token{{Seq: 0, Pos: 4}}, [][]int{{-1, 2}}},
		{"block outside the cache", []backend.Token{{Seq: 0, Pos: 0}}, [][]int{{3}}},
		{"bad entry", []backend.Token{{Seq: 0, Pos: 4}}, [][]int{{-2, 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.Prepare(tc.toks, tc.tables); !errors.Is(err, backend.ErrSequence) {
				t.Errorf("Prepare: %v, want ErrSequence", err)
			}
		})
	}
	ok(t, c.Close())
	if _, err := c.Prepare([]backend.Token{{Seq: 0, Pos: 0}}, [][]int{{0}}); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("Prepare after Close: %v", err)
	}
	for _, bad := range []backend.CacheConfig{
		{Layers: 1, KVHeads: 1, HeadDim: 2, BlockSize: 0, Blocks: 3},
		{Layers: 1, KVHeads: 1, HeadDim: 2, BlockSize: 4, Blocks: 0},
	} {
		if c, err := b.NewCache(bad); !errors.Is(err, backend.ErrShape) {
			t.Errorf("NewCache(%+v): %v, want ErrShape", bad, err)
			if err == nil {
				c.Close()
			}
		}
	}
	cfg.DType = safetensors.I32
	if c, err := b.NewCache(cfg); !errors.Is(err, backend.ErrDType) {
		t.Errorf("a cache of int32: %v, want ErrDType", err)
		if err == nil {
			c.Close()
		}
	}
}
