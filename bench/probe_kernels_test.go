package bench

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/fathom-llm/fathom/internal/half"
	"github.com/fathom-llm/fathom/internal/kernels"
)

// The kernels at the shape of one Mixtral 8x7B expert's up projection: [14336, 4096] weights,
// one token (decode, bound by memory) and 512 tokens (prefill, bound by arithmetic), on one
// and two goroutines that split the rows in chunks of whole cache lines of output.

const (
	expertRows = 14336
	expertCols = 4096
)

// probe is the roofline that a benchmark is compared with, measured with as many goroutines
// in the same run, since other work on the machine moves it.
type probe struct {
	bw, fma, bf16 float64
	// fmaCPU and bf16CPU are the arithmetic peaks per second of processor time, which
	// other work on the machine does not move.
	fmaCPU, bf16CPU float64
}

// meter times the iterations of a benchmark and measures its probe. For one token it samples
// the read bandwidth after every iteration (the timer stopped) and compares the fastest
// iteration with the best sample: on a machine whose bandwidth moves from second to second (a
// virtual machine), both then come from the same stretch of time, where a probe measured
// once beforehand may catch a slow moment or a fast one. For many tokens the arithmetic peaks
// are measured just before the iterations.
type meter struct {
	b    *testing.B
	p    probe
	bw   *bandwidthProbe // one token
	best time.Duration
	cpu0 time.Duration
}

func newMeter(b *testing.B, threads, tokens int, bf16 bool) *meter {
	m := &meter{b: b, best: math.MaxInt64}
	if tokens == 1 {
		m.bw = newBandwidthProbe(threads)
	} else {
		m.p = probe{fma: MeasurePeakFMAThreads(threads), fmaCPU: peakPerCPUSecond(kernels.FMALoop)}
		if bf16 && kernels.BF16DotLoop(1) > 0 {
			m.p.bf16 = measurePeak(threads, kernels.BF16DotLoop)
			m.p.bf16CPU = peakPerCPUSecond(kernels.BF16DotLoop)
		}
	}
	b.ResetTimer()
	m.cpu0 = cpuTime()
	return m
}

// time runs and times one iteration f.
func (m *meter) time(f func()) {
	start := time.Now()
	f()
	m.best = min(m.best, time.Since(start))
	if m.bw != nil {
		m.b.StopTimer()
		m.p.bw = max(m.p.bw, m.bw.sample())
		m.b.StartTimer()
	}
}

// report adds the weight bandwidth and arithmetic rate of the fastest iteration, which is
// the one least disturbed by other work on the machine, and their ratios to the probe: %bw of
// the read bandwidth (one token), %fma of the float32 FMA peak and, for the
// bfloat16-activation product, %bf16 of the VDPBF16PS peak (many tokens). ns/op stays the
// mean. For many tokens, %fma-cpu and %bf16-cpu compare the operations per second of
// processor time (over all iterations) with the peak per second of processor time: the
// kernel's efficiency, whatever else runs on the machine.
func (m *meter) report(weightBytes, flops float64) {
	b, p, sec := m.b, m.p, m.best.Seconds()
	if weightBytes > 0 {
		b.ReportMetric(weightBytes/sec/1e9, "GB/s")
	}
	b.ReportMetric(flops/sec/1e9, "GFLOP/s")
	if p.bw > 0 && weightBytes > 0 {
		b.ReportMetric(100*weightBytes/sec/p.bw, "%bw")
	}
	if p.fma > 0 {
		b.ReportMetric(100*flops/sec/p.fma, "%fma")
	}
	if p.bf16 > 0 {
		b.ReportMetric(100*flops/sec/p.bf16, "%bf16")
	}
	if cpu := cpuTime() - m.cpu0; cpu > 0 && m.bw == nil {
		perCPU := flops * float64(b.N) / cpu.Seconds()
		if p.fmaCPU > 0 {
			b.ReportMetric(100*perCPU/p.fmaCPU, "%fma-cpu")
		}
		if p.bf16CPU > 0 {
			b.ReportMetric(100*perCPU/p.bf16CPU, "%bf16-cpu")
		}
	}
}

