package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

func init() {
	register(&command{
		name:    "bench",
		summary: "measure an OpenAI-compatible endpoint under load (bench serve), or write a synthetic checkpoint (bench synthetic)",
		run:     runBench,
	})
}

func runBench(ctx context.Context, e *env, args []string) error {
	switch {
	case len(args) > 0 && args[0] == "serve":
		return runBenchServe(ctx, e, args[1:])
	case len(args) > 0 && args[0] == "synthetic":
		return runBenchSynthetic(ctx, e, args[1:])
	}
	return fmt.Errorf("%w: usage: fathom bench serve --url URL [flags], or fathom bench synthetic --out DIR [flags]", errUsage)
}

// serveBench is a multi-turn chat workload: users chatting at once, each turn resending the
// conversation so far with the previous reply and a new user message, as the hosted API is
// used.
type serveBench struct {
	url, model, apiKey string
	users, turns       int
	// systemWords, firstWords and userWords size the system message, the first user
	// message and each later one, in words of a fixed list drawn with seed.
	systemWords, firstWords, userWords int
	maxTokens                          int // 0: none sent
	temperature                        float64
	// duration, when positive, ends the run after that long.
	duration time.Duration
	// probeWords, when positive, sends one prompt of that many words once every user has
	// its first token, and measures the longest gap of the other streams while it is read.
	probeWords int
	seed       uint64
	client     *http.Client
}

func runBenchServe(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "bench serve")
	b := serveBench{client: http.DefaultClient}
	fs.StringVar(&b.url, "url", "", "the API's base `URL`, such as http://127.0.0.1:8000/v1 (required)")
	fs.StringVar(&b.model, "model", "", "model `NAME` to request (default: the first the endpoint lists)")
	fs.StringVar(&b.apiKey, "api-key", "", "bearer `KEY` to send")
	fs.IntVar(&b.users, "users", 4, "conversations at once")
	fs.IntVar(&b.turns, "turns", 4, "turns of each conversation")
	fs.IntVar(&b.systemWords, "system-words", 50, "words of the system message")
	fs.IntVar(&b.firstWords, "first-words", 200, "words of each conversation's first user message")
	fs.IntVar(&b.userWords, "user-words", 40, "words of each later user message")
	fs.IntVar(&b.maxTokens, "max-tokens", 64, "max_tokens of each reply (0: send none, replies run to the end of text or context)")
	fs.DurationVar(&b.duration, "duration", 0, "end the run after this long (0: when every conversation ends)")
	fs.IntVar(&b.probeWords, "probe-words", 0, "once every user streams, send one prompt of this many `WORDS` and report the streams' longest gap while it is read")
	fs.Float64Var(&b.temperature, "temperature", 0, "sampling temperature")
	fs.Uint64Var(&b.seed, "seed", 1, "seed of the texts (and of sampling)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	setUsage(fs, "usage: fathom bench serve --url URL [flags]",
		"\nRuns multi-turn chats against an OpenAI-compatible endpoint (fathom's or another server's) and reports",
		"time to first token, inter-token latency, output tokens/s and the share of prompt tokens served from a cache.")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if b.url == "" || fs.NArg() != 0 || b.users < 1 || b.turns < 1 || b.maxTokens < 0 || b.duration < 0 ||
		b.systemWords < 0 || b.firstWords < 1 || b.userWords < 1 || b.probeWords < 0 {
		return fmt.Errorf("%w: --url is required; --users, --turns and the word counts must be positive, the other numbers not negative", errUsage)
	}
	b.url = strings.TrimSuffix(b.url, "/")
	if b.model == "" {
		name, err := b.firstModel(ctx)
		if err != nil {
			return err
		}
		b.model = name
	}
	var progress func(done, total int)
	if isTerminal(e.stderr) {
		bar := &progressBar{w: e.stderr, label: "bench serve", count: true}
		progress = func(done, total int) { bar.update(int64(done), int64(total)) }
		defer bar.finish()
	}
	rep, err := b.run(ctx, progress)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	rep.write(e.stdout)
	return nil
}

// firstModel returns the first model the endpoint lists.
func (b *serveBench) firstModel(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.url+"/models", nil)
	if err != nil {
		return "", err
	}
	b.authorize(req)
	resp, err := b.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || resp.StatusCode != http.StatusOK || len(list.Data) == 0 {
		return "", fmt.Errorf("bench serve: %s/models lists no model (status %d); pass --model", b.url, resp.StatusCode)
	}
	return list.Data[0].ID, nil
}

