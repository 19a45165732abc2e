package mixtral

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/backend/cpu"
	"github.com/fathom-llm/fathom/safetensors"
	"github.com/fathom-llm/fathom/tokenizer"
)

// ErrContextLength reports a prompt that leaves no room in the context for a generated
// token (prompt length + 1 > context length), or a sequence grown past the context.
var ErrContextLength = errors.New("mixtral: context length exceeded")

// ErrClosed reports use of a closed Model.
var ErrClosed = errors.New("mixtral: model closed")

// Options configure Load. The zero value runs on the CPU with the default context.
type Options struct {
	// Backend runs the model; nil makes a CPU backend (cpu.New(0): one worker per
	// GOMAXPROCS, exact float32 activations), which the Model closes. A given backend stays
	// the caller's to close; pass one to choose the CUDA backend or the CPU backend's
	// options, such as cpu.Options.BF16Activations.
	Backend backend.Backend
	// Progress, when set, is called while weights are bound with the bytes bound so far
	// and the total.
	Progress func(done, total int64)
	// ContextLength is the most positions one sequence may hold (prompt and generated
	// tokens); 0 means min(max_position_embeddings, DefaultContextLength).
	ContextLength int
	// CacheTokens is the size of the KV cache in positions, shared by all sequences; 0 means
	// 4·ContextLength. A request reserves room for its prompt and MaxTokens (up to the
	// context length) before it starts, waiting while the cache is taken.
	CacheTokens int
	// MaxBatch is the most tokens one forward step runs; longer prompts run in several
	// steps. 0 means DefaultMaxBatch.
	MaxBatch int
	// Quantize stores weights quantized, converted once while they are bound from the
	// stored bf16, f16 or f32 checkpoint: the expert weights (w1, w2, w3) and the attention
	// projections (q, k, v, o), which are nearly all of a Mixtral's bytes. The embeddings,
	// norms, routers and lm_head stay as stored: they are a small share of the bytes read
	// per token, and the router's choice and the logits are where rounding costs the most
	// accuracy. The backend must be a backend.Quantizer (the CPU backend is). The zero value
	// keeps every weight as stored.
	Quantize backend.Quantization
}

// Defaults of Options.
const (
	DefaultContextLength = 4096
	DefaultMaxBatch      = 512
	// blockSize is the number of positions in one KV cache block.
	blockSize = 16
	// logitRows is the most rows whose logits one forward step computes at once.
	logitRows = 64
	// recordTokens is the most tokens of a step whose layers a backend.StepRecorder records
	// (decode steps of up to this many sequences, which repeat with one shape; short prompts
	// too); longer steps run as they are.
	recordTokens = 64
)

// Model is a loaded Mixtral model. Its methods are safe for concurrent use; Close it to
// release the weights.
type Model struct {
	cfg    Config
	tok    *tokenizer.Tokenizer
	ckpt   *safetensors.Checkpoint
	be     backend.Backend
	ownBE  bool
	w      *weights
	cache  backend.Cache
	ctxLen int
	// maxBatch is the most tokens of one forward step.
	maxBatch int

	mu       sync.Mutex // guards the forward pass's state below and closed
	closed   bool
	act      activations
	recorded recordedLayers
	sched    *scheduler
	closing  sync.Once
}

// Load opens the checkpoint in dir: config.json (and generation_config.json), the
// safetensors weights, and the tokenizer when the directory has one. Cancelling ctx stops
// binding the weights (which quantizing makes take a while) at the next layer.
func Load(ctx context.Context, dir string, opts Options) (*Model, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	tok, err := tokenizer.Load(dir)
	if err != nil && !errors.Is(err, tokenizer.ErrNotFound) {
		return nil, fmt.Errorf("mixtral: tokenizer: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ckpt, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	m, err := newModel(ctx, cfg, ckpt, opts)
	if err != nil {
		ckpt.Close()
		return nil, err
	}
	m.ckpt, m.tok = ckpt, tok
	return m, nil
}

// New makes a model of the given configuration over weights from src, which must stay open
// while the model is used (Load's model closes its own checkpoint; here src stays the
// caller's). The model has no tokenizer, so it serves token ids only.
func New(cfg Config, src safetensors.Source, opts Options) (*Model, error) {
	return newModel(context.Background(), cfg, src, opts)
}

// newModel is New, giving up between layers while binding weights once ctx is done.
func newModel(ctx context.Context, cfg Config, src safetensors.Source, opts Options) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !opts.Quantize.Valid() {
		return nil, fmt.Errorf("mixtral: Options.Quantize: %w: %q", backend.ErrQuantization, string(opts.Quantize))
	}
	m := &Model{cfg: cfg, be: opts.Backend}
	if m.be == nil {
		m.be, m.ownBE = cpu.New(0), true
	}
	m.ctxLen = opts.ContextLength
	if m.ctxLen <= 0 {
		m.ctxLen = min(cfg.MaxPositionEmbeddings, DefaultContextLength)
	}
	cacheTokens := opts.CacheTokens
	if cacheTokens <= 0 {
		cacheTokens = 4 * m.ctxLen
	}
	m.maxBatch = opts.MaxBatch
	if m.maxBatch <= 0 {
		m.maxBatch = DefaultMaxBatch
	}
	var err error
	fail := func(err error) (*Model, error) {
		if m.cache != nil {
			m.cache.Close()
		}
		if m.ownBE {
			m.be.Close()
		}
		return nil, err
	}
	if m.w, err = bindWeights(ctx, src, cfg, m.be, opts.Quantize, opts.Progress); err != nil {
		return fail(err)
	}
	m.cache, err = m.be.NewCache(backend.CacheConfig{
		Layers: cfg.NumHiddenLayers, KVHeads: cfg.NumKeyValueHeads, HeadDim: cfg.HeadDim,
		BlockSize: blockSize, Blocks: (cacheTokens + blockSize - 1) / blockSize,
	})
	if err != nil {
		return fail(err)
	}
	if m.act, err = newActivations(m.be, cfg, m.maxBatch); err != nil {
		return fail(err)
	}
	m.recorded.init(m)
	m.sched = newScheduler(m, (cacheTokens+blockSize-1)/blockSize)
	return m, nil
}

// Config returns the model's configuration.
func (m *Model) Config() Config { return m.cfg }

// Tokenizer returns the checkpoint's tokenizer, or nil when it has none.
func (m *Model) Tokenizer() *tokenizer.Tokenizer { return m.tok }

// EOSTokenIDs returns the ids that end generation: the config's (generation_config.json's
// when present).
func (m *Model) EOSTokenIDs() []int { return slices.Clone(m.cfg.EOSTokenIDs) }

// ContextLength returns the most positions one sequence may hold.
func (m *Model) ContextLength() int { return m.ctxLen }

// Backend returns the backend the model runs on.
func (m *Model) Backend() backend.Backend { return m.be }

// Close stops the scheduler (running requests end with ErrClosed at their next step) and
// releases the cache, the backend (when the model made it) and the checkpoint. Closing
// twice is harmless.
func (m *Model) Close() error {
	var err error
	m.closing.Do(func() {
		m.sched.close()
		m.mu.Lock()
		m.closed = true
		m.mu.Unlock()
		err = m.cache.Close()
		if m.ownBE {
			err = errors.Join(err, m.be.Close())
		}
		if m.ckpt != nil {
			err = errors.Join(err, m.ckpt.Close())
		}
	})
	return err
}
