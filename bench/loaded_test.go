package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/backend/cpu"
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
//
// Beside the mapped checkpoint ("mapped"), the same file read into memory ("memory", its
// tensors at the addresses modulo 64 that the mapping gives them) and loaded with
// mixtral.Options.InMemory ("in-memory": huge pages, the data on a 64-byte boundary) tell apart
// what the mapping costs and what the tensors' alignment costs: a safetensors header has any
// length, so the data of a file written by others starts anywhere within a cache line.
func BenchmarkLoadedMixtral8x7B(b *testing.B) {
	cfg := Mixtral8x7B(loadedLayers)
	for _, dtype := range []safetensors.DType{safetensors.BF16, safetensors.F16} {
		b.Run(strings.ToLower(string(dtype)), func(b *testing.B) {
			dir := syntheticDir(b, dtype)
			ctx := context.Background()
			for _, where := range []string{"mapped", "memory", "in-memory"} {
				b.Run(where, func(b *testing.B) {
					var m *mixtral.Model
					var err error
					switch where {
					case "memory":
						var f *safetensors.File
						if f, err = readAt4K(filepath.Join(dir, safetensors.SingleFileName)); err == nil {
							m, err = mixtral.New(cfg, f, mixtral.Options{ContextLength: 1024})
						}
					default:
						m, err = loadPreloaded(ctx, dir, mixtral.Options{ContextLength: 1024, InMemory: where == "in-memory"})
					}
					if err != nil {
						b.Fatal(err)
					}
					defer m.Close()
					benchmarkLoadedDecode(b, m, cfg)
				})
			}
		})
	}
}

// loadPreloaded loads the checkpoint in dir with opts and reads it in, as a server that
// wants every request as fast as the next does when it starts: the file dropped from the page
// cache first (where the system allows it), so that it is read from the disk as at a start,
// in the pages that the load asks for rather than in those another reader left.
func loadPreloaded(ctx context.Context, dir string, opts mixtral.Options) (*mixtral.Model, error) {
	_ = evict(filepath.Join(dir, safetensors.SingleFileName)) // where it fails, the file stays cached as it is
	m, err := mixtral.Load(ctx, dir, opts)
	if err != nil {
		return nil, err
	}
	if err := m.Preload(ctx, nil); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// benchmarkLoadedDecode decodes one token at a time with m, after one untimed step
// (warmUp), and reports the weight bandwidth of the fastest step against the probe.
func benchmarkLoadedDecode(b *testing.B, m *mixtral.Model, cfg mixtral.Config) {
	ctx := context.Background()
	seq, err := m.NewSequence()
	if err != nil {
		b.Fatal(err)
	}
	defer seq.Close()
	ids := promptIDs(cfg.VocabSize, m.ContextLength())
	warmUp(b, m, ids[:1])
	meter := newMeter(b, runtime.GOMAXPROCS(0), 1, false)
	for b.Loop() {
		if seq.Len() == m.ContextLength() {
			b.Fatal("context full")
		}
		meter.time(func() {
			if _, err := seq.Append(ctx, ids[seq.Len():seq.Len()+1], mixtral.EvalOptions{}); err != nil {
				b.Fatal(err)
			}
		})
	}
	meter.report(float64(DecodeWeightBytes(cfg)), TokenFLOPs(cfg))
}

// readAt4K reads the safetensors file at path into memory at the offset modulo 4096 that a
// mapping gives it.
func readAt4K(path string) (*safetensors.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, int(st.Size())+4096)
	off := (4096 - int(uintptr(unsafe.Pointer(&buf[0]))%4096)) % 4096
	file := buf[off : off+int(st.Size())]
	if _, err := io.ReadFull(f, file); err != nil {
		return nil, err
	}
	return safetensors.Parse(file)
}

