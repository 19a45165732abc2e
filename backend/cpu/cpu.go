package cpu

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"unsafe"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/internal/kernels"
	"github.com/fathom-llm/fathom/safetensors"
)

// Backend is the CPU backend. Create it with New and Close it when done.
type Backend struct {
	mu     sync.Mutex // serialises operations, which share the pool and the scratch space
	pool   *pool
	closed bool

	scratch  []workerScratch   // per worker, grown as operations need
	gain     []float32         // an RMSNorm weight in float32
	bf16Acts bool              // Options.BF16Activations
	rounded  []float32         // a product's activations rounded to bfloat16
	xq       kernels.QuantActs // a product's activations quantized for quantized weights

	// The parallel operations' state, reused so that a forward step allocates nothing.
	matmul    matmulTask
	attention attentionTask
	moe       moeTask
	quant     quantTask
}

// workerScratch is one worker's private memory; the padding keeps workers' slice headers on
// separate cache lines.
type workerScratch struct {
	a      []float32
	k      kernels.Scratch   // the matrix products' working memory
	px, py []float32         // a panel's activations and product (weight.mulRows)
	pq     kernels.QuantActs // a panel's quantized activations
	_      [64]byte
}

// Options configure NewWithOptions. The zero value is New(0)'s backend.
type Options struct {
	// Workers is the size of the worker pool; 0 means GOMAXPROCS.
	Workers int
	// BF16Activations rounds the activations of products with bfloat16 weights (attention
	// projections, experts, lm_head; not the router) to bfloat16, so that prefill runs on the
	// AVX512_BF16 dot-product instruction at twice the float32 rate: products stay exact,
	// sums float32, but the activations keep 8 significant bits instead of 24. Off by
	// default: every product then accumulates exact float32 activations.
	BF16Activations bool
}

// New returns a CPU backend with a pool of the given number of workers (0: GOMAXPROCS).
func New(workers int) *Backend { return NewWithOptions(Options{Workers: workers}) }

// NewWithOptions returns a CPU backend configured by o.
func NewWithOptions(o Options) *Backend {
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	return &Backend{pool: newPool(workers), scratch: make([]workerScratch, workers), bf16Acts: o.BF16Activations}
}

var _ backend.Backend = (*Backend)(nil)

// Name returns "cpu".
func (b *Backend) Name() string { return "cpu" }

// Workers returns the size of the worker pool.
func (b *Backend) Workers() int { return b.pool.workers }

// Close stops the worker pool. Weights and tensors stay readable, operations fail with
// backend.ErrClosed.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		b.pool.close()
	}
	return nil
}

// lock takes the operation lock, failing when the backend is closed.
func (b *Backend) lock() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return backend.ErrClosed
	}
	return nil
}

// grow makes every worker's scratch at least n elements long, at least doubling a buffer it
// replaces so that growing step by step allocates rarely.
func (b *Backend) grow(n int) {
	for i := range b.scratch {
		growAligned(&b.scratch[i].a, n)
	}
}

// growAligned makes *s at least n elements long, 64-byte aligned.
func growAligned(s *[]float32, n int) {
	if len(*s) < n {
		*s = alignedFloats(max(n, 2*len(*s)))
	}
}

// alignedFloats returns n zeroed float32s starting on a 64-byte boundary.
func alignedFloats(n int) []float32 {
	s := make([]float32, n+16)
	off := int(uintptr(unsafe.Pointer(unsafe.SliceData(s)))%64) / 4
	if off != 0 {
		off = 16 - off
	}
	return s[off : off+n : off+n]
}

// buffer is an activation buffer in host memory.
type buffer struct {
	owner *Backend
	data  []float32
}

// Len is the buffer's size in float32 elements.
func (b *buffer) Len() int { return len(b.data) }

// Bind keeps t's data (no copy on a little-endian machine when aligned) as a weight. A matrix
// whose rows are too wide to stream against an activation vector held in L1 (more than 4,096
// values on a CPU with a 32 KB L1, such as Mixtral's expert down projections) is copied
// instead, into column panels that its products with few tokens stream at the memory's rate.
func (b *Backend) Bind(t safetensors.Tensor) (backend.Weight, error) {
	w, err := b.bind(t)
	if err != nil {
		return nil, err
	}
	return w, nil
}

// BindExperts binds a mixture-of-experts block.
func (b *Backend) BindExperts(t backend.ExpertTensors) (backend.Experts, error) {
	e, err := b.bindExperts(t)
	if err != nil {
		return nil, err
	}
	return e, nil
}

// NewTensor allocates a zeroed rows×cols tensor.
func (b *Backend) NewTensor(rows, cols int) (backend.Tensor, error) {
	if rows < 0 || cols < 0 || (cols > 0 && rows > math.MaxInt32/cols) {
		return backend.Tensor{}, backend.Shapef("tensor %dx%d", rows, cols)
	}
	return backend.Tensor{Buf: &buffer{owner: b, data: alignedFloats(rows * cols)}, Rows: rows, Cols: cols}, nil
}

