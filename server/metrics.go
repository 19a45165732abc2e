package server

import (
	"maps"
	"net/http"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fathom-llm/fathom/engine"
)

// Metered is a Model that reports its serving engine's figures (a *mixtral.Model does). The
// server then exposes them at GET /metrics in the Prometheus text format.
type Metered interface {
	Metrics() engine.Metrics
}

// metricPrefix replaces vLLM's "vllm:" in the names of the metrics, so that dashboards made
// for vLLM need only the prefix changed.
const metricPrefix = "fathom:"

// engineCollector turns an engine's Metrics into Prometheus metrics at each scrape.
type engineCollector struct {
	m Metered

	running, waiting, kvUsage, blocksUsed, blocksFree, cacheInfo *prometheus.Desc
	preemptions, queries, hits, prompt, generated, success       *prometheus.Desc
	ttft, tpot, queue, latency                                   *prometheus.Desc
}

func newEngineCollector(m Metered) *engineCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(metricPrefix+name, help, labels, nil)
	}
	return &engineCollector{
		m:           m,
		running:     d("num_requests_running", "Number of sequences running: holding KV cache blocks and computed at each step."),
		waiting:     d("num_requests_waiting", "Number of sequences waiting for room in the KV cache or for their turn."),
		kvUsage:     d("kv_cache_usage_perc", "KV cache usage: the share of its blocks held by sequences (1 means 100 percent)."),
		blocksUsed:  d("kv_cache_blocks_used", "KV cache blocks held by sequences."),
		blocksFree:  d("kv_cache_blocks_free", "KV cache blocks free, cached prefix blocks included (reused last)."),
		cacheInfo:   d("cache_config_info", "Information of the KV cache configuration.", "block_size", "num_gpu_blocks", "block_bytes"),
		preemptions: d("num_preemptions_total", "Cumulative number of sequences preempted to make room in the KV cache."),
		queries:     d("prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache."),
		hits:        d("prefix_cache_hits_total", "Prompt tokens found in the prefix cache."),
		prompt:      d("prompt_tokens_total", "Number of prompt tokens received."),
		generated:   d("generation_tokens_total", "Number of tokens generated."),
		success:     d("request_success_total", "Number of requests that finished, by the finish reason of their last choice.", "finished_reason"),
		ttft:        d("time_to_first_token_seconds", "Histogram of time to first token in seconds."),
		tpot:        d("time_per_output_token_seconds", "Histogram of time per output token in seconds."),
		queue:       d("request_queue_time_seconds", "Histogram of time spent waiting before the first step, in seconds."),
		latency:     d("e2e_request_latency_seconds", "Histogram of end to end request latency in seconds."),
	}
}

func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.running, c.waiting, c.kvUsage, c.blocksUsed, c.blocksFree, c.cacheInfo,
		c.preemptions, c.queries, c.hits, c.prompt, c.generated, c.success, c.ttft, c.tpot, c.queue, c.latency} {
		ch <- d
	}
}

func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m.Metrics()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.running, float64(m.Running))
	gauge(c.waiting, float64(m.Waiting))
	gauge(c.kvUsage, m.KVUsage())
	gauge(c.blocksUsed, float64(m.BlocksUsed))
	gauge(c.blocksFree, float64(m.BlocksTotal-m.BlocksUsed))
	gauge(c.cacheInfo, 1, strconv.Itoa(m.BlockSize), strconv.Itoa(m.BlocksTotal), strconv.FormatInt(m.BlockBytes, 10))
	counter(c.preemptions, m.Preemptions)
	counter(c.queries, m.PrefixQueries)
	counter(c.hits, m.PrefixHits)
	counter(c.prompt, m.PromptTokens)
	counter(c.generated, m.GeneratedTokens)
	for _, r := range slices.Sorted(maps.Keys(m.Finished)) {
		counter(c.success, m.Finished[r], string(r))
	}
	counter(c.success, m.Aborted, "abort")
	for _, h := range []struct {
		d *prometheus.Desc
		h engine.Histogram
	}{{c.ttft, m.TimeToFirstToken}, {c.tpot, m.TimePerOutputToken}, {c.queue, m.QueueTime}, {c.latency, m.Latency}} {
		buckets := make(map[float64]uint64, len(h.h.Bounds))
		var cum uint64
		for i, b := range h.h.Bounds {
			cum += h.h.Counts[i]
			buckets[b] = cum
		}
		ch <- prometheus.MustNewConstHistogram(h.d, h.h.Count, h.h.Sum, buckets)
	}
}

// newMetricsHandler returns the handler of GET /metrics: the engine's figures when the model
// reports them, and the Go runtime's and the process's.
func newMetricsHandler(m Model) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if mm, ok := m.(Metered); ok {
		reg.MustRegister(newEngineCollector(mm))
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// metrics answers GET /metrics.
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) *apiError {
	s.metricsHandler.ServeHTTP(w, r)
	return nil
}
