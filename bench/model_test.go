package bench

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/fathom-llm/fathom/backend/cpu"
	"github.com/fathom-llm/fathom/internal/fixtures"
	"github.com/fathom-llm/fathom/internal/reference"
	"github.com/fathom-llm/fathom/mixtral"
	"github.com/fathom-llm/fathom/safetensors"
)

// bandwidth is the machine's memory read bandwidth, measured once per benchmark run.
var bandwidth = sync.OnceValue(MeasureBandwidth)

// benchmarkPrefill times evaluating a prompt of n tokens in a fresh sequence, after one
// untimed evaluation (warmUp). Besides tokens/s it reports tokens per second of processor
// time (tokens/cpu-s, all workers together), which other work on the machine moves less, and
// the operations of PrefillFLOPs as GFLOP/s of the fastest iteration, %fma of the float32 FMA
// peak measured just before and %fma-cpu per second of processor time (as the MoE benchmarks
// report them), and with rounded (the model's products take activations rounded to bfloat16)
// %bf16 and %bf16-cpu of the AVX512_BF16 peak.
func benchmarkPrefill(b *testing.B, m *mixtral.Model, n int, rounded bool) {
	ids := promptIDs(m.Config().VocabSize, n)
	ctx := context.Background()
	warmUp(b, m, ids)
	meter := newMeter(b, runtime.GOMAXPROCS(0), n, rounded)
	for b.Loop() {
		seq, err := m.NewSequence()
		if err != nil {
			b.Fatal(err)
		}
		meter.time(func() {
			if _, err := seq.Append(ctx, ids, mixtral.EvalOptions{}); err != nil {
				b.Fatal(err)
			}
		})
		seq.Close()
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "tokens/s")
	if cpu := cpuTime() - meter.cpu0; cpu > 0 {
		b.ReportMetric(float64(n*b.N)/cpu.Seconds(), "tokens/cpu-s")
	}
	meter.report(0, PrefillFLOPs(m.Config(), n))
}

// warmUp evaluates ids once in a sequence of its own, untimed, as llama-bench does before its
// repetitions: the first step after a load pays one-time costs (the first touch of the working
// memory and of the KV cache) that BenchmarkLoadedFirstToken times on their own.
func warmUp(b *testing.B, m *mixtral.Model, ids []int) {
	seq, err := m.NewSequence()
	if err != nil {
		b.Fatal(err)
	}
	defer seq.Close()
	if _, err := seq.Append(context.Background(), ids, mixtral.EvalOptions{}); err != nil {
		b.Fatal(err)
	}
}

