package bench

import (
	"runtime"
	"sync"
	"time"

	"github.com/fathom-llm/fathom/internal/kernels"
	"github.com/klauspost/cpuid/v2"
)

// The roofline probes: what this machine can do at best, measured in the same run as the
// benchmarks that are compared with it.

// bandwidthBuffer returns the size of the buffer the bandwidth probe reads: 8 times the last
// level cache, and at least 256 MiB.
func bandwidthBuffer() int {
	return max(256<<20, 8*cpuid.CPU.Cache.L3)
}

// MeasureBandwidth returns the memory read bandwidth, in bytes per second, of all the cores
// that Go may use (GOMAXPROCS) reading a buffer much larger than the last-level cache: the
// best of three passes.
func MeasureBandwidth() float64 { return MeasureBandwidthThreads(runtime.GOMAXPROCS(0)) }

// MeasureBandwidthThreads is MeasureBandwidth with the given number of reading goroutines.
func MeasureBandwidthThreads(threads int) float64 {
	p := newBandwidthProbe(threads)
	best := 0.0
	for range 3 {
		best = max(best, p.sample())
	}
	return best
}

// bandwidthProbe reads a buffer much larger than the last-level cache with a number of
// goroutines; a benchmark can sample it between its iterations.
type bandwidthProbe struct {
	buf   []uint64
	parts []int
}

func newBandwidthProbe(threads int) *bandwidthProbe {
	threads = max(threads, 1)
	p := &bandwidthProbe{buf: make([]uint64, bandwidthBuffer()/8)}
	p.parts = split(len(p.buf), threads)
	// Write every page first: untouched pages all map one zero page, which reads from cache.
	parallel(threads, func(i int) {
		w := p.buf[p.parts[i]:p.parts[i+1]]
		for j := range w {
			w[j] = uint64(j) * 0x9e3779b97f4a7c15
		}
	})
	return p
}

// sample reads the buffer once and returns the bytes read per second.
func (p *bandwidthProbe) sample() float64 {
	start := time.Now()
	parallel(len(p.parts)-1, func(i int) { kernels.XORWords(p.buf[p.parts[i]:p.parts[i+1]]) })
	return float64(len(p.buf)*8) / time.Since(start).Seconds()
}

// MeasurePeakFMA returns the float32 multiply-add peak, in floating-point operations per
// second (a multiply-add counts two), of all the cores Go may use: each runs a register-only
// loop of independent vector FMAs for about 100 ms; the best of three runs.
func MeasurePeakFMA() float64 {
	return measurePeak(runtime.GOMAXPROCS(0), kernels.FMALoop)
}

// MeasurePeakFMAThreads is MeasurePeakFMA with the given number of goroutines.
func MeasurePeakFMAThreads(threads int) float64 { return measurePeak(max(threads, 1), kernels.FMALoop) }

// MeasurePeakBF16 is MeasurePeakFMA for the bfloat16 dot-product instruction VDPBF16PS, the
// arithmetic roof of kernels.MatMulBF16Rounded; 0 where the CPU lacks it.
func MeasurePeakBF16() float64 {
	if kernels.BF16DotLoop(1) == 0 {
		return 0
	}
	return measurePeak(runtime.GOMAXPROCS(0), kernels.BF16DotLoop)
}

// measurePeak times loop on threads goroutines, sized to run about 100 ms each.
func measurePeak(threads int, loop func(n int) int64) float64 {
	n := 1 << 14
	for {
		start := time.Now()
		loop(n)
		if d := time.Since(start); d > 10*time.Millisecond {
			n = int(float64(n) * float64(100*time.Millisecond) / float64(d))
			break
		}
		n *= 4
	}
	best := 0.0
	for range 3 {
		var flops [64]int64
		start := time.Now()
		parallel(threads, func(i int) { flops[i%64] += loop(n) })
		var total int64
		for _, f := range flops {
			total += f
		}
		if p := float64(total) / time.Since(start).Seconds(); p > best {
			best = p
		}
	}
	return best
}

// split returns threads+1 boundaries that divide n into nearly equal parts.
func split(n, threads int) []int {
	b := make([]int, threads+1)
	for i := range b {
		b[i] = n * i / threads
	}
	return b
}

// parallel runs f(0) … f(threads-1) on their own goroutines and waits for them all.
func parallel(threads int, f func(i int)) {
	var wg sync.WaitGroup
	for i := range threads {
		wg.Go(func() { f(i) })
	}
	wg.Wait()
}
