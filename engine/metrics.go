package engine

import (
	"slices"
	"sync"
	"time"

	"github.com/fathom-llm/fathom/sampling"
)

// Histogram counts observations (in seconds) in buckets.
type Histogram struct {
	// Bounds are the buckets' upper bounds, ascending; Counts[i] counts the observations in
	// (Bounds[i-1], Bounds[i]], and Counts[len(Bounds)] those above the last bound.
	Bounds []float64
	Counts []uint64
	Sum    float64
	Count  uint64
}

func newHistogram(bounds []float64) Histogram {
	return Histogram{Bounds: bounds, Counts: make([]uint64, len(bounds)+1)}
}

func (h *Histogram) observe(v float64) {
	i, _ := slices.BinarySearch(h.Bounds, v)
	h.Counts[i]++
	h.Sum += v
	h.Count++
}

func (h Histogram) clone() Histogram {
	h.Counts = slices.Clone(h.Counts)
	return h
}

// The histograms' buckets, as vLLM's.
var (
	ttftBounds = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5,
		5, 7.5, 10, 20, 40, 80, 160, 640, 2560}
	tpotBounds = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5,
		7.5, 10, 20, 40, 80}
	latencyBounds = []float64{0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240,
		480, 960, 1920, 7680}
)

// Metrics are an engine's figures: gauges of the moment and totals since it started.
type Metrics struct {
	// Running and Waiting count sequences (each choice of a request is one) that hold KV
	// blocks and run, and that wait for room or for their turn.
	Running, Waiting int
	// BlocksTotal is the size of the KV cache in blocks of BlockSize positions and
	// BlockBytes bytes; BlocksUsed are those held by sequences, BlocksCached those that hold
	// a cached full block (held or not: the free ones are reused last).
	BlocksTotal, BlocksUsed, BlocksCached int
	BlockSize                             int
	BlockBytes                            int64

	// Preemptions counts the sequences preempted to make room.
	Preemptions int64
	// PrefixQueries counts the prompt tokens looked up in the prefix cache, PrefixHits those
	// found there.
	PrefixQueries, PrefixHits int64
	// PromptTokens and GeneratedTokens count the tokens of prompts (once per request) and
	// the tokens sampled.
	PromptTokens, GeneratedTokens int64
	// Finished counts the requests that ended, by the finish reason of their last choice to
	// end; Aborted those cancelled or failed.
	Finished map[sampling.FinishReason]int64
	Aborted  int64

	// TimeToFirstToken observes each choice's wait from arrival to its first token,
	// TimePerOutputToken each interval between two tokens of a choice, QueueTime each
	// choice's wait from arrival to its first step, and Latency each request's time from
	// arrival to its end.
	TimeToFirstToken, TimePerOutputToken, QueueTime, Latency Histogram
}

// KVUsage returns the share of the KV cache's blocks that sequences hold, from 0 to 1.
func (m Metrics) KVUsage() float64 {
	if m.BlocksTotal == 0 {
		return 0
	}
	return float64(m.BlocksUsed) / float64(m.BlocksTotal)
}

// PrefixHitRate returns PrefixHits/PrefixQueries (0 before any query).
func (m Metrics) PrefixHitRate() float64 {
	if m.PrefixQueries == 0 {
		return 0
	}
	return float64(m.PrefixHits) / float64(m.PrefixQueries)
}

// stats holds the engine's Metrics, written by the loop and read by Metrics.
type stats struct {
	mu sync.Mutex
	m  Metrics
}

func (s *stats) init(lay Layout) {
	s.m = Metrics{
		BlocksTotal: lay.Blocks, BlockSize: lay.BlockSize, BlockBytes: lay.BlockBytes,
		Finished:         map[sampling.FinishReason]int64{},
		TimeToFirstToken: newHistogram(ttftBounds), TimePerOutputToken: newHistogram(tpotBounds),
		QueueTime: newHistogram(ttftBounds), Latency: newHistogram(latencyBounds),
	}
}

// update runs f on the metrics under the lock.
func (s *stats) update(f func(m *Metrics)) {
	s.mu.Lock()
	f(&s.m)
	s.mu.Unlock()
}

// Metrics returns a snapshot of the engine's figures.
func (e *Engine) Metrics() Metrics {
	e.stats.mu.Lock()
	defer e.stats.mu.Unlock()
	m := e.stats.m
	m.Finished = make(map[sampling.FinishReason]int64, len(m.Finished))
	for k, v := range e.stats.m.Finished {
		m.Finished[k] = v
	}
	m.TimeToFirstToken = m.TimeToFirstToken.clone()
	m.TimePerOutputToken = m.TimePerOutputToken.clone()
	m.QueueTime = m.QueueTime.clone()
	m.Latency = m.Latency.clone()
	return m
}

// seconds converts a duration for a histogram.
func seconds(d time.Duration) float64 { return d.Seconds() }
