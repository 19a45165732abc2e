package backend

import (
	"fmt"
	"math"

	"github.com/fathom-llm/fathom/safetensors"
)

// The operand checks of Backend's methods, one per method, shared by the backends: a backend
// calls the check first and, when it passes, resolves its own handles and runs its kernel.
// Each returns nil or an error wrapping ErrShape (a shape, row count, argument or aliasing
// that does not fit the operation), ErrDType, or ErrForeign for a missing handle (a nil
// weight, experts or tensor buffer); that a handle is the backend's own is for the backend to
// check. Tensors alias when they share a Buffer (compared with ==).

// CheckNewTensor checks the shape of NewTensor: both sides non-negative and at most
// math.MaxInt32 elements, so that offsets fit 32-bit indices.
func CheckNewTensor(rows, cols int) error {
	if rows < 0 || cols < 0 || (cols > 0 && rows > math.MaxInt32/cols) {
		return Shapef("tensor %dx%d", rows, cols)
	}
	return nil
}

// CheckWrite checks Write of n host values into t.
func CheckWrite(t Tensor, n int) error {
	if err := checkTensors("write", t); err != nil {
		return err
	}
	if n != t.Rows*t.Cols {
		return Shapef("write of %d values into %dx%d", n, t.Rows, t.Cols)
	}
	return nil
}

// CheckRead checks Read of t into n host values.
func CheckRead(t Tensor, n int) error {
	if err := checkTensors("read", t); err != nil {
		return err
	}
	if n != t.Rows*t.Cols {
		return Shapef("read of %dx%d into %d values", t.Rows, t.Cols, n)
	}
	return nil
}

// CheckWeight checks a stored tensor that Bind makes a weight of and returns its shape as a
// matrix (a 1-D tensor of n values is 1×n): 1 or 2 positive dimensions of at most
// math.MaxInt32 elements, element type BF16, F16 or F32, and data of that size.
func CheckWeight(t safetensors.Tensor) (rows, cols int, err error) {
	switch len(t.Shape) {
	case 1:
		rows, cols = 1, t.Shape[0]
	case 2:
		rows, cols = t.Shape[0], t.Shape[1]
	default:
		return 0, 0, Shapef("weight %q has shape %v, want 1 or 2 dimensions", t.Name, t.Shape)
	}
	if rows <= 0 || cols <= 0 || rows > math.MaxInt32/cols {
		return 0, 0, Shapef("weight %q has shape %v", t.Name, t.Shape)
	}
	switch t.DType {
	case safetensors.BF16, safetensors.F16, safetensors.F32:
	default:
		return 0, 0, fmt.Errorf("%w: weight %q is %s", ErrDType, t.Name, t.DType)
	}
	if len(t.Data) != rows*cols*t.DType.Size() {
		return 0, 0, Shapef("weight %q: %d bytes for shape %v of %s", t.Name, len(t.Data), t.Shape, t.DType)
	}
	return rows, cols, nil
}

// CheckExperts checks the tensors that BindExperts binds and returns the block's shape: a
// router [experts, hidden], and per expert W1 and W3 [inner, hidden] and W2 [hidden, inner],
// every tensor as CheckWeight wants it.
func CheckExperts(e ExpertTensors) (experts, hidden, inner int, err error) {
	if experts, hidden, err = CheckWeight(e.Gate); err != nil {
		return 0, 0, 0, err
	}
	if len(e.Gate.Shape) != 2 {
		return 0, 0, 0, Shapef("router %q has shape %v, want [experts, hidden]", e.Gate.Name, e.Gate.Shape)
	}
	if len(e.W1) != experts || len(e.W2) != experts || len(e.W3) != experts {
		return 0, 0, 0, Shapef("%d experts in the router, %d/%d/%d expert weights", experts, len(e.W1), len(e.W2), len(e.W3))
	}
	inner = -1
	for x := range experts {
		for _, m := range []struct {
			t     safetensors.Tensor
			inRow bool // inner is the row count (W1, W3), else the column count (W2)
		}{{e.W1[x], true}, {e.W3[x], true}, {e.W2[x], false}} {
			r, c, err := CheckWeight(m.t)
			if err != nil {
				return 0, 0, 0, err
			}
			if inner < 0 {
				inner = c
				if m.inRow {
					inner = r
				}
			}
			wantR, wantC := inner, hidden
			if !m.inRow {
				wantR, wantC = hidden, inner
			}
			if len(m.t.Shape) != 2 || r != wantR || c != wantC {
				return 0, 0, 0, Shapef("expert %d: %q has shape %v, want [%d %d]", x, m.t.Name, m.t.Shape, wantR, wantC)
			}
		}
	}
	return experts, hidden, inner, nil
}

