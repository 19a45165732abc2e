package server

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
)

// settleGoroutines waits until no more than base goroutines run, failing after 10 s.
func settleGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines left, %d before:\n%s", n, base, buf)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLoad: 64 concurrent streaming clients, several requests each, through a server that
// runs 8 at a time; every request completes with the right usage and no goroutine is left.
func TestLoad(t *testing.T) {
	const clients, perClient = 64, 4
	base := runtime.NumGoroutine()
	m := newFake()
	m.delay = 100 * time.Microsecond
	ts, client := serve(t, m, Options{MaxConcurrent: 8, QueueLength: clients})
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	errs := make(chan error, clients*perClient)
	for c := range clients {
		wg.Go(func() {
			for j := range perClient {
				maxTokens := 3 + (c+j)%8
				words := strings.Repeat("w ", 1+c%5)
				p := openai.ChatCompletionNewParams{
					Model:         testModelName,
					Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage(words)},
					MaxTokens:     openai.Int(int64(maxTokens)),
					Seed:          openai.Int(int64(c*perClient + j)),
					StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
				}
				st := client.Chat.Completions.NewStreaming(ctx, p)
				var acc openai.ChatCompletionAccumulator
				var usage openai.CompletionUsage
				for st.Next() {
					ch := st.Current()
					acc.AddChunk(ch)
					if len(ch.Choices) == 0 {
						usage = ch.Usage
					}
				}
				if err := st.Err(); err != nil {
					errs <- fmt.Errorf("client %d request %d: %w", c, j, err)
					return
				}
				st.Close()
				prompt := int64(3 + 4 + 1 + c%5)
				if usage.PromptTokens != prompt || usage.CompletionTokens != int64(maxTokens) ||
					usage.TotalTokens != prompt+int64(maxTokens) {
					errs <- fmt.Errorf("client %d request %d: usage %+v, want prompt %d completion %d", c, j, usage, prompt, maxTokens)
				}
				if len(acc.Choices) != 1 || acc.Choices[0].FinishReason != "length" || acc.Choices[0].Message.Content == "" {
					errs <- fmt.Errorf("client %d request %d: %+v", c, j, acc.Choices)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := m.completed.Load(); got != clients*perClient {
		t.Errorf("%d generations completed, want %d", got, clients*perClient)
	}
	ts.Close()
	settleGoroutines(t, base)
}

// TestDisconnect: a client that goes away mid-stream, or before a plain response, cancels
// its generations at once, and the server keeps serving.
func TestDisconnect(t *testing.T) {
	base := runtime.NumGoroutine()
	m := newFake()
	m.delay = 2 * time.Millisecond
	m.ctxLen = 100000
	m.cancelCh = make(chan struct{}, 16)
	ts, client := serve(t, m, Options{})
	waitCancelled := func(n int) {
		t.Helper()
		for range n {
			select {
			case <-m.cancelCh:
			case <-time.After(10 * time.Second):
				t.Fatal("generation not cancelled after the client went away")
			}
		}
		waitFor(t, func() bool { return m.active.Load() == 0 })
	}

	// Streaming, n = 3: read the first content chunk, then hang up.
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+"/v1/chat/completions", strings.NewReader(
		`{"model":"test-model","stream":true,"n":3,"max_tokens":50000,"messages":[{"role":"user","content":"go on"}]}`))
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && !strings.Contains(sc.Text(), `"content":" `) {
	}
	cancel()
	resp.Body.Close()
	waitCancelled(3)

	// Through the SDK: close the stream after a few chunks.
	p := chatParams("keep going")
	p.MaxTokens = openai.Int(50000)
	st := client.Chat.Completions.NewStreaming(context.Background(), p)
	for i := 0; i < 3 && st.Next(); i++ {
	}
	st.Close()
	waitCancelled(1)

	// A plain request whose client gives up once its generation has started.
	started := m.started.Load()
	ctx, cancel = context.WithCancel(context.Background())
	failed := make(chan error, 1)
	go func() {
		_, err := client.Chat.Completions.New(ctx, p)
		failed <- err
	}()
	waitFor(t, func() bool { return m.started.Load() > started })
	cancel()
	if err := <-failed; err == nil {
		t.Fatal("no error after the client gave up")
	}
	waitCancelled(1)
	if m.completed.Load() != 0 {
		t.Errorf("%d generations completed", m.completed.Load())
	}

	// The server still answers.
	p.MaxTokens = openai.Int(2)
	if _, err := client.Chat.Completions.New(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	ts.Close()
	settleGoroutines(t, base)
}