// benchmarkDecode times appending one token at a time after a short prompt, starting a new
// sequence whenever the context is full.
func benchmarkDecode(b *testing.B, m *mixtral.Model) {
	ctx := context.Background()
	ids := promptIDs(m.Config().VocabSize, m.ContextLength())
	var seq *mixtral.Sequence
	defer func() {
		if seq != nil {
			seq.Close()
		}
	}()
	b.ResetTimer()
	for b.Loop() {
		if seq == nil || seq.Len() == m.ContextLength() {
			b.StopTimer()
			if seq != nil {
				seq.Close()
			}
			var err error
			if seq, err = m.NewSequence(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		if _, err := seq.Append(ctx, ids[seq.Len():seq.Len()+1], mixtral.EvalOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	tps := float64(b.N) / b.Elapsed().Seconds()
	gbs := tps * float64(DecodeWeightBytes(m.Config()))
	b.ReportMetric(tps, "tokens/s")
	b.ReportMetric(gbs/1e9, "GB/s")
	b.ReportMetric(100*gbs/bandwidth(), "%bandwidth")
}

// promptIDs returns n token ids spread over the vocabulary.
func promptIDs(vocab, n int) []int {
	ids := make([]int, n)
	for i := range ids {
		ids[i] = 1 + (i*7919)%(vocab-1)
	}
	return ids
}

// BenchmarkTinyCodeMixtral measures the fixture model trained on Python source (12M
// parameters, bf16) on the CPU backend: prompts of 256 to 4,096 tokens (in steps of
// mixtral.DefaultMaxBatch tokens, the later ones attending to the earlier ones in the cache)
// and decoding.
func BenchmarkTinyCodeMixtral(b *testing.B) {
	m, err := mixtral.Load(context.Background(), fixtures.Bundled(b), mixtral.Options{ContextLength: 4096 + 16})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	for _, n := range []int{256, 1024, 4096} {
		b.Run(fmt.Sprintf("prefill-%d", n), func(b *testing.B) { benchmarkPrefill(b, m, n, false) })
	}
	b.Run("decode", func(b *testing.B) { benchmarkDecode(b, m) })
}

// BenchmarkMixtral8x7BLayer measures one decoder layer with the exact shapes of Mixtral 8x7B
// (random bf16 weights, plus the embedding and the lm_head), on the CPU backend. Decoding
// reads about 1 GB of weights per token, 704 MB of it the two chosen experts. The prompt runs
// with exact float32 activations and, as "prefill-512-bf16-activations", with the activations
// of the bfloat16 products rounded to bfloat16 (cpu.Options.BF16Activations).
func BenchmarkMixtral8x7BLayer(b *testing.B) {
	cfg := Mixtral8x7B(1)
	src, err := NewSynthetic(cfg, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	for _, rounded := range []bool{false, true} {
		be := cpu.NewWithOptions(cpu.Options{BF16Activations: rounded})
		m, err := mixtral.New(cfg, src, mixtral.Options{ContextLength: 1024, Backend: be})
		if err != nil {
			b.Fatal(err)
		}
		if rounded {
			b.Run("prefill-512-bf16-activations", func(b *testing.B) { benchmarkPrefill(b, m, 512, true) })
		} else {
			b.Run("decode", func(b *testing.B) { benchmarkDecode(b, m) })
			b.Run("prefill-512", func(b *testing.B) { benchmarkPrefill(b, m, 512, false) })
		}
		m.Close()
		be.Close()
	}
}

func TestDecodeWeightBytes(t *testing.T) {
	// Mixtral 8x7B reads about 12.75 G parameters per token: 2 of 8 experts in 32 layers,
	// attention and the lm_head.
	got := DecodeWeightBytes(Mixtral8x7B(32))
	if got < 25.3e9 || got > 25.7e9 {
		t.Fatalf("DecodeWeightBytes(8x7B) = %d, want about 25.5e9", got)
	}
}

func TestSyntheticModelRuns(t *testing.T) {
	cfg := SmallMixtral(1)
	src, err := NewSynthetic(cfg, 3)
	if err != nil {
		t.Fatal(err)
	}
	m, err := mixtral.New(cfg, src, mixtral.Options{ContextLength: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ev, err := m.Eval(context.Background(), promptIDs(cfg.VocabSize, 10), mixtral.EvalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range ev.Logits[0] {
		if v != v || v > 1e6 || v < -1e6 {
			t.Fatalf("logit %v is not finite and small", v)
		}
	}
	// The same seed gives the same weights.
	again, err := NewSynthetic(cfg, 3)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := src.Tensor("model.layers.0.block_sparse_moe.experts.5.w2.weight")
	c, _ := again.Tensor("model.layers.0.block_sparse_moe.experts.5.w2.weight")
	if string(a.Data) != string(c.Data) {
		t.Fatal("synthetic weights differ between runs with the same seed")
	}
}

// TestWriteSynthetic writes a small synthetic checkpoint in bf16 and in f16: loaded, the bf16
// one computes the logits of the in-memory checkpoint bit for bit, and the f16 one holds the
// same values.
func TestWriteSynthetic(t *testing.T) {
	cfg := SmallMixtral(2)
	mem, err := NewSynthetic(cfg, 5)
	if err != nil {
		t.Fatal(err)
	}
	want, err := mixtral.New(cfg, mem, mixtral.Options{ContextLength: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	ctx := context.Background()
	ids := promptIDs(cfg.VocabSize, 10)
	ew, err := want.Eval(ctx, ids, mixtral.EvalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, dtype := range []safetensors.DType{safetensors.BF16, safetensors.F16} {
		dir := t.TempDir()
		if err := WriteSynthetic(dir, cfg, dtype, 5); err != nil {
			t.Fatal(err)
		}
		m, err := mixtral.Load(ctx, dir, mixtral.Options{ContextLength: 64})
		if err != nil {
			t.Fatal(err)
		}
		if m.Config().NumHiddenLayers != 2 || m.Config().HeadDim != 16 {
			t.Errorf("%s: config %+v", dtype, m.Config())
		}
		eg, err := m.Eval(ctx, ids, mixtral.EvalOptions{})
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		// The same values: bit for bit through the same kernels, to rounding through the
		// float16 ones.
		if dtype == safetensors.BF16 && !slices.Equal(eg.Logits[0], ew.Logits[0]) {
			t.Errorf("%s: the written checkpoint's logits differ from the in-memory one's", dtype)
		}
		if e := reference.RelErr(eg.Logits[0], ew.Logits[0]); !(e < 1e-5) {
			t.Errorf("%s: the written checkpoint's logits differ from the in-memory one's by %.3g", dtype, e)
		}
	}
}
