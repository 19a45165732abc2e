package cpu

import (
	"fmt"
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
	a      []float32         // a tile's attention scores
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
	// default: every product then accumulates exact float32 activations, and computes each
	// token's outputs the same way whatever its batch (the prefix cache's results equal a
	// cold run's bit for bit). With it on, and with quantized weights, a token's results may
	// differ in the last bits with the number of tokens of its step.
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

var (
	_ backend.Backend        = (*Backend)(nil)
	_ backend.ResidualNormer = (*Backend)(nil)
)

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
	if err := backend.CheckNewTensor(rows, cols); err != nil {
		return backend.Tensor{}, err
	}
	return backend.Tensor{Buf: &buffer{owner: b, data: alignedFloats(rows * cols)}, Rows: rows, Cols: cols}, nil
}

// operands resolves the handles of an operation, which its backend.Check function has
// checked, to the backend's own, keeping the first foreign one as err.
type operands struct {
	b   *Backend
	op  string
	err error
}

func (o *operands) foreign(what string) {
	if o.err == nil {
		o.err = fmt.Errorf("%w: %s %s", backend.ErrForeign, o.op, what)
	}
}

// data returns a tensor's elements.
func (o *operands) data(t backend.Tensor) []float32 {
	buf, ok := t.Buf.(*buffer)
	if !ok || buf.owner != o.b {
		o.foreign("tensor")
		return nil
	}
	return buf.data[:t.Rows*t.Cols]
}

func (o *operands) weight(w backend.Weight) *weight {
	cw, ok := w.(*weight)
	if !ok || cw.owner != o.b {
		o.foreign("weight")
		return nil
	}
	return cw
}

func (o *operands) experts(e backend.Experts) *experts {
	ex, ok := e.(*experts)
	if !ok || ex.owner != o.b {
		o.foreign("experts")
		return nil
	}
	return ex
}

func (o *operands) batch(bt backend.Batch) *batch {
	cb, ok := bt.(*batch)
	if !ok || cb.cache.owner != o.b {
		o.foreign("batch")
		return nil
	}
	return cb
}

// Write copies src into t.
func (b *Backend) Write(t backend.Tensor, src []float32) error {
	if err := backend.CheckWrite(t, len(src)); err != nil {
		return err
	}
	o := operands{b: b, op: "write"}
	d := o.data(t)
	if o.err != nil {
		return o.err
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
	if err := backend.CheckRead(t, len(dst)); err != nil {
		return err
	}
	o := operands{b: b, op: "read"}
	d := o.data(t)
	if o.err != nil {
		return o.err
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
	o := operands{b: b, op: "embed"}
	batch := o.batch(bt)
	if o.err != nil {
		return o.err
	}
	if err := backend.CheckEmbed(dst, table, batch.Tokens); err != nil {
		return err
	}
	d, w := o.data(dst), o.weight(table)
	if o.err != nil {
		return o.err
	}
	if err := b.lock(); err != nil {
		return err
	}
	defer b.mu.Unlock()
	for i, tok := range batch.Tokens {
		w.row(d[i*w.cols:(i+1)*w.cols], tok.ID)
	}
	return nil
}

// RMSNorm normalises each row of x into dst, in float32.
func (b *Backend) RMSNorm(dst, x backend.Tensor, w backend.Weight, eps float32) error {
	if err := backend.CheckRMSNorm(dst, x, w); err != nil {
		return err
	}
	o := operands{b: b, op: "rmsnorm"}
	d, xs, cw := o.data(dst), o.data(x), o.weight(w)
	if o.err != nil {
		return o.err
	}
	if err := b.lock(); err != nil {
		return err
	}
	defer b.mu.Unlock()
	b.rmsNorm(d, xs, cw, x.Rows, eps)
	return nil
}

// AddRMSNorm sets x += r, then dst to RMSNorm(x)·w, a row at a time while the row is in
// cache (backend.ResidualNormer).
func (b *Backend) AddRMSNorm(dst, x, r backend.Tensor, w backend.Weight, eps float32) error {
	if err := backend.CheckAddRMSNorm(dst, x, r, w); err != nil {
		return err
	}
	o := operands{b: b, op: "add-rmsnorm"}
	d, xs, rs, cw := o.data(dst), o.data(x), o.data(r), o.weight(w)
	if o.err != nil {
		return o.err
	}
	if err := b.lock(); err != nil {
		return err
	}
	defer b.mu.Unlock()
	n := cw.cols
	for i := range x.Rows {
		kernels.Axpy(1, rs[i*n:(i+1)*n], xs[i*n:(i+1)*n])
	}
	b.rmsNorm(d, xs, cw, x.Rows, eps)
	return nil
}

// rmsNorm normalises the rows rows of x into dst with gain w; the caller holds b.mu.
func (b *Backend) rmsNorm(dst, x []float32, w *weight, rows int, eps float32) {
	n := w.cols
	growAligned(&b.gain, n)
	gain := b.gain[:n]
	w.row(gain, 0)
	for r := range rows {
		kernels.RMSNorm(dst[r*n:(r+1)*n], x[r*n:(r+1)*n], gain, eps)
	}
}

// Add adds x to dst.
func (b *Backend) Add(dst, x backend.Tensor) error {
	if err := backend.CheckAdd(dst, x); err != nil {
		return err
	}
	o := operands{b: b, op: "add"}
	d, xs := o.data(dst), o.data(x)
	if o.err != nil {
		return o.err
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
	if err := backend.CheckGather(dst, src, rows); err != nil {
		return err
	}
	o := operands{b: b, op: "gather"}
	d, s := o.data(dst), o.data(src)
	if o.err != nil {
		return o.err
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
	if err := backend.CheckMatMul(dst, x, w); err != nil {
		return err
	}
	o := operands{b: b, op: "matmul"}
	d, xs, cw := o.data(dst), o.data(x), o.weight(w)
	if o.err != nil {
		return o.err
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
// the others less. More tokens keep one share per worker, so that each worker prepares the
// activations for the tiles (permuted, or rounded to bfloat16) once per product.
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
	kernels.RoundBF16(r, x)
	return r
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