// CheckEmbed checks Embed of the batch tokens into dst: [len(tokens), table.Cols()], every
// ID a row of table.
func CheckEmbed(dst Tensor, table Weight, tokens []Token) error {
	if err := checkTensors("embed", dst); err != nil {
		return err
	}
	if table == nil {
		return fmt.Errorf("%w: embed: no table", ErrForeign)
	}
	if dst.Rows != len(tokens) || dst.Cols != table.Cols() {
		return Shapef("embed of %d tokens of width %d into %dx%d", len(tokens), table.Cols(), dst.Rows, dst.Cols)
	}
	for _, t := range tokens {
		if t.ID < 0 || t.ID >= table.Rows() {
			return Shapef("token id %d outside the embedding table of %d rows", t.ID, table.Rows())
		}
	}
	return nil
}

// CheckRMSNorm checks RMSNorm: dst and x of one shape, w a 1×x.Cols gain.
func CheckRMSNorm(dst, x Tensor, w Weight) error {
	if err := checkTensors("rmsnorm", dst, x); err != nil {
		return err
	}
	if dst.Rows != x.Rows || dst.Cols != x.Cols {
		return Shapef("rmsnorm of %dx%d into %dx%d", x.Rows, x.Cols, dst.Rows, dst.Cols)
	}
	return checkGain("rmsnorm", w, x.Cols)
}

// CheckAddRMSNorm checks ResidualNormer.AddRMSNorm: dst, x and r of one shape, no two
// aliased, w a 1×x.Cols gain.
func CheckAddRMSNorm(dst, x, r Tensor, w Weight) error {
	if err := checkTensors("add-rmsnorm", dst, x, r); err != nil {
		return err
	}
	if dst.Rows != x.Rows || dst.Cols != x.Cols || r.Rows != x.Rows || r.Cols != x.Cols {
		return Shapef("add-rmsnorm of %dx%d and %dx%d into %dx%d", x.Rows, x.Cols, r.Rows, r.Cols, dst.Rows, dst.Cols)
	}
	if aliased(dst, x, r) {
		return Shapef("add-rmsnorm: dst, x and r must not alias")
	}
	return checkGain("add-rmsnorm", w, x.Cols)
}

// checkGain checks an RMSNorm weight for rows of cols values.
func checkGain(op string, w Weight, cols int) error {
	if w == nil {
		return fmt.Errorf("%w: %s: no weight", ErrForeign, op)
	}
	if w.Rows() != 1 || w.Cols() != cols {
		return Shapef("%s weight %dx%d for rows of %d", op, w.Rows(), w.Cols(), cols)
	}
	return nil
}

// CheckMatMul checks MatMul: x [n, w.Cols()] into dst [n, w.Rows()], not aliased.
func CheckMatMul(dst, x Tensor, w Weight) error {
	if err := checkTensors("matmul", dst, x); err != nil {
		return err
	}
	if w == nil {
		return fmt.Errorf("%w: matmul: no weight", ErrForeign)
	}
	if x.Cols != w.Cols() || dst.Cols != w.Rows() || dst.Rows != x.Rows {
		return Shapef("matmul of %dx%d by (%dx%d)ᵀ into %dx%d", x.Rows, x.Cols, w.Rows(), w.Cols(), dst.Rows, dst.Cols)
	}
	if aliased(dst, x) {
		return Shapef("matmul into its own input")
	}
	return nil
}

// CheckAdd checks Add: dst and x of one shape, not aliased.
func CheckAdd(dst, x Tensor) error {
	if err := checkTensors("add", dst, x); err != nil {
		return err
	}
	if dst.Rows != x.Rows || dst.Cols != x.Cols {
		return Shapef("add of %dx%d to %dx%d", x.Rows, x.Cols, dst.Rows, dst.Cols)
	}
	if aliased(dst, x) {
		return Shapef("add of a tensor to itself")
	}
	return nil
}

// CheckGather checks Gather: dst [len(rows), src.Cols], every row one of src's, not aliased.
func CheckGather(dst, src Tensor, rows []int) error {
	if err := checkTensors("gather", dst, src); err != nil {
		return err
	}
	if dst.Rows != len(rows) || dst.Cols != src.Cols {
		return Shapef("gather of %d rows of width %d into %dx%d", len(rows), src.Cols, dst.Rows, dst.Cols)
	}
	if aliased(dst, src) {
		return Shapef("gather into its own source")
	}
	for _, r := range rows {
		if r < 0 || r >= src.Rows {
			return Shapef("gather of row %d of %d", r, src.Rows)
		}
	}
	return nil
}