func (b *serveBench) authorize(req *http.Request) {
	if b.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+b.apiKey)
	}
}

// turnResult is what one request measured.
type turnResult struct {
	turn                                         int
	ttft                                         time.Duration
	gaps                                         []time.Duration // between content chunks
	arrivals                                     []time.Time     // of content chunks
	sent, end                                    time.Time
	cut                                          bool // ended by the run's end
	promptTokens, cachedTokens, completionTokens int
	err                                          error
}

// run runs the workload and reports it.
func (b *serveBench) run(ctx context.Context, progress func(done, total int)) (*benchReport, error) {
	total := b.users * b.turns
	if b.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.duration)
		defer cancel()
	}
	var mu sync.Mutex
	var results []turnResult
	// streaming counts down as each user's first reply starts streaming; then the probe goes.
	var streaming sync.WaitGroup
	streaming.Add(b.users)
	start := time.Now()
	var wg sync.WaitGroup
	for u := range b.users {
		wg.Go(func() {
			first := sync.OnceFunc(streaming.Done)
			defer first()
			r := rand.New(rand.NewPCG(b.seed, uint64(u)))
			msgs := []chatMsg{{"system", words(r, b.systemWords)}}
			for turn := range b.turns {
				n := b.userWords
				if turn == 0 {
					n = b.firstWords
				}
				msgs = append(msgs, chatMsg{"user", words(r, n)})
				reply, res := b.turn(ctx, msgs, u, b.maxTokens, first)
				res.turn = turn
				msgs = append(msgs, chatMsg{"assistant", reply})
				mu.Lock()
				results = append(results, res)
				done := len(results)
				mu.Unlock()
				if progress != nil {
					progress(done, total)
				}
				if res.err != nil || ctx.Err() != nil {
					return
				}
			}
		})
	}
	var probe *turnResult
	if b.probeWords > 0 {
		streaming.Wait()
		r := rand.New(rand.NewPCG(b.seed, uint64(b.users)))
		_, res := b.turn(ctx, []chatMsg{{"user", words(r, b.probeWords)}}, b.users, 1, func() {})
		probe = &res
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return nil, err
	}
	rep := report(results, b.turns, time.Since(start))
	rep.URL, rep.Model, rep.Users = b.url, b.model, b.users
	rep.PeakStreaming = peakStreaming(results)
	if probe != nil {
		rep.Probe = probeReport(*probe, results)
	}
	if rep.Requests == rep.Failed {
		return rep, fmt.Errorf("bench serve: every request failed; the first: %v", rep.firstErr)
	}
	return rep, nil
}

// peakStreaming returns the most replies that streamed at once: between their first content
// and their end.
func peakStreaming(results []turnResult) int {
	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	for _, r := range results {
		if len(r.arrivals) > 0 {
			edges = append(edges, edge{r.arrivals[0], 1}, edge{r.end, -1})
		}
	}
	slices.SortFunc(edges, func(a, b edge) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.delta - b.delta // an end before a start at the same time
	})
	peak, now := 0, 0
	for _, e := range edges {
		now += e.delta
		peak = max(peak, now)
	}
	return peak
}

// probeReport measures the probe: its time to first token (the time its prompt took to be
// read) and the longest gap between two tokens of any other stream that overlaps it.
func probeReport(p turnResult, results []turnResult) *probeStats {
	st := &probeStats{PromptTokens: p.promptTokens, TTFT: float64(p.ttft) / float64(time.Millisecond)}
	if p.err != nil {
		st.Error = p.err.Error()
		return st
	}
	from, to := p.sent, p.sent.Add(p.ttft)
	for _, r := range results {
		for i := 1; i < len(r.arrivals); i++ {
			a, b := r.arrivals[i-1], r.arrivals[i]
			if b.After(from) && a.Before(to) {
				st.LongestGap = max(st.LongestGap, float64(b.Sub(a))/float64(time.Millisecond))
			}
		}
	}
	if st.TTFT > 0 {
		st.GapShare = st.LongestGap / st.TTFT
	}
	return st
}

