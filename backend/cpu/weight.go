package cpu

import (
	"encoding/binary"
	"fmt"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/internal/kernels"
	"github.com/fathom-llm/fathom/safetensors"
)

// weight is a stored matrix, kept in its stored element type or quantized. For BF16 and F16
// the values are u16 (the bits), for F32 f32. On a little-endian machine with suitably
// aligned data these alias the memory map; otherwise they are a copy. A quantized weight
// (quant Q8 or Q4) holds its rows in the kernels' format in q and nothing of the stored data.
type weight struct {
	owner      *Backend
	dtype      safetensors.DType
	rows, cols int
	u16        []uint16
	f32        []float32
	quant      backend.Quantization
	q          []byte
}

// Rows, Cols and DType describe the stored matrix.
func (w *weight) Rows() int                { return w.rows }
func (w *weight) Cols() int                { return w.cols }
func (w *weight) DType() safetensors.DType { return w.dtype }

// bind checks a stored tensor and makes a weight of it.
func (b *Backend) bind(t safetensors.Tensor) (*weight, error) {
	w := &weight{owner: b, dtype: t.DType}
	switch len(t.Shape) {
	case 1:
		w.rows, w.cols = 1, t.Shape[0]
	case 2:
		w.rows, w.cols = t.Shape[0], t.Shape[1]
	default:
		return nil, backend.Shapef("weight %q has shape %v, want 1 or 2 dimensions", t.Name, t.Shape)
	}
	if w.rows <= 0 || w.cols <= 0 {
		return nil, backend.Shapef("weight %q has shape %v", t.Name, t.Shape)
	}
	n := w.rows * w.cols
	size := 0
	switch t.DType {
	case safetensors.BF16, safetensors.F16:
		size = 2
	case safetensors.F32:
		size = 4
	default:
		return nil, fmt.Errorf("%w: weight %q is %s", backend.ErrDType, t.Name, t.DType)
	}
	if len(t.Data) != n*size {
		return nil, backend.Shapef("weight %q: %d bytes for shape %v of %s", t.Name, len(t.Data), t.Shape, t.DType)
	}
	// Alias the data; copy it only where it cannot be viewed (a big-endian host, an
	// unaligned tensor).
	var err error
	if size == 2 {
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

// row sets dst[:w.cols] to row r of w converted exactly to float32 (dequantized, for a
// quantized weight).
func (w *weight) row(dst []float32, r int) {
	lo, hi := r*w.cols, (r+1)*w.cols
	switch w.quant {
	case backend.Q8:
		rb := kernels.Q8RowBytes(w.cols)
		_ = kernels.DequantizeQ8(dst[:w.cols], w.q[r*rb:(r+1)*rb], w.cols)
		return
	case backend.Q4:
		rb := kernels.Q4RowBytes(w.cols)
		_ = kernels.DequantizeQ4(dst[:w.cols], w.q[r*rb:(r+1)*rb], w.cols)
		return
	}
	switch w.dtype {
	case safetensors.BF16:
		kernels.BF16ToF32Slice(dst, w.u16[lo:hi])
	case safetensors.F16:
		kernels.F16ToF32Slice(dst, w.u16[lo:hi])
	default:
		copy(dst, w.f32[lo:hi])
	}
}

// roundedTokens is the fewest tokens for which a product in the bfloat16-activation mode
// takes the VDPBF16PS GEMM; fewer tokens take the float32 path over activations already
// rounded to bfloat16, which computes the same exact products.
const roundedTokens = 33

// mulRows sets out[t*w.rows+r] to row r of w times x[t*w.cols:(t+1)*w.cols] for the tokens
// t < tokens and the rows r in [lo, hi), and writes nothing else of out. rounded selects,
// for a bfloat16 weight, the product with activations rounded to bfloat16 (x must then hold
// bfloat16 values already). A quantized weight multiplies xq, x quantized beforehand (see
// quantizeActs), or, if xq is nil, quantizes x itself. s is the calling worker's working
// memory for the products.
func (w *weight) mulRows(s *kernels.Scratch, out, x []float32, xq *kernels.QuantActs, tokens, lo, hi int, rounded bool) {
	if rounded && w.roundable() && tokens >= roundedTokens {
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
	gate, err := b.bind(t.Gate)
	if err != nil {
		return nil, err
	}
	e := &experts{owner: b, gate: gate, count: gate.rows, hidden: gate.cols}
	if len(t.W1) != e.count || len(t.W2) != e.count || len(t.W3) != e.count {
		return nil, backend.Shapef("router has %d experts, weights for %d/%d/%d", e.count, len(t.W1), len(t.W2), len(t.W3))
	}
	for i := range e.count {
		w1, err1 := bind(t.W1[i])
		w2, err2 := bind(t.W2[i])
		w3, err3 := bind(t.W3[i])
		if err := firstErr(err1, err2, err3); err != nil {
			return nil, err
		}
		if i == 0 {
			e.inner = w1.rows
		}
		if w1.rows != e.inner || w1.cols != e.hidden || w3.rows != e.inner || w3.cols != e.hidden ||
			w2.rows != e.hidden || w2.cols != e.inner {
			return nil, backend.Shapef("expert %d: w1 %dx%d, w2 %dx%d, w3 %dx%d for hidden %d, inner %d",
				i, w1.rows, w1.cols, w2.rows, w2.cols, w3.rows, w3.cols, e.hidden, e.inner)
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
