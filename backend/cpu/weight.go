package cpu

import (
	"encoding/binary"
	"errors"
	"runtime"
	"sync"
	"unsafe"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/internal/kernels"
	"github.com/fathom-llm/fathom/internal/mem"
	"github.com/fathom-llm/fathom/safetensors"
)

// weight is a stored matrix, kept in its stored element type or quantized. For BF16 and F16
// the values are u16 (the bits), for F32 f32. On a little-endian machine with suitably
// aligned data these alias the memory map; otherwise they are a copy. A quantized weight
// (quant Q8 or Q4) holds its rows in the kernels' format in q and nothing of the stored data.
//
// A matrix with wide rows (kernels.PanelCols) is kept in column panels instead, which the
// products with few tokens stream at the memory's rate: parts[i] holds the columns
// [i·panel, i·panel+parts[i].cols) of every row as a matrix of its own (a copy of the stored
// data, or quantized), and the data fields of w are empty. The copies and the quantized data
// that binding makes lie outside the Go heap, in memory that w owns (panels).
type weight struct {
	owner      *Backend
	dtype      safetensors.DType
	rows, cols int
	u16        []uint16
	f32        []float32
	quant      backend.Quantization
	q          []byte
	parts      []*weight
	panel      int
}

// Rows, Cols and DType describe the stored matrix.
func (w *weight) Rows() int                { return w.rows }
func (w *weight) Cols() int                { return w.cols }
func (w *weight) DType() safetensors.DType { return w.dtype }

// bind checks a stored tensor and makes a weight of it, split into column panels where
// kernels.PanelCols says so.
func (b *Backend) bind(t safetensors.Tensor) (*weight, error) {
	w, err := b.bindStored(t)
	if err != nil {
		return nil, err
	}
	if err := w.store(w.panelWidth(false), backend.AsStored); err != nil {
		return nil, err
	}
	return w, nil
}

// bindStored checks a stored tensor and makes a weight of it that views (or, where it
// cannot, copies) its data.
func (b *Backend) bindStored(t safetensors.Tensor) (*weight, error) {
	rows, cols, err := backend.CheckWeight(t)
	if err != nil {
		return nil, err
	}
	w := &weight{owner: b, dtype: t.DType, rows: rows, cols: cols}
	n := rows * cols
	// Alias the data; copy it only where it cannot be viewed (a big-endian host, an
	// unaligned tensor).
	if t.DType.Size() == 2 {
		if w.u16, err = safetensors.View[uint16](t); err != nil {
			w.u16 = make([]uint16, n)
			for i := range w.u16 {
				w.u16[i] = binary.LittleEndian.Uint16(t.Data[2*i:])
			}
		}
	} else if w.f32, err = safetensors.View[float32](t); err != nil {
		if w.f32, err = t.Float32s(nil); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// store replaces the data of w, a weight as bindStored makes it, by column panels of p
// columns (one panel: whole rows) stored as q: copied as stored, or quantized. Nothing changes
// for whole rows as stored.
func (w *weight) store(p int, q backend.Quantization) error {
	if p == w.cols && q == backend.AsStored {
		return nil
	}
	parts := w.panels(p, q, nil)
	if err := w.fill(parts, p, q); err != nil {
		return err
	}
	w.adopt(parts, p, q)
	return nil
}

// panelWidth returns the width of the column panels in which w is best stored (see
// kernels.PanelCols), quantized or not: a weight of one row stays whole.
func (w *weight) panelWidth(quantized bool) int {
	if w.rows == 1 {
		return w.cols
	}
	return kernels.PanelCols(w.cols, quantized)
}

// panels returns the parts of w in column panels of p columns stored as q, their data not yet
// filled in. Quantized parts lie one after another in data, laid out as
// backend.QuantizedWeight describes; with data nil, the parts lie in one block of memory
// outside the Go heap that w owns (mem.Owned), each on a cache line of its own.
func (w *weight) panels(p int, q backend.Quantization, data []byte) []*weight {
	size := func(n int) int { // the bytes of a part of n columns
		switch {
		case q != backend.AsStored:
			return w.rows * backend.QuantizedRowBytes(q, n)
		case w.u16 != nil:
			return w.rows * n * 2
		}
		return w.rows * n * 4
	}
	align := func(n int) int { return n } // the bytes from a part to the next
	if data == nil {
		align = func(n int) int { return (n + 63) &^ 63 }
		total := 0
		for c0 := 0; c0 < w.cols; c0 += p {
			total += align(size(min(p, w.cols-c0)))
		}
		data, _ = mem.Owned(w, total)
	}
	var parts []*weight
	for c0 := 0; c0 < w.cols; c0 += p {
		n := min(p, w.cols-c0)
		part := &weight{owner: w.owner, dtype: w.dtype, rows: w.rows, cols: n, quant: q}
		b := data[:size(n):size(n)]
		data = data[align(size(n)):]
		switch {
		case q != backend.AsStored:
			part.q = b
		case w.u16 != nil:
			part.u16 = view[uint16](b)
		default:
			part.f32 = view[float32](b)
		}
		parts = append(parts, part)
	}
	return parts
}

// view returns the values of type T that b holds (b suitably aligned).
func view[T uint16 | float32](b []byte) []T {
	var z T
	if len(b) < int(unsafe.Sizeof(z)) {
		return nil
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&b[0])), len(b)/int(unsafe.Sizeof(z)))
}