// data returns a tensor's elements.
func (b *Backend) data(t backend.Tensor, what string) ([]float32, error) {
	buf, ok := t.Buf.(*buffer)
	if !ok || buf.owner != b {
		return nil, fmt.Errorf("%w: %s", backend.ErrForeign, what)
	}
	if !t.Valid() {
		return nil, backend.Shapef("%s: %dx%d in a buffer of %d", what, t.Rows, t.Cols, buf.Len())
	}
	return buf.data[:t.Rows*t.Cols], nil
}

func (b *Backend) weight(w backend.Weight, what string) (*weight, error) {
	cw, ok := w.(*weight)
	if !ok || cw.owner != b {
		return nil, fmt.Errorf("%w: %s", backend.ErrForeign, what)
	}
	return cw, nil
}

// Write copies src into t.
func (b *Backend) Write(t backend.Tensor, src []float32) error {
	d, err := b.data(t, "write")
	if err != nil {
		return err
	}
	if len(src) != len(d) {
		return backend.Shapef("write %d values into %dx%d", len(src), t.Rows, t.Cols)
	}
	if err := b.lock(); err != nil {
		return err
	}
	defer b.mu.Unlock()
	copy(d, src)
	return nil
}

// Read copies t into dst.
func (b *Backend) Read(dst []float32, t backend.Tensor) error {
	d, err := b.data(t, "read")
	if err != nil {
		return err
	}
	if len(dst) != len(d) {
		return backend.Shapef("read %dx%d into %d values", t.Rows, t.Cols, len(dst))
	}
	if err := b.lock(); err != nil {
		return err
	}
	defer b.mu.Unlock()
	copy(dst, d)
	return nil
}

// Embed copies the embedding rows of the batch's tokens into dst.
func (b *Backend) Embed(dst backend.Tensor, table backend.Weight, bt backend.Batch) error {
	d, err := b.data(dst, "embed dst")
	if err != nil {
		return err
	}
	w, err := b.weight(table, "embed table")
	if err != nil {
		return err
	}
	batch, err := b.batch(bt)
	if err != nil {
		return err
	}
	if dst.Rows != len(batch.tokens) || dst.Cols != w.cols {
		return backend.Shapef("embed %d tokens of width %d into %dx%d", len(batch.tokens), w.cols, dst.Rows, dst.Cols)
	}
	for _, tok := range batch.tokens {
		if tok.ID < 0 || tok.ID >= w.rows {
			return backend.Shapef("token id %d outside the vocabulary of %d", tok.ID, w.rows)
		}
	}
	if err := b.lock(); err != nil {
		return err
	}
	defer b.mu.Unlock()
	for i, tok := range batch.tokens {
		w.row(d[i*w.cols:(i+1)*w.cols], tok.ID)
	}
	return nil
}

// RMSNorm normalises each row of x into dst, in float32.
func (b *Backend) RMSNorm(dst, x backend.Tensor, w backend.Weight, eps float32) error {
	d, err := b.data(dst, "rmsnorm dst")
	if err != nil {
		return err
	}
	xs, err := b.data(x, "rmsnorm x")
	if err != nil {
		return err
	}
	cw, err := b.weight(w, "rmsnorm weight")
	if err != nil {
		return err
	}
	if cw.rows != 1 || x.Cols != cw.cols || dst.Cols != cw.cols || dst.Rows != x.Rows {
		return backend.Shapef("rmsnorm %dx%d by %dx%d into %dx%d", x.Rows, x.Cols, cw.rows, cw.cols, dst.Rows, dst.Cols)
	}
	if err := b.lock(); err != nil {
		return err
	}
	defer b.mu.Unlock()
	n := cw.cols
	growAligned(&b.gain, n)
	gain := b.gain[:n]
	cw.row(gain, 0)
	for r := range x.Rows {
		kernels.RMSNorm(d[r*n:(r+1)*n], xs[r*n:(r+1)*n], gain, eps)
	}
	return nil
}

// Add adds x to dst.
func (b *Backend) Add(dst, x backend.Tensor) error {
	d, err := b.data(dst, "add dst")
	if err != nil {
		return err
	}
	xs, err := b.data(x, "add x")
	if err != nil {
		return err
	}
	if dst.Rows != x.Rows || dst.Cols != x.Cols {
		return backend.Shapef("add %dx%d to %dx%d", x.Rows, x.Cols, dst.Rows, dst.Cols)
	}
	if err := b.lock(); err != nil {
		return err
	}
	defer b.mu.Unlock()
	kernels.Axpy(1, xs, d)
	return nil
}

