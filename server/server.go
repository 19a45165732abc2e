package server

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/fathom-llm/fathom/mixtral"
)

// Model is what the server needs of a loaded model: a *mixtral.Model, or anything else that
// generates the same way. Its methods must be safe for concurrent use.
type Model interface {
	// Stream generates for one request, yielding events as tokens are decoded; the last event
	// has Done set. It stops, yielding ctx's error, once ctx is cancelled. The server passes
	// requests whose PromptIDs hold what PromptIDs returned for them, beside the messages or
	// text they came from, so that the prompt is tokenized once.
	Stream(ctx context.Context, req mixtral.Request) iter.Seq2[mixtral.Event, error]
	// PromptIDs returns the token ids of req's prompt (messages rendered with the chat
	// template, the tokenized prompt, or PromptIDs checked against the vocabulary). Its errors
	// are the client's: the server answers them with 400.
	PromptIDs(req mixtral.Request) ([]int, error)
	// ContextLength is the most tokens, prompt and completion together, a sequence can hold.
	ContextLength() int
	// TokenText returns the bytes token id adds to decoded text, for logprobs: "▁Hello" is
	// " Hello", a byte-fallback token such as "<0xE2>" is that one byte (not valid UTF-8 on
	// its own), a special token is its literal text.
	TokenText(id int) string
}

// Defaults of Options.
const (
	DefaultMaxBodyBytes = 4 << 20
	// DefaultMaxConcurrent admits as many requests as the serving engine runs sequences by
	// default: the KV cache's room decides which of them compute at each step.
	DefaultMaxConcurrent = 256
	DefaultQueueLength   = 64
	DefaultRetryAfter    = time.Second
	DefaultMaxChoices    = 16
	DefaultBodyTimeout   = 30 * time.Second
)

// Options configure a Server. The zero value of each numeric field selects its default.
type Options struct {
	// ModelNames are the names a request's "model" may use; /v1/models lists them. At least
	// one is required.
	ModelNames []string
	// APIKey, when set, must be sent as "Authorization: Bearer <key>" on every /v1 request.
	APIKey string
	// MaxBodyBytes bounds a request body (default DefaultMaxBodyBytes); larger bodies get 413.
	MaxBodyBytes int64
	// MaxConcurrent is the number of requests that generate at once (default
	// DefaultMaxConcurrent). A request with n > 1 counts once. Past the serving engine's own
	// capacity (KV cache room, sequences run at once) admitted requests wait in its queue.
	MaxConcurrent int
	// MaxChoices bounds a request's choices, n times its prompts (default
	// DefaultMaxChoices).
	MaxChoices int
	// MaxRequestTokens bounds the tokens one request may generate over all its choices
	// (default four times the context length): a request whose max_tokens asks for more is
	// refused; without max_tokens, several choices share it equally.
	MaxRequestTokens int
	// QueueLength is the number of requests that may wait for a turn (default
	// DefaultQueueLength; negative for none). Past it requests get 429.
	QueueLength int
	// RetryAfter is the wait suggested to refused clients (default DefaultRetryAfter; whole
	// seconds, at least 1).
	RetryAfter time.Duration
	// BodyTimeout bounds the time a request body takes to arrive once its headers are read
	// (default DefaultBodyTimeout); a slower body gets 408. It needs a server connection
	// that supports read deadlines (net/http's own do).
	BodyTimeout time.Duration
	// PriceInput and PriceOutput are the prices, in US dollars per million prompt and
	// completion tokens, from which usage.estimated_cost is computed (0: free).
	PriceInput, PriceOutput float64
	// Logger receives one line per server fault (5xx) and per recovered panic (default: none).
	Logger *slog.Logger
}

// Server is the OpenAI-compatible API over one model. It implements http.Handler.
type Server struct {
	model   Model
	opts    Options
	names   map[string]bool
	created int64
	limit   *limiter
	log     *slog.Logger
	routes  map[string]route

	// stopped ends, with cause errStopped, once Stop is called; every request's context
	// ends with it.
	stopped context.Context
	stop    context.CancelCauseFunc

	metricsHandler http.Handler
}

// errStopped is the cause of the contexts of requests that Stop ended.
var errStopped = errors.New("server: stopped")

// route is one path's method and handler.
type route struct {
	method string
	auth   bool
	h      func(w http.ResponseWriter, r *http.Request) *apiError
}

