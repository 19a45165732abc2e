package cpu

import (
	"fmt"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/safetensors"
)

var (
	_ backend.Quantizer       = (*Backend)(nil)
	_ backend.QuantizedBinder = (*Backend)(nil)
)

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
// stores it quantized, in column panels where weight.panelWidth says so.
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
		return w, w.store(w.panelWidth(false), backend.AsStored)
	}
	if err := w.store(w.panelWidth(true), q); err != nil {
		return nil, fmt.Errorf("%w: weight %q as %s: %w", backend.ErrQuantization, t.Name, q, err)
	}
	return w, nil
}

// QuantizeWeight quantizes t as q (Q8 or Q4) exactly as BindQuantized stores it, without
// binding it: BindQuantizedWeight binds the result to the weight that BindQuantized makes, so
// that a checkpoint can be stored quantized once and loaded without quantizing. t's rows must
// split into groups (a multiple of backend.QuantGroup long); other errors are BindQuantized's.
func (b *Backend) QuantizeWeight(t safetensors.Tensor, q backend.Quantization) (backend.QuantizedWeight, error) {
	if q != backend.Q8 && q != backend.Q4 {
		return backend.QuantizedWeight{}, fmt.Errorf("%w: %q", backend.ErrQuantization, string(q))
	}
	w, err := b.bindStored(t)
	if err != nil {
		return backend.QuantizedWeight{}, err
	}
	if w.cols%backend.QuantGroup != 0 {
		return backend.QuantizedWeight{}, fmt.Errorf("%w: weight %q: rows of %d values do not split into groups of %d",
			backend.ErrQuantization, t.Name, w.cols, backend.QuantGroup)
	}
	qw := backend.QuantizedWeight{Name: t.Name, Quant: q, DType: t.DType, Rows: w.rows, Cols: w.cols,
		Panel: w.panelWidth(true), Data: make([]byte, w.rows*backend.QuantizedRowBytes(q, w.cols))}
	if err := w.fill(w.panels(qw.Panel, q, qw.Data), qw.Panel, q); err != nil {
		return backend.QuantizedWeight{}, fmt.Errorf("%w: weight %q as %s: %w", backend.ErrQuantization, t.Name, q, err)
	}
	return qw, nil
}

// QuantizedPanel returns the width of the column panels in which QuantizeWeight and
// BindQuantized store a quantized weight of rows×cols values on this CPU: cols for whole rows.
func (b *Backend) QuantizedPanel(rows, cols int) int {
	return (&weight{rows: rows, cols: cols}).panelWidth(true)
}

// BindQuantizedWeight binds a weight already quantized, such as QuantizeWeight returns, as a
// view of w.Data: nothing is copied or quantized. A weight as stored (w.Quant AsStored) is
// bound as Bind binds it.
func (b *Backend) BindQuantizedWeight(w backend.QuantizedWeight) (backend.Weight, error) {
	qw, err := b.bindQuantizedWeight(w)
	if err != nil {
		return nil, err
	}
	return qw, nil
}

// BindQuantizedExperts binds a mixture-of-experts block whose expert weights are already
// quantized, as views of their data, and the router as stored.
func (b *Backend) BindQuantizedExperts(gate safetensors.Tensor, w1, w2, w3 []backend.QuantizedWeight) (backend.Experts, error) {
	count, hidden, err := backend.CheckWeight(gate)
	if err != nil {
		return nil, err
	}
	if len(w1) != count || len(w2) != count || len(w3) != count {
		return nil, backend.Shapef("%d experts in the router, %d/%d/%d expert weights", count, len(w1), len(w2), len(w3))
	}
	inner := 0
	if count > 0 {
		inner = w1[0].Rows
	}
	for x := range count {
		for _, m := range []struct {
			w          backend.QuantizedWeight
			rows, cols int
		}{{w1[x], inner, hidden}, {w3[x], inner, hidden}, {w2[x], hidden, inner}} {
			if m.w.Rows != m.rows || m.w.Cols != m.cols {
				return nil, backend.Shapef("expert %d: %q is %dx%d, want %dx%d", x, m.w.Name, m.w.Rows, m.w.Cols, m.rows, m.cols)
			}
		}
	}
	e, err := assembleExperts(b, gate, count, hidden, inner, w1, w2, w3, b.bindQuantizedWeight)
	if err != nil {
		return nil, err
	}
	return e, nil
}

func (b *Backend) bindQuantizedWeight(qw backend.QuantizedWeight) (*weight, error) {
	if err := qw.Check(); err != nil {
		return nil, err
	}
	if qw.Quant == backend.AsStored {
		return b.bind(qw.Tensor())
	}
	w := &weight{owner: b, dtype: qw.DType, rows: qw.Rows, cols: qw.Cols}
	w.adopt(w.panels(qw.Panel, qw.Quant, qw.Data), qw.Panel, qw.Quant)
	return w, nil
}
