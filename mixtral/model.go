package mixtral

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/backend/cpu"
	"github.com/fathom-llm/fathom/engine"
	"github.com/fathom-llm/fathom/safetensors"
	"github.com/fathom-llm/fathom/tokenizer"
)

// ErrContextLength reports a prompt that leaves no room in the context for a generated
// token (prompt length + 1 > context length), or a sequence grown past the context. It is
// the serving engine's error.
var ErrContextLength = engine.ErrContextLength

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
	// CacheTokens is the size of the KV cache in positions, shared by all sequences, and
	// CacheBytes its size in bytes; set at most one. When neither is set the cache holds
	// DefaultCacheContexts contexts, but takes at most a quarter of the machine's memory.
	// Sequences take blocks as they grow (see package engine); with no other sequence
	// running, one always fits (the context length shrinks to the cache if need be).
	CacheTokens int
	CacheBytes  int64
	// CacheType is the element type the KV cache stores keys and values in: safetensors.F16,
	// BF16 or F32 where the backend has it; the zero value is the backend's default, float16
	// on both backends.
	CacheType safetensors.DType
	// MaxBatch is the most tokens one forward step runs, and the serving engine's default
	// token budget; longer prompts run in several steps. 0 means DefaultMaxBatch.
	MaxBatch int
	// Engine configures the serving engine that runs Generate and Stream: its token budget,
	// how many sequences run at once, the bounds on a request's choices and tokens, and
	// prefix caching.
	Engine engine.Options
	// Quantize stores weights quantized, converted once while they are bound from the
	// stored bf16, f16 or f32 checkpoint: the expert weights (w1, w2, w3) and the attention
	// projections (q, k, v, o), which are nearly all of a Mixtral's bytes. The embeddings,
	// norms, routers and lm_head stay as stored: they are a small share of the bytes read
	// per token, and the router's choice and the logits are where rounding costs the most
	// accuracy. The backend must be a backend.Quantizer (the CPU backend is). The zero value
	// keeps every weight as stored.
	Quantize backend.Quantization
	// InMemory reads the checkpoint into memory of its own at load instead of mapping it
	// (safetensors.OpenOptions.InMemory): loading takes as long as reading the files, and
	// the weights then sit in huge pages, each tensor on a cache line, which decodes faster
	// than a mapping of the page cache in 4 KB pages (a file system that caches in small
	// pages, or a file already cached in them). Load only.
	InMemory bool
}

