package bench

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/backend/cpu"
)

// BenchmarkAttention times the CPU backend's attention of one layer for a chunk of a prompt
// after a prefix already in the cache, and for one decoded token: the heads of the bundled
// model (4 query heads, 2 KV heads of 32) and of Mixtral 8x7B (32 and 8 of 128). GFLOP/s
// counts the products q·k and p·v; %fma compares them with the float32 FMA peak measured
// in the same run, %fma-cpu per second of processor time.
func BenchmarkAttention(b *testing.B) {
	for _, h := range []struct {
		name                    string
		heads, kvHeads, headDim int
	}{{"tiny", 4, 2, 32}, {"8x7B", 32, 8, 128}} {
		for _, s := range []struct{ prefix, tokens int }{{0, 512}, {3584, 512}, {4095, 1}} {
			b.Run(fmt.Sprintf("%s/prefix=%d/tokens=%d", h.name, s.prefix, s.tokens), func(b *testing.B) {
				benchmarkAttention(b, h.heads, h.kvHeads, h.headDim, s.prefix, s.tokens)
			})
		}
	}
}

func benchmarkAttention(b *testing.B, heads, kvHeads, headDim, prefix, tokens int) {
	workers := runtime.GOMAXPROCS(0)
	be := cpu.New(workers)
	defer be.Close()
	const blockSize = 16
	c, err := be.NewCache(backend.CacheConfig{Layers: 1, KVHeads: kvHeads, HeadDim: headDim, BlockSize: blockSize,
		Blocks: (prefix+tokens)/blockSize + 2})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r := rand.New(rand.NewPCG(1, 2))
	tensor := func(rows, cols int) backend.Tensor {
		t, err := be.NewTensor(rows, cols)
		if err != nil {
			b.Fatal(err)
		}
		v := make([]float32, rows*cols)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		if err := be.Write(t, v); err != nil {
			b.Fatal(err)
		}
		return t
	}
	q, k, v, dst := tensor(tokens, heads*headDim), tensor(tokens, kvHeads*headDim), tensor(tokens, kvHeads*headDim), tensor(tokens, heads*headDim)
	p := backend.AttentionParams{Heads: heads, KVHeads: kvHeads, HeadDim: headDim, Scale: 0.1}
	// One sequence in blocks 0, 1, 2, ...: the prefix's keys and values are whatever the cache
	// holds.
	table := make([]int, (prefix+tokens+blockSize-1)/blockSize)
	for i := range table {
		table[i] = i
	}
	toks := make([]backend.Token, tokens)
	for i := range toks {
		toks[i] = backend.Token{Seq: 0, Pos: prefix + i}
	}
	flops := 0.0
	for i := range tokens {
		flops += 4 * float64(heads*headDim*(prefix+i+1))
	}
	m := newMeter(b, workers, tokens, false)
	for b.Loop() {
		b.StopTimer()
		bt, err := c.Prepare(toks, [][]int{table})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		m.time(func() {
			if err := be.Attention(dst.Head(tokens), q.Head(tokens), k.Head(tokens), v.Head(tokens), bt, p); err != nil {
				b.Fatal(err)
			}
		})
	}
	m.report(0, flops)
	b.ReportMetric(float64(tokens)/m.best.Seconds(), "tokens/s")
}
