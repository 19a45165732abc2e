package cpu

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/backend/backendtest"
	"github.com/fathom-llm/fathom/internal/kernels"
	"github.com/fathom-llm/fathom/safetensors"
)

// TestPanels holds a weight stored in column panels, of every stored type and quantization,
// to the same weight stored whole: its rows, and its products over no token, one (the
// streaming kernels), a few (the few-token kernels) and many (the tiles, with bfloat16
// activations too), from float activations and from quantized ones, over all rows and over a
// range. Panel widths are set here, whatever this CPU's cache would choose.
func TestPanels(t *testing.T) {
	b := New(2)
	defer b.Close()
	r := rand.New(rand.NewPCG(23, 24))
	const rows, cols = 40, 3*kernels.PanelAlign + backend.QuantGroup
	for _, q := range []backend.Quantization{backend.AsStored, backend.Q8, backend.Q4} {
		for _, dt := range []safetensors.DType{safetensors.BF16, safetensors.F16, safetensors.F32} {
			t.Run(fmt.Sprintf("%s/%s", q, dt), func(t *testing.T) {
				st, _ := backendtest.Weight(r, "w", dt, 0.2, rows, cols)
				bound := func(p int) *weight {
					w, err := b.bindStored(st)
					if err != nil {
						t.Fatal(err)
					}
					if err := w.store(p, q); err != nil {
						t.Fatal(err)
					}
					return w
				}
				whole := bound(cols)
				for _, p := range []int{kernels.PanelAlign, 2 * kernels.PanelAlign} {
					panels := bound(p)
					what := fmt.Sprintf("%s %s panels of %d", q, dt, p)
					if len(panels.parts) != (cols+p-1)/p || whole.parts != nil {
						t.Fatalf("%s: %d panels, whole %d", what, len(panels.parts), len(whole.parts))
					}
					got, want := make([]float32, cols), make([]float32, cols)
					for _, i := range []int{0, 17, rows - 1} {
						panels.row(got, i)
						whole.row(want, i)
						closeTo(t, what+fmt.Sprint(" row ", i), got, want, 0)
					}
					for _, tokens := range []int{0, 1, 3, 40} {
						x := make([]float32, tokens*cols)
						for i := range x {
							x[i] = float32(r.NormFloat64())
						}
						var xq *kernels.QuantActs
						if q != backend.AsStored {
							xq = new(kernels.QuantActs)
							xq.Quantize(x, tokens, cols)
						}
						for _, span := range [][2]int{{0, rows}, {16, 32}} {
							for _, rounded := range []bool{false, true} {
								if rounded && !whole.roundable() {
									continue
								}
								xr := x
								if rounded {
									xr = make([]float32, len(x))
									kernels.RoundBF16(xr, x)
								}
								for _, qa := range []*kernels.QuantActs{nil, xq} {
									if qa == nil && xq != nil && tokens == 1 {
										continue // the same as with xq, quantized inside
									}
									got, want := make([]float32, tokens*rows), make([]float32, tokens*rows)
									panels.mulRows(&b.scratch[0], got, xr, qa, tokens, span[0], span[1], rounded)
									whole.mulRows(&b.scratch[1], want, xr, qa, tokens, span[0], span[1], rounded)
									tol := 1e-5
									if rounded {
										tol = 1e-3 // the VDPBF16PS tiles round sums of panels differently
									}
									closeTo(t, fmt.Sprintf("%s, %d tokens, rows %v, rounded %v, pre-quantized %v", what, tokens, span, rounded, qa != nil), got, want, tol)
								}
							}
						}
					}
				}
			})
		}
	}
}

// closeTo fails unless every value of got is within tol of want's, relative to the largest
// magnitude in want.
func closeTo(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	var scale float64
	for _, v := range want {
		scale = max(scale, math.Abs(float64(v)))
	}
	for i := range want {
		if d := math.Abs(float64(got[i] - want[i])); !(d <= tol*scale) {
			t.Fatalf("%s: [%d] = %v, want %v", what, i, got[i], want[i])
		}
	}
}

// TestBoundCopiesOffHeap checks that the column panels that binding copies, the quantized
// data it makes and the KV cache lie outside the Go heap (a few megabytes each here; the
// experts of Mixtral 8x7B take gigabytes, which in the heap would double the collector's goal).
func TestBoundCopiesOffHeap(t *testing.T) {
	const rows, cols = 64, 16384
	if kernels.PanelCols(cols, false) == cols {
		t.Skip("rows of 16384 values are kept whole on this CPU")
	}
	b := New(1)
	defer b.Close()
	data := make([]byte, 2*rows*cols)
	for i := 0; i < len(data); i += 2 {
		binary.LittleEndian.PutUint16(data[i:], kernels.F32ToBF16(float32(i%97)/97-0.5))
	}
	tensor := safetensors.Tensor{Name: "w", DType: safetensors.BF16, Shape: []int{rows, cols}, Data: data}
	heap := func() int64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	for _, c := range []struct {
		name string
		size int
		make func() (any, error)
	}{
		{"panels", len(data), func() (any, error) { return b.Bind(tensor) }},
		{"q8", rows * kernels.Q8RowBytes(cols), func() (any, error) { return b.BindQuantized(tensor, backend.Q8) }},
		{"cache", 2 * 64 * 16 * 8 * 128 * 2 * 2, func() (any, error) { // float16 keys and values
			return b.NewCache(backend.CacheConfig{Layers: 2, KVHeads: 8, HeadDim: 128, BlockSize: 16, Blocks: 64})
		}},
	} {
		before := heap()
		v, err := c.make()
		if err != nil {
			t.Fatal(err)
		}
		if grew := heap() - before; grew > int64(c.size)/8 {
			t.Errorf("%s of %d bytes: the Go heap grew by %d bytes", c.name, c.size, grew)
		}
		runtime.KeepAlive(v)
	}
}
