//go:build cuda && cgo

package cuda

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/backend/backendtest"
)

// Benchmarks at Mixtral 8x7B shapes (hidden 4096, 8 experts of width 14336, top 2, 32/8
// heads of 128) on device-side random weights. Each reports its figure with ReportMetric;
// the device is synchronised before the timer stops.

const (
	mixHidden  = 4096
	mixInner   = 14336
	mixExperts = 8
	mixTopK    = 2
	mixHeads   = 32
	mixKV      = 8
	mixHeadDim = 128
)

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// timed runs f b.N times after one warm-up call and returns the seconds per call.
func timed(b *testing.B, g *gpu, f func() error) float64 {
	b.Helper()
	must(b, f())
	must(b, g.sync())
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		must(b, f())
	}
	must(b, g.sync())
	b.StopTimer()
	return time.Since(start).Seconds() / float64(b.N)
}

func BenchmarkCopy(b *testing.B) {
	g := open(b, Options{})
	defer g.Close()
	const n = 64 << 20 // floats: 256 MiB
	src, dst := mustTensor(b, g, 1, n), mustTensor(b, g, 1, n)
	host := make([]float32, n)
	b.Run("HostToDevice", func(b *testing.B) {
		s := timed(b, g, func() error { return g.Write(src, host) })
		b.ReportMetric(4*n/s/1e9, "GB/s")
	})
	b.Run("DeviceToHost", func(b *testing.B) {
		s := timed(b, g, func() error { return g.Read(host, src) })
		b.ReportMetric(4*n/s/1e9, "GB/s")
	})
	b.Run("DeviceToDevice", func(b *testing.B) {
		s := timed(b, g, func() error { return g.copyBytes(dst, src, 4*n) })
		// A copy reads and writes every byte.
		b.ReportMetric(2*4*n/s/1e9, "GB/s")
	})
}

// Modes of the benchmarks: the default (exact activations), bfloat16 activations, weights
// in int8 (backend.Q8).
var benchModes = []struct {
	name string
	opts Options
	int8 bool
}{
	{"bf16", Options{}, false},
	{"bf16-bf16act", Options{BF16Activations: true}, false},
	{"int8", Options{}, true},
}

// int8Bytes is the device size of an int8 weight: one byte per value and a float32 scale per
// group.
const int8Bytes = 1 + 4.0/backend.QuantGroup

func BenchmarkMatMul(b *testing.B) {
	for _, mode := range benchModes {
		b.Run(mode.name, func(b *testing.B) {
			g := open(b, mode.opts)
			defer g.Close()
			for _, s := range []struct{ n, in, out int }{
				{1, mixHidden, mixInner}, {8, mixHidden, mixInner}, {1, mixHidden, 32002},
				{512, mixHidden, mixHidden}, {2048, mixHidden, mixInner}, {2048, mixInner, mixHidden},
			} {
				b.Run(fmt.Sprintf("n=%d/%dx%d", s.n, s.out, s.in), func(b *testing.B) {
					w, err := g.randomWeight(s.out, s.in, mode.int8, 1, 0.02)
					must(b, err)
					x, y := mustTensor(b, g, s.n, s.in), mustTensor(b, g, s.n, s.out)
					must(b, g.fillTensor(x, 2, 1))
					sec := timed(b, g, func() error { return g.MatMul(y, x, w) })
					if s.n <= gemvMaxRows {
						bytes := float64(s.out * s.in * 2)
						if mode.int8 {
							bytes = float64(s.out*s.in) * int8Bytes
						}
						b.ReportMetric(bytes/sec/1e9, "GB/s")
					}
					b.ReportMetric(2*float64(s.n)*float64(s.in)*float64(s.out)/sec/1e12, "TFLOP/s")
				})
			}
		})
	}
}

func BenchmarkMoE(b *testing.B) {
	for _, mode := range benchModes {
		b.Run(mode.name, func(b *testing.B) {
			g := open(b, mode.opts)
			defer g.Close()
			ex, err := g.randomExperts(mixExperts, mixHidden, mixInner, mode.int8, 7)
			must(b, err)
			for _, n := range []int{1, 4, 16, 128, 2048} {
				b.Run(fmt.Sprintf("tokens=%d", n), func(b *testing.B) {
					x, y := mustTensor(b, g, n, mixHidden), mustTensor(b, g, n, mixHidden)
					must(b, g.fillTensor(x, 3, 1))
					sec := timed(b, g, func() error { return g.MoE(y, x, ex, mixTopK, backend.Tensor{}) })
					b.ReportMetric(float64(n)/sec, "tokens/s")
					// Weight bytes of the experts used at least once (all of them beyond a
					// few tokens), and the FLOPs of the chosen experts.
					used := math.Min(float64(n*mixTopK), mixExperts)
					per := float64(3 * mixHidden * mixInner)
					if mode.int8 {
						per *= int8Bytes
					} else {
						per *= 2
					}
					b.ReportMetric(used*per/sec/1e9, "GB/s")
					b.ReportMetric(float64(n*mixTopK)*2*3*mixHidden*mixInner/sec/1e12, "TFLOP/s")
				})
			}
		})
	}
}

func BenchmarkAttention(b *testing.B) {
	g := open(b, Options{})
	defer g.Close()
	for _, s := range []struct{ seqs, context, step int }{{1, 4096, 1}, {16, 4096, 1}, {1, 2048, 2048}} {
		b.Run(fmt.Sprintf("seqs=%d/context=%d/step=%d", s.seqs, s.context, s.step), func(b *testing.B) {
			const bs = 16
			blocks := s.seqs*(s.context+s.step)/bs + s.seqs*2
			c, err := g.NewCache(backend.CacheConfig{Layers: 1, KVHeads: mixKV, HeadDim: mixHeadDim, BlockSize: bs, Blocks: blocks})
			must(b, err)
			defer c.Close()
			// Fill the sequences' history, then time steps at the end of it.
			pages := backendtest.NewPages(c)
			var toks []backend.Token
			for range s.seqs {
				seq := pages.NewSequence()
				for p := range s.context - s.step {
					toks = append(toks, backend.Token{Seq: seq, Pos: p})
				}
			}
			if len(toks) > 0 {
				_, err = pages.Prepare(toks)
				must(b, err)
			}
			toks = toks[:0]
			for seq := range s.seqs {
				for p := s.context - s.step; p < s.context; p++ {
					toks = append(toks, backend.Token{Seq: seq, Pos: p})
				}
			}
			bt, err := pages.Prepare(toks)
			must(b, err)
			n := len(toks)
			q, k, v := mustTensor(b, g, n, mixHeads*mixHeadDim), mustTensor(b, g, n, mixKV*mixHeadDim), mustTensor(b, g, n, mixKV*mixHeadDim)
			dst := mustTensor(b, g, n, mixHeads*mixHeadDim)
			for i, t := range []backend.Tensor{q, k, v} {
				must(b, g.fillTensor(t, uint64(10+i), 1))
			}
			p := backend.AttentionParams{Heads: mixHeads, KVHeads: mixKV, HeadDim: mixHeadDim, Scale: float32(1 / math.Sqrt(mixHeadDim))}
			sec := timed(b, g, func() error { return g.Attention(dst, q, k, v, bt, p) })
			// Key and value bytes read (bfloat16), counting each token's own window.
			var positions float64
			for _, t := range toks {
				positions += float64(t.Pos + 1)
			}
			b.ReportMetric(positions*2*mixKV*mixHeadDim*2/sec/1e9, "GB/s")
			b.ReportMetric(float64(n)/sec, "tokens/s")
		})
	}
}