// New returns a Server for m. It fails when opts names no model or has a negative limit.
func New(m Model, opts Options) (*Server, error) {
	if m == nil {
		return nil, errors.New("server: nil model")
	}
	if len(opts.ModelNames) == 0 {
		return nil, errors.New("server: Options.ModelNames is empty")
	}
	if opts.MaxBodyBytes < 0 || opts.MaxConcurrent < 0 || opts.RetryAfter < 0 || opts.BodyTimeout < 0 ||
		opts.MaxChoices < 0 || opts.MaxRequestTokens < 0 {
		return nil, errors.New("server: negative limit in Options")
	}
	if !(opts.PriceInput >= 0) || !(opts.PriceOutput >= 0) || math.IsInf(opts.PriceInput+opts.PriceOutput, 0) {
		return nil, errors.New("server: prices in Options must be finite and not negative")
	}
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxConcurrent == 0 {
		opts.MaxConcurrent = DefaultMaxConcurrent
	}
	if opts.MaxChoices == 0 {
		opts.MaxChoices = DefaultMaxChoices
	}
	switch {
	case opts.QueueLength == 0:
		opts.QueueLength = DefaultQueueLength
	case opts.QueueLength < 0:
		opts.QueueLength = 0
	}
	if opts.RetryAfter == 0 {
		opts.RetryAfter = DefaultRetryAfter
	}
	if opts.BodyTimeout == 0 {
		opts.BodyTimeout = DefaultBodyTimeout
	}
	s := &Server{
		model:   m,
		opts:    opts,
		names:   map[string]bool{},
		created: time.Now().Unix(),
		limit:   newLimiter(opts.MaxConcurrent, opts.QueueLength),
		log:     opts.Logger,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.stopped, s.stop = context.WithCancelCause(context.Background())
	for _, n := range opts.ModelNames {
		if n == "" {
			return nil, errors.New("server: empty model name")
		}
		s.names[n] = true
	}
	s.routes = map[string]route{
		"/v1/chat/completions": {http.MethodPost, true, s.chatCompletions},
		"/v1/completions":      {http.MethodPost, true, s.completions},
		"/v1/models":           {http.MethodGet, true, s.listModels},
		"/health":              {http.MethodGet, false, s.health},
		"/metrics":             {http.MethodGet, false, s.metrics},
	}
	s.metricsHandler = newMetricsHandler(m)
	return s, nil
}

// Stop ends every request still running and refuses new ones with 503: a streamed response
// receives an error event and ends, a plain one is answered 503. Call it when the wait of
// http.Server.Shutdown for in-flight requests runs out, then Shutdown again briefly (the
// handlers return within a token) before Close, so that no stream is cut silently.
func (s *Server) Stop() { s.stop(errStopped) }

// ServeHTTP answers one request: routing, authentication, method and content-type checks,
// the body size limit, and recovery from a panic, then the endpoint itself.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tw := &trackingWriter{ResponseWriter: w}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("panic serving request", "method", r.Method, "path", r.URL.Path,
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if tw.wrote {
				// The response has begun: cut the connection so the client sees a failure
				// rather than a short response.
				panic(http.ErrAbortHandler)
			}
			writeError(tw, errInternal())
		}
	}()
	if e := s.serve(tw, r); e != nil {
		if e.Status >= 500 {
			s.log.Error("request failed", "method", r.Method, "path", r.URL.Path,
				"status", e.Status, "error", e.Message)
		}
		if !tw.wrote {
			writeError(tw, e)
		}
	}
}

// hostedPrefix is the hosted API's path prefix for its OpenAI-compatible endpoints;
// /v1/openai/chat/completions is served as /v1/chat/completions.
const hostedPrefix = "/v1/openai/"