type chatMsg struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// turn sends one streamed chat request and measures it; it returns the reply's text.
// streaming is called once its first content arrives.
func (b *serveBench) turn(ctx context.Context, msgs []chatMsg, user, maxTokens int, streaming func()) (_ string, res turnResult) {
	fields := map[string]any{
		"model": b.model, "messages": msgs, "temperature": b.temperature,
		"seed": int64(b.seed) + int64(user), "stream": true, "stream_options": map[string]bool{"include_usage": true},
	}
	if maxTokens > 0 {
		fields["max_tokens"] = maxTokens
	}
	body, _ := json.Marshal(fields)
	defer func() {
		res.end = time.Now()
		if res.err != nil && ctx.Err() != nil {
			// The run ended (--duration) while this reply streamed: what it measured counts.
			res.err, res.cut = nil, true
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.url+"/chat/completions", bytes.NewReader(body))
	if err != nil {
		res.err = err
		return "", res
	}
	req.Header.Set("Content-Type", "application/json")
	b.authorize(req)
	sent := time.Now()
	res.sent = sent
	resp, err := b.client.Do(req)
	if err != nil {
		res.err = err
		return "", res
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		res.err = fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
		return "", res
	}
	var reply strings.Builder
	var last time.Time
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			break
		}
		var chunk struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Usage *struct {
				PromptTokens        int `json:"prompt_tokens"`
				CompletionTokens    int `json:"completion_tokens"`
				PromptTokensDetails *struct {
					CachedTokens int `json:"cached_tokens"`
				} `json:"prompt_tokens_details"`
			} `json:"usage"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			res.err = fmt.Errorf("bad event %q: %v", data, err)
			return reply.String(), res
		}
		if chunk.Error != nil {
			res.err = errors.New(chunk.Error.Message)
			return reply.String(), res
		}
		now := time.Now()
		for _, c := range chunk.Choices {
			if c.Delta.Content == "" {
				continue
			}
			if last.IsZero() {
				res.ttft = now.Sub(sent)
				streaming()
			} else {
				res.gaps = append(res.gaps, now.Sub(last))
			}
			last = now
			res.arrivals = append(res.arrivals, now)
			reply.WriteString(c.Delta.Content)
		}
		if u := chunk.Usage; u != nil {
			res.promptTokens, res.completionTokens = u.PromptTokens, u.CompletionTokens
			if u.PromptTokensDetails != nil {
				res.cachedTokens = u.PromptTokensDetails.CachedTokens
			}
		}
	}
	if err := sc.Err(); err != nil {
		res.err = err
	} else if last.IsZero() && res.completionTokens > 0 {
		res.ttft = time.Since(sent) // tokens that made no text
	}
	return reply.String(), res
}

// benchReport is the outcome of a run; times are in milliseconds.
type benchReport struct {
	URL      string  `json:"url"`
	Model    string  `json:"model"`
	Users    int     `json:"users"`
	Turns    int     `json:"turns"`
	Requests int     `json:"requests"`
	Failed   int     `json:"failed"`
	Cut      int     `json:"cut"` // ended by --duration
	Seconds  float64 `json:"seconds"`
	// TTFT and ITL are the time to first token and the inter-token latency.
	TTFT quantiles `json:"ttft_ms"`
	ITL  quantiles `json:"itl_ms"`
	// OutputTokensPerSecond is every completion token over the run's time.
	OutputTokensPerSecond float64 `json:"output_tokens_per_second"`
	PromptTokens          int     `json:"prompt_tokens"`
	CachedTokens          int     `json:"cached_tokens"`
	CachedShare           float64 `json:"cached_share"`
	// ByTurn has one entry per turn index.
	ByTurn []turnStats `json:"by_turn"`
	// PeakStreaming is the most replies that streamed at once.
	PeakStreaming int `json:"peak_streaming"`
	// Probe is the long prompt's measurement, with --probe-words.
	Probe    *probeStats `json:"probe,omitempty"`
	firstErr error
}

// probeStats measure a long prompt sent while the users stream: the time to its first token
// (how long it took to read) and the longest gap the streams saw meanwhile, also as a share
// of that time.
type probeStats struct {
	PromptTokens int     `json:"prompt_tokens"`
	TTFT         float64 `json:"ttft_ms"`
	LongestGap   float64 `json:"longest_gap_ms"`
	GapShare     float64 `json:"gap_share"`
	Error        string  `json:"error,omitempty"`
}

type quantiles struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

type turnStats struct {
	Turn         int     `json:"turn"`
	PromptTokens float64 `json:"prompt_tokens_mean"`
	CachedShare  float64 `json:"cached_share"`
	TTFTP50      float64 `json:"ttft_p50_ms"`
}

// report sums up results.
func report(results []turnResult, turns int, elapsed time.Duration) *benchReport {
	rep := &benchReport{Turns: turns, Requests: len(results), Seconds: elapsed.Seconds()}
	var ttfts, gaps []time.Duration
	byTurn := make([][]turnResult, turns)
	completion := 0
	for _, r := range results {
		if r.err != nil {
			rep.Failed++
			if rep.firstErr == nil {
				rep.firstErr = r.err
			}
			continue
		}
		if r.cut {
			rep.Cut++
		}
		if r.ttft > 0 {
			ttfts = append(ttfts, r.ttft)
		}
		gaps = append(gaps, r.gaps...)
		rep.PromptTokens += r.promptTokens
		rep.CachedTokens += r.cachedTokens
		completion += r.completionTokens
		byTurn[r.turn] = append(byTurn[r.turn], r)
	}
	rep.TTFT, rep.ITL = quantilesOf(ttfts), quantilesOf(gaps)
	if rep.Seconds > 0 {
		rep.OutputTokensPerSecond = float64(completion) / rep.Seconds
	}
	if rep.PromptTokens > 0 {
		rep.CachedShare = float64(rep.CachedTokens) / float64(rep.PromptTokens)
	}
	for t, rs := range byTurn {
		if len(rs) == 0 {
			continue
		}
		st := turnStats{Turn: t + 1}
		var ts []time.Duration
		prompt, cached := 0, 0
		for _, r := range rs {
			if r.ttft > 0 {
				ts = append(ts, r.ttft)
			}
			prompt += r.promptTokens
			cached += r.cachedTokens
		}
		st.PromptTokens = float64(prompt) / float64(len(rs))
		if prompt > 0 {
			st.CachedShare = float64(cached) / float64(prompt)
		}
		st.TTFTP50 = quantilesOf(ts).P50
		rep.ByTurn = append(rep.ByTurn, st)
	}
	return rep
}

// quantilesOf returns the median and 99th percentile (nearest rank) in milliseconds.
func quantilesOf(d []time.Duration) quantiles {
	if len(d) == 0 {
		return quantiles{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return float64(s[max(0, i)]) / float64(time.Millisecond)
	}
	return quantiles{P50: at(0.5), P99: at(0.99)}
}

// write prints the report as tables.
func (r *benchReport) write(w io.Writer) {
	fmt.Fprintf(w, "%s, model %s: %d users × %d turns, %d requests (%d failed, %d cut by the run's end) in %.1f s\n\n",
		r.URL, r.Model, r.Users, r.Turns, r.Requests, r.Failed, r.Cut, r.Seconds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "TTFT p50 ms\tTTFT p99 ms\tITL p50 ms\tITL p99 ms\toutput tok/s\tprompt tokens\tcached\t")
	fmt.Fprintf(tw, "%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%.1f%%\t\n", r.TTFT.P50, r.TTFT.P99, r.ITL.P50, r.ITL.P99,
		r.OutputTokensPerSecond, r.PromptTokens, 100*r.CachedShare)
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "turn\tprompt tokens\tcached\tTTFT p50 ms\t")
	for _, t := range r.ByTurn {
		fmt.Fprintf(tw, "%d\t%.0f\t%.1f%%\t%.1f\t\n", t.Turn, t.PromptTokens, 100*t.CachedShare, t.TTFTP50)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nat most %d replies streamed at once\n", r.PeakStreaming)
	if p := r.Probe; p != nil {
		fmt.Fprintf(w, "probe of %d prompt tokens: read in %.0f ms; the streams' longest gap meanwhile %.0f ms (%.2f of it)\n",
			p.PromptTokens, p.TTFT, p.LongestGap, p.GapShare)
		if p.Error != "" {
			fmt.Fprintf(w, "probe failed: %s\n", p.Error)
		}
	}
	if r.firstErr != nil {
		fmt.Fprintf(w, "\nfirst failure: %v\n", r.firstErr)
	}
}

// benchWords are the words of the workload's texts.
var benchWords = strings.Fields(`the of and to in is was for on that with as by at from this be are or
an which have not had but were all one their been has more when who will would there new can
about also into time its only other some could these two may after first then most any over
such where what than between through each under well many while much long great same year
work world system data model function value number list string return server request cache
token block memory step queue stream reply question answer write read find sort count sum
table file line page word small large fast slow early late open close start stop run test`)

// words returns n words drawn from r, with a full stop every twelve.
func words(r *rand.Rand, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(benchWords[r.IntN(len(benchWords))])
		if i%12 == 11 {
			b.WriteByte('.')
		}
	}
	return b.String()
}
