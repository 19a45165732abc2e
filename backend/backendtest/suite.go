package backendtest

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/x448/float16"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/safetensors"
)

// Options adapt the conformance suite to backends that compute in reduced precision or store
// fewer quantizations, and add larger cases that reach kernels the small cases do not (tiled
// GEMMs, several GEMM tiles per expert, attention split over long sequences).
type Options struct {
	// Tolerance bounds the relative error of the operations whose results carry the
	// backend's precision: Embed, RMSNorm, MatMul, Attention and MoE. 0 means Tolerance.
	// Bind, Write/Read, Add/Gather, RoPE and the cache are held to Tolerance regardless.
	Tolerance float64
	// Large adds larger shapes: MatMul of up to 200 rows, MoE of 300 tokens, attention over
	// sequences of several hundred positions, and MatMul and MoE with rows of Wide values.
	Large bool
	// Quantizations are those a backend.Quantizer stores (nil: Q8 and Q4); the others must
	// fail with backend.ErrQuantization.
	Quantizations []backend.Quantization
}

// Wide is the row length of the suite's wide weights: more values than a cache-sized block of
// columns, a whole number of quantization super-blocks and one group beyond.
const Wide = 17*512 + backend.QuantGroup

// BF16Tolerance suits backends that keep weights, GEMM inputs or cached keys and values in
// bfloat16 (8 significant bits) and accumulate in float32.
const BF16Tolerance = 1e-2

// RunOptions runs the conformance suite with the given options; newBackend returns a fresh
// backend for each subtest, which the suite closes. The cases of the optional interfaces
// (backend.Quantizer, backend.QuantizedBinder, backend.ResidualNormer,
// backend.StepRecorder) run where the backend implements them and skip otherwise.
func RunOptions(t *testing.T, newBackend func() backend.Backend, o Options) {
	tol := o.Tolerance
	if tol == 0 {
		tol = Tolerance
	}
	quants := o.Quantizations
	if quants == nil {
		quants = []backend.Quantization{backend.Q8, backend.Q4}
	}
	s := suite{tol: tol, large: o.Large, quants: quants}
	tests := []struct {
		name string
		f    func(*testing.T, backend.Backend)
	}{
		{"Bind", testBind},
		{"WriteRead", testWriteRead},
		{"Embed", s.embed},
		{"RMSNorm", s.rmsNorm},
		{"MatMul", s.matMul},
		{"AddGather", testAddGather},
		{"RoPE", testRoPE},
		{"Attention", s.attention},
		{"SharedBlocks", s.sharedBlocks},
		{"Cache", testCache},
		{"MoE", s.moe},
		{"Quantized", s.quantized},
		{"QuantizedBinder", s.quantizedBinder},
		{"ResidualNormer", s.residualNorm},
		{"StepRecorder", s.step},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend()
			defer func() {
				if err := b.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}()
			tc.f(t, b)
		})
	}
}

// suite holds the options of a run.
type suite struct {
	tol    float64
	large  bool
	quants []backend.Quantization
}

func (s suite) check(t *testing.T, what string, got []float32, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	e := RelErr(got, want)
	if !(e < s.tol) {
		t.Errorf("%s: relative error %.3g (tolerance %g)", what, e, s.tol)
	} else if s.tol != Tolerance {
		t.Logf("%s: relative error %.3g", what, e)
	}
}

func (s suite) embed(t *testing.T, b backend.Backend) {
	r := rand.New(rand.NewPCG(1, 3))
	for _, dt := range dtypes {
		t.Run(fmt.Sprint(dt), func(t *testing.T) {
			st, table := Weight(r, "embed", dt, 1, 10, 6)
			w := must(b.Bind(st))(t)
			ids := []int{3, 0, 9, 3}
			bt := newBatch(t, b, ids)
			dst := must(b.NewTensor(4, 6))(t)
			ok(t, b.Embed(dst, w, bt))
			var want []float64
			for _, id := range ids {
				want = append(want, table[id*6:(id+1)*6]...)
			}
			s.check(t, "embed", download(t, b, dst), want)
			if err := b.Embed(dst, w, newBatch(t, b, []int{1, 2, 10, 0})); !errors.Is(err, backend.ErrShape) {
				t.Errorf("id outside the table: %v", err)
			}
		})
	}
}

// normShapes are the (rows, width) of the RMSNorm cases.
var normShapes = [][2]int{{5, 37}, {3, 4096}}

