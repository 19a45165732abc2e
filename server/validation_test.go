package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// TestMaxTokensZero: max_tokens 0 generates nothing and answers the prompt's usage with
// finish reason "length", in chat and text completions, plain and streamed.
func TestMaxTokensZero(t *testing.T) {
	m := newFake()
	_, client := serve(t, m, Options{})
	ctx := context.Background()
	const prompt = 3 + (2 + 4) + (2 + 4) // "Be brief." and "say nothing"
	for _, field := range []string{"max_tokens", "max_completion_tokens"} {
		t.Run(field, func(t *testing.T) {
			p := chatParams("say nothing")
			p.N = openai.Int(2)
			res, err := client.Chat.Completions.New(ctx, p, option.WithJSONSet(field, 0))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Choices) != 2 || res.Usage.PromptTokens != prompt || res.Usage.CompletionTokens != 0 || res.Usage.TotalTokens != prompt {
				t.Fatalf("response %s", res.RawJSON())
			}
			for _, c := range res.Choices {
				if c.FinishReason != "length" || c.Message.Content != "" {
					t.Errorf("choice %s", c.RawJSON())
				}
			}
		})
	}
	p := chatParams("say nothing")
	p.MaxTokens = openai.Int(0)
	p.StreamOptions.IncludeUsage = openai.Bool(true)
	acc, chunks := collectStream(t, client, p)
	if len(acc.Choices) != 1 || acc.Choices[0].FinishReason != "length" || acc.Choices[0].Message.Content != "" {
		t.Errorf("stream: %+v", acc.Choices)
	}
	if u := chunks[len(chunks)-1].Usage; u.PromptTokens != prompt || u.CompletionTokens != 0 {
		t.Errorf("stream usage %+v", u)
	}
	res, err := client.Completions.New(ctx, openai.CompletionNewParams{Model: testModelName,
		Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String("one two")},
		MaxTokens: openai.Int(0)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Choices) != 1 || res.Choices[0].FinishReason != "length" || res.Choices[0].Text != "" ||
		res.Usage.PromptTokens != 3 || res.Usage.CompletionTokens != 0 {
		t.Errorf("completion %s", res.RawJSON())
	}
	if m.started.Load() != 0 {
		t.Errorf("%d generations started", m.started.Load())
	}
}

// TestExplicitParams: explicit values that the defaults would paper over are refused, each
// naming its parameter.
func TestExplicitParams(t *testing.T) {
	_, client := serve(t, newFake(), Options{})
	for _, tc := range []struct {
		param string
		value any
	}{
		{"seed", -1}, {"top_p", 0}, {"repetition_penalty", 0}, {"top_k", -1}, {"max_tokens", -1},
	} {
		t.Run(fmt.Sprint(tc.param, "=", tc.value), func(t *testing.T) {
			_, err := client.Chat.Completions.New(context.Background(), chatParams("hi"), option.WithJSONSet(tc.param, tc.value))
			checkSDKError(t, err, http.StatusBadRequest, tc.param, "invalid_value")
			_, err = client.Completions.New(context.Background(), openai.CompletionNewParams{Model: testModelName,
				Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("x")}}, option.WithJSONSet(tc.param, tc.value))
			checkSDKError(t, err, http.StatusBadRequest, tc.param, "invalid_value")
		})
	}
	// The same parameters absent, or at valid values, are accepted.
	p := chatParams("hi")
	p.MaxTokens = openai.Int(2)
	p.Seed = openai.Int(0)
	p.TopP = openai.Float(0.5)
	if _, err := client.Chat.Completions.New(context.Background(), p,
		option.WithJSONSet("top_k", 0), option.WithJSONSet("repetition_penalty", 1.1)); err != nil {
		t.Error(err)
	}
}

