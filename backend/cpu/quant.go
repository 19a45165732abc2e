package cpu

import (
	"fmt"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/internal/kernels"
	"github.com/fathom-llm/fathom/safetensors"
)

var _ backend.Quantizer = (*Backend)(nil)

// BindQuantized binds t stored as q: the rows are converted to float32 and quantized once,
// in parallel over the workers, and the weight keeps only the quantized copy (in column
// panels where its rows are wide, as Bind keeps them). Rows whose length is not a multiple of
// backend.QuantGroup stay as stored, as Bind keeps them.
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
// stores it quantized, in column panels where kernels.PanelCols says so for a copy.
func (b *Backend) bindQuantized(t safetensors.Tensor, q backend.Quantization) (*weight, error) {
	if !q.Valid() {
		return nil, fmt.Errorf("%w: %q", backend.ErrQuantization, string(q))
	}
	if q == backend.AsStored {
		return b.bind(t)
	}
	w, err := b.bindStored(t)
	if err != nil {
		return nil, err
	}
	if w.cols%backend.QuantGroup != 0 {
		q = backend.AsStored
	}
	if err := w.store(kernels.PanelCols(w.cols, q != backend.AsStored), q); err != nil {
		return nil, fmt.Errorf("%w: weight %q as %s: %w", backend.ErrQuantization, t.Name, q, err)
	}
	return w, nil
}
