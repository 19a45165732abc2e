package backend

import (
	"errors"
	"fmt"

	"github.com/fathom-llm/fathom/safetensors"
)

// Errors that every backend reports, wrapped with detail; test them with errors.Is.
var (
	// ErrShape: an operand's shape does not fit the operation.
	ErrShape = errors.New("backend: shape mismatch")
	// ErrDType: a weight's element type is not supported by the backend.
	ErrDType = errors.New("backend: unsupported dtype")
	// ErrSequence: a token names a sequence the step has no block table for, or a position
	// in no block its sequence holds; or attention would read such a position.
	ErrSequence = errors.New("backend: bad sequence or position")
	// ErrForeign: a handle was made by another backend.
	ErrForeign = errors.New("backend: handle from another backend")
	// ErrClosed: the backend or cache was closed.
	ErrClosed = errors.New("backend: closed")
)

// Shapef returns an error wrapping ErrShape with a formatted message.
func Shapef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrShape, fmt.Sprintf(format, args...))
}

// Buffer is device memory that a backend allocated for activations: a backend-defined handle,
// of a comparable type (a pointer), since tensors that share a buffer are told by ==.
type Buffer interface {
	// Len is the buffer's size in float32 elements.
	Len() int
}

// Tensor is a row-major float32 matrix of activations on the device: the first Rows×Cols
// elements of Buf. A Tensor is a small value: Head views fewer rows of the same buffer, so a
// forward pass over a batch of any size reuses buffers allocated once for the largest batch.
type Tensor struct {
	Buf        Buffer
	Rows, Cols int
}

// Head returns the view of the first rows rows of t.
func (t Tensor) Head(rows int) Tensor { return Tensor{Buf: t.Buf, Rows: rows, Cols: t.Cols} }

// Valid reports whether t names a buffer that holds Rows×Cols elements.
func (t Tensor) Valid() bool {
	return t.Buf != nil && t.Rows >= 0 && t.Cols >= 0 && t.Rows*t.Cols <= t.Buf.Len()
}

// Weight is a stored weight matrix bound to the device in its stored element type: a
// backend-defined handle. A 1-D tensor of length n binds as a 1×n matrix.
type Weight interface {
	// Rows and Cols give the shape: Rows output features, Cols input features.
	Rows() int
	Cols() int
	// DType is the element type the weight is stored in.
	DType() safetensors.DType
}

// Experts are the weights of one mixture-of-experts block, bound as one handle so that a
// backend can lay them out for grouped kernels.
type Experts interface {
	// Shape returns the number of experts, the model width and each expert's hidden width.
	Shape() (experts, hidden, inner int)
}

// ExpertTensors are the stored tensors of one mixture-of-experts block in the original
// Mixtral layout: the router and, per expert e, W1[e] (gate projection, [inner, hidden]),
// W2[e] (down projection, [hidden, inner]) and W3[e] (up projection, [inner, hidden]).
type ExpertTensors struct {
	Gate       safetensors.Tensor // [experts, hidden]
	W1, W2, W3 []safetensors.Tensor
}

// Token is one entry of a batch: token ID at position Pos of sequence Seq.
type Token struct {
	Seq, Pos, ID int
}

// CacheConfig sizes a paged KV cache.
type CacheConfig struct {
	Layers, KVHeads, HeadDim int
	// BlockSize is the number of positions in one block; Blocks is the number of blocks.
	BlockSize, Blocks int
	// DType is the element type the keys and values are stored in: F16, BF16 or F32 where
	// the backend has it. The zero value is the backend's default, float16 on both backends.
	DType safetensors.DType
	// SlidingWindow, when positive, is the longest attention window of the layers; Prepare
	// checks that every token's window reads only blocks its sequence holds (0: the whole
	// sequence up to the token).
	SlidingWindow int
}

// BlockBytes returns the bytes one block takes: keys and values of BlockSize positions in
// every layer (DType must be set; Cache.Config returns it set).
func (c CacheConfig) BlockBytes() int64 {
	return 2 * int64(c.Layers) * int64(c.BlockSize) * int64(c.KVHeads) * int64(c.HeadDim) * int64(c.DType.Size())
}

// Cache is a paged KV cache: Blocks blocks of BlockSize positions, each holding the keys and
// values of every layer. The cache keeps no sequences: which blocks hold which positions of
// which sequence is the caller's to decide (package engine keeps that ledger), and each step
// gives the block table of each of its sequences, so that sequences may share blocks, a
// prefix computed once serving many.
type Cache interface {
	// Config returns the cache's configuration, with DType set to the stored type.
	Config() CacheConfig
	// Prepare makes the batch of the next forward step. Token i is at position tokens[i].Pos
	// of the sequence whose block table is tables[tokens[i].Seq]: block tables[s][j] holds
	// positions j·BlockSize to (j+1)·BlockSize−1 of sequence s, and −1 marks a block the
	// sequence does not hold (one that slid out of its attention window). The tokens' own
	// positions must be in held blocks, and no two tokens may share a position of one
	// block. Attention stores every token's keys and values before any token reads, so a
	// token may read what another token of the step, of any sequence, writes. The returned
	// Batch is valid until the next Prepare; Prepare copies what it needs of tables. It fails
	// with an error wrapping ErrSequence when a token's Seq is not an index of tables, its
	// position is negative or not in a held block, its attention window (SlidingWindow
	// positions, or all before it) reaches a block its sequence does not hold, or a table
	// names a block outside the cache.
	Prepare(tokens []Token, tables [][]int) (Batch, error)
	// Close releases the cache's memory; Prepare and the operations on its batches then
	// fail with ErrClosed.
	Close() error
}

