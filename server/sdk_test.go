package server

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

const testModelName = "test-model"

// serve starts a Server for m on a loopback test server and returns a client for it.
func serve(t *testing.T, m Model, opts Options) (*httptest.Server, openai.Client) {
	t.Helper()
	if opts.ModelNames == nil {
		opts.ModelNames = []string{testModelName}
	}
	s, err := New(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	key := opts.APIKey
	if key == "" {
		key = "unused"
	}
	client := openai.NewClient(option.WithBaseURL(ts.URL+"/v1"), option.WithAPIKey(key),
		option.WithMaxRetries(0), option.WithHTTPClient(ts.Client()))
	return ts, client
}

func chatParams(content string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:    testModelName,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief."), openai.UserMessage(content)},
	}
}

// collectStream reads a streamed chat completion through the SDK's accumulator.
func collectStream(t *testing.T, client openai.Client, p openai.ChatCompletionNewParams) (openai.ChatCompletion, []openai.ChatCompletionChunk) {
	t.Helper()
	st := client.Chat.Completions.NewStreaming(context.Background(), p)
	defer st.Close()
	var acc openai.ChatCompletionAccumulator
	var chunks []openai.ChatCompletionChunk
	for st.Next() {
		c := st.Current()
		chunks = append(chunks, c)
		acc.AddChunk(c)
	}
	if err := st.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	return acc.ChatCompletion, chunks
}

func TestSDKChatCompletion(t *testing.T) {
	m := newFake()
	_, client := serve(t, m, Options{})
	p := chatParams("Hello there")
	p.MaxTokens = openai.Int(7)
	p.Seed = openai.Int(42)
	res, err := client.Chat.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.ID, "chatcmpl-") || res.Object != "chat.completion" || res.Model != testModelName || res.Created == 0 {
		t.Errorf("envelope: id %q object %q model %q created %d", res.ID, res.Object, res.Model, res.Created)
	}
	if len(res.Choices) != 1 {
		t.Fatalf("%d choices", len(res.Choices))
	}
	c := res.Choices[0]
	if c.Index != 0 || c.Message.Role != "assistant" || c.FinishReason != "length" || c.Message.Content == "" {
		t.Errorf("choice %+v", c)
	}
	// The fake's prompt: 3 + (2+4) + (2+4) tokens.
	if res.Usage.PromptTokens != 15 || res.Usage.CompletionTokens != 7 || res.Usage.TotalTokens != 22 ||
		res.Usage.PromptTokensDetails.CachedTokens != 7 {
		t.Errorf("usage %+v", res.Usage)
	}
	// The same request again gives the same text (seed), and the stream gives it too.
	res2, err := client.Chat.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Choices[0].Message.Content != c.Message.Content {
		t.Errorf("seeded runs differ: %q vs %q", res2.Choices[0].Message.Content, c.Message.Content)
	}
	if res2.ID == res.ID {
		t.Errorf("ids repeat: %q", res.ID)
	}
	p.StreamOptions.IncludeUsage = openai.Bool(true)
	acc, chunks := collectStream(t, client, p)
	if got := acc.Choices[0].Message.Content; got != c.Message.Content {
		t.Errorf("stream %q, plain %q", got, c.Message.Content)
	}
	if acc.Choices[0].FinishReason != "length" {
		t.Errorf("stream finish %q", acc.Choices[0].FinishReason)
	}
	last := chunks[len(chunks)-1]
	if len(last.Choices) != 0 || last.Usage.TotalTokens != 22 || last.Usage.CompletionTokens != 7 ||
		last.Usage.PromptTokensDetails.CachedTokens != 7 {
		t.Errorf("last chunk %+v", last)
	}
	for _, ch := range chunks {
		if ch.ID != chunks[0].ID || ch.Object != "chat.completion.chunk" || ch.Model != testModelName {
			t.Errorf("chunk envelope %+v", ch)
		}
	}
}

func TestSDKSeeds(t *testing.T) {
	m := newFake()
	_, client := serve(t, m, Options{})
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
		for i, c := range res.Choices {
			if int(c.Index) != i {
				t.Errorf("choice %d has index %d", i, c.Index)
			}
			out = append(out, c.Message.Content)
		}
		return out
	}
	a, b := run(7, 1), run(7, 1)
	if a[0] != b[0] {
		t.Errorf("same seed, different text: %q %q", a[0], b[0])
	}
	if c := run(8, 1); c[0] == a[0] {
		t.Errorf("seeds 7 and 8 give the same text %q", a[0])
	}
	// Choice i of n uses seed + i.
	three := run(7, 3)
	if three[0] != a[0] || three[1] != run(8, 1)[0] || three[2] != run(9, 1)[0] {
		t.Errorf("n=3 with seed 7: %q, want the seeds 7, 8, 9 of n=1", three)
	}
}

