package cpu_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/backend/backendtest"
	"github.com/fathom-llm/fathom/backend/cpu"
	"github.com/fathom-llm/fathom/safetensors"
)

// batches are the token ranges of a batch of 40 that TestBatchInvariant runs on their own:
// each token alone, and runs of a few and of many tokens.
func batches(n int) [][2]int {
	var b [][2]int
	for i := range n {
		b = append(b, [2]int{i, i + 1})
	}
	return append(b, [2]int{3, 12}, [2]int{1, 35}, [2]int{0, n})
}

// runBatches runs op on the rows [lo, hi) of x (rows of cols values) for every range of
// batches(rows), and checks that each row's output (of outCols values) is bit for bit the
// same in every batch that holds it.
func runBatches(t *testing.T, be backend.Backend, x []float32, rows, cols, outCols int, op func(dst, x backend.Tensor) error) {
	t.Helper()
	want := make([]float32, rows*outCols)
	have := make([]bool, rows)
	for _, b := range batches(rows) {
		n := b[1] - b[0]
		xt, _ := be.NewTensor(n, cols)
		yt, _ := be.NewTensor(n, outCols)
		if err := be.Write(xt, x[b[0]*cols:b[1]*cols]); err != nil {
			t.Fatal(err)
		}
		if err := op(yt, xt); err != nil {
			t.Fatal(err)
		}
		got := make([]float32, n*outCols)
		if err := be.Read(got, yt); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			row := b[0] + i
			g, w := got[i*outCols:(i+1)*outCols], want[row*outCols:(row+1)*outCols]
			if !have[row] {
				copy(w, g)
				have[row] = true
				continue
			}
			for j := range g {
				if math.Float32bits(g[j]) != math.Float32bits(w[j]) {
					t.Fatalf("tokens [%d, %d): token %d output %d is %v, %v alone", b[0], b[1], row, j, g[j], w[j])
				}
			}
		}
	}
}

// TestBatchInvariant checks that a token's results do not depend on the other tokens of its
// batch: the products (weights as stored, in column panels when wide) and the MoE block
// (whose experts see the tokens that chose them) give each token, bit for bit, what they give
// it alone, with several workers sharing the rows.
func TestBatchInvariant(t *testing.T) {
	const tokens = 40
	r := rand.New(rand.NewPCG(7, 8))
	x := make([]float32, tokens*7000)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	for _, workers := range []int{1, 3} {
		be := cpu.New(workers)
		defer be.Close()
		for _, dt := range []safetensors.DType{safetensors.BF16, safetensors.F16, safetensors.F32} {
			for _, sh := range [][2]int{{70, 4100}, {37, 7000}} {
				rows, cols := sh[0], sh[1]
				t.Run(fmt.Sprintf("%d workers/matmul/%s/%dx%d", workers, dt, rows, cols), func(t *testing.T) {
					st, _ := backendtest.Weight(r, "w", dt, 0.1, rows, cols)
					w, err := be.Bind(st)
					if err != nil {
						t.Fatal(err)
					}
					runBatches(t, be, x, tokens, cols, rows, func(dst, x backend.Tensor) error { return be.MatMul(dst, x, w) })
				})
			}
		}
		t.Run(fmt.Sprintf("%d workers/moe", workers), func(t *testing.T) {
			const experts, hidden, inner = 4, 160, 200
			e, err := be.BindExperts(randomExperts(r, experts, hidden, inner))
			if err != nil {
				t.Fatal(err)
			}
			runBatches(t, be, x, tokens, hidden, hidden, func(dst, x backend.Tensor) error {
				return be.MoE(dst, x, e, 2, backend.Tensor{})
			})
		})
	}
}

// TestAttentionBatchInvariant checks that a token's attention does not depend on how its
// sequence's tokens were split into steps (one prefill, one token a step, chunks) nor on
// the other sequences of a step: with and without a sliding window, for every stored type
// of the cache.
func TestAttentionBatchInvariant(t *testing.T) {
	const n, heads, kvHeads, hd, bs = 45, 4, 2, 64, 16
	qDim, kvDim := heads*hd, kvHeads*hd
	r := rand.New(rand.NewPCG(9, 10))
	q, k, v := make([]float32, n*qDim), make([]float32, n*kvDim), make([]float32, n*kvDim)
	for _, s := range [][]float32{q, k, v} {
		for i := range s {
			s[i] = float32(r.NormFloat64())
		}
	}
	be := cpu.New(3)
	defer be.Close()
	splits := map[string][]int{"prefill": {n}, "decode": nil, "chunks": {7, 1, 20, 3, 14}}
	for i := 0; i < n; i++ {
		splits["decode"] = append(splits["decode"], 1)
	}
	for _, dt := range []safetensors.DType{safetensors.F16, safetensors.BF16, safetensors.F32} {
		for _, window := range []int{0, 10} {
			t.Run(fmt.Sprintf("%s/window=%d", dt, window), func(t *testing.T) {
				c, err := be.NewCache(backend.CacheConfig{Layers: 1, KVHeads: kvHeads, HeadDim: hd, BlockSize: bs, Blocks: 4 * (n/bs + 2), DType: dt})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				pages := backendtest.NewPages(c)
				p := backend.AttentionParams{Heads: heads, KVHeads: kvHeads, HeadDim: hd, Scale: 0.125, SlidingWindow: window}
				// The chunked sequence shares its steps with a fourth one, decoding.
				other := pages.NewSequence()
				results := map[string][]float32{}
				for _, name := range []string{"prefill", "decode", "chunks"} {
					seq := pages.NewSequence()
					out := make([]float32, n*qDim)
					pos := 0
					for step, size := range splits[name] {
						var toks []backend.Token
						for i := range size {
							toks = append(toks, backend.Token{Seq: seq, Pos: pos + i})
						}
						extra := 0
						if name == "chunks" {
							toks = append([]backend.Token{{Seq: other, Pos: step}}, toks...)
							extra = 1
						}
						bt, err := pages.Prepare(toks)
						if err != nil {
							t.Fatal(err)
						}
						m := len(toks)
						rows := func(s []float32, dim int) []float32 {
							// The other sequence takes token 0's rows again.
							return append(append([]float32{}, s[:extra*dim]...), s[pos*dim:(pos+size)*dim]...)
						}
						qt, _ := be.NewTensor(m, qDim)
						kt, _ := be.NewTensor(m, kvDim)
						vt, _ := be.NewTensor(m, kvDim)
						dst, _ := be.NewTensor(m, qDim)
						for _, w := range []struct {
							t backend.Tensor
							v []float32
						}{{qt, rows(q, qDim)}, {kt, rows(k, kvDim)}, {vt, rows(v, kvDim)}} {
							if err := be.Write(w.t, w.v); err != nil {
								t.Fatal(err)
							}
						}
						if err := be.Attention(dst, qt, kt, vt, bt, p); err != nil {
							t.Fatal(err)
						}
						got := make([]float32, m*qDim)
						if err := be.Read(got, dst); err != nil {
							t.Fatal(err)
						}
						copy(out[pos*qDim:], got[extra*qDim:])
						pos += size
					}
					results[name] = out
				}
				for _, name := range []string{"decode", "chunks"} {
					for i, g := range results[name] {
						if w := results["prefill"][i]; math.Float32bits(g) != math.Float32bits(w) {
							t.Fatalf("%s: token %d, value %d: %v, %v in one prefill", name, i/qDim, i%qDim, g, w)
						}
					}
				}
			})
		}
	}
}