// Batch is the device-side description of one forward step's tokens, made by Cache.Prepare.
type Batch interface {
	// Len is the number of tokens.
	Len() int
}

// AttentionParams describe one attention layer.
type AttentionParams struct {
	Layer          int
	Heads, KVHeads int
	HeadDim        int
	// Scale multiplies the scores q·k, usually 1/sqrt(HeadDim).
	Scale float32
	// SlidingWindow, when positive, limits a token to the last SlidingWindow positions of its
	// sequence, itself included.
	SlidingWindow int
}

// Backend runs the coarse operations of a Mixtral forward pass on one device. Activations
// stay on the device between operations; only Read brings values back to the host.
//
// Operations take their operands' row counts from the tensors (usually the batch length) and
// report a mismatch as an error wrapping ErrShape, without doing anything: the Check
// functions of this package (CheckMatMul, ...) hold every backend's operand checks. Output
// tensors must not alias inputs unless an operation says so. A Backend's methods are safe for
// concurrent use; operations run one after another, in the order they were called.
type Backend interface {
	// Name identifies the backend ("cpu", "cuda").
	Name() string

	// Bind makes a stored tensor (BF16, F16 or F32) available as a weight. A backend may keep
	// a reference to t.Data (the CPU backend does, the memory map stays the storage), so the
	// data must stay valid while the weight is in use.
	Bind(t safetensors.Tensor) (Weight, error)
	// BindExperts binds a mixture-of-experts block's router and expert weights.
	BindExperts(e ExpertTensors) (Experts, error)
	// NewTensor allocates a rows×cols activation tensor, zeroed.
	NewTensor(rows, cols int) (Tensor, error)
	// NewCache allocates a paged KV cache.
	NewCache(c CacheConfig) (Cache, error)

	// Write copies host values into t (len(src) == t.Rows*t.Cols).
	Write(t Tensor, src []float32) error
	// Read copies t to the host (len(dst) == t.Rows*t.Cols).
	Read(dst []float32, t Tensor) error

	// Embed sets row i of dst to row b's token i's ID of table.
	Embed(dst Tensor, table Weight, b Batch) error
	// RMSNorm sets each row of dst to x·rsqrt(mean(x²)+eps)·w, computed in float32.
	RMSNorm(dst, x Tensor, w Weight, eps float32) error
	// MatMul sets dst = x·wᵀ: dst is [n, w.Rows()], x is [n, w.Cols()].
	MatMul(dst, x Tensor, w Weight) error
	// Add sets dst += x. dst and x may not alias.
	Add(dst, x Tensor) error
	// Gather sets row i of dst to row rows[i] of src.
	Gather(dst, src Tensor, rows []int) error
	// RoPE rotates, in place, every head of x (heads of headDim columns side by side) by the
	// position of the batch token of its row, in the rotate-half convention with base theta.
	RoPE(x Tensor, b Batch, headDim int, theta float64) error
	// Attention stores k and v (rows: the batch's tokens; columns: KVHeads×HeadDim) into the
	// cache at layer p.Layer and the tokens' positions, then sets dst (Heads×HeadDim columns)
	// to causal softmax attention of q (Heads×HeadDim columns) over each token's sequence up
	// to its own position, limited to the last p.SlidingWindow positions when set, with query
	// head h reading key/value head h/(Heads/KVHeads). Every token's keys and values are
	// stored before any is read. Softmax is computed in float32. A token whose window
	// reaches a block its sequence does not hold fails the call with ErrSequence.
	Attention(dst, q, k, v Tensor, b Batch, p AttentionParams) error
	// MoE sets dst to the output of the mixture-of-experts block e applied to x: router
	// logits x·gateᵀ, softmax in float32 over all experts, the topK most likely experts with
	// their probabilities renormalised to sum 1, and the weighted sum of their outputs
	// w2(silu(w1·x) ⊙ w3·x). When router is a valid tensor ([n, experts]) it receives the
	// router logits.
	MoE(dst, x Tensor, e Experts, topK int, router Tensor) error

	// Close releases the backend's resources (worker goroutines, device memory).
	Close() error
}

// ResidualNormer is an optional extension of Backend for the step between two sublayers:
// the residual add and the following RMSNorm in one pass over the rows, which saves a
// read and a write of the residual stream. A model uses it when the backend has it and
// falls back to Add then RMSNorm otherwise.
type ResidualNormer interface {
	// AddRMSNorm sets x += r, then dst to RMSNorm(x)·w (as Backend.RMSNorm). dst, x and r
	// must not alias.
	AddRMSNorm(dst, x, r Tensor, w Weight, eps float32) error
}

// StepRecorder is an optional extension of Backend for forward steps that repeat with one
// shape, as decoding does: the backend may record the operations of such a step and replay
// the record for later steps (on a GPU, a CUDA graph: one launch instead of hundreds).
type StepRecorder interface {
	// Step runs f, or replays what an earlier call with an equal key recorded. f issues the
	// step's operations on the backend it is given; the recorder holds the backend for
	// itself while f runs, so operations from other goroutines wait (and so do f's own
	// calls on the recorder itself: f uses only be). The key (comparable) must determine
	// every operation f issues and its arguments (the tensors, weights, cache and batch
	// size), so that only the contents of device memory, such as the batch that Prepare
	// wrote, differ between calls. f must not Read or Write. Step returns f's error, or the
	// backend's.
	Step(key any, f func(be Backend) error) error
}