// CheckRoPE checks RoPE of x over a batch of tokens tokens: one row per token, whole heads of
// an even headDim, theta positive.
func CheckRoPE(x Tensor, tokens, headDim int, theta float64) error {
	if err := checkTensors("rope", x); err != nil {
		return err
	}
	if headDim <= 0 || headDim%2 != 0 || x.Cols%headDim != 0 || x.Rows != tokens || !(theta > 0) {
		return Shapef("rope of %dx%d with head dim %d, theta %g, %d tokens", x.Rows, x.Cols, headDim, theta, tokens)
	}
	return nil
}

// CheckAttention checks Attention over a batch of tokens tokens of a cache configured by c: p
// fits the cache (layer, KV heads, head dim) and groups its query heads evenly over the KV
// heads; q and dst have Heads×HeadDim columns, k and v KVHeads×HeadDim, all one row per
// token; dst aliases none of q, k and v.
func CheckAttention(dst, q, k, v Tensor, tokens int, c CacheConfig, p AttentionParams) error {
	if err := checkTensors("attention", dst, q, k, v); err != nil {
		return err
	}
	qDim, kvDim := p.Heads*p.HeadDim, p.KVHeads*p.HeadDim
	switch {
	case p.Heads <= 0 || p.KVHeads <= 0 || p.Heads%p.KVHeads != 0 || p.HeadDim != c.HeadDim ||
		p.KVHeads != c.KVHeads || p.Layer < 0 || p.Layer >= c.Layers || p.SlidingWindow < 0:
		return Shapef("attention %+v with cache %+v", p, c)
	case q.Rows != tokens || k.Rows != tokens || v.Rows != tokens || dst.Rows != tokens:
		return Shapef("attention rows q %d, k %d, v %d, dst %d for %d tokens", q.Rows, k.Rows, v.Rows, dst.Rows, tokens)
	case q.Cols != qDim || dst.Cols != qDim || k.Cols != kvDim || v.Cols != kvDim:
		return Shapef("attention columns q %d, k %d, v %d, dst %d for %d/%d heads of %d",
			q.Cols, k.Cols, v.Cols, dst.Cols, p.Heads, p.KVHeads, p.HeadDim)
	case aliased(dst, q) || aliased(dst, k) || aliased(dst, v):
		return Shapef("attention into one of its inputs")
	}
	return nil
}

// CheckMoE checks MoE: x and dst [n, hidden], not aliased, 1 <= topK <= experts, and router,
// when it has a buffer, [n, experts] and aliasing neither.
func CheckMoE(dst, x Tensor, e Experts, topK int, router Tensor) error {
	if err := checkTensors("moe", dst, x); err != nil {
		return err
	}
	if e == nil {
		return fmt.Errorf("%w: moe: no experts", ErrForeign)
	}
	count, hidden, inner := e.Shape()
	if x.Cols != hidden || dst.Cols != hidden || dst.Rows != x.Rows || topK <= 0 || topK > count {
		return Shapef("moe of %dx%d into %dx%d with %d experts of %dx%d, top %d",
			x.Rows, x.Cols, dst.Rows, dst.Cols, count, hidden, inner, topK)
	}
	if aliased(dst, x) {
		return Shapef("moe into its own input")
	}
	if router.Buf == nil {
		return nil
	}
	if err := checkTensors("moe router", router); err != nil {
		return err
	}
	if router.Rows != x.Rows || router.Cols != count {
		return Shapef("router logits %dx%d for %d tokens and %d experts", router.Rows, router.Cols, x.Rows, count)
	}
	if aliased(router, x) || aliased(router, dst) {
		return Shapef("router logits into the input or output of the block")
	}
	return nil
}

// checkTensors checks that each tensor has a buffer that holds its shape.
func checkTensors(op string, ts ...Tensor) error {
	for _, t := range ts {
		if t.Buf == nil {
			return fmt.Errorf("%w: %s: a tensor without a buffer", ErrForeign, op)
		}
		if !t.Valid() {
			return Shapef("%s: %dx%d in a buffer of %d", op, t.Rows, t.Cols, t.Buf.Len())
		}
	}
	return nil
}

// aliased reports whether two of the tensors share a buffer.
func aliased(ts ...Tensor) bool {
	for i, a := range ts {
		for _, b := range ts[i+1:] {
			if a.Buf == b.Buf {
				return true
			}
		}
	}
	return false
}
