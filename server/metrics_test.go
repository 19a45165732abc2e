package server

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fathom-llm/fathom/engine"
	"github.com/fathom-llm/fathom/sampling"
)

// meteredFake is the fake model with an engine's figures.
type meteredFake struct {
	*fakeModel
	m engine.Metrics
}

func (f *meteredFake) Metrics() engine.Metrics { return f.m }

// scrape returns the metric families at /metrics.
func scrape(t *testing.T, m Model) map[string]*dto.MetricFamily {
	t.Helper()
	s, err := New(m, Options{ModelNames: []string{"m"}, APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	defer ts.Close()
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/metrics", nil)
	resp, body := do(t, ts, req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics without a key: %d %s", resp.StatusCode, body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%v in\n%s", err, body)
	}
	return mfs
}

func TestMetrics(t *testing.T) {
	h := func(bounds []float64, counts ...uint64) engine.Histogram {
		var n uint64
		for _, c := range counts {
			n += c
		}
		return engine.Histogram{Bounds: bounds, Counts: counts, Sum: 1.5, Count: n}
	}
	f := &meteredFake{fakeModel: newFake(), m: engine.Metrics{
		Running: 3, Waiting: 2, BlocksTotal: 100, BlocksUsed: 25, BlockSize: 16, BlockBytes: 4096,
		Preemptions: 4, PrefixQueries: 1000, PrefixHits: 750, PromptTokens: 1200, GeneratedTokens: 300,
		Finished: map[sampling.FinishReason]int64{sampling.FinishStop: 5, sampling.FinishLength: 2}, Aborted: 1,
		TimeToFirstToken:   h([]float64{0.1, 1}, 1, 2, 3),
		TimePerOutputToken: h([]float64{0.1}, 4, 0),
		QueueTime:          h([]float64{0.1}, 1, 0),
		Latency:            h([]float64{1, 10}, 0, 2, 0),
	}}
	mfs := scrape(t, f)
	value := func(name string, labels ...string) float64 {
		t.Helper()
		mf := mfs[name]
		if mf == nil {
			t.Fatalf("no %s", name)
		}
	metrics:
		for _, m := range mf.Metric {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.Label {
					found = found || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Counter != nil:
				return m.Counter.GetValue()
			}
		}
		t.Fatalf("no %s%v", name, labels)
		return 0
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"fathom:num_requests_running", nil, 3},
		{"fathom:num_requests_waiting", nil, 2},
		{"fathom:kv_cache_usage_perc", nil, 0.25},
		{"fathom:kv_cache_blocks_used", nil, 25},
		{"fathom:kv_cache_blocks_free", nil, 75},
		{"fathom:cache_config_info", []string{"block_size", "16", "num_gpu_blocks", "100", "block_bytes", "4096"}, 1},
		{"fathom:num_preemptions_total", nil, 4},
		{"fathom:prefix_cache_queries_total", nil, 1000},
		{"fathom:prefix_cache_hits_total", nil, 750},
		{"fathom:prompt_tokens_total", nil, 1200},
		{"fathom:generation_tokens_total", nil, 300},
		{"fathom:request_success_total", []string{"finished_reason", "stop"}, 5},
		{"fathom:request_success_total", []string{"finished_reason", "length"}, 2},
		{"fathom:request_success_total", []string{"finished_reason", "abort"}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := value(c.name, c.labels...); got != c.want {
				t.Fatalf("%g, want %g", got, c.want)
			}
		})
	}
	t.Run("histogram", func(t *testing.T) {
		hist := mfs["fathom:time_to_first_token_seconds"].GetMetric()[0].GetHistogram()
		if hist.GetSampleCount() != 6 || hist.GetSampleSum() != 1.5 || len(hist.Bucket) < 2 ||
			hist.Bucket[0].GetUpperBound() != 0.1 || hist.Bucket[0].GetCumulativeCount() != 1 ||
			hist.Bucket[1].GetUpperBound() != 1 || hist.Bucket[1].GetCumulativeCount() != 3 {
			t.Fatalf("histogram %v", hist)
		}
		for _, name := range []string{"fathom:time_per_output_token_seconds", "fathom:request_queue_time_seconds", "fathom:e2e_request_latency_seconds"} {
			if mfs[name].GetType() != dto.MetricType_HISTOGRAM {
				t.Fatalf("%s: %v", name, mfs[name])
			}
		}
	})
}

func TestMetricsWithoutEngine(t *testing.T) {
	mfs := scrape(t, newFake())
	if mfs["fathom:num_requests_running"] != nil || mfs["go_goroutines"] == nil {
		t.Fatalf("metrics of a model without an engine: %v", mfs)
	}
}