// peakPerCPUSecond returns the operations per second of processor time of loop on one
// goroutine, over about 200 ms of it.
func peakPerCPUSecond(loop func(int) int64) float64 {
	start := cpuTime()
	var ops int64
	for cpuTime()-start < 200*time.Millisecond {
		ops += loop(1 << 16)
	}
	d := cpuTime() - start
	if d <= 0 {
		return 0
	}
	return float64(ops) / d.Seconds()
}

// expert is the expert matrix in each stored format, filled with small values.
type expert struct {
	bf16, f16 []uint16
	q8, q4    []byte
}

var expertWeights = sync.OnceValue(func() expert {
	n := expertRows * expertCols
	e := expert{bf16: make([]uint16, n), f16: make([]uint16, n),
		q8: make([]byte, expertRows*kernels.Q8RowBytes(expertCols)), q4: make([]byte, expertRows*kernels.Q4RowBytes(expertCols))}
	row := make([]float32, expertCols)
	s := uint32(1)
	for r := range expertRows {
		for c := range row {
			s = s*1664525 + 1013904223
			row[c] = float32(int32(s>>8)-1<<23) / (1 << 23) * 0.05
			e.bf16[r*expertCols+c] = half.F32ToBF16(row[c])
			e.f16[r*expertCols+c] = f32ToF16(row[c])
		}
		if err := kernels.QuantizeQ8(e.q8[r*kernels.Q8RowBytes(expertCols):][:kernels.Q8RowBytes(expertCols)], row, expertCols); err != nil {
			panic(err)
		}
		if err := kernels.QuantizeQ4(e.q4[r*kernels.Q4RowBytes(expertCols):][:kernels.Q4RowBytes(expertCols)], row, expertCols); err != nil {
			panic(err)
		}
	}
	return e
})

// f32ToF16 converts a float32 of magnitude below 1 (and not tiny) to float16 bits by
// truncation, enough for benchmark data.
func f32ToF16(v float32) uint16 {
	b := math.Float32bits(v)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23&0xff) - 127 + 15
	if exp <= 0 {
		return sign
	}
	return sign | uint16(exp)<<10 | uint16(b>>13&0x3ff)
}

func activations(n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(math.Sin(float64(i)))
	}
	return x
}

// splitRows runs f on row ranges of [0, rows) for threads goroutines, each a multiple of 16
// rows so that no two goroutines write the same cache line of a float32 output.
func splitRows(rows, threads int, f func(lo, hi int)) {
	if threads == 1 {
		f(0, rows)
		return
	}
	chunk := (rows/threads + 15) &^ 15
	var wg sync.WaitGroup
	for lo := 0; lo < rows; lo += chunk {
		wg.Go(func() { f(lo, min(lo+chunk, rows)) })
	}
	wg.Wait()
}

