package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

// post sends body to path with the given headers (Content-Type defaults to JSON).
func post(t *testing.T, ts *httptest.Server, path, body string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return do(t, ts, req)
}

func do(t *testing.T, ts *httptest.Server, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// sseEvents splits a server-sent event body into its data payloads, checking the framing:
// every event is exactly one "data: " line followed by a blank line, and the last is [DONE].
func sseEvents(t *testing.T, body []byte) []string {
	t.Helper()
	s := string(body)
	if !strings.HasSuffix(s, "data: [DONE]\n\n") {
		t.Fatalf("stream does not end with data: [DONE]: %q", s)
	}
	parts := strings.Split(strings.TrimSuffix(s, "\n\n"), "\n\n")
	out := make([]string, len(parts))
	for i, p := range parts {
		if !strings.HasPrefix(p, "data: ") || strings.Contains(p, "\n") {
			t.Fatalf("event %d is not one data line: %q", i, p)
		}
		out[i] = strings.TrimPrefix(p, "data: ")
	}
	return out
}

// jsonEqual compares JSON texts as values; "$ID" and "$CREATED" in want match any id and
// timestamp, which must be the same in every event of one stream.
func jsonEqual(t *testing.T, i int, got, want string, id *string, created *float64) {
	t.Helper()
	var g, w map[string]any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("event %d: %v: %q", i, err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation %d: %v", i, err)
	}
	if *id == "" {
		*id, _ = g["id"].(string)
		*created, _ = g["created"].(float64)
	}
	if w["id"] == "$ID" {
		w["id"] = *id
	}
	if w["created"] == "$CREATED" {
		w["created"] = *created
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("event %d:\n got %s\nwant %s", i, got, want)
	}
}

func TestChatStreamFraming(t *testing.T) {
	m := newFake()
	m.script = []int{10, 11} // " one", " two", then eos
	s, err := New(m, Options{ModelNames: []string{testModelName}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	defer ts.Close()
	const head = `"id":"$ID","object":"chat.completion.chunk","created":"$CREATED","model":"test-model"`
	for _, tc := range []struct {
		name, extra string
		want        []string
	}{
		{"usage", `,"stream_options":{"include_usage":true}`, []string{
			`{` + head + `,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}`,
			`{` + head + `,"choices":[{"index":0,"delta":{"content":" one"},"logprobs":null,"finish_reason":null}],"usage":null}`,
			`{` + head + `,"choices":[{"index":0,"delta":{"content":" two"},"logprobs":null,"finish_reason":null}],"usage":null}`,
			`{` + head + `,"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}`,
			`{` + head + `,"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":3,"total_tokens":13,"prompt_tokens_details":{"cached_tokens":5},"estimated_cost":0}}`,
		}},
		{"plain", ``, []string{
			`{` + head + `,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}`,
			`{` + head + `,"choices":[{"index":0,"delta":{"content":" one"},"logprobs":null,"finish_reason":null}]}`,
			`{` + head + `,"choices":[{"index":0,"delta":{"content":" two"},"logprobs":null,"finish_reason":null}]}`,
			`{` + head + `,"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}`,
		}},
		{"logprobs", `,"logprobs":true,"top_logprobs":1`, []string{
			`{` + head + `,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}`,
			`{` + head + `,"choices":[{"index":0,"delta":{"content":" one"},"logprobs":{"content":[{"token":" one","logprob":-0.25,"bytes":[32,111,110,101],"top_logprobs":[{"token":" three","logprob":-0.1,"bytes":[32,116,104,114,101,101]}]}]},"finish_reason":null}]}`,
			`{` + head + `,"choices":[{"index":0,"delta":{"content":" two"},"logprobs":{"content":[{"token":" two","logprob":-0.5,"bytes":[32,116,119,111],"top_logprobs":[{"token":" four","logprob":-0.1,"bytes":[32,102,111,117,114]}]}]},"finish_reason":null}]}`,
			`{` + head + `,"choices":[{"index":0,"delta":{"content":""},"logprobs":{"content":[{"token":"","logprob":-0.75,"bytes":[],"top_logprobs":[{"token":"\\xa9","logprob":-0.1,"bytes":[169]}]}]},"finish_reason":null}]}`,
			`{` + head + `,"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := post(t, ts, "/v1/chat/completions",
				`{"model":"test-model","messages":[{"role":"user","content":"count to two"}],"stream":true`+tc.extra+`}`)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" ||
				resp.Header.Get("Cache-Control") != "no-cache" {
				t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
			}
			events := sseEvents(t, body)
			if len(events) != len(tc.want)+1 {
				t.Fatalf("%d events, want %d:\n%s", len(events), len(tc.want)+1, body)
			}
			var id string
			var created float64
			for i, w := range tc.want {
				jsonEqual(t, i, events[i], w, &id, &created)
			}
			if !strings.HasPrefix(id, "chatcmpl-") {
				t.Errorf("id %q", id)
			}
		})
	}
}

func TestChatPlainShape(t *testing.T) {
	m := newFake()
	m.script = []int{10, 11}
	s, _ := New(m, Options{ModelNames: []string{testModelName}})
	ts := httptest.NewServer(s)
	defer ts.Close()
	resp, body := post(t, ts, "/v1/chat/completions",
		`{"model":"test-model","messages":[{"role":"user","content":[{"type":"text","text":"count"},{"type":"text","text":"to two"}]}]}`)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var id string
	var created float64
	jsonEqual(t, 0, string(body), `{"id":"$ID","object":"chat.completion","created":"$CREATED","model":"test-model",`+
		`"choices":[{"index":0,"message":{"role":"assistant","content":" one two"},"logprobs":null,"finish_reason":"stop"}],`+
		`"usage":{"prompt_tokens":10,"completion_tokens":3,"total_tokens":13,"prompt_tokens_details":{"cached_tokens":5},"estimated_cost":0}}`, &id, &created)

	resp, body = post(t, ts, "/v1/completions", `{"model":"test-model","prompt":"count","stream":true}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	events := sseEvents(t, body)
	const head = `"id":"$ID","object":"text_completion","created":"$CREATED","model":"test-model"`
	want := []string{
		`{` + head + `,"choices":[{"index":0,"text":" one","logprobs":null,"finish_reason":null}]}`,
		`{` + head + `,"choices":[{"index":0,"text":" two","logprobs":null,"finish_reason":null}]}`,
		`{` + head + `,"choices":[{"index":0,"text":"","logprobs":null,"finish_reason":"stop"}]}`,
	}
	if len(events) != len(want)+1 {
		t.Fatalf("%d events:\n%s", len(events), body)
	}
	id = ""
	for i, w := range want {
		jsonEqual(t, i, events[i], w, &id, &created)
	}
}

func TestModelsAndHealth(t *testing.T) {
	s, _ := New(newFake(), Options{ModelNames: []string{"m1"}, APIKey: "k"})
	ts := httptest.NewServer(s)
	defer ts.Close()
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/health", nil)
	resp, body := do(t, ts, req)
	if resp.StatusCode != 200 {
		t.Errorf("health without a key: %d %s", resp.StatusCode, body)
	}
	req, _ = http.NewRequest(http.MethodGet, ts.URL+"/v1/models", nil)
	req.Header.Set("Authorization", "Bearer k")
	resp, body = do(t, ts, req)
	var got struct {
		Object string `json:"object"`
		Data   []struct {
			ID, Object, OwnedBy string
			Created             int64
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &got); err != nil || resp.StatusCode != 200 || got.Object != "list" ||
		len(got.Data) != 1 || got.Data[0].ID != "m1" || got.Data[0].Object != "model" || got.Data[0].Created == 0 {
		t.Errorf("models: %d %s", resp.StatusCode, body)
	}
}

// errorBody is the error envelope as the client reads it.
type errorBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

// checkError checks a response's status and error envelope; param "" means null.
func checkError(t *testing.T, name string, resp *http.Response, body []byte, status int, param string) {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(body, &e); err != nil {
		t.Errorf("%s: body %q: %v", name, body, err)
		return
	}
	gotParam := ""
	if e.Error.Param != nil {
		gotParam = *e.Error.Param
	}
	if resp.StatusCode != status || gotParam != param || e.Error.Message == "" || e.Error.Type == "" ||
		resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("%s: status %d param %q, want %d %q: %.300s", name, resp.StatusCode, gotParam, status, param, body)
	}
	if param == "" && e.Error.Param != nil {
		t.Errorf("%s: param should be null: %s", name, body)
	}
}

func TestErrorStatuses(t *testing.T) {
	m := newFake()
	m.ctxLen = 40
	s, err := New(m, Options{ModelNames: []string{testModelName}, MaxBodyBytes: 1024, APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	defer ts.Close()
	auth := []string{"Authorization", "Bearer k"}
	const msgs = `"messages":[{"role":"user","content":"hi"}]`
	for _, tc := range []struct {
		name, path, body string
		header           []string
		status           int
		param            string
	}{
		{"malformed", "/v1/chat/completions", `{"model":`, auth, 400, ""},
		{"not an object", "/v1/chat/completions", `[1,2]`, auth, 400, ""},
		{"trailing data", "/v1/chat/completions", `{"model":"test-model",` + msgs + `} {}`, auth, 400, ""},
		{"empty body", "/v1/chat/completions", ``, auth, 400, ""},
		{"wrong type", "/v1/chat/completions", `{"model":"test-model",` + msgs + `,"temperature":"hot"}`, auth, 400, "temperature"},
		{"stop type", "/v1/chat/completions", `{"model":"test-model",` + msgs + `,"stop":7}`, auth, 400, "stop"},
		{"content type", "/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user","content":7}]}`, auth, 400, "messages[0].content"},
		{"missing content", "/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user"}]}`, auth, 400, "messages[0].content"},
		{"assistant without content or calls", "/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":null},{"role":"user","content":"hi"}]}`, auth, 400, "messages[1].content"},
		{"tool_choice object", "/v1/chat/completions", `{"model":"test-model",` + msgs + `,"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","Function":{"name":"f"}}}`, auth, 400, "tool_choice.Function"},
		{"tool_choice type", "/v1/chat/completions", `{"model":"test-model",` + msgs + `,"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":7}`, auth, 400, "tool_choice"},
		{"tools type", "/v1/chat/completions", `{"model":"test-model",` + msgs + `,"tools":{"type":"function"}}`, auth, 400, "tools"},
		{"image part", "/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, auth, 400, "messages[0].content[0]"},
		{"stream options", "/v1/chat/completions", `{"model":"test-model",` + msgs + `,"stream_options":{"include_usage":true}}`, auth, 400, "stream_options"},
		{"no model", "/v1/chat/completions", `{` + msgs + `}`, auth, 400, "model"},
		{"unknown model", "/v1/chat/completions", `{"model":"gpt-4",` + msgs + `}`, auth, 404, "model"},
		{"context", "/v1/chat/completions", `{"model":"test-model",` + msgs + `,"max_tokens":40}`, auth, 400, "messages"},
		{"context no room", "/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user","content":"` + strings.Repeat("w ", 33) + `"}]}`, auth, 400, "messages"},
		{"context prompt", "/v1/completions", `{"model":"test-model","prompt":"` + strings.Repeat("w ", 30) + `"}`, auth, 400, "prompt"},
		{"n 0", "/v1/chat/completions", `{"model":"test-model",` + msgs + `,"n":0}`, auth, 400, "n"},
		{"n 129", "/v1/chat/completions", `{"model":"test-model",` + msgs + `,"n":129}`, auth, 400, "n"},
		{"logit_bias key", "/v1/chat/completions", `{"model":"test-model",` + msgs + `,"logit_bias":{"x":1}}`, auth, 400, "logit_bias"},
		{"completion logprobs", "/v1/completions", `{"model":"test-model","prompt":"a","logprobs":6}`, auth, 400, "logprobs"},
		{"prompt missing", "/v1/completions", `{"model":"test-model"}`, auth, 400, "prompt"},
		{"prompt type", "/v1/completions", `{"model":"test-model","prompt":{"a":1}}`, auth, 400, "prompt"},
		{"prompt token range", "/v1/completions", `{"model":"test-model","prompt":[1,2,999]}`, auth, 400, "prompt"},
		{"suffix", "/v1/completions", `{"model":"test-model","prompt":"a","suffix":"b"}`, auth, 400, "suffix"},
		{"too large", "/v1/chat/completions", `{"model":"test-model",` + msgs + `,"user":"` + strings.Repeat("x", 2000) + `"}`, auth, 413, ""},
		{"no key", "/v1/chat/completions", `{"model":"test-model",` + msgs + `}`, nil, 401, ""},
		{"wrong key", "/v1/chat/completions", `{"model":"test-model",` + msgs + `}`, []string{"Authorization", "Bearer nope"}, 401, ""},
		{"wrong method", "/v1/models", ``, auth, 405, ""},
		{"content type", "/v1/chat/completions", `model=x`, append([]string{"Content-Type", "application/x-www-form-urlencoded"}, auth...), 415, ""},
		{"unknown path", "/v1/engines", `{}`, auth, 404, ""},
		{"panic", "/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user","content":"PANIC-COUNT"}]}`, auth, 500, ""},
		{"stream panic", "/v1/chat/completions", `{"model":"test-model","stream":true,"messages":[{"role":"user","content":"PANIC-STREAM"}]}`, auth, 500, ""},
		{"model failure", "/v1/completions", `{"model":"test-model","prompt":"FAIL-EARLY"}`, auth, 500, ""},
	} {
		resp, body := post(t, ts, tc.path, tc.body, tc.header...)
		checkError(t, tc.name, resp, body, tc.status, tc.param)
		if tc.status == 405 && resp.Header.Get("Allow") != "GET" {
			t.Errorf("405 Allow header %q", resp.Header.Get("Allow"))
		}
		if tc.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("401 without WWW-Authenticate")
		}
	}
	// A body over the limit without a Content-Length is cut off while reading.
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/chat/completions",
		io.MultiReader(strings.NewReader(`{"model":"test-model","user":"`), strings.NewReader(strings.Repeat("x", 4000)), strings.NewReader(`"}`)))
	req.Header.Set("Authorization", "Bearer k")
	resp, body := do(t, ts, req)
	if req.ContentLength != 0 {
		t.Fatal("request has a length")
	}
	checkError(t, "chunked too large", resp, body, 413, "")
	// GET on a POST endpoint.
	req, _ = http.NewRequest(http.MethodGet, ts.URL+"/v1/chat/completions", nil)
	req.Header.Set("Authorization", "Bearer k")
	resp, body = do(t, ts, req)
	checkError(t, "GET chat", resp, body, 405, "")
	if resp.Header.Get("Allow") != "POST" {
		t.Errorf("Allow %q", resp.Header.Get("Allow"))
	}
	// The server still serves after the panics.
	resp, body = post(t, ts, "/v1/chat/completions", `{"model":"test-model",`+msgs+`,"max_tokens":2}`, auth...)
	if resp.StatusCode != 200 {
		t.Errorf("after panics: %d %s", resp.StatusCode, body)
	}
}

// TestStreamFailureMidway: a failure after the stream started ends it with an error event,
// then [DONE].
func TestStreamFailureMidway(t *testing.T) {
	s, _ := New(newFake(), Options{ModelNames: []string{testModelName}})
	ts := httptest.NewServer(s)
	defer ts.Close()
	resp, body := post(t, ts, "/v1/chat/completions",
		`{"model":"test-model","stream":true,"messages":[{"role":"user","content":"FAIL-LATE"}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	events := sseEvents(t, body)
	n := len(events) // role, the text of two tokens (maybe held back), the error, [DONE]
	if n < 3 || n > 5 || !strings.Contains(events[0], `"role":"assistant"`) {
		t.Fatalf("events %q", events)
	}
	var e errorBody
	if err := json.Unmarshal([]byte(events[n-2]), &e); err != nil || e.Error.Type != "server_error" {
		t.Errorf("error event %q", events[n-2])
	}
}

// TestParamRanges: every sampling parameter outside its documented range is a 400 naming it.
func TestParamRanges(t *testing.T) {
	s, _ := New(newFake(), Options{ModelNames: []string{testModelName}})
	ts := httptest.NewServer(s)
	defer ts.Close()
	stops := make([]string, 17)
	for i := range stops {
		stops[i] = fmt.Sprint("s", i)
	}
	manyStops, _ := json.Marshal(stops)
	for _, tc := range []struct{ param, value string }{
		{"temperature", "-0.5"}, {"temperature", "2.5"},
		{"top_p", "-0.1"}, {"top_p", "1.5"},
		{"min_p", "-0.1"}, {"min_p", "1.5"},
		{"top_k", "-2"},
		{"presence_penalty", "-2.5"}, {"presence_penalty", "2.5"},
		{"frequency_penalty", "-2.5"}, {"frequency_penalty", "2.5"},
		{"repetition_penalty", "0.001"}, {"repetition_penalty", "5.5"},
		{"logit_bias", `{"99999":1}`},
		{"top_logprobs", "21"}, {"max_tokens", "-1"},
		{"stop", string(manyStops)},
	} {
		body := fmt.Sprintf(`{"model":"test-model","messages":[{"role":"user","content":"hi"}],"logprobs":true,%q:%s}`, tc.param, tc.value)
		resp, b := post(t, ts, "/v1/chat/completions", body)
		checkError(t, tc.param+"="+tc.value, resp, b, 400, tc.param)
	}
}

// TestQueueFull: past the running and waiting limits, requests get 429 with Retry-After.
func TestQueueFull(t *testing.T) {
	m := newFake()
	m.delay = 5 * time.Millisecond
	s, _ := New(m, Options{ModelNames: []string{testModelName}, MaxConcurrent: 1, QueueLength: 1, RetryAfter: 2 * time.Second})
	ts := httptest.NewServer(s)
	defer ts.Close()
	const body = `{"model":"test-model","messages":[{"role":"user","content":"long"}],"max_tokens":100}`
	done := make(chan int, 2)
	for range 2 {
		go func() {
			req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/chat/completions", strings.NewReader(body))
			resp, err := ts.Client().Do(req)
			if err != nil {
				done <- 0
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			done <- resp.StatusCode
		}()
	}
	waitFor(t, func() bool {
		s.limit.mu.Lock()
		defer s.limit.mu.Unlock()
		return m.active.Load() == 1 && s.limit.wait == 1
	})
	resp, b := post(t, ts, "/v1/chat/completions", body)
	checkError(t, "queue full", resp, b, 429, "")
	if resp.Header.Get("Retry-After") != "2" {
		t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
	}
	for range 2 {
		if code := <-done; code != 200 {
			t.Errorf("queued request: status %d", code)
		}
	}
}

// waitFor polls cond until it holds, failing after 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestNewOptions(t *testing.T) {
	if _, err := New(newFake(), Options{}); err == nil {
		t.Error("no model names: no error")
	}
	if _, err := New(nil, Options{ModelNames: []string{"x"}}); err == nil {
		t.Error("nil model: no error")
	}
	if _, err := New(newFake(), Options{ModelNames: []string{"x"}, MaxConcurrent: -1}); err == nil {
		t.Error("negative limit: no error")
	}
}

// TestPanicMidStream: a panic in the handler after the stream began cuts the connection (the
// client sees a broken stream, not a short one) and the server keeps serving.
func TestPanicMidStream(t *testing.T) {
	m := newFake()
	m.panicText = true
	s, _ := New(m, Options{ModelNames: []string{testModelName}})
	ts := httptest.NewServer(s)
	defer ts.Close()
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/chat/completions", strings.NewReader(
		`{"model":"test-model","stream":true,"logprobs":true,"max_tokens":5,"messages":[{"role":"user","content":"x"}]}`))
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || strings.Contains(string(body), "[DONE]") {
		t.Errorf("stream read to its end: %v %q", err, body)
	}
	resp, b := post(t, ts, "/v1/chat/completions", `{"model":"test-model","max_tokens":2,"messages":[{"role":"user","content":"x"}]}`)
	if resp.StatusCode != 200 {
		t.Errorf("after the panic: %d %s", resp.StatusCode, b)
	}
}
