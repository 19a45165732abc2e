package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fathom-llm/fathom/engine"
	"github.com/fathom-llm/fathom/mixtral"
	"github.com/fathom-llm/fathom/safetensors"
	"github.com/fathom-llm/fathom/server"
)

func init() {
	register(&command{
		name:    "serve",
		summary: "serve an OpenAI-compatible chat API over a model",
		run:     runServe,
	})
}

// serveConfig is what serveModel needs besides the model.
type serveConfig struct {
	opts  server.Options
	drain time.Duration // how long shutdown waits for in-flight requests
}

func runServe(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "serve")
	dir := fs.String("model", "", "checkpoint `DIR`ectory (required)")
	addr := fs.String("addr", "127.0.0.1:8000", "listen address `HOST:PORT`")
	apiKey := fs.String("api-key", os.Getenv("FATHOM_API_KEY"), "require this bearer `KEY` on /v1 requests (default $FATHOM_API_KEY)")
	names := fs.String("name", "", "comma-separated model `NAMES` that requests may use (default: the directory's name)")
	maxConc := fs.Int("max-concurrent", server.DefaultMaxConcurrent, "requests admitted at once (the KV cache's room decides which compute)")
	queue := fs.Int("queue", server.DefaultQueueLength, "requests that may wait for admission before 429")
	maxBody := fs.Int64("max-body", server.DefaultMaxBodyBytes, "largest request body in bytes")
	ctxLen := fs.Int("context", 0, "context length in tokens (0: the model's default)")
	var cache kvCacheSize
	fs.Var(&cache, "kv-cache", "KV cache `SIZE` shared by all requests: tokens (8192) or bytes (512MiB, 2GB) (default: "+
		fmt.Sprint(mixtral.DefaultCacheContexts)+" contexts, at most a quarter of the memory)")
	var kvType safetensors.DType
	fs.Func("kv-type", "store the KV cache as `f16`, bf16 or f32 (default: the backend's, f16)", func(s string) error {
		var err error
		kvType, err = parseKVType(s)
		return err
	})
	noPrefix := fs.Bool("no-prefix-cache", false, "turn automatic prefix caching off")
	maxRunning := fs.Int("max-running", engine.DefaultMaxRunning, "sequences (each choice of a request) computed at once")
	budget := fs.Int("token-budget", engine.DefaultTokenBudget, "most tokens of one forward step: running decodes, then prompt chunks")
	maxChoices := fs.Int("max-choices", server.DefaultMaxChoices, "most choices (n times prompts) of one request")
	drain := fs.Duration("shutdown-timeout", time.Minute, "on SIGTERM, how long to let in-flight requests finish")
	bodyTimeout := fs.Duration("body-timeout", server.DefaultBodyTimeout, "how long a request body may take to arrive")
	priceIn := fs.Float64("price-input", 0, "price in `USD` per million prompt tokens, for usage.estimated_cost")
	priceOut := fs.Float64("price-output", 0, "price in `USD` per million completion tokens, for usage.estimated_cost")
	weights := weightFlags{preload: true} // the first request then waits for no disk
	weights.register(fs)
	setUsage(fs, "usage: fathom serve --model DIR [--addr HOST:PORT] [--api-key KEY] [flags]",
		"\nServes POST /v1/chat/completions, POST /v1/completions, GET /v1/models (also under /v1/openai/), GET /health and GET /metrics.",
		"SIGINT or SIGTERM stops accepting connections and drains in-flight requests.")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() != 0 {
		return fmt.Errorf("%w: --model DIR is required and there are no arguments", errUsage)
	}
	if *maxConc < 1 || *queue < 0 || *maxBody < 1 || *ctxLen < 0 || *drain < 0 || *bodyTimeout <= 0 ||
		*maxRunning < 1 || *budget < 1 || *maxChoices < 1 ||
		!(*priceIn >= 0) || !(*priceOut >= 0) || math.IsInf(*priceIn+*priceOut, 0) {
		return fmt.Errorf("%w: --max-concurrent, --max-body, --body-timeout, --max-running, --token-budget and --max-choices must be positive, the other numbers not negative", errUsage)
	}
	modelNames := splitNames(*names)
	if len(modelNames) == 0 {
		modelNames = []string{filepath.Base(filepath.Clean(*dir))}
	}
	queueLen := *queue
	if queueLen == 0 {
		queueLen = -1 // Options: negative means no queue
	}

	m, done, err := weights.load(ctx, e, *dir, mixtral.Options{
		ContextLength: *ctxLen, CacheTokens: cache.tokens, CacheBytes: cache.bytes, CacheType: kvType, MaxBatch: *budget,
		Engine: engine.Options{TokenBudget: *budget, MaxRunning: *maxRunning, MaxChoices: *maxChoices, NoPrefixCache: *noPrefix},
	})
	if err != nil {
		return err
	}
	defer done()
	mt := m.Metrics()
	perToken := float64(mt.BlockBytes) / float64(mt.BlockSize)
	fmt.Fprintf(e.stderr, "fathom serve: KV cache %s: %s a token, %d tokens (%s) in blocks of %d; context %d tokens; prefix caching %s\n",
		m.CacheType(), formatBytes(perToken), mt.BlocksTotal*mt.BlockSize, formatBytes(float64(mt.BlockBytes)*float64(mt.BlocksTotal)),
		mt.BlockSize, m.ContextLength(), map[bool]string{false: "on", true: "off"}[*noPrefix])
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	cfg := serveConfig{
		opts: server.Options{ModelNames: modelNames, APIKey: *apiKey, MaxBodyBytes: *maxBody,
			MaxConcurrent: *maxConc, QueueLength: queueLen, MaxChoices: *maxChoices, BodyTimeout: *bodyTimeout,
			PriceInput: *priceIn, PriceOutput: *priceOut},
		drain: *drain,
	}
	return serveModel(ctx, e, m, ln, cfg)
}

// splitNames splits a comma-separated list, dropping empty entries.
func splitNames(s string) []string {
	var out []string
	for _, n := range strings.Split(s, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// stopGrace is how long requests that Server.Stop ended get to write their last event.
const stopGrace = 5 * time.Second

// serveModel serves m on ln until ctx is done, then stops accepting connections and waits
// up to cfg.drain for in-flight requests; those still running are then stopped, streams
// with an error event, before the connections close.
func serveModel(ctx context.Context, e *env, m server.Model, ln net.Listener, cfg serveConfig) error {
	logger := slog.New(slog.NewTextHandler(e.stderr, nil))
	cfg.opts.Logger = logger
	h, err := server.New(m, cfg.opts)
	if err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(e.stderr, "fathom serve: http: ", 0),
	}
	fmt.Fprintf(e.stderr, "fathom serve: serving %s on http://%s/v1\n", strings.Join(cfg.opts.ModelNames, ", "), ln.Addr())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	fmt.Fprintln(e.stderr, "fathom serve: shutting down; waiting for in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.drain)
	defer cancel()
	err = srv.Shutdown(sctx)
	if err != nil {
		h.Stop() // ends the requests still running, each with an error for its client
		gctx, gcancel := context.WithTimeout(context.Background(), stopGrace)
		if srv.Shutdown(gctx) != nil {
			srv.Close()
		}
		gcancel()
		err = fmt.Errorf("requests still running after %v were stopped: %w", cfg.drain, err)
	}
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err == nil {
		fmt.Fprintln(e.stderr, "fathom serve: stopped")
	}
	return err
}
