package server_test

import (
	"context"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/fathom-llm/fathom/mixtral"
	"github.com/fathom-llm/fathom/sampling"
	"github.com/fathom-llm/fathom/server"
)

// echoModel is a stand-in for *mixtral.Model: it "generates" the words of the last message.
type echoModel struct{}

func (echoModel) ContextLength() int      { return 4096 }
func (echoModel) TokenText(id int) string { return "" }

func (echoModel) PromptIDs(req mixtral.Request) ([]int, error) {
	return make([]int, len(strings.Fields(req.Messages[len(req.Messages)-1].Content))), nil
}

func (m echoModel) Stream(ctx context.Context, req mixtral.Request) iter.Seq2[mixtral.Event, error] {
	return func(yield func(mixtral.Event, error) bool) {
		words := strings.Fields(req.Messages[len(req.Messages)-1].Content)
		for i, w := range words {
			if !yield(mixtral.Event{ID: i, Text: " " + w}, nil) {
				return
			}
		}
		n := len(words)
		yield(mixtral.Event{ID: -1, Done: true, FinishReason: sampling.FinishStop,
			Usage: mixtral.Usage{PromptTokens: n, CompletionTokens: n, TotalTokens: 2 * n}}, nil)
	}
}

func ExampleNew() {
	srv, err := server.New(echoModel{}, server.Options{ModelNames: []string{"dolphin-2.6-mixtral-8x7b"}})
	if err != nil {
		panic(err)
	}
	ts := httptest.NewServer(srv) // in a program: http.ListenAndServe(addr, srv)
	defer ts.Close()

	resp, err := http.Post(ts.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{
		"model": "dolphin-2.6-mixtral-8x7b",
		"messages": [{"role": "user", "content": "hello there"}],
		"stream": true
	}`))
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, event := range strings.Split(strings.TrimSpace(string(body)), "\n\n") {
		if i := strings.Index(event, `"choices"`); i >= 0 {
			event = "data: {..." + event[i:]
		}
		fmt.Println(event)
	}
	// Output:
	// data: {..."choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}
	// data: {..."choices":[{"index":0,"delta":{"content":" hello"},"logprobs":null,"finish_reason":null}]}
	// data: {..."choices":[{"index":0,"delta":{"content":" there"},"logprobs":null,"finish_reason":null}]}
	// data: {..."choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}
	// data: [DONE]
}

// A graceful shutdown: Shutdown lets requests finish; when its wait runs out, Stop ends the
// ones still running (a stream gets an error event, not a silent cut) before Close.
func ExampleServer_Stop() {
	srv, err := server.New(echoModel{}, server.Options{ModelNames: []string{"m"}})
	if err != nil {
		panic(err)
	}
	hs := &http.Server{Handler: srv}
	// ... go hs.Serve(listener); then, on SIGTERM:
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if hs.Shutdown(ctx) != nil {
		srv.Stop()
		grace, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if hs.Shutdown(grace) != nil {
			hs.Close()
		}
	}
	// Once stopped, the server answers 503.
	srv.Stop()
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/chat/completions",
		strings.NewReader(`{"model": "m", "messages": [{"role": "user", "content": "hi"}]}`)))
	fmt.Println(rec.Code)
	// Output: 503
}