// BenchmarkExpert times the product of an expert's up projection (14,336×4,096) with one
// token and with 512, in each stored format, on one core and on two. "bf16-at48" and
// "bf16-rounded-at48" are the bfloat16 products with the weights 48 bytes into a cache line,
// as a mapped checkpoint's tensors may start. 13 and 131 tokens, numbers that an expert of a
// short and of a 512-token prompt may be given, divide into no whole number of any tile's
// tokens (16-bit formats only).
func BenchmarkExpert(b *testing.B) {
	e := expertWeights()
	n := float64(expertRows * expertCols)
	bytes := map[string]float64{"bf16": 2 * n, "bf16-rounded": 2 * n, "f16": 2 * n,
		"q8": float64(len(e.q8)), "q4": float64(len(e.q4))}
	at48 := make([]uint16, len(e.bf16)+32)
	at48 = at48[(48-int(uintptr(unsafe.Pointer(&at48[0])))%64+64)%64/2:][:len(e.bf16)]
	copy(at48, e.bf16)
	for _, tokens := range []int{1, 13, 131, 512} {
		x := activations(tokens * expertCols)
		out := make([]float32, tokens*expertRows)
		names := []string{"bf16", "bf16-at48", "bf16-rounded", "bf16-rounded-at48", "f16", "q8", "q4"}
		if tokens == 13 || tokens == 131 {
			names = []string{"bf16", "bf16-rounded", "f16"}
		}
		for _, name := range names {
			dt, w := name, e.bf16
			if d, ok := strings.CutSuffix(name, "-at48"); ok {
				dt, w = d, at48
			}
			if dt == "bf16-rounded" && tokens == 1 {
				continue
			}
			for _, threads := range []int{1, 2} {
				b.Run(fmt.Sprintf("tokens=%d/%s/threads=%d", tokens, name, threads), func(b *testing.B) {
					m := newMeter(b, threads, tokens, dt == "bf16-rounded")
					for b.Loop() {
						m.time(func() {
							splitRows(expertRows, threads, func(lo, hi int) {
								switch {
								case dt == "bf16" && tokens == 1:
									kernels.MatVecBF16(out[lo:hi], w[lo*expertCols:hi*expertCols], x, expertCols)
								case dt == "f16" && tokens == 1:
									kernels.MatVecF16(out[lo:hi], e.f16[lo*expertCols:hi*expertCols], x, expertCols)
								case dt == "bf16":
									kernels.MatMulBF16Rows(out, w, x, tokens, expertRows, expertCols, lo, hi)
								case dt == "f16":
									kernels.MatMulF16Rows(out, e.f16, x, tokens, expertRows, expertCols, lo, hi)
								case dt == "bf16-rounded":
									kernels.MatMulBF16RoundedRows(out, w, x, tokens, expertRows, expertCols, lo, hi)
								case dt == "q8":
									kernels.MatMulQ8Rows(out, e.q8, x, tokens, expertRows, expertCols, lo, hi)
								case dt == "q4":
									kernels.MatMulQ4Rows(out, e.q4, x, tokens, expertRows, expertCols, lo, hi)
								}
							})
						})
					}
					m.report(bytes[dt], 2*float64(tokens)*n)
				})
			}
		}
	}
}

// BenchmarkExpertStream is the one-token product on one goroutine measured for a shared,
// noisy machine: it times chunks of 256 rows (1 to 2 MiB) in sweeps over the whole matrix and
// reports the rate of the chunk at the 10th percentile, which other work on the machine has
// seldom disturbed, next to the read probe measured the same way (probe-GB/s, %bw).
func BenchmarkExpertStream(b *testing.B) {
	e := expertWeights()
	const rpc = 256
	chunks := expertRows / rpc
	words := make([]uint64, expertRows*expertCols/4)
	for i := range words {
		words[i] = uint64(i)
	}
	x := activations(expertCols)
	out := make([]float32, expertRows)
	quantile := func(f func(i int)) time.Duration {
		var ds []time.Duration
		for range 4 {
			for i := range chunks {
				start := time.Now()
				f(i)
				ds = append(ds, time.Since(start))
			}
		}
		slices.Sort(ds)
		return ds[len(ds)/10]
	}
	r8, r4 := kernels.Q8RowBytes(expertCols), kernels.Q4RowBytes(expertCols)
	for _, dt := range []string{"bf16", "f16", "q8", "q4"} {
		b.Run(dt, func(b *testing.B) {
			probe := float64(rpc*expertCols*2) / quantile(func(i int) {
				kernels.XORWords(words[i*rpc*expertCols/4 : (i+1)*rpc*expertCols/4])
			}).Seconds()
			var bytes int
			var d time.Duration
			for b.Loop() {
				d = quantile(func(i int) {
					o, lo, hi := out[i*rpc:(i+1)*rpc], i*rpc, (i+1)*rpc
					switch dt {
					case "bf16":
						bytes = rpc * expertCols * 2
						kernels.MatVecBF16(o, e.bf16[lo*expertCols:hi*expertCols], x, expertCols)
					case "f16":
						bytes = rpc * expertCols * 2
						kernels.MatVecF16(o, e.f16[lo*expertCols:hi*expertCols], x, expertCols)
					case "q8":
						bytes = rpc * r8
						kernels.MatVecQ8(o, e.q8[lo*r8:hi*r8], x, expertCols)
					case "q4":
						bytes = rpc * r4
						kernels.MatVecQ4(o, e.q4[lo*r4:hi*r4], x, expertCols)
					}
				})
			}
			rate := float64(bytes) / d.Seconds()
			b.ReportMetric(rate/1e9, "GB/s")
			b.ReportMetric(probe/1e9, "probe-GB/s")
			b.ReportMetric(100*rate/probe, "%bw")
		})
	}
}
