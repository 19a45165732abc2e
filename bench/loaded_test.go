package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/fathom-llm/fathom/mixtral"
	"github.com/fathom-llm/fathom/safetensors"
)

// loadedLayers is the number of Mixtral 8x7B-shaped layers of the checkpoints that the loaded
// benchmarks write: 6.2 GB in bf16.
const loadedLayers = 2

// syntheticDir returns a checkpoint directory of loadedLayers Mixtral 8x7B-shaped layers of
// random weights stored as dtype, written under $FATHOM_BENCH_DIR (default the system's
// temporary directory) the first time and reused by later runs.
func syntheticDir(b *testing.B, dtype safetensors.DType) string {
	root := os.Getenv("FATHOM_BENCH_DIR")
	if root == "" {
		root = os.TempDir()
	}
	dir := filepath.Join(root, fmt.Sprintf("fathom-bench-mixtral8x7b-%dlayers-%s-v1", loadedLayers, strings.ToLower(string(dtype))))
	done := filepath.Join(dir, "complete")
	if _, err := os.Stat(done); err == nil {
		return dir
	}
	b.Logf("writing %s", dir)
	if err := os.RemoveAll(dir); err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := WriteSynthetic(dir, Mixtral8x7B(loadedLayers), dtype, 1); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	return dir
}

// BenchmarkLoadedMixtral8x7B loads checkpoints of two Mixtral 8x7B-shaped layers (random
// weights, bf16 and f16) from disk through mixtral.Load, as users load one, and decodes with
// every worker: the memory map, the binding and every layer are in the figure. Each step reads
// DecodeWeightBytes (1.5 GB); GB/s and %bw are those of the fastest step against the best
// sample of the read-bandwidth probe taken between the steps, as BenchmarkMoEBlock reports
// them, so that the two compare.
func BenchmarkLoadedMixtral8x7B(b *testing.B) {
	cfg := Mixtral8x7B(loadedLayers)
	for _, dtype := range []safetensors.DType{safetensors.BF16, safetensors.F16} {
		b.Run(strings.ToLower(string(dtype)), func(b *testing.B) {
			dir := syntheticDir(b, dtype)
			ctx := context.Background()
			m, err := mixtral.Load(ctx, dir, mixtral.Options{ContextLength: 1024})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			if err := m.Preload(ctx, nil); err != nil {
				b.Fatal(err)
			}
			b.Run("decode", func(b *testing.B) {
				seq, err := m.NewSequence()
				if err != nil {
					b.Fatal(err)
				}
				defer seq.Close()
				ids := promptIDs(cfg.VocabSize, m.ContextLength())
				meter := newMeter(b, runtime.GOMAXPROCS(0), 1, false)
				for b.Loop() {
					if seq.Len() == m.ContextLength() {
						b.Fatal("context full") // b.N stays far below 1024
					}
					meter.time(func() {
						if _, err := seq.Append(ctx, ids[seq.Len():seq.Len()+1], mixtral.EvalOptions{}); err != nil {
							b.Fatal(err)
						}
					})
				}
				meter.report(float64(DecodeWeightBytes(cfg)), TokenFLOPs(cfg))
			})
		})
	}
}
