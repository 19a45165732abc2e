package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"iter"
	"math"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fathom-llm/fathom/internal/fixtures"
	"github.com/fathom-llm/fathom/mixtral"
	"github.com/fathom-llm/fathom/sampling"
	"github.com/fathom-llm/fathom/server"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// slowModel yields MaxTokens words, one every delay.
type slowModel struct{ delay time.Duration }

func (slowModel) ContextLength() int                           { return 1000 }
func (slowModel) TokenText(int) string                         { return " w" }
func (slowModel) PromptIDs(req mixtral.Request) ([]int, error) { return []int{1, 2, 3}, nil }
func (m slowModel) Stream(ctx context.Context, req mixtral.Request) iter.Seq2[mixtral.Event, error] {
	return func(yield func(mixtral.Event, error) bool) {
		n := req.Params.MaxTokens
		for i := range n {
			select {
			case <-time.After(m.delay):
			case <-ctx.Done():
				yield(mixtral.Event{ID: -1}, ctx.Err())
				return
			}
			ev := mixtral.Event{ID: i, Text: " w"}
			if i == n-1 {
				ev.Done, ev.FinishReason = true, sampling.FinishLength
				ev.Usage = mixtral.Usage{PromptTokens: 3, CompletionTokens: n, TotalTokens: 3 + n}
			}
			if !yield(ev, nil) {
				return
			}
		}
	}
}

// lineWriter passes written lines to a channel, dropping those nobody waits for.
type lineWriter struct{ lines chan string }

func (w lineWriter) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		select {
		case w.lines <- l:
		default: // drop lines nobody waits for
		}
	}
	return len(p), nil
}

// TestServeDrains: on shutdown (SIGTERM cancels the command's context) a streaming request
// in flight runs to its end, new connections are refused, and the command returns cleanly.
func TestServeDrains(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	stderr := lineWriter{make(chan string, 100)}
	e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: stderr}
	done := make(chan error, 1)
	go func() {
		done <- serveModel(ctx, e, slowModel{delay: 20 * time.Millisecond}, ln, serveConfig{
			opts: server.Options{ModelNames: []string{"m"}}, drain: 30 * time.Second})
	}()
	url := "http://" + ln.Addr().String()
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(
		`{"model":"m","stream":true,"max_tokens":20,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	events := 0
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: ") {
			events++
			if events == 2 {
				stop() // what SIGTERM does
			}
		}
	}
	// role, 20 words, finish, [DONE]
	if events != 23 || sc.Err() != nil {
		t.Errorf("%d events after shutdown began (%v), want the whole stream of 23", events, sc.Err())
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after the drain")
	}
	if _, err := http.Get(url + "/health"); err == nil {
		t.Error("the server still accepts connections after shutdown")
	}
}

// TestServeStopsAtTimeout: a stream still running when the shutdown timeout ends receives an
// error event and [DONE] rather than a silent cut, and the command reports the stop.
func TestServeStopsAtTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard}
	done := make(chan error, 1)
	go func() {
		done <- serveModel(ctx, e, slowModel{delay: 20 * time.Millisecond}, ln, serveConfig{
			opts: server.Options{ModelNames: []string{"m"}}, drain: 100 * time.Millisecond})
	}()
	resp, err := http.Post("http://"+ln.Addr().String()+"/v1/chat/completions", "application/json", strings.NewReader(
		`{"model":"m","stream":true,"max_tokens":900,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var events []string
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, d)
			if len(events) == 2 {
				stop()
			}
		}
	}
	n := len(events)
	if sc.Err() != nil || n < 4 || events[n-1] != "[DONE]" || !strings.Contains(events[n-2], `"error"`) ||
		!strings.Contains(events[n-2], "shutting down") {
		t.Errorf("stream ended with %q (%v), want an error event and [DONE]", events[max(0, n-2):], sc.Err())
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "stopped") {
			t.Errorf("serve: %v, want the stopped requests reported", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return")
	}
}

func TestServeUsage(t *testing.T) {
	if code, _, stderr := runCLI(t, "", "serve"); code != 2 || !strings.Contains(stderr, "--model") {
		t.Errorf("no --model: code %d, stderr %q", code, stderr)
	}
	if code, _, _ := runCLI(t, "", "serve", "--model", "x", "--max-concurrent", "0"); code != 2 {
		t.Errorf("--max-concurrent 0: code %d", code)
	}
	if code, _, _ := runCLI(t, "", "serve", "--model", "x", "--price-input", "-1"); code != 2 {
		t.Errorf("--price-input -1: code %d", code)
	}
	if code, _, stderr := runCLI(t, "", "serve", "--model", t.TempDir()); code != 1 || stderr == "" {
		t.Errorf("not a checkpoint: code %d, stderr %q", code, stderr)
	}
}

// TestServeModel runs the command on the fixture model and talks to it with the SDK.
func TestServeModel(t *testing.T) {
	dir := fixtures.Bundled(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	stderr := lineWriter{make(chan string, 100)}
	e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: stderr}
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, e, []string{"serve", "--model", dir, "--addr", "127.0.0.1:0", "--api-key", "k",
			"--name", "tiny,alias", "--context", "256", "--price-input", "2", "--price-output", "6"})
	}()
	addrRE := regexp.MustCompile(`on (http://[^ ]+/v1)`)
	var base string
	for base == "" {
		select {
		case l := <-stderr.lines:
			if m := addrRE.FindStringSubmatch(l); m != nil {
				base = m[1]
			}
		case c := <-code:
			t.Fatalf("serve exited with %d", c)
		case <-time.After(60 * time.Second):
			t.Fatal("serve did not start")
		}
	}
	client := openai.NewClient(option.WithBaseURL(base), option.WithAPIKey("k"), option.WithMaxRetries(0))
	res, err := client.Completions.New(context.Background(), openai.CompletionNewParams{
		Model:       "alias",
		Prompt:      openai.CompletionNewParamsPromptUnion{OfString: openai.String("def fibonacci(n):")},
		MaxTokens:   openai.Int(8),
		Temperature: openai.Float(0),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Choices) != 1 || res.Choices[0].Text == "" || res.Usage.CompletionTokens == 0 {
		t.Errorf("completion %+v", res)
	}
	var u struct {
		EstimatedCost float64 `json:"estimated_cost"`
	}
	wantCost := float64(2*res.Usage.PromptTokens+6*res.Usage.CompletionTokens) / 1e6
	if err := json.Unmarshal([]byte(res.Usage.RawJSON()), &u); err != nil || math.Abs(u.EstimatedCost-wantCost) > 1e-12 {
		t.Errorf("estimated_cost in %s, want %g", res.Usage.RawJSON(), wantCost)
	}
	stop()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("exit code %d", c)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
}
