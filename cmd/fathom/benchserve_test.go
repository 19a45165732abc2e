package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fathom-llm/fathom/mixtral"
	"github.com/fathom-llm/fathom/server"
)

// TestBenchServe runs the load generator against fathom's server over the bundled model: its
// later turns find the earlier turns' prompts cached.
func TestBenchServe(t *testing.T) {
	m, err := mixtral.Load(context.Background(), "../../"+defaultModelDir, mixtral.Options{CacheTokens: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s, err := server.New(m, server.Options{ModelNames: []string{"tiny"}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	defer ts.Close()

	var out, errOut bytes.Buffer
	e := &env{stdout: &out, stderr: &errOut}
	args := []string{"serve", "--url", ts.URL + "/v1", "--users", "2", "--turns", "3", "--first-words", "60",
		"--user-words", "10", "--max-tokens", "8", "--json"}
	if err := runBench(context.Background(), e, args); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	var rep benchReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if rep.Model != "tiny" || rep.Requests != 6 || rep.Failed != 0 || len(rep.ByTurn) != 3 ||
		rep.TTFT.P50 <= 0 || rep.TTFT.P99 < rep.TTFT.P50 || rep.OutputTokensPerSecond <= 0 {
		t.Fatalf("report %+v", rep)
	}
	if rep.ByTurn[0].CachedShare != 0 || rep.ByTurn[2].CachedShare < 0.5 || rep.CachedTokens == 0 {
		t.Errorf("cached shares by turn: %+v", rep.ByTurn)
	}
	if rep.ByTurn[2].PromptTokens <= rep.ByTurn[0].PromptTokens {
		t.Errorf("the history did not grow: %+v", rep.ByTurn)
	}

	if rep.PeakStreaming < 1 || rep.PeakStreaming > 2 {
		t.Errorf("peak streaming %d", rep.PeakStreaming)
	}

	// Replies without max_tokens, a run cut short, and a long prompt sent while they stream.
	out.Reset()
	probeArgs := []string{"serve", "--url", ts.URL + "/v1", "--users", "2", "--turns", "1", "--first-words", "5",
		"--max-tokens", "0", "--duration", "3s", "--probe-words", "300", "--json"}
	if err := runBench(context.Background(), e, probeArgs); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	rep = benchReport{}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if p := rep.Probe; p == nil || p.Error != "" || p.PromptTokens < 300 || p.TTFT <= 0 || p.GapShare < 0 {
		t.Errorf("probe %+v", rep.Probe)
	}

	// The table.
	out.Reset()
	if err := runBench(context.Background(), e, args[:len(args)-1]); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"TTFT p50 ms", "ITL p99 ms", "output tok/s", "cached", "turn"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestBenchServeUsage(t *testing.T) {
	var out bytes.Buffer
	e := &env{stdout: &out, stderr: &out}
	for _, args := range [][]string{{}, {"serve"}, {"serve", "--url", "http://x", "--users", "0"}, {"other"}} {
		if err := runBench(context.Background(), e, args); err == nil {
			t.Errorf("bench %v: no error", args)
		}
	}
}