func TestSDKChatN(t *testing.T) {
	m := newFake()
	_, client := serve(t, m, Options{})
	p := chatParams("several please")
	p.N = openai.Int(3)
	p.MaxTokens = openai.Int(5)
	p.Seed = openai.Int(1)
	res, err := client.Chat.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Choices) != 3 {
		t.Fatalf("%d choices", len(res.Choices))
	}
	// Usage: the prompt once, the completions summed.
	prompt := int64(3 + 6 + 6)
	if res.Usage.PromptTokens != prompt || res.Usage.CompletionTokens != 15 || res.Usage.TotalTokens != prompt+15 ||
		res.Usage.PromptTokensDetails.CachedTokens != prompt/2 {
		t.Errorf("usage %+v", res.Usage)
	}
	p.StreamOptions.IncludeUsage = openai.Bool(true)
	acc, chunks := collectStream(t, client, p)
	if len(acc.Choices) != 3 {
		t.Fatalf("stream: %d choices", len(acc.Choices))
	}
	for i := range 3 {
		if acc.Choices[i].Message.Content != res.Choices[i].Message.Content || acc.Choices[i].FinishReason != "length" {
			t.Errorf("choice %d: stream %q (%s), plain %q", i, acc.Choices[i].Message.Content,
				acc.Choices[i].FinishReason, res.Choices[i].Message.Content)
		}
	}
	if u := chunks[len(chunks)-1].Usage; u.PromptTokens != prompt || u.CompletionTokens != 15 || u.PromptTokensDetails.CachedTokens != prompt/2 {
		t.Errorf("stream usage %+v", u)
	}
}

