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