// adopt makes parts, panels of p columns stored as q, the data of w.
func (w *weight) adopt(parts []*weight, p int, q backend.Quantization) {
	w.u16, w.f32, w.quant = nil, nil, q
	if len(parts) == 1 {
		w.q, w.u16, w.f32 = parts[0].q, parts[0].u16, parts[0].f32
	} else {
		w.parts, w.panel = parts, p
	}
}

// convertRows is the number of rows a goroutine of fill copies or quantizes at a time.
const convertRows = 64

// fill sets the data of parts, the panels of p columns of w that w.panels made, from the
// stored data of w: copied, or quantized as q. The work is spread over the workers in chunks
// of rows.
func (w *weight) fill(parts []*weight, p int, q backend.Quantization) error {
	quantize := kernels.QuantizeQ8
	if q == backend.Q4 {
		quantize = kernels.QuantizeQ4
	}
	chunks := (w.rows + convertRows - 1) / convertRows
	next := make(chan int, len(parts)*chunks) // part i, chunk c as i*chunks+c
	for k := range cap(next) {
		next <- k
	}
	close(next)
	errs := make([]error, w.owner.pool.workers)
	var wg sync.WaitGroup
	for g := range min(len(errs), cap(next)) {
		wg.Go(func() {
			var buf []float32
			for k := range next {
				i, c := k/chunks, k%chunks
				part, c0 := parts[i], i*p
				n, lo, hi := part.cols, c*convertRows, min((c+1)*convertRows, w.rows)
				switch {
				case q != backend.AsStored:
					buf = grow(buf, (hi-lo)*n)
					for r := lo; r < hi; r++ {
						w.span(buf[(r-lo)*n:(r-lo+1)*n], r, c0)
					}
					rb := len(part.q) / w.rows
					if err := quantize(part.q[lo*rb:hi*rb], buf, n); err != nil && errs[g] == nil {
						errs[g] = err
					}
				case w.u16 != nil:
					for r := lo; r < hi; r++ {
						copy(part.u16[r*n:(r+1)*n], w.u16[r*w.cols+c0:])
					}
				default:
					for r := lo; r < hi; r++ {
						copy(part.f32[r*n:(r+1)*n], w.f32[r*w.cols+c0:])
					}
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// span sets dst to the len(dst) values of row r of w from column c0 on, converted exactly to
// float32, for a weight as bindStored makes it.
func (w *weight) span(dst []float32, r, c0 int) {
	src := r*w.cols + c0
	switch w.dtype {
	case safetensors.BF16:
		kernels.BF16ToF32Slice(dst, w.u16[src:src+len(dst)])
	case safetensors.F16:
		kernels.F16ToF32Slice(dst, w.u16[src:src+len(dst)])
	default:
		copy(dst, w.f32[src:src+len(dst)])
	}
}

// row sets dst[:w.cols] to row r of w converted exactly to float32 (dequantized, for a
// quantized weight).
func (w *weight) row(dst []float32, r int) {
	defer runtime.KeepAlive(w) // it owns its parts' memory
	for i, p := range w.parts {
		p.row(dst[i*w.panel:], r)
	}
	if w.parts != nil {
		return
	}
	switch w.quant {
	case backend.Q8:
		rb := kernels.Q8RowBytes(w.cols)
		_ = kernels.DequantizeQ8(dst[:w.cols], w.q[r*rb:(r+1)*rb], w.cols)
	case backend.Q4:
		rb := kernels.Q4RowBytes(w.cols)
		_ = kernels.DequantizeQ4(dst[:w.cols], w.q[r*rb:(r+1)*rb], w.cols)
	default:
		w.span(dst[:w.cols], r, 0)
	}
}

// mulRows sets out[t*w.rows+r] to row r of w times x[t*w.cols:(t+1)*w.cols] for the tokens
// t < tokens and the rows r in [lo, hi), and writes nothing else of out. rounded selects,
// for a bfloat16 weight, the product with activations rounded to bfloat16 (x must then hold
// bfloat16 values already). A quantized weight multiplies xq, x quantized beforehand (see
// quantizeActs), or, if xq is nil, quantizes x itself. s is the calling worker's working
// memory.
func (w *weight) mulRows(s *workerScratch, out, x []float32, xq *kernels.QuantActs, tokens, lo, hi int, rounded bool) {
	defer runtime.KeepAlive(w) // it owns its parts' memory
	if tokens <= 0 {
		return
	}
	// The panels' products add up: the first one's straight into out, the others' through
	// s.py. A panel multiplies its columns of x (gathered into s.px for several tokens) or
	// of xq.
	for i, p := range w.parts {
		c0, n := i*w.panel, p.cols
		px := x[c0 : c0+n]
		if tokens > 1 && (xq == nil || !p.quantized()) {
			s.px = grow(s.px, tokens*n)
			for t := range tokens {
				copy(s.px[t*n:(t+1)*n], x[t*w.cols+c0:])
			}
			px = s.px
		}
		var pq *kernels.QuantActs
		if xq != nil {
			s.pq = xq.Columns(c0, c0+n)
			pq = &s.pq
		}
		if i == 0 {
			p.mulWhole(&s.k, out, px, pq, tokens, lo, hi, rounded)
			continue
		}
		s.py = grow(s.py, tokens*w.rows)
		p.mulWhole(&s.k, s.py, px, pq, tokens, lo, hi, rounded)
		for t := range tokens {
			o := t * w.rows
			kernels.Axpy(1, s.py[o+lo:o+hi], out[o+lo:o+hi])
		}
	}
	if w.parts == nil {
		w.mulWhole(&s.k, out, x, xq, tokens, lo, hi, rounded)
	}
}

// mulWhole is mulRows for a weight not split into panels, with the products' working memory
// s.
func (w *weight) mulWhole(s *kernels.Scratch, out, x []float32, xq *kernels.QuantActs, tokens, lo, hi int, rounded bool) {
	// Where the rounded product is not by tiles, it is the exact one over x, rounded already.
	if rounded && w.roundable() && kernels.RoundedTiles(tokens) {
		s.MatMulBF16RoundedRows(out, w.u16, x, tokens, w.rows, w.cols, lo, hi)
		return
	}
	switch {
	case w.quant == backend.Q8 && xq != nil:
		kernels.MatMulQ8RowsQ(out, w.q, xq, w.rows, lo, hi)
		return
	case w.quant == backend.Q4 && xq != nil:
		kernels.MatMulQ4RowsQ(out, w.q, xq, w.rows, lo, hi)
		return
	case w.quant == backend.Q8:
		kernels.MatMulQ8Rows(out, w.q, x, tokens, w.rows, w.cols, lo, hi)
		return
	case w.quant == backend.Q4:
		kernels.MatMulQ4Rows(out, w.q, x, tokens, w.rows, w.cols, lo, hi)
		return
	}
	switch w.dtype {
	case safetensors.BF16:
		s.MatMulBF16Rows(out, w.u16, x, tokens, w.rows, w.cols, lo, hi)
	case safetensors.F16:
		s.MatMulF16Rows(out, w.u16, x, tokens, w.rows, w.cols, lo, hi)
	default:
		s.MatMulF32Rows(out, w.f32, x, tokens, w.rows, w.cols, lo, hi)
	}
}

// quantized reports whether w's products take quantized activations.
func (w *weight) quantized() bool { return w.quant == backend.Q8 || w.quant == backend.Q4 }

// roundable reports whether w has a product with activations rounded to bfloat16.
func (w *weight) roundable() bool { return w.quant == backend.AsStored && w.dtype == safetensors.BF16 }

// experts is a bound mixture-of-experts block.
type experts struct {
	owner                *Backend
	gate                 *weight
	w1, w2, w3           []*weight
	count, hidden, inner int
}

// Shape returns the number of experts, the model width and each expert's width.
func (e *experts) Shape() (count, hidden, inner int) { return e.count, e.hidden, e.inner }

func (b *Backend) bindExperts(t backend.ExpertTensors) (*experts, error) {
	return b.bindExpertsWith(t, b.bind)
}

// bindExpertsWith binds the router as stored and the expert weights by bind.
func (b *Backend) bindExpertsWith(t backend.ExpertTensors, bind func(safetensors.Tensor) (*weight, error)) (*experts, error) {
	count, hidden, inner, err := backend.CheckExperts(t)
	if err != nil {
		return nil, err
	}
	return assembleExperts(b, t.Gate, count, hidden, inner, t.W1, t.W2, t.W3, bind)
}

// assembleExperts binds the router gate as stored and the count expert weights of W1, W2 and
// W3, whose shapes fit hidden and inner, by bind.
func assembleExperts[T any](b *Backend, gate safetensors.Tensor, count, hidden, inner int, W1, W2, W3 []T, bind func(T) (*weight, error)) (*experts, error) {
	g, err := b.bind(gate)
	if err != nil {
		return nil, err
	}
	e := &experts{owner: b, gate: g, count: count, hidden: hidden, inner: inner}
	for i := range count {
		w1, err1 := bind(W1[i])
		w2, err2 := bind(W2[i])
		w3, err3 := bind(W3[i])
		if err := firstErr(err1, err2, err3); err != nil {
			return nil, err
		}
		e.w1, e.w2, e.w3 = append(e.w1, w1), append(e.w2, w2), append(e.w3, w3)
	}
	return e, nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
