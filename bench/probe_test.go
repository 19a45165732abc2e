package bench

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/fathom-llm/fathom/internal/kernels"
)

func BenchmarkMemoryBandwidth(b *testing.B) {
	threads := runtime.GOMAXPROCS(0)
	buf := make([]uint64, bandwidthBuffer()/8)
	parts := split(len(buf), threads)
	parallel(threads, func(i int) {
		p := buf[parts[i]:parts[i+1]]
		for j := range p {
			p[j] = uint64(j) + 1
		}
	})
	b.SetBytes(int64(len(buf) * 8))
	b.ResetTimer()
	for b.Loop() {
		parallel(threads, func(i int) { kernels.XORWords(buf[parts[i]:parts[i+1]]) })
	}
	b.ReportMetric(float64(len(buf)*8)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
}

func benchmarkPeak(b *testing.B, loop func(int) int64) {
	threads := runtime.GOMAXPROCS(0)
	if loop(1) == 0 {
		b.Skip("not supported on this CPU")
	}
	var mu sync.Mutex
	var total int64
	for b.Loop() {
		parallel(threads, func(int) {
			f := loop(1 << 16)
			mu.Lock()
			total += f
			mu.Unlock()
		})
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

func BenchmarkPeakFMA(b *testing.B) { benchmarkPeak(b, kernels.FMALoop) }

func BenchmarkPeakBF16Dot(b *testing.B) { benchmarkPeak(b, kernels.BF16DotLoop) }

func ExampleMeasurePeakFMA() {
	start := time.Now()
	peak := MeasurePeakFMA()
	fmt.Println(peak > 0, time.Since(start) < time.Minute)
	// Output: true true
}