func TestSDKStop(t *testing.T) {
	m := newFake()
	m.script = []int{10, 11, 12, 8, 13, 14} // " one two three, four five"
	_, client := serve(t, m, Options{})
	for _, tc := range []struct {
		stop   openai.ChatCompletionNewParamsStopUnion
		want   string
		finish string
	}{
		{openai.ChatCompletionNewParamsStopUnion{OfString: openai.String(" three")}, " one two", "stop"},
		{openai.ChatCompletionNewParamsStopUnion{OfStringArray: []string{"ve", ", f"}}, " one two three", "stop"},
		{openai.ChatCompletionNewParamsStopUnion{OfString: openai.String("absent")}, " one two three, four five", "stop"},
	} {
		p := chatParams("count")
		p.Stop = tc.stop
		res, err := client.Chat.Completions.New(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Choices[0]; got.Message.Content != tc.want || got.FinishReason != tc.finish {
			t.Errorf("stop %v: %q (%s), want %q (%s)", tc.stop, got.Message.Content, got.FinishReason, tc.want, tc.finish)
		}
		acc, _ := collectStream(t, client, p)
		if got := acc.Choices[0].Message.Content; got != tc.want {
			t.Errorf("stop %v streamed: %q, want %q", tc.stop, got, tc.want)
		}
	}
}

func TestSDKLogprobs(t *testing.T) {
	m := newFake()
	m.script = []int{4, 2, 3, 5} // " alpha", "é" in two byte tokens, " beta", then eos
	_, client := serve(t, m, Options{})
	p := chatParams("logprobs")
	p.Logprobs = openai.Bool(true)
	p.TopLogprobs = openai.Int(2)
	res, err := client.Chat.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	c := res.Choices[0]
	if c.Message.Content != " alphaé beta" || c.FinishReason != "stop" {
		t.Fatalf("content %q finish %q", c.Message.Content, c.FinishReason)
	}
	lp := c.Logprobs.Content
	if len(lp) != 5 { // four tokens and eos
		t.Fatalf("%d logprobs, want 5", len(lp))
	}
	wantTokens := []string{" alpha", `\xc3`, `\xa9`, " beta", ""}
	wantBytes := [][]int64{{32, 97, 108, 112, 104, 97}, {0xc3}, {0xa9}, {32, 98, 101, 116, 97}, {}}
	for i, e := range lp {
		if e.Token != wantTokens[i] || !equalInts(e.Bytes, wantBytes[i]) || e.Logprob != -0.25*float64(i%4+1) || len(e.TopLogprobs) != 2 {
			t.Errorf("logprob %d: %+v", i, e)
		}
		for j, top := range e.TopLogprobs {
			if top.Logprob != -0.1*float64(j+1) || top.Token == "" {
				t.Errorf("logprob %d top %d: %+v", i, j, top)
			}
		}
	}
	acc, _ := collectStream(t, client, p)
	slp := acc.Choices[0].Logprobs.Content
	if len(slp) != len(lp) {
		t.Fatalf("streamed %d logprobs, plain %d", len(slp), len(lp))
	}
	for i := range slp {
		if slp[i].Token != lp[i].Token || slp[i].Logprob != lp[i].Logprob || !equalInts(slp[i].Bytes, lp[i].Bytes) {
			t.Errorf("logprob %d: streamed %+v, plain %+v", i, slp[i], lp[i])
		}
	}
	// Without logprobs, there are none.
	p = chatParams("logprobs")
	res, err = client.Chat.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if res.Choices[0].Logprobs.Content != nil {
		t.Errorf("unrequested logprobs: %+v", res.Choices[0].Logprobs)
	}
}

func equalInts(a []int64, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSDKCompletions(t *testing.T) {
	m := newFake()
	_, client := serve(t, m, Options{})
	p := openai.CompletionNewParams{
		Model:  testModelName,
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("def fib(n):")},
		Seed:   openai.Int(3),
	}
	res, err := client.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.ID, "cmpl-") || res.Object != "text_completion" || len(res.Choices) != 1 {
		t.Fatalf("response %+v", res)
	}
	// max_tokens defaults to 16; the prompt is 2 words and bos.
	if c := res.Choices[0]; c.FinishReason != "length" || res.Usage.CompletionTokens != 16 || res.Usage.PromptTokens != 3 {
		t.Errorf("choice %+v usage %+v", c, res.Usage)
	}
	// Streamed, the text pieces add up to the same text.
	p.StreamOptions.IncludeUsage = openai.Bool(true)
	st := client.Completions.NewStreaming(context.Background(), p)
	var text strings.Builder
	var finish string
	var usage openai.CompletionUsage
	for st.Next() {
		c := st.Current()
		if c.Object != "text_completion" || c.ID == "" {
			t.Errorf("chunk %+v", c)
		}
		for _, ch := range c.Choices {
			text.WriteString(ch.Text)
			if ch.FinishReason != "" {
				finish = string(ch.FinishReason)
			}
		}
		if len(c.Choices) == 0 {
			usage = c.Usage
		}
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if text.String() != res.Choices[0].Text || finish != "length" || usage.TotalTokens != 19 {
		t.Errorf("stream %q (%s, %+v), plain %q", text.String(), finish, usage, res.Choices[0].Text)
	}
	// Several prompts, n each; logprobs; echo.
	m2 := newFake()
	m2.script = []int{4, 8, 5, 6}
	_, client2 := serve(t, m2, Options{})
	p = openai.CompletionNewParams{
		Model:     testModelName,
		Prompt:    openai.CompletionNewParamsPromptUnion{OfArrayOfStrings: []string{"a b", "c d e"}},
		N:         openai.Int(2),
		MaxTokens: openai.Int(3),
		Logprobs:  openai.Int(2),
		Seed:      openai.Int(3),
	}
	res, err = client2.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Choices) != 4 || res.Usage.PromptTokens != 3+4 || res.Usage.CompletionTokens != 12 {
		t.Fatalf("%d choices, usage %+v", len(res.Choices), res.Usage)
	}
	for i, c := range res.Choices {
		lp := c.Logprobs
		if int(c.Index) != i || len(lp.Tokens) != 3 || len(lp.TokenLogprobs) != 3 || len(lp.TextOffset) != 3 || len(lp.TopLogprobs) != 3 {
			t.Errorf("choice %d: %+v", i, c)
		}
		if strings.Join(lp.Tokens, "") != c.Text || lp.TextOffset[0] != 0 || lp.TextOffset[1] != int64(len(lp.Tokens[0])) {
			t.Errorf("choice %d: tokens %q offsets %v text %q", i, lp.Tokens, lp.TextOffset, c.Text)
		}
	}
	p = openai.CompletionNewParams{
		Model:     testModelName,
		Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String("echo me")},
		MaxTokens: openai.Int(2),
		Echo:      openai.Bool(true),
	}
	res, err = client.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.Choices[0].Text, "echo me") || len(res.Choices[0].Text) <= len("echo me") {
		t.Errorf("echo: %q", res.Choices[0].Text)
	}
	// Token-id prompts.
	p = openai.CompletionNewParams{
		Model:     testModelName,
		Prompt:    openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: []int64{4, 5, 6, 7}},
		MaxTokens: openai.Int(2),
	}
	res, err = client.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if res.Usage.PromptTokens != 4 {
		t.Errorf("token prompt usage %+v", res.Usage)
	}
}