// rmsNormRef normalises the rows of x (of len(gain) values) in float64.
func rmsNormRef(x, gain []float64, eps float64) []float64 {
	d := len(gain)
	out := make([]float64, len(x))
	for i := 0; i < len(x); i += d {
		var ss float64
		for _, v := range x[i : i+d] {
			ss += v * v
		}
		sc := 1 / math.Sqrt(ss/float64(d)+eps)
		for j, g := range gain {
			out[i+j] = x[i+j] * sc * g
		}
	}
	return out
}

func (s suite) rmsNorm(t *testing.T, b backend.Backend) {
	r := rand.New(rand.NewPCG(1, 4))
	const eps = 1e-5
	for _, dt := range dtypes {
		for _, shape := range normShapes {
			n, d := shape[0], shape[1]
			t.Run(fmt.Sprintf("%s/%dx%d", dt, n, d), func(t *testing.T) {
				st, gain := Weight(r, "norm", dt, 1, d)
				w := must(b.Bind(st))(t)
				xv := random(r, n*d, 3)
				x := upload(t, b, n, d, xv)
				dst := must(b.NewTensor(n, d))(t)
				ok(t, b.RMSNorm(dst, x, w, eps))
				s.check(t, "rmsnorm", download(t, b, dst), rmsNormRef(f64(xv), gain, eps))
				if err := b.RMSNorm(dst, x.Head(n-1), w, eps); !errors.Is(err, backend.ErrShape) {
					t.Errorf("row mismatch: %v", err)
				}
			})
		}
	}
}

func (s suite) matMul(t *testing.T, b backend.Backend) {
	r := rand.New(rand.NewPCG(1, 5))
	shapes := [][3]int{{1, 33, 70}, {7, 64, 100}, {3, 5, 1}, {2, 128, 17}}
	if s.large {
		shapes = append(shapes, [3]int{9, 64, 100}, [3]int{65, 33, 70}, [3]int{130, 72, 200}, [3]int{200, 256, 129}, [3]int{17, 5, 1},
			[3]int{1, Wide, 24}, [3]int{3, Wide, 24}, [3]int{40, Wide, 24})
	}
	for _, dt := range dtypes {
		for _, shape := range shapes {
			n, in, out := shape[0], shape[1], shape[2]
			t.Run(fmt.Sprintf("%s/n=%d,in=%d,out=%d", dt, n, in, out), func(t *testing.T) {
				st, wv := Weight(r, "w", dt, 0.2, out, in)
				w := must(b.Bind(st))(t)
				xv := random(r, n*in, 1)
				x := upload(t, b, n, in, xv)
				dst := must(b.NewTensor(n, out))(t)
				ok(t, b.MatMul(dst, x, w))
				s.check(t, "matmul", download(t, b, dst), matmulRef(f64(xv), n, wv, out))
			})
		}
	}
	st, _ := Weight(r, "w", safetensors.F32, 1, 4, 3)
	w := must(b.Bind(st))(t)
	x := must(b.NewTensor(2, 4))(t)
	dst := must(b.NewTensor(2, 4))(t)
	if err := b.MatMul(dst, x, w); !errors.Is(err, backend.ErrShape) {
		t.Errorf("inner dimension mismatch: %v", err)
	}
}

