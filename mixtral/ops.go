package mixtral

import (
	"slices"

	"github.com/fathom-llm/fathom/backend"
)

// ops issues the operations of a forward step on a backend, with the backend's method
// names, and keeps the first error: once an operation fails the rest are skipped, and err
// reports it.
type ops struct {
	be  backend.Backend
	rn  backend.ResidualNormer // be's fused AddRMSNorm, when it has one
	err error
}

func newOps(be backend.Backend) ops {
	rn, _ := be.(backend.ResidualNormer)
	return ops{be: be, rn: rn}
}

func (o *ops) Embed(dst backend.Tensor, table backend.Weight, b backend.Batch) {
	if o.err == nil {
		o.err = o.be.Embed(dst, table, b)
	}
}

func (o *ops) RMSNorm(dst, x backend.Tensor, w backend.Weight, eps float32) {
	if o.err == nil {
		o.err = o.be.RMSNorm(dst, x, w, eps)
	}
}

func (o *ops) MatMul(dst, x backend.Tensor, w backend.Weight) {
	if o.err == nil {
		o.err = o.be.MatMul(dst, x, w)
	}
}

func (o *ops) RoPE(x backend.Tensor, b backend.Batch, headDim int, theta float64) {
	if o.err == nil {
		o.err = o.be.RoPE(x, b, headDim, theta)
	}
}

func (o *ops) Attention(dst, q, k, v backend.Tensor, b backend.Batch, p backend.AttentionParams) {
	if o.err == nil {
		o.err = o.be.Attention(dst, q, k, v, b, p)
	}
}

func (o *ops) MoE(dst, x backend.Tensor, e backend.Experts, topK int, router backend.Tensor) {
	if o.err == nil {
		o.err = o.be.MoE(dst, x, e, topK, router)
	}
}

func (o *ops) Add(dst, x backend.Tensor) {
	if o.err == nil {
		o.err = o.be.Add(dst, x)
	}
}

// AddRMSNorm adds a sublayer's output r to the residual stream x and normalises the sum
// into dst: x += r, then dst = RMSNorm(x)·w. A backend.ResidualNormer does both in one pass
// over the rows; on another backend it is Add, then RMSNorm.
func (o *ops) AddRMSNorm(dst, x, r backend.Tensor, w backend.Weight, eps float32) {
	if o.err != nil {
		return
	}
	if o.rn != nil {
		o.err = o.rn.AddRMSNorm(dst, x, r, w, eps)
		return
	}
	o.Add(x, r)
	o.RMSNorm(dst, x, w, eps)
}

func (o *ops) Gather(dst, src backend.Tensor, rows []int) {
	if o.err == nil {
		o.err = o.be.Gather(dst, src, rows)
	}
}

func (o *ops) Read(dst []float32, t backend.Tensor) {
	if o.err == nil {
		o.err = o.be.Read(dst, t)
	}
}

// appendRead appends t's values to *dst.
func (o *ops) appendRead(dst *[]float32, t backend.Tensor) {
	n := len(*dst)
	*dst = slices.Grow(*dst, t.Rows*t.Cols)[:n+t.Rows*t.Cols]
	o.Read((*dst)[n:], t)
}
