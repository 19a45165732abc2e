package cpu

import (
	"fmt"
	"sync"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/internal/kernels"
	"github.com/fathom-llm/fathom/safetensors"
)

var _ backend.Quantizer = (*Backend)(nil)

// quantRows is the number of rows a loading goroutine converts and quantizes at a time.
const quantRows = 64

// BindQuantized binds t stored as q: the rows are converted to float32 and quantized once,
// in parallel over the workers, and the weight keeps only the quantized copy. Rows whose
// length is not a multiple of backend.QuantGroup stay as stored (aliasing t.Data).
func (b *Backend) BindQuantized(t safetensors.Tensor, q backend.Quantization) (backend.Weight, error) {
	w, err := b.bindQuantized(t, q)
	if err != nil {
		return nil, err
	}
	return w, nil
}

// BindExpertsQuantized binds a mixture-of-experts block with the expert weights stored as q
// and the router as stored.
func (b *Backend) BindExpertsQuantized(t backend.ExpertTensors, q backend.Quantization) (backend.Experts, error) {
	if !q.Valid() {
		return nil, fmt.Errorf("%w: %q", backend.ErrQuantization, string(q))
	}
	e, err := b.bindExpertsWith(t, func(t safetensors.Tensor) (*weight, error) { return b.bindQuantized(t, q) })
	if err != nil {
		return nil, err
	}
	return e, nil
}

// bindQuantized binds t and, unless q is AsStored or t's rows do not split into groups,
// replaces its data by the quantized rows.
func (b *Backend) bindQuantized(t safetensors.Tensor, q backend.Quantization) (*weight, error) {
	if !q.Valid() {
		return nil, fmt.Errorf("%w: %q", backend.ErrQuantization, string(q))
	}
	w, err := b.bind(t)
	if err != nil || q == backend.AsStored || w.cols%backend.QuantGroup != 0 {
		return w, err
	}
	rowBytes, quantize := kernels.Q8RowBytes(w.cols), kernels.QuantizeQ8
	if q == backend.Q4 {
		rowBytes, quantize = kernels.Q4RowBytes(w.cols), kernels.QuantizeQ4
	}
	out := make([]byte, w.rows*rowBytes)
	chunks := (w.rows + quantRows - 1) / quantRows
	var (
		next  = make(chan int, chunks)
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	for c := range chunks {
		next <- c
	}
	close(next)
	for range min(b.pool.workers, chunks) {
		wg.Go(func() {
			buf := make([]float32, quantRows*w.cols)
			for c := range next {
				lo, hi := c*quantRows, min((c+1)*quantRows, w.rows)
				vals := buf[:(hi-lo)*w.cols]
				w.rowsF32(vals, lo, hi)
				if err := quantize(out[lo*rowBytes:hi*rowBytes], vals, w.cols); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("%w: weight %q as %s: %w", backend.ErrQuantization, t.Name, q, err)
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	w.quant, w.q, w.u16, w.f32 = q, out, nil, nil
	return w, nil
}

// rowsF32 sets dst to the rows [lo, hi) of the stored (not quantized) weight w, converted
// exactly to float32.
func (w *weight) rowsF32(dst []float32, lo, hi int) {
	for r := lo; r < hi; r++ {
		w.row(dst[(r-lo)*w.cols:(r-lo+1)*w.cols], r)
	}
}