func (s suite) attention(t *testing.T, b backend.Backend) {
	type attCase struct {
		name                                  string
		heads, kvHeads, hd, window, blockSize int
		steps                                 [][]int // tokens of each sequence per step
	}
	small := [][]int{{7, 3, 0}, {1, 4, 9}, {1, 1, 1}, {1, 0, 1}, {1, 1, 1}, {2, 1, 0}}
	cases := []attCase{
		{"multi-head", 4, 4, 8, 0, 4, small},
		{"grouped-query", 6, 2, 8, 0, 3, small},
		{"multi-query", 4, 1, 16, 0, 5, small},
		{"sliding-window", 6, 2, 8, 5, 4, small},
		{"window-of-one", 4, 2, 4, 1, 2, small},
	}
	smallCases := cases
	if s.large {
		long := [][]int{{300, 40, 0}, {1, 1, 500}, {200, 1, 1}, {1, 1, 1}}
		cases = append(cases,
			attCase{"mixtral-heads-long", 8, 2, 128, 0, 16, long},
			attCase{"sliding-window-long", 8, 2, 64, 100, 16, long},
			attCase{"largest-head", 16, 2, 256, 0, 32, long}, // eight query heads per KV head
			attCase{"odd-heads-odd-blocks", 12, 1, 40, 0, 7, long},
			attCase{"window-not-tile-multiple", 4, 4, 96, 37, 16, long},
		)
	}
	for ci, tc := range cases {
		types := kvTypes
		if ci >= len(smallCases) {
			types = types[:1] // the large cases store the default type only: their reference is slow
		}
		for _, dt := range types {
			t.Run(fmt.Sprintf("%s/%s", tc.name, cmp.Or(string(dt), "default")), func(t *testing.T) {
				r := rand.New(rand.NewPCG(2, uint64(ci)))
				const layers = 2
				total := 0
				for _, step := range tc.steps {
					for _, c := range step {
						total += c
					}
				}
				blocks := total/tc.blockSize + 3*len(tc.steps[0]) + 4
				c := newCacheOf(t, b, backend.CacheConfig{Layers: layers, KVHeads: tc.kvHeads, HeadDim: tc.hd, BlockSize: tc.blockSize, Blocks: blocks, DType: dt})
				pages := NewPages(c)
				nseq := len(tc.steps[0])
				seqs := make([]int, nseq)
				for i := range seqs {
					seqs[i] = pages.NewSequence()
				}
				qDim, kvDim := tc.heads*tc.hd, tc.kvHeads*tc.hd
				ref := refCache{}
				lens := make([]int, nseq)
				for si, step := range tc.steps {
					var toks []backend.Token
					for sq, count := range step {
						for range count {
							toks = append(toks, backend.Token{Seq: seqs[sq], Pos: lens[sq]})
							lens[sq]++
						}
					}
					if si%2 == 1 {
						toks = interleave(toks)
					}
					bt := must(pages.Prepare(toks))(t)
					n := len(toks)
					for layer := range layers {
						p := backend.AttentionParams{Layer: layer, Heads: tc.heads, KVHeads: tc.kvHeads, HeadDim: tc.hd,
							Scale: float32(1 / math.Sqrt(float64(tc.hd))), SlidingWindow: tc.window}
						qv, kv, vv := random(r, n*qDim, 1), random(r, n*kvDim, 1), random(r, n*kvDim, 1)
						q, k, v := upload(t, b, n, qDim, qv), upload(t, b, n, kvDim, kv), upload(t, b, n, kvDim, vv)
						dst := must(b.NewTensor(n, qDim))(t)
						ok(t, b.Attention(dst, q, k, v, bt, p))
						dt := c.Config().DType
						for i, tok := range toks {
							key := [2]int{layer, tok.Seq}
							ref[key] = append(ref[key], [2][]float64{stored(dt, kv[i*kvDim:(i+1)*kvDim]), stored(dt, vv[i*kvDim:(i+1)*kvDim])})
						}
						var want []float64
						for i, tok := range toks {
							want = append(want, attentionRef(f64(qv[i*qDim:(i+1)*qDim]), ref[[2]int{layer, tok.Seq}], tok.Pos, p)...)
						}
						s.check(t, fmt.Sprintf("step %d layer %d", si, layer), download(t, b, dst), want)
					}
				}
			})
		}
	}
}

// kvTypes are the element types the suite stores keys and values in: the backend's default
// (the zero value) first, then each a backend may store; a backend that does not store one
// skips it.
var kvTypes = []safetensors.DType{"", safetensors.F16, safetensors.BF16, safetensors.F32}

