package mixtral

import (
	"context"
	"testing"

	"github.com/fathom-llm/fathom/backend"
)

// BenchmarkDecode measures single-sequence decode steps through the KV cache, at positions
// 0 to 511.
func BenchmarkDecode(b *testing.B) {
	m := loadFixture(b, "tiny-code-mixtral", Options{})
	seq, err := m.cache.NewSequence()
	if err != nil {
		b.Fatal(err)
	}
	out := make([]float32, m.cfg.VocabSize)
	tokens, rows := []backend.Token{{Seq: seq}}, []int{0}
	pos := 0
	b.ReportAllocs()
	for b.Loop() {
		if pos == 512 {
			m.cache.Free(seq)
			if seq, err = m.cache.NewSequence(); err != nil {
				b.Fatal(err)
			}
			pos = 0
		}
		tokens[0] = backend.Token{Seq: seq, Pos: pos, ID: 100 + pos%1000}
		if err := m.forward(tokens, rows, out, nil); err != nil {
			b.Fatal(err)
		}
		pos++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkPrefill measures a 256-token prompt run as one batch.
func BenchmarkPrefill(b *testing.B) {
	m := loadFixture(b, "tiny-code-mixtral", Options{})
	ids := make([]int, 256)
	for i := range ids {
		ids[i] = 100 + 7*i
	}
	ctx := context.Background()
	for b.Loop() {
		if _, err := m.Eval(ctx, ids, EvalOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(ids))/b.Elapsed().Seconds(), "tokens/s")
}