// TestSeedPerChoiceInRange: with n > 1 the seeds of the choices after a seed at the top of
// the range wrap to 0 rather than to negative values.
func TestSeedPerChoiceInRange(t *testing.T) {
	_, client := serve(t, newFake(), Options{})
	run := func(seed int64, n int) []string {
		p := chatParams("seeds")
		p.MaxTokens = openai.Int(6)
		p.Seed = openai.Int(seed)
		p.N = openai.Int(int64(n))
		res, err := client.Chat.Completions.New(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, c := range res.Choices {
			out = append(out, c.Message.Content)
		}
		return out
	}
	top := run(math.MaxInt64, 3)
	if top[1] != run(0, 1)[0] || top[2] != run(1, 1)[0] {
		t.Errorf("n=3 at the largest seed: %q; want choices 1 and 2 to use seeds 0 and 1", top)
	}
}

// TestFieldNamesExact: a parameter name that matches only up to case ("Max_Tokens") is
// refused naming it, at the top level and inside messages; unknown names are ignored.
func TestFieldNamesExact(t *testing.T) {
	s, _ := New(newFake(), Options{ModelNames: []string{testModelName}})
	ts := httptest.NewServer(s)
	defer ts.Close()
	for _, tc := range []struct{ name, path, body, param string }{
		{"top level", "/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user","content":"hi"}],"Max_Tokens":1}`, "Max_Tokens"},
		{"upper case", "/v1/chat/completions", `{"MODEL":"test-model","messages":[{"role":"user","content":"hi"}]}`, "MODEL"},
		{"folded", "/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user","content":"hi"}],"ſtop":"x"}`, "ſtop"},
		{"message", "/v1/chat/completions", `{"model":"test-model","messages":[{"Role":"user","content":"hi"}]}`, "messages[0].Role"},
		{"nested", "/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"Include_Usage":true}}`, "stream_options.Include_Usage"},
		{"content part", "/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user","content":[{"type":"text","Text":"hi"}]}]}`, "messages[0].content[0].Text"},
		{"completions", "/v1/completions", `{"model":"test-model","Prompt":"hi"}`, "Prompt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := post(t, ts, tc.path, tc.body)
			checkError(t, tc.name, resp, body, 400, tc.param)
		})
	}
	resp, body := post(t, ts, "/v1/chat/completions",
		`{"model":"test-model","messages":[{"role":"user","content":"hi"}],"max_tokens":2,"unknown_field":{"X":1}}`)
	if resp.StatusCode != 200 {
		t.Errorf("unknown field: %d %s", resp.StatusCode, body)
	}
}

// TestBodyTimeout: a body that trickles in is answered 408 once BodyTimeout passes, though
// the headers arrived in time.
func TestBodyTimeout(t *testing.T) {
	s, _ := New(newFake(), Options{ModelNames: []string{testModelName}, BodyTimeout: 200 * time.Millisecond})
	ts := httptest.NewServer(s)
	defer ts.Close()
	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"model":"test-model","messages":[{"role":"user","content":"hi"}]}`
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		len(body), body[:10])
	start := time.Now()
	done := make(chan struct{})
	defer close(done)
	go func() { // a byte now and then, never the whole body
		for i := 10; i < len(body)-1; i++ {
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := conn.Write([]byte{body[i]}); err != nil {
				return
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	checkError(t, "trickle", resp, b, http.StatusRequestTimeout, "")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("answered after %v", d)
	}
	// A long generation after a body that arrived in time is not cut by the deadline.
	m := newFake()
	m.delay = 100 * time.Millisecond
	s2, _ := New(m, Options{ModelNames: []string{testModelName}, BodyTimeout: 100 * time.Millisecond})
	ts2 := httptest.NewServer(s2)
	defer ts2.Close()
	resp, b = post(t, ts2, "/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user","content":"hi"}],"max_tokens":4}`)
	if resp.StatusCode != 200 {
		t.Errorf("slow generation: %d %s", resp.StatusCode, b)
	}
}

// TestHostedPrefix: the endpoints answer under /v1/openai/ as under /v1/.
func TestHostedPrefix(t *testing.T) {
	ts, _ := serve(t, newFake(), Options{})
	client := openai.NewClient(option.WithBaseURL(ts.URL+"/v1/openai"), option.WithAPIKey("k"),
		option.WithMaxRetries(0), option.WithHTTPClient(ts.Client()))
	ctx := context.Background()
	p := chatParams("hi")
	p.MaxTokens = openai.Int(2)
	if res, err := client.Chat.Completions.New(ctx, p); err != nil || len(res.Choices) != 1 {
		t.Errorf("chat: %v", err)
	}
	if _, err := client.Completions.New(ctx, openai.CompletionNewParams{Model: testModelName,
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("x")}}); err != nil {
		t.Errorf("completions: %v", err)
	}
	if list, err := client.Models.List(ctx); err != nil || len(list.Data) != 1 {
		t.Errorf("models: %v", err)
	}
	if m, err := client.Models.Get(ctx, testModelName); err != nil || m.ID != testModelName {
		t.Errorf("model: %v", err)
	}
}

// costOf reads usage.estimated_cost from a usage object's JSON.
func costOf(t *testing.T, raw string) float64 {
	t.Helper()
	var u struct {
		Cost *float64 `json:"estimated_cost"`
	}
	if err := json.Unmarshal([]byte(raw), &u); err != nil || u.Cost == nil {
		t.Fatalf("no estimated_cost in %s", raw)
	}
	return *u.Cost
}

// TestEstimatedCost: usage carries the cost at the operator's prices, plain and streamed,
// and 0 without prices.
func TestEstimatedCost(t *testing.T) {
	ctx := context.Background()
	_, free := serve(t, newFake(), Options{})
	p := chatParams("hi")
	p.MaxTokens = openai.Int(3)
	res, err := free.Chat.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if c := costOf(t, res.Usage.RawJSON()); c != 0 {
		t.Errorf("free: cost %g", c)
	}
	_, client := serve(t, newFake(), Options{PriceInput: 0.27, PriceOutput: 1.1})
	want := func(u openai.CompletionUsage) float64 {
		return (float64(u.PromptTokens)*0.27 + float64(u.CompletionTokens)*1.1) / 1e6
	}
	res, err = client.Chat.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if c := costOf(t, res.Usage.RawJSON()); math.Abs(c-want(res.Usage)) > 1e-15 || c == 0 {
		t.Errorf("chat: cost %g, want %g", c, want(res.Usage))
	}
	p.StreamOptions.IncludeUsage = openai.Bool(true)
	_, chunks := collectStream(t, client, p)
	u := chunks[len(chunks)-1].Usage
	if c := costOf(t, u.RawJSON()); math.Abs(c-want(u)) > 1e-15 || c == 0 {
		t.Errorf("stream: cost %g, want %g", c, want(u))
	}
	cres, err := client.Completions.New(ctx, openai.CompletionNewParams{Model: testModelName,
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("x")}})
	if err != nil {
		t.Fatal(err)
	}
	if c := costOf(t, cres.Usage.RawJSON()); math.Abs(c-want(cres.Usage)) > 1e-15 || c == 0 {
		t.Errorf("completions: cost %g, want %g", c, want(cres.Usage))
	}
	if _, err := New(newFake(), Options{ModelNames: []string{"x"}, PriceInput: -1}); err == nil {
		t.Error("negative price: no error")
	}
	if _, err := New(newFake(), Options{ModelNames: []string{"x"}, PriceOutput: math.NaN()}); err == nil {
		t.Error("NaN price: no error")
	}
}

// TestStop: Server.Stop ends a running stream with an error event, answers a running plain
// request and every later one with 503.
func TestStop(t *testing.T) {
	m := newFake()
	m.delay = 20 * time.Millisecond
	s, _ := New(m, Options{ModelNames: []string{testModelName}})
	ts := httptest.NewServer(s)
	defer ts.Close()
	const body = `{"model":"test-model","messages":[{"role":"user","content":"hi"}],"max_tokens":200`
	type result struct {
		status int
		body   []byte
	}
	plain := make(chan result, 1)
	go func() {
		resp, b := post(t, ts, "/v1/chat/completions", body+`}`)
		plain <- result{resp.StatusCode, b}
	}()
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/chat/completions", strings.NewReader(body+`,"stream":true}`))
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var events []string
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, d)
			if len(events) == 3 {
				waitFor(t, func() bool { return m.active.Load() == 2 })
				s.Stop()
			}
		}
	}
	n := len(events)
	if n < 5 || events[n-1] != "[DONE]" || !strings.Contains(events[n-2], `"server_error"`) {
		t.Errorf("stream ended with %q", events[max(0, n-2):])
	}
	r := <-plain
	checkError(t, "plain", &http.Response{StatusCode: r.status, Header: http.Header{"Content-Type": {"application/json"}}}, r.body, 503, "")
	resp2, b := post(t, ts, "/v1/chat/completions", body+`}`)
	checkError(t, "after Stop", resp2, b, 503, "")
}
