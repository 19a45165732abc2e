package server

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/fathom-llm/fathom/mixtral"
)

// boundedFake is the fake model with a tokenizer bound of most bytes a token; it records
// the requests it tokenizes and streams.
type boundedFake struct {
	*fakeModel
	most      int
	tokenized atomic.Int64
	mu        sync.Mutex
	streamed  []mixtral.Request
}

func (f *boundedFake) MaxTokenBytes() int { return f.most }

func (f *boundedFake) PromptIDs(req mixtral.Request) ([]int, error) {
	f.tokenized.Add(1)
	return f.fakeModel.PromptIDs(req)
}

func (f *boundedFake) Stream(ctx context.Context, req mixtral.Request) iter.Seq2[mixtral.Event, error] {
	f.mu.Lock()
	f.streamed = append(f.streamed, req)
	f.mu.Unlock()
	return f.fakeModel.Stream(ctx, req)
}

func TestAdmission(t *testing.T) {
	chat := func(content string, extra string) string {
		return fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":%q}]%s}`, content, extra)
	}
	for _, tc := range []struct {
		name      string
		path      string
		body      string
		status    int
		param     string
		tokenized int64 // PromptIDs calls
		maxTokens []int // the streamed requests' MaxTokens
	}{
		// 256 tokens of context, at most 4 bytes a token: 1021 bytes are at least 256 tokens.
		{"too long by bytes", "/v1/chat/completions", chat(strings.Repeat("x", 1021), ""), 400, "messages", 0, nil},
		{"long but possible", "/v1/chat/completions", chat(strings.Repeat("x ", 100), ""), 200, "", 1, []int{0}},
		{"text too long by bytes", "/v1/completions", `{"model":"m","prompt":"` + strings.Repeat("y", 1100) + `"}`, 400, "prompt", 0, nil},
		{"too many choices", "/v1/chat/completions", chat("hi", `,"n":5`), 400, "n", 0, nil},
		{"too many prompts times n", "/v1/completions", `{"model":"m","prompt":["a","b","c"],"n":2}`, 400, "n", 0, nil},
		{"too many tokens", "/v1/chat/completions", chat("hi", `,"n":4,"max_tokens":60`), 400, "max_tokens", 1, nil},
		{"tokens shared", "/v1/chat/completions", chat("hi", `,"n":4`), 200, "", 1, []int{50, 50, 50, 50}},
		{"tokens within", "/v1/chat/completions", chat("hi", `,"n":2,"max_tokens":30`), 200, "", 1, []int{30, 30}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &boundedFake{fakeModel: newFake(), most: 4}
			s, err := New(f, Options{ModelNames: []string{"m"}, MaxChoices: 4, MaxRequestTokens: 200})
			if err != nil {
				t.Fatal(err)
			}
			ts := httptest.NewServer(s)
			defer ts.Close()
			resp, body := post(t, ts, tc.path, tc.body)
			if tc.status != 200 {
				checkError(t, tc.name, resp, body, tc.status, tc.param)
			} else if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if got := f.tokenized.Load(); got != tc.tokenized {
				t.Errorf("%d tokenizations, want %d", got, tc.tokenized)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.streamed) != len(tc.maxTokens) {
				t.Fatalf("%d generations, want %d", len(f.streamed), len(tc.maxTokens))
			}
			for i, req := range f.streamed {
				if req.Params.MaxTokens != tc.maxTokens[i] || len(req.PromptIDs) == 0 || len(req.Messages) == 0 {
					t.Errorf("generation %d: MaxTokens %d (want %d), %d prompt ids, %d messages",
						i, req.Params.MaxTokens, tc.maxTokens[i], len(req.PromptIDs), len(req.Messages))
				}
			}
			if tc.status == 400 && tc.param == "messages" {
				var e errorBody
				json.Unmarshal(body, &e)
				if e.Error.Code == nil || *e.Error.Code != "context_length_exceeded" {
					t.Errorf("code %v", e.Error.Code)
				}
			}
		})
	}
}