func (s *Server) serve(w http.ResponseWriter, r *http.Request) *apiError {
	path := r.URL.Path
	if rest, ok := strings.CutPrefix(path, hostedPrefix); ok {
		path = "/v1/" + rest
	}
	rt, ok := s.routes[path]
	if !ok && strings.HasPrefix(path, "/v1/models/") {
		rt, ok = route{http.MethodGet, true, s.getModel}, true
	}
	if !ok {
		return &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest,
			Message: fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path)}
	}
	if rt.auth && s.opts.APIKey != "" {
		if e := s.authorize(w, r); e != nil {
			return e
		}
	}
	if r.Method != rt.method && !(rt.method == http.MethodGet && r.Method == http.MethodHead) {
		w.Header().Set("Allow", rt.method)
		return &apiError{Status: http.StatusMethodNotAllowed, Type: typeInvalidRequest,
			Message: fmt.Sprintf("Method %s is not allowed for %s; use %s.", r.Method, r.URL.Path, rt.method)}
	}
	if rt.method == http.MethodPost {
		if ct := r.Header.Get("Content-Type"); ct != "" {
			mt, _, err := mime.ParseMediaType(ct)
			if err != nil || mt != "application/json" {
				return &apiError{Status: http.StatusUnsupportedMediaType, Type: typeInvalidRequest,
					Message: fmt.Sprintf("Unsupported Content-Type %q: the request body must be JSON (Content-Type: application/json).", ct)}
			}
		}
		if r.ContentLength > s.opts.MaxBodyBytes {
			return errBodyTooLarge(s.opts.MaxBodyBytes)
		}
		// The header deadline of http.Server does not cover the body: bound it here, then lift
		// the deadline so that it cannot end a long generation.
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Now().Add(s.opts.BodyTimeout))
		body, e := readBody(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
		if e != nil {
			// Leave the rest of the body unread and the connection to close.
			w.Header().Set("Connection", "close")
			return e
		}
		_ = rc.SetReadDeadline(time.Time{})
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	if s.stopped.Err() != nil {
		return errStopping()
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	defer context.AfterFunc(s.stopped, func() { cancel(errStopped) })()
	return rt.h(w, r.WithContext(ctx))
}

// authorize checks the bearer token against the configured API key.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) *apiError {
	auth := r.Header.Get("Authorization")
	scheme, key, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		w.Header().Set("WWW-Authenticate", `Bearer realm="fathom"`)
		return &apiError{Status: http.StatusUnauthorized, Type: typeInvalidRequest, Code: "invalid_api_key",
			Message: "You didn't provide an API key. Send it in the Authorization header: Authorization: Bearer YOUR_KEY."}
	}
	if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(key)), []byte(s.opts.APIKey)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="fathom", error="invalid_token"`)
		return &apiError{Status: http.StatusUnauthorized, Type: typeInvalidRequest, Code: "invalid_api_key",
			Message: "Incorrect API key provided."}
	}
	return nil
}

// admit waits for a generation slot, or refuses with 429 when the queue is full. The returned
// release must be called once generation ends.
func (s *Server) admit(ctx context.Context, w http.ResponseWriter) (release func(), e *apiError) {
	release, err := s.limit.acquire(ctx)
	switch {
	case err == nil:
		return release, nil
	case errors.Is(err, errQueueFull):
		secs := int((s.opts.RetryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", fmt.Sprint(max(secs, 1)))
		return nil, &apiError{Status: http.StatusTooManyRequests, Type: "requests", Code: "rate_limit_exceeded",
			Message: "The server is busy: too many requests are waiting. Retry after a short wait."}
	default:
		return nil, errCanceled(ctx)
	}
}

// modelObject is one entry of /v1/models.
type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func (s *Server) modelObject(name string) modelObject {
	return modelObject{ID: name, Object: "model", Created: s.created, OwnedBy: "fathom"}
}

func (s *Server) listModels(w http.ResponseWriter, r *http.Request) *apiError {
	data := make([]modelObject, 0, len(s.opts.ModelNames))
	for _, n := range s.opts.ModelNames {
		data = append(data, s.modelObject(n))
	}
	writeJSON(w, http.StatusOK, struct {
		Object string        `json:"object"`
		Data   []modelObject `json:"data"`
	}{"list", data})
	return nil
}

func (s *Server) getModel(w http.ResponseWriter, r *http.Request) *apiError {
	name := r.URL.Path[strings.Index(r.URL.Path, "/models/")+len("/models/"):]
	if !s.names[name] {
		return errModelNotFound(name)
	}
	writeJSON(w, http.StatusOK, s.modelObject(name))
	return nil
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) *apiError {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// checkModel reports whether name is served.
func (s *Server) checkModel(name string) *apiError {
	if name == "" {
		return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Param: "model",
			Code: "missing_required_parameter", Message: "You must provide a model parameter."}
	}
	if !s.names[name] {
		return errModelNotFound(name)
	}
	return nil
}

// trackingWriter records whether the response has started, so that a failure after it did
// is not answered with a second status line.
type trackingWriter struct {
	http.ResponseWriter
	wrote bool
}

func (t *trackingWriter) WriteHeader(code int) {
	t.wrote = true
	t.ResponseWriter.WriteHeader(code)
}

func (t *trackingWriter) Write(p []byte) (int, error) {
	t.wrote = true
	return t.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the underlying writer (to flush it).
func (t *trackingWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }
