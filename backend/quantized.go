package backend

import (
	"fmt"

	"github.com/fathom-llm/fathom/internal/kernels"
	"github.com/fathom-llm/fathom/safetensors"
)

// QuantizedWeight is a weight already in one of fathom's quantized formats, as a checkpoint
// stored quantized holds it, so that a backend binds it without quantizing it again.
//
// The matrix of Rows×Cols values is kept in column panels of Panel columns (Cols: whole
// rows; the last panel may be narrower), the panels one after another in Data, each panel's
// rows quantized as Quant one after another: row r of the panel of n columns from column c0
// takes QuantizedRowBytes(Quant, n) bytes, in the row format of the quantization (groups of
// QuantGroup values with float16 scales, interleaved for VNNI dot products).
//
// A weight that the quantization leaves as stored (its rows do not split into groups) has
// Quant AsStored and Data in its stored element type, Rows×Cols values as Bind takes them;
// Panel does not apply to it.
type QuantizedWeight struct {
	Name string
	// Quant is Q8 or Q4, or AsStored for a weight as stored.
	Quant Quantization
	// DType is the element type the weight was quantized from; the bound weight reports it.
	DType      safetensors.DType
	Rows, Cols int
	// Panel is the width of the column panels: Cols, or a multiple of QuantPanelAlign.
	Panel int
	Data  []byte
}

// Tensor returns w as a stored tensor, for a weight with Quant AsStored.
func (w QuantizedWeight) Tensor() safetensors.Tensor {
	return safetensors.Tensor{Name: w.Name, DType: w.DType, Shape: []int{w.Rows, w.Cols}, Data: w.Data}
}

// QuantPanelAlign is the granularity of column panels: a whole number of the formats'
// super-blocks of 16 groups.
const QuantPanelAlign = kernels.PanelAlign

// QuantizedRowBytes returns the size of a row of cols values (a multiple of QuantGroup)
// quantized as q, 0 for AsStored or an unknown quantization.
func QuantizedRowBytes(q Quantization, cols int) int {
	switch q {
	case Q8:
		return kernels.Q8RowBytes(cols)
	case Q4:
		return kernels.Q4RowBytes(cols)
	}
	return 0
}

// Check reports whether w is well formed: a quantization, an element type, a shape and panels
// that the format allows, and Data of the size they give. The error wraps ErrQuantization.
func (w QuantizedWeight) Check() error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: quantized weight %q: %s", ErrQuantization, w.Name, fmt.Sprintf(format, args...))
	}
	switch {
	case w.Quant != Q8 && w.Quant != Q4 && w.Quant != AsStored:
		return fail("quantization %q", string(w.Quant))
	case w.DType != safetensors.BF16 && w.DType != safetensors.F16 && w.DType != safetensors.F32:
		return fail("quantized from %q", string(w.DType))
	case w.Quant == AsStored:
		if w.Rows <= 0 || w.Cols <= 0 || len(w.Data)/w.DType.Size()/w.Cols != w.Rows || len(w.Data)%(w.DType.Size()*w.Cols) != 0 {
			return fail("%d bytes for %dx%d %s", len(w.Data), w.Rows, w.Cols, w.DType)
		}
		return nil
	case w.Rows <= 0 || w.Cols <= 0 || w.Cols%QuantGroup != 0:
		return fail("shape %dx%d", w.Rows, w.Cols)
	case w.Panel != w.Cols && (w.Panel <= 0 || w.Panel > w.Cols || w.Panel%QuantPanelAlign != 0):
		return fail("panels of %d columns in rows of %d", w.Panel, w.Cols)
	}
	// Rows·row bytes, computed so that it cannot overflow for any shape that fits in memory.
	if rb := QuantizedRowBytes(w.Quant, w.Cols); len(w.Data)/rb != w.Rows || len(w.Data)%rb != 0 {
		return fail("%d bytes for %d rows of %d bytes", len(w.Data), w.Rows, rb)
	}
	return nil
}

// QuantizedBinder is an optional extension of Backend for checkpoints stored quantized: it
// binds weights already in fathom's quantized formats (see QuantizedWeight) without
// quantizing them again. A backend may keep a reference to the data (the CPU backend does:
// the memory map stays the storage), so it must stay valid while the weight is in use.
type QuantizedBinder interface {
	// BindQuantizedWeight binds w, which must pass w.Check (an error wraps ErrQuantization);
	// one with Quant AsStored as Bind binds w.Tensor().
	BindQuantizedWeight(w QuantizedWeight) (Weight, error)
	// BindQuantizedExperts binds a mixture-of-experts block whose router, gate, is stored as
	// BindExperts takes it and whose expert weights w1, w2 and w3 (in the layout of
	// ExpertTensors) are quantized, or as stored where the quantization leaves them so.
	BindQuantizedExperts(gate safetensors.Tensor, w1, w2, w3 []QuantizedWeight) (Experts, error)
}