// Gather copies the given rows of src into dst.
func (b *Backend) Gather(dst, src backend.Tensor, rows []int) error {
	d, err := b.data(dst, "gather dst")
	if err != nil {
		return err
	}
	s, err := b.data(src, "gather src")
	if err != nil {
		return err
	}
	if dst.Rows != len(rows) || dst.Cols != src.Cols {
		return backend.Shapef("gather %d rows of width %d into %dx%d", len(rows), src.Cols, dst.Rows, dst.Cols)
	}
	for _, r := range rows {
		if r < 0 || r >= src.Rows {
			return backend.Shapef("gather row %d of %d", r, src.Rows)
		}
	}
	if err := b.lock(); err != nil {
		return err
	}
	defer b.mu.Unlock()
	c := src.Cols
	for i, r := range rows {
		copy(d[i*c:(i+1)*c], s[r*c:(r+1)*c])
	}
	return nil
}

// MatMul sets dst = x·wᵀ, splitting w's rows over the workers so that each weight row is
// read once per batch.
func (b *Backend) MatMul(dst, x backend.Tensor, w backend.Weight) error {
	d, err := b.data(dst, "matmul dst")
	if err != nil {
		return err
	}
	xs, err := b.data(x, "matmul x")
	if err != nil {
		return err
	}
	cw, err := b.weight(w, "matmul weight")
	if err != nil {
		return err
	}
	if x.Cols != cw.cols || dst.Cols != cw.rows || dst.Rows != x.Rows {
		return backend.Shapef("matmul %dx%d by (%dx%d)ᵀ into %dx%d", x.Rows, x.Cols, cw.rows, cw.cols, dst.Rows, dst.Cols)
	}
	if err := b.lock(); err != nil {
		return err
	}
	defer b.mu.Unlock()
	rounded := b.bf16Acts && cw.roundable()
	if rounded {
		xs = b.roundBF16(xs)
	}
	var xq *kernels.QuantActs
	if cw.quantized() {
		xq = b.quantizeActs(&b.xq, xs, x.Rows, x.Cols)
	}
	b.matmul = matmulTask{scratch: b.scratch, dst: d, x: xs, xq: xq, n: x.Rows, w: cw, rounded: rounded}
	b.pool.each(cw.rows, 16, spread(x.Rows), &b.matmul)
	b.matmul = matmulTask{}
	return nil
}

// streamTokens is the most tokens for which a product is bound by reading the weights from
// memory rather than by arithmetic: its rows are split in more, smaller shares that the
// workers claim as they go, so that a worker slowed by other work on the machine holds up
// the others less. More tokens keep one share per worker, which the packed GEMM needs to
// pack the activations once per worker.
const streamTokens = 32

// spread is the pool's spread for a product over tokens tokens.
func spread(tokens int) int {
	if tokens <= streamTokens {
		return 4
	}
	return 1
}

// roundBF16 returns x rounded to bfloat16, in the backend's scratch.
func (b *Backend) roundBF16(x []float32) []float32 {
	growAligned(&b.rounded, len(x))
	r := b.rounded[:len(x)]
	roundBF16(r, x)
	return r
}

// roundBF16 sets dst[i] to x[i] rounded to the nearest bfloat16 (ties to even).
func roundBF16(dst, x []float32) {
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] = kernels.BF16ToF32(kernels.F32ToBF16(v))
	}
}

// matmulTask computes output columns [lo, hi) of dst = x·wᵀ.
type matmulTask struct {
	scratch []workerScratch
	dst, x  []float32
	xq      *kernels.QuantActs // x quantized, for a quantized weight
	n       int
	w       *weight
	rounded bool
}

func (t *matmulTask) run(w, lo, hi int) {
	t.w.mulRows(&t.scratch[w], t.dst, t.x, t.xq, t.n, lo, hi, t.rounded)
}

// quantParallel is the fewest activation rows that are quantized in parallel; fewer take
// less time than waking the workers.
const quantParallel = 8

// quantizeActs quantizes the tokens rows of cols values of x into a, once for every worker's
// share of the products that multiply them, and returns a. a's memory is reused from call to
// call.
func (b *Backend) quantizeActs(a *kernels.QuantActs, x []float32, tokens, cols int) *kernels.QuantActs {
	a.Reset(tokens, cols)
	if tokens < quantParallel {
		a.QuantizeRows(x, 0, tokens)
		return a
	}
	b.quant = quantTask{a: a, x: x}
	b.pool.each(tokens, 1, 1, &b.quant)
	b.quant = quantTask{}
	return a
}

// quantTask quantizes the activation rows [lo, hi) of x into a.
type quantTask struct {
	a *kernels.QuantActs
	x []float32
}

func (t *quantTask) run(_, lo, hi int) { t.a.QuantizeRows(t.x, lo, hi) }