// newCacheOf makes a cache of cfg, closed when the test ends, skipping the test when the
// backend does not store cfg.DType.
func newCacheOf(t *testing.T, b backend.Backend, cfg backend.CacheConfig) backend.Cache {
	t.Helper()
	c, err := b.NewCache(cfg)
	if errors.Is(err, backend.ErrDType) && cfg.DType != "" {
		t.Skipf("the backend stores no %s KV cache", cfg.DType)
	}
	ok(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// stored returns x as the cache stores it, in dtype, exactly as float64.
func stored(dtype safetensors.DType, x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		switch dtype {
		case safetensors.F16:
			out[i] = float64(float16.Fromfloat32(v).Float32())
		case safetensors.BF16:
			b := math.Float32bits(v)
			b += 0x7fff + (b>>16)&1 // round to nearest, ties to even
			out[i] = float64(math.Float32frombits(b &^ 0xffff))
		default:
			out[i] = float64(v)
		}
	}
	return out
}

// sharedBlocks checks attention over block tables that share blocks: a sequence reading a
// prefix another wrote in an earlier step, and one reading what another writes in the same
// step; and over tables whose blocks before the attention window are released.
func (s suite) sharedBlocks(t *testing.T, b backend.Backend) {
	for _, dt := range kvTypes {
		t.Run(cmp.Or(string(dt), "default"), func(t *testing.T) {
			const heads, kvHeads, hd, bs = 4, 2, 8, 4
			r := rand.New(rand.NewPCG(3, 1))
			c := newCacheOf(t, b, backend.CacheConfig{Layers: 1, KVHeads: kvHeads, HeadDim: hd, BlockSize: bs, Blocks: 12, DType: dt, SlidingWindow: 4})
			dt := c.Config().DType
			qDim, kvDim := heads*hd, kvHeads*hd
			// hist[s] is the reference history of sequence s, by position.
			hist := map[int][][2][]float64{}
			run := func(name string, toks []backend.Token, tables [][]int, window int, history func(tok backend.Token) [][2][]float64) {
				t.Helper()
				bt := must(c.Prepare(toks, tables))(t)
				n := len(toks)
				p := backend.AttentionParams{Heads: heads, KVHeads: kvHeads, HeadDim: hd, Scale: 0.35, SlidingWindow: window}
				qv, kv, vv := random(r, n*qDim, 1), random(r, n*kvDim, 1), random(r, n*kvDim, 1)
				q, k, v := upload(t, b, n, qDim, qv), upload(t, b, n, kvDim, kv), upload(t, b, n, kvDim, vv)
				dst := must(b.NewTensor(n, qDim))(t)
				ok(t, b.Attention(dst, q, k, v, bt, p))
				for i, tok := range toks {
					h := hist[tok.Seq]
					for len(h) <= tok.Pos {
						h = append(h, [2][]float64{})
					}
					h[tok.Pos] = [2][]float64{stored(dt, kv[i*kvDim:(i+1)*kvDim]), stored(dt, vv[i*kvDim:(i+1)*kvDim])}
					hist[tok.Seq] = h
				}
				var want []float64
				for i, tok := range toks {
					want = append(want, attentionRef(f64(qv[i*qDim:(i+1)*qDim]), history(tok), tok.Pos, p)...)
				}
				s.check(t, name, download(t, b, dst), want)
			}
			own := func(tok backend.Token) [][2][]float64 { return hist[tok.Seq] }
			seqTokens := func(seq, from, to int) []backend.Token {
				var toks []backend.Token
				for p := from; p < to; p++ {
					toks = append(toks, backend.Token{Seq: seq, Pos: p})
				}
				return toks
			}
			// Sequence 0 writes positions 0-9 in blocks 0, 1 and 2.
			run("prefix", seqTokens(0, 0, 10), [][]int{{0, 1, 2}}, 0, own)
			// One step: sequence 0 goes on at 10; sequence 1 shares its blocks 0 and 1
			// (positions 0-7) and writes 8-10 in its own block 3; sequence 2 writes 0-5 in
			// blocks 4 and 5, and sequence 3 reads sequence 2's block 4 (positions 0-3,
			// written in this very step) and writes 4-6 in block 6.
			toks := append(seqTokens(0, 10, 11), seqTokens(1, 8, 11)...)
			toks = append(toks, seqTokens(2, 0, 6)...)
			toks = append(toks, seqTokens(3, 4, 7)...)
			tables := [][]int{{0, 1, 2}, {0, 1, 3}, {4, 5}, {4, 6}}
			shared := func(tok backend.Token) [][2][]float64 {
				switch tok.Seq {
				case 1:
					return append(slices.Clone(hist[0][:8]), hist[1][8:]...)
				case 3:
					return append(slices.Clone(hist[2][:4]), hist[3][4:]...)
				}
				return hist[tok.Seq]
			}
			// The reference writes the step's keys before reading, as the backend does.
			run("shared", toks, tables, 0, shared)
			// With a window of 4, sequence 4 writes positions 0-10, then releases its blocks
			// before position 8: its tokens at 11 and 12 read blocks 7 and 8 only.
			run("window", seqTokens(4, 0, 11), [][]int{{}, {}, {}, {}, {9, 10, 7}}, 4, own)
			run("window on", seqTokens(4, 11, 13), [][]int{{}, {}, {}, {}, {-1, -1, 7, 8}}, 4, own)
			// A window of 6 from position 12 reaches position 7, in the released block 1.
			bt := must(c.Prepare(seqTokens(0, 12, 13), [][]int{{-1, -1, 7, 8}}))(t)
			q := must(b.NewTensor(1, qDim))(t)
			k, v := must(b.NewTensor(1, kvDim))(t), must(b.NewTensor(1, kvDim))(t)
			dst := must(b.NewTensor(1, qDim))(t)
			p := backend.AttentionParams{Heads: heads, KVHeads: kvHeads, HeadDim: hd, Scale: 0.35, SlidingWindow: 6}
			if err := b.Attention(dst, q, k, v, bt, p); !errors.Is(err, backend.ErrSequence) {
				t.Errorf("a window over a released block: %v, want ErrSequence", err)
			}
		})
	}
}

// moeCase is the shape of an MoE case: n tokens, topK of experts experts of the given widths.
type moeCase struct {
	dtype                           safetensors.DType
	n, hidden, inner, experts, topK int
}

func (c moeCase) String() string {
	return fmt.Sprintf("%s/n=%d,hidden=%d,inner=%d,experts=%d,top=%d", c.dtype, c.n, c.hidden, c.inner, c.experts, c.topK)
}

func (s suite) moe(t *testing.T, b backend.Backend) {
	r := rand.New(rand.NewPCG(1, 9))
	cases := []moeCase{
		{safetensors.BF16, 1, 32, 48, 8, 2},
		{safetensors.F16, 9, 24, 40, 4, 2},
		{safetensors.F32, 13, 16, 20, 8, 3},
		{safetensors.BF16, 6, 64, 33, 8, 1},
	}
	if s.large {
		cases = append(cases,
			moeCase{safetensors.BF16, 2, 64, 96, 8, 2},   // the streaming path with two tokens
			moeCase{safetensors.BF16, 300, 64, 96, 8, 2}, // several GEMM tiles per expert
			moeCase{safetensors.F16, 150, 40, 70, 4, 2},  // odd widths, partial tiles
			moeCase{safetensors.BF16, 257, 128, 256, 16, 4},
			moeCase{safetensors.BF16, 1, 64, Wide, 4, 2}, // w2's rows wide
			moeCase{safetensors.F16, 40, 64, Wide, 4, 2},
		)
	}
	for _, tc := range cases {
		t.Run(tc.String(), func(t *testing.T) {
			var et backend.ExpertTensors
			var gate []float64
			w1, w2, w3 := make([][]float64, tc.experts), make([][]float64, tc.experts), make([][]float64, tc.experts)
			et.Gate, gate = Weight(r, "gate", tc.dtype, 0.5, tc.experts, tc.hidden)
			for e := range tc.experts {
				var s1, s2, s3 safetensors.Tensor
				s1, w1[e] = Weight(r, "w1", tc.dtype, 0.3, tc.inner, tc.hidden)
				s2, w2[e] = Weight(r, "w2", tc.dtype, 0.3, tc.hidden, tc.inner)
				s3, w3[e] = Weight(r, "w3", tc.dtype, 0.3, tc.inner, tc.hidden)
				et.W1, et.W2, et.W3 = append(et.W1, s1), append(et.W2, s2), append(et.W3, s3)
			}
			ex := must(b.BindExperts(et))(t)
			if e, h, i := ex.Shape(); e != tc.experts || h != tc.hidden || i != tc.inner {
				t.Errorf("Shape() = %d, %d, %d", e, h, i)
			}
			xv := random(r, tc.n*tc.hidden, 1)
			x := upload(t, b, tc.n, tc.hidden, xv)
			dst := must(b.NewTensor(tc.n, tc.hidden))(t)
			router := must(b.NewTensor(tc.n, tc.experts))(t)
			ok(t, b.MoE(dst, x, ex, tc.topK, router))
			want, logits := moeRef(f64(xv), tc.n, tc.hidden, tc.inner, tc.experts, tc.topK, gate, w1, w2, w3)
			s.check(t, "router logits", download(t, b, router), logits)
			s.check(t, "output", download(t, b, dst), want)
			// Without router logits, and again on the same buffers: the same result.
			ok(t, b.MoE(dst, x, ex, tc.topK, backend.Tensor{}))
			s.check(t, "output, again", download(t, b, dst), want)
			if err := b.MoE(dst, x, ex, tc.experts+1, backend.Tensor{}); !errors.Is(err, backend.ErrShape) {
				t.Errorf("top-k above the expert count: %v", err)
			}
		})
	}
	et := backend.ExpertTensors{}
	et.Gate, _ = Weight(r, "gate", safetensors.F32, 1, 2, 4)
	if _, err := b.BindExperts(et); !errors.Is(err, backend.ErrShape) {
		t.Errorf("experts missing: %v", err)
	}
}