// BenchmarkLoadedPrefill evaluates prompts of 512 tokens with the checkpoints of
// BenchmarkLoadedMixtral8x7B, read in, mapped as mixtral.Load maps them ("mapped") or loaded
// with mixtral.Options.InMemory ("in-memory"), as benchmarkPrefill reports them: the figure to
// hold against another engine's prompt processing of the same file (llama-bench -p 512). The
// bf16 checkpoint runs with exact float32 activations and with activations rounded to bfloat16
// (cpu.Options.BF16Activations).
func BenchmarkLoadedPrefill(b *testing.B) {
	ctx := context.Background()
	for _, c := range []struct {
		dtype   safetensors.DType
		rounded bool
	}{{safetensors.BF16, false}, {safetensors.BF16, true}, {safetensors.F16, false}} {
		name := strings.ToLower(string(c.dtype))
		if c.rounded {
			name += "-bf16-activations"
		}
		for _, where := range []string{"mapped", "in-memory"} {
			b.Run(name+"/"+where, func(b *testing.B) {
				be := cpu.NewWithOptions(cpu.Options{BF16Activations: c.rounded})
				defer be.Close()
				opts := mixtral.Options{ContextLength: 1024, Backend: be, InMemory: where == "in-memory"}
				m, err := loadPreloaded(ctx, syntheticDir(b, c.dtype), opts)
				if err != nil {
					b.Fatal(err)
				}
				defer m.Close()
				benchmarkPrefill(b, m, 512, c.rounded)
			})
		}
	}
}

// BenchmarkLoadedFirstToken times what the first request after loading the bf16 checkpoint
// of BenchmarkLoadedMixtral8x7B waits for, the checkpoint evicted from the page cache before
// each load: load-s for mixtral.Load, preload-s for Model.Preload ("preloaded" only),
// first-s for the first one-token step and next-s for the second.
func BenchmarkLoadedFirstToken(b *testing.B) {
	dir := syntheticDir(b, safetensors.BF16)
	path := filepath.Join(dir, safetensors.SingleFileName)
	ctx := context.Background()
	for _, preload := range []bool{false, true} {
		name := "cold"
		if preload {
			name = "preloaded"
		}
		b.Run(name, func(b *testing.B) {
			var load, pre, first, next time.Duration
			for b.Loop() {
				if err := evict(path); err != nil {
					b.Skip("cannot evict the checkpoint from the page cache:", err)
				}
				start := time.Now()
				m, err := mixtral.Load(ctx, dir, mixtral.Options{ContextLength: 64})
				if err != nil {
					b.Fatal(err)
				}
				load += time.Since(start)
				if preload {
					start = time.Now()
					if err := m.Preload(ctx, nil); err != nil {
						b.Fatal(err)
					}
					pre += time.Since(start)
				}
				seq, err := m.NewSequence()
				if err != nil {
					b.Fatal(err)
				}
				for i, d := range []*time.Duration{&first, &next} {
					start = time.Now()
					if _, err := seq.Append(ctx, []int{1 + i}, mixtral.EvalOptions{}); err != nil {
						b.Fatal(err)
					}
					*d += time.Since(start)
				}
				seq.Close()
				m.Close()
			}
			n := float64(b.N)
			b.ReportMetric(load.Seconds()/n, "load-s")
			b.ReportMetric(pre.Seconds()/n, "preload-s")
			b.ReportMetric(first.Seconds()/n, "first-s")
			b.ReportMetric(next.Seconds()/n, "next-s")
		})
	}
}

// BenchmarkLoadQuantized times mixtral.Load of the bf16 checkpoint of
// BenchmarkLoadedMixtral8x7B quantized at load ("at-load") and of the same checkpoint written
// quantized by mixtral.Quantize ("stored", written once per run), as q8 and q4: load-s per
// load, the page cache warm.
func BenchmarkLoadQuantized(b *testing.B) {
	src := syntheticDir(b, safetensors.BF16)
	ctx := context.Background()
	for _, q := range []backend.Quantization{backend.Q8, backend.Q4} {
		stored := filepath.Join(b.TempDir(), string(q))
		if err := mixtral.Quantize(ctx, src, stored, q, mixtral.QuantizeOptions{}); err != nil {
			b.Fatal(err)
		}
		for _, c := range []struct {
			name string
			dir  string
			q    backend.Quantization
		}{{"at-load", src, q}, {"stored", stored, backend.AsStored}} {
			b.Run(string(q)+"/"+c.name, func(b *testing.B) {
				for b.Loop() {
					m, err := mixtral.Load(ctx, c.dir, mixtral.Options{ContextLength: 64, Quantize: c.q})
					if err != nil {
						b.Fatal(err)
					}
					m.Close()
				}
				b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "load-s")
			})
		}
	}
}