// Defaults of Options.
const (
	DefaultContextLength = 4096
	DefaultMaxBatch      = 512
	// DefaultCacheContexts is the default size of the KV cache in context lengths.
	DefaultCacheContexts = 64
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
	// engine runs every forward step: the requests' and the Sequences'.
	engine *engine.Engine
	// maxTokenBytes is the tokenizer's MaxTokenBytes (0 without a tokenizer).
	maxTokenBytes int

	act      activations
	recorded recordedLayers
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
	ckpt, err := safetensors.OpenDirWith(dir, safetensors.OpenOptions{InMemory: opts.InMemory})
	if err != nil {
		return nil, err
	}
	m, err := newModel(ctx, cfg, ckpt, opts)
	if err != nil {
		ckpt.Close()
		return nil, err
	}
	m.ckpt, m.tok = ckpt, tok
	if tok != nil {
		m.maxTokenBytes = tok.MaxTokenBytes()
	}
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
	m.maxBatch = opts.MaxBatch
	if m.maxBatch <= 0 {
		m.maxBatch = DefaultMaxBatch
	}
	if opts.CacheTokens < 0 || opts.CacheBytes < 0 || opts.CacheTokens > 0 && opts.CacheBytes > 0 {
		return nil, fmt.Errorf("%w: set at most one of Options.CacheTokens (%d) and CacheBytes (%d), neither negative", ErrConfig, opts.CacheTokens, opts.CacheBytes)
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
	cc := backend.CacheConfig{
		Layers: cfg.NumHiddenLayers, KVHeads: cfg.NumKeyValueHeads, HeadDim: cfg.HeadDim,
		BlockSize: blockSize, DType: opts.CacheType, SlidingWindow: cfg.SlidingWindow,
	}
	if cc.Blocks, err = cacheBlocks(m.be, cc, opts, m.ctxLen); err != nil {
		return fail(err)
	}
	if m.cache, err = m.be.NewCache(cc); err != nil {
		return fail(err)
	}
	if m.act, err = newActivations(m.be, cfg, m.maxBatch); err != nil {
		return fail(err)
	}
	m.recorded.init(m)
	if m.engine, err = engine.New((*engineModel)(m), opts.Engine); err != nil {
		return fail(fmt.Errorf("%w: %v", ErrConfig, err))
	}
	return m, nil
}

// cacheBlocks returns the number of blocks of the KV cache that opts ask for.
func cacheBlocks(be backend.Backend, cc backend.CacheConfig, opts Options, ctxLen int) (int, error) {
	// The bytes of a block, as the backend stores them, from a cache of one block.
	cc.Blocks = 1
	probe, err := be.NewCache(cc)
	if err != nil {
		return 0, err
	}
	perBlock := probe.Config().BlockBytes()
	probe.Close()
	switch {
	case opts.CacheTokens > 0:
		return (opts.CacheTokens + blockSize - 1) / blockSize, nil
	case opts.CacheBytes > 0:
		if opts.CacheBytes < perBlock {
			return 0, fmt.Errorf("%w: a KV cache of %d bytes holds no block of %d", ErrConfig, opts.CacheBytes, perBlock)
		}
		return int(min(opts.CacheBytes/perBlock, math.MaxInt32/blockSize)), nil
	}
	blocks := int64(DefaultCacheContexts) * int64((ctxLen+blockSize-1)/blockSize)
	if mem := totalMemory(); mem > 0 {
		blocks = min(blocks, max(int64(mem/4)/perBlock, 1))
	}
	return int(min(blocks, math.MaxInt32/blockSize)), nil
}

// engineModel is the model as the serving engine sees it: its cache's layout and its forward
// step.
type engineModel Model

func (em *engineModel) Layout() engine.Layout {
	m := (*Model)(em)
	cc := m.cache.Config()
	return engine.Layout{
		BlockSize: cc.BlockSize, Blocks: cc.Blocks, BlockBytes: cc.BlockBytes(),
		SlidingWindow: m.cfg.SlidingWindow, VocabSize: m.cfg.VocabSize,
		ContextLength: m.ctxLen, MaxStepTokens: m.maxBatch, AttentionCost: attentionCost(m.cfg),
	}
}

// attentionCost returns the FLOPs of attending to one position (each head's query·key and
// weighted value) over the FLOPs of a prompt token's other work: its attention projections,
// router and experts. Both are per layer, so the number of layers cancels; the embedding is
// a lookup, the norms and rotations are small, and a prompt token computes no logits.
func attentionCost(c Config) float64 {
	h, q, kv := float64(c.HiddenSize), float64(c.NumAttentionHeads*c.HeadDim), float64(c.NumKeyValueHeads*c.HeadDim)
	other := h*q + 2*h*kv + q*h + h*float64(c.NumLocalExperts) + float64(c.NumExpertsPerTok)*3*h*float64(c.IntermediateSize)
	return 2 * q / other
}

func (em *engineModel) Forward(s *engine.Step, logits []float32) error {
	return (*Model)(em).forward(s.Tokens, s.Tables, s.Rows, logits, nil)
}

// Config returns the model's configuration.
func (m *Model) Config() Config { return m.cfg }

// Tokenizer returns the checkpoint's tokenizer, or nil when it has none.
func (m *Model) Tokenizer() *tokenizer.Tokenizer { return m.tok }

// EOSTokenIDs returns the ids that end generation: the config's (generation_config.json's
// when present).
func (m *Model) EOSTokenIDs() []int { return slices.Clone(m.cfg.EOSTokenIDs) }

// ContextLength returns the most positions one sequence may hold: Options.ContextLength, or
// less when the KV cache could not hold a sequence that long.
func (m *Model) ContextLength() int { return m.engine.ContextLength() }

// MaxTokenBytes returns the most bytes of text one token stands for when the tokenizer proves
// such a bound (see tokenizer.Tokenizer.MaxTokenBytes), else 0: a text prompt of n bytes has
// at least n/MaxTokenBytes tokens.
func (m *Model) MaxTokenBytes() int { return m.maxTokenBytes }

// CacheType returns the element type the KV cache stores keys and values in.
func (m *Model) CacheType() safetensors.DType { return m.cache.Config().DType }

// Backend returns the backend the model runs on.
func (m *Model) Backend() backend.Backend { return m.be }

// Metrics returns the serving engine's figures: requests running and waiting, KV cache
// blocks, prefix cache hits, tokens, latencies.
func (m *Model) Metrics() engine.Metrics { return m.engine.Metrics() }

// Close stops the serving engine (running requests end with ErrClosed) and releases the
// cache, the backend (when the model made it) and the checkpoint. Closing twice is harmless.
func (m *Model) Close() error {
	var err error
	m.closing.Do(func() {
		m.engine.Close()
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