func TestSDKModels(t *testing.T) {
	_, client := serve(t, newFake(), Options{ModelNames: []string{"a/b-model", "alias"}})
	page, err := client.Models.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 2 || page.Data[0].ID != "a/b-model" || page.Data[1].ID != "alias" || page.Data[0].Object != "model" {
		t.Errorf("models %+v", page.Data)
	}
	m, err := client.Models.Get(context.Background(), "alias")
	if err != nil || m.ID != "alias" {
		t.Errorf("get: %+v %v", m, err)
	}
	_, err = client.Models.Get(context.Background(), "nope")
	checkSDKError(t, err, http.StatusNotFound, "model", "model_not_found")
}

// checkSDKError checks an error returned by the SDK: an *openai.Error with the given status,
// param and code (code "" means any).
func checkSDKError(t *testing.T, err error, status int, param, code string) {
	t.Helper()
	var e *openai.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T), want *openai.Error", err, err)
	}
	if e.StatusCode != status || e.Param != param || (code != "" && e.Code != code) || e.Message == "" || e.Type == "" {
		t.Errorf("error: status %d param %q code %q type %q message %q; want status %d param %q code %q",
			e.StatusCode, e.Param, e.Code, e.Type, e.Message, status, param, code)
	}
}

func TestSDKErrors(t *testing.T) {
	m := newFake()
	m.ctxLen = 40
	_, client := serve(t, m, Options{APIKey: "secret"})
	ctx := context.Background()
	p := chatParams("hi")
	_, err := client.Chat.Completions.New(ctx, p, option.WithAPIKey("wrong"))
	checkSDKError(t, err, http.StatusUnauthorized, "", "invalid_api_key")
	_, err = client.Chat.Completions.New(ctx, p, option.WithHeaderDel("Authorization"))
	checkSDKError(t, err, http.StatusUnauthorized, "", "invalid_api_key")

	authed := option.WithAPIKey("secret")
	_, err = client.Chat.Completions.New(ctx, p, authed)
	if err != nil {
		t.Fatalf("with the key: %v", err)
	}
	bad := p
	bad.Model = "gpt-4o"
	_, err = client.Chat.Completions.New(ctx, bad, authed)
	checkSDKError(t, err, http.StatusNotFound, "model", "model_not_found")

	bad = p
	bad.MaxTokens = openai.Int(30) // 15 prompt + 30 > 40
	_, err = client.Chat.Completions.New(ctx, bad, authed)
	checkSDKError(t, err, http.StatusBadRequest, "messages", "context_length_exceeded")
	st := client.Chat.Completions.NewStreaming(ctx, bad, authed)
	for st.Next() {
	}
	checkSDKError(t, st.Err(), http.StatusBadRequest, "messages", "context_length_exceeded")

	bad = p
	bad.N = openai.Int(0)
	_, err = client.Chat.Completions.New(ctx, bad, option.WithJSONSet("n", 0), authed)
	checkSDKError(t, err, http.StatusBadRequest, "n", "")

	bad = p
	bad.TopLogprobs = openai.Int(3)
	_, err = client.Chat.Completions.New(ctx, bad, authed)
	checkSDKError(t, err, http.StatusBadRequest, "top_logprobs", "")

	_, err = client.Chat.Completions.New(ctx, p, authed, option.WithJSONSet("messages", []any{}))
	checkSDKError(t, err, http.StatusBadRequest, "messages", "")

	_, err = client.Chat.Completions.New(ctx, p, authed, option.WithJSONSet("messages",
		[]any{map[string]any{"role": "wizard", "content": "hi"}}))
	checkSDKError(t, err, http.StatusBadRequest, "messages[0].role", "")

	_, err = client.Chat.Completions.New(ctx, p, authed, option.WithJSONSet("logit_bias", map[string]any{"99999": 1}))
	checkSDKError(t, err, http.StatusBadRequest, "logit_bias", "")

	// A failure inside the model is a 500, plain or streamed.
	_, err = client.Chat.Completions.New(ctx, chatParams("FAIL-EARLY"), authed)
	checkSDKError(t, err, http.StatusInternalServerError, "", "")
	st = client.Chat.Completions.NewStreaming(ctx, chatParams("FAIL-EARLY"), authed)
	for st.Next() {
	}
	checkSDKError(t, st.Err(), http.StatusInternalServerError, "", "")
}
