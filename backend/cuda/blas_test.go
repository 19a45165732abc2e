//go:build cuda && cgo

package cuda

import (
	"fmt"
	"os"
	"testing"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/backend/backendtest"
)

// requireBLASEnv makes a backend without cuBLASLt fail TestBLASPaths instead of skipping it
// (the GPU check script sets it).
const requireBLASEnv = "FATHOM_REQUIRE_CUBLASLT"

// blasPair opens a backend with cuBLASLt and one with the package's own kernels only.
func blasPair(t *testing.T, opts Options) (blas, own *gpu) {
	t.Helper()
	blas = open(t, opts)
	t.Cleanup(func() { blas.Close() })
	if blas.blas == 0 {
		if os.Getenv(requireBLASEnv) != "" {
			t.Fatalf("%s: %s", blas, blas.blasNote)
		}
		t.Skip(blas.blasNote)
	}
	t.Logf("%s", blas)
	t.Setenv(blasEnv, "off")
	own = open(t, opts)
	t.Cleanup(func() { own.Close() })
	if own.blas != 0 {
		t.Fatalf("%s=off: %s", blasEnv, own.blasNote)
	}
	return blas, own
}

// download reads a tensor as float64s.
func download(t *testing.T, g *gpu, x backend.Tensor) []float64 {
	t.Helper()
	v := make([]float32, x.Rows*x.Cols)
	if err := g.Read(v, x); err != nil {
		t.Fatal(err)
	}
	out := make([]float64, len(v))
	for i, f := range v {
		out[i] = float64(f)
	}
	return out
}

// agree checks that an operation gives the same result through cuBLASLt as through the
// package's own kernels: op runs on a backend and returns its output.
func agree(t *testing.T, blas, own *gpu, tol float64, op func(g *gpu) backend.Tensor) {
	t.Helper()
	want := download(t, own, op(own))
	out := op(blas)
	got := make([]float32, out.Rows*out.Cols)
	if err := blas.Read(got, out); err != nil {
		t.Fatal(err)
	}
	if e := backendtest.RelErr(got, want); !(e < tol) {
		t.Errorf("relative difference %.3g from the package's kernels (tolerance %g)", e, tol)
	} else {
		t.Logf("relative difference %.3g", e)
	}
}

// TestBLASPaths compares the products through cuBLASLt with the package's own kernels on the
// same weights and inputs, in both activation modes: dense products of several shapes
// (aligned and not), and MoE blocks of token counts on both sides of moeBLASReadTokens, one
// of them recorded and replayed as a step.
func TestBLASPaths(t *testing.T) {
	const hidden, inner, experts, topK = 64, 96, 8, 2
	for _, mode := range []struct {
		name string
		opts Options
		tol  float64
	}{
		{"exact", Options{}, 1e-3},
		{"bf16act", Options{BF16Activations: true}, 1e-2},
	} {
		t.Run(mode.name, func(t *testing.T) {
			blas, own := blasPair(t, mode.opts)
			for _, s := range []struct{ n, in, out int }{{9, 64, 96}, {64, 96, 64}, {130, 100, 33}, {200, 64, 300}} {
				t.Run(fmt.Sprintf("matmul/n=%d/%dx%d", s.n, s.out, s.in), func(t *testing.T) {
					agree(t, blas, own, mode.tol, func(g *gpu) backend.Tensor {
						w, err := g.randomWeight(s.out, s.in, false, 5, 0.05)
						noErr(t, err)
						x, y := mustTensor(t, g, s.n, s.in), mustTensor(t, g, s.n, s.out)
						noErr(t, g.fillTensor(x, 6, 1))
						noErr(t, g.MatMul(y, x, w))
						return y
					})
				})
			}
			for _, n := range []int{5, 16, moeBLASReadTokens, moeBLASReadTokens + 1, 130} {
				t.Run(fmt.Sprintf("moe/tokens=%d", n), func(t *testing.T) {
					agree(t, blas, own, mode.tol, func(g *gpu) backend.Tensor {
						ex, err := g.randomExperts(experts, hidden, inner, false, 9)
						noErr(t, err)
						x, y := mustTensor(t, g, n, hidden), mustTensor(t, g, n, hidden)
						noErr(t, g.fillTensor(x, uint64(n), 1))
						noErr(t, g.MoE(y, x, ex, topK, backend.Tensor{}))
						return y
					})
				})
			}
			// A recorded step, run as usual, then recorded, then replayed, each time on new
			// inputs in the same tensors.
			t.Run("moe/step", func(t *testing.T) {
				const n = 16
				type state struct {
					ex   backend.Experts
					x, y backend.Tensor
				}
				st := map[*gpu]*state{}
				for _, g := range []*gpu{blas, own} {
					ex, err := g.randomExperts(experts, hidden, inner, false, 11)
					noErr(t, err)
					st[g] = &state{ex, mustTensor(t, g, n, hidden), mustTensor(t, g, n, hidden)}
				}
				for i := range 3 {
					agree(t, blas, own, mode.tol, func(g *gpu) backend.Tensor {
						s := st[g]
						noErr(t, g.fillTensor(s.x, uint64(100+i), 1))
						noErr(t, g.Step("moe step", func(be backend.Backend) error { return be.MoE(s.y, s.x, s.ex, topK, backend.Tensor{}) }))
						return s.y
					})
				}
			})
		})
	}
}

func noErr(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}
