package backend_test

import (
	"errors"
	"math"
	"testing"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/safetensors"
)

// buf is a Buffer of n elements; weight and experts are handles of given shapes.
type buf struct{ n int }

func (b *buf) Len() int { return b.n }

type weight struct{ rows, cols int }

func (w weight) Rows() int                { return w.rows }
func (w weight) Cols() int                { return w.cols }
func (w weight) DType() safetensors.DType { return safetensors.BF16 }

type experts struct{ count, hidden, inner int }

func (e experts) Shape() (int, int, int) { return e.count, e.hidden, e.inner }

// tensor returns a rows×cols tensor in a buffer of its own.
func tensor(rows, cols int) backend.Tensor {
	return backend.Tensor{Buf: &buf{rows * cols}, Rows: rows, Cols: cols}
}

// TestChecks runs every check on operands that fit and on operands that do not, each case
// naming the error it wants (nil: none).
func TestChecks(t *testing.T) {
	x, y := tensor(3, 8), tensor(3, 8)
	norm := weight{1, 8}
	w := weight{5, 8}
	out := tensor(3, 5)
	toks := []backend.Token{{ID: 0}, {ID: 9}, {ID: 4}}
	q, k, v, att := tensor(3, 32), tensor(3, 16), tensor(3, 16), tensor(3, 32)
	cfg := backend.CacheConfig{Layers: 2, KVHeads: 2, HeadDim: 8, BlockSize: 4, Blocks: 8}
	p := backend.AttentionParams{Layer: 1, Heads: 4, KVHeads: 2, HeadDim: 8}
	ex := experts{4, 8, 12}
	logits := tensor(3, 4)
	short := backend.Tensor{Buf: &buf{10}, Rows: 3, Cols: 8} // more than its buffer holds
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"NewTensor", backend.CheckNewTensor(3, 8), nil},
		{"NewTensor/empty", backend.CheckNewTensor(0, 0), nil},
		{"NewTensor/negative", backend.CheckNewTensor(-1, 8), backend.ErrShape},
		{"NewTensor/too-large", backend.CheckNewTensor(1<<20, 1<<12), backend.ErrShape},
		{"Write", backend.CheckWrite(x, 24), nil},
		{"Write/short", backend.CheckWrite(x, 23), backend.ErrShape},
		{"Write/past-the-buffer", backend.CheckWrite(short, 24), backend.ErrShape},
		{"Write/no-buffer", backend.CheckWrite(backend.Tensor{Rows: 1, Cols: 1}, 1), backend.ErrForeign},
		{"Read", backend.CheckRead(x.Head(2), 16), nil},
		{"Read/long", backend.CheckRead(x, 25), backend.ErrShape},
		{"Embed", backend.CheckEmbed(x, weight{10, 8}, toks), nil},
		{"Embed/id-outside", backend.CheckEmbed(x, weight{9, 8}, toks), backend.ErrShape},
		{"Embed/rows", backend.CheckEmbed(x, weight{10, 8}, toks[:2]), backend.ErrShape},
		{"Embed/no-table", backend.CheckEmbed(x, nil, toks), backend.ErrForeign},
		{"RMSNorm", backend.CheckRMSNorm(y, x, norm), nil},
		{"RMSNorm/in-place", backend.CheckRMSNorm(x, x, norm), nil},
		{"RMSNorm/gain-width", backend.CheckRMSNorm(y, x, weight{1, 7}), backend.ErrShape},
		{"RMSNorm/gain-rows", backend.CheckRMSNorm(y, x, weight{2, 8}), backend.ErrShape},
		{"RMSNorm/rows", backend.CheckRMSNorm(y.Head(2), x, norm), backend.ErrShape},
		{"AddRMSNorm", backend.CheckAddRMSNorm(y, x, tensor(3, 8), norm), nil},
		{"AddRMSNorm/aliased", backend.CheckAddRMSNorm(x, x, y, norm), backend.ErrShape},
		{"AddRMSNorm/rows", backend.CheckAddRMSNorm(y, x, tensor(2, 8), norm), backend.ErrShape},
		{"MatMul", backend.CheckMatMul(out, x, w), nil},
		{"MatMul/inner", backend.CheckMatMul(out, tensor(3, 7), w), backend.ErrShape},
		{"MatMul/outer", backend.CheckMatMul(tensor(3, 6), x, w), backend.ErrShape},
		{"MatMul/aliased", backend.CheckMatMul(x, x, weight{8, 8}), backend.ErrShape},
		{"MatMul/no-weight", backend.CheckMatMul(out, x, nil), backend.ErrForeign},
		{"Add", backend.CheckAdd(x, y), nil},
		{"Add/shape", backend.CheckAdd(x, y.Head(2)), backend.ErrShape},
		{"Add/aliased", backend.CheckAdd(x, x), backend.ErrShape},
		{"Gather", backend.CheckGather(tensor(2, 8), x, []int{2, 0}), nil},
		{"Gather/row-outside", backend.CheckGather(tensor(2, 8), x, []int{3, 0}), backend.ErrShape},
		{"Gather/negative-row", backend.CheckGather(tensor(1, 8), x, []int{-1}), backend.ErrShape},
		{"Gather/aliased", backend.CheckGather(x, x, []int{0, 1, 2}), backend.ErrShape},
		{"RoPE", backend.CheckRoPE(q, 3, 8, 1e4), nil},
		{"RoPE/odd-head", backend.CheckRoPE(q, 3, 5, 1e4), backend.ErrShape},
		{"RoPE/partial-head", backend.CheckRoPE(q, 3, 6, 1e4), backend.ErrShape},
		{"RoPE/tokens", backend.CheckRoPE(q, 2, 8, 1e4), backend.ErrShape},
		{"RoPE/theta", backend.CheckRoPE(q, 3, 8, math.NaN()), backend.ErrShape},
		{"Attention", backend.CheckAttention(att, q, k, v, 3, cfg, p), nil},
		{"Attention/layer", backend.CheckAttention(att, q, k, v, 3, cfg, backend.AttentionParams{Layer: 2, Heads: 4, KVHeads: 2, HeadDim: 8}), backend.ErrShape},
		{"Attention/head-groups", backend.CheckAttention(att, q, k, v, 3, cfg, backend.AttentionParams{Heads: 3, KVHeads: 2, HeadDim: 8}), backend.ErrShape},
		{"Attention/kv-heads", backend.CheckAttention(att, q, k, v, 3, cfg, backend.AttentionParams{Heads: 4, KVHeads: 4, HeadDim: 8}), backend.ErrShape},
		{"Attention/window", backend.CheckAttention(att, q, k, v, 3, cfg, backend.AttentionParams{Heads: 4, KVHeads: 2, HeadDim: 8, SlidingWindow: -1}), backend.ErrShape},
		{"Attention/tokens", backend.CheckAttention(att, q, k, v, 2, cfg, p), backend.ErrShape},
		{"Attention/kv-width", backend.CheckAttention(att, q, k, q, 3, cfg, p), backend.ErrShape},
		{"Attention/aliased", backend.CheckAttention(q, q, k, v, 3, cfg, p), backend.ErrShape},
		{"MoE", backend.CheckMoE(y, x, ex, 2, logits), nil},
		{"MoE/no-router", backend.CheckMoE(y, x, ex, 2, backend.Tensor{}), nil},
		{"MoE/top-k", backend.CheckMoE(y, x, ex, 5, logits), backend.ErrShape},
		{"MoE/top-0", backend.CheckMoE(y, x, ex, 0, logits), backend.ErrShape},
		{"MoE/width", backend.CheckMoE(y, x, experts{4, 6, 12}, 2, logits), backend.ErrShape},
		{"MoE/aliased", backend.CheckMoE(x, x, ex, 2, logits), backend.ErrShape},
		{"MoE/router-shape", backend.CheckMoE(y, x, ex, 2, tensor(3, 5)), backend.ErrShape},
		{"MoE/router-aliased", backend.CheckMoE(y, x, ex, 2, backend.Tensor{Buf: y.Buf, Rows: 3, Cols: 4}), backend.ErrShape},
		{"MoE/no-experts", backend.CheckMoE(y, x, nil, 2, logits), backend.ErrForeign},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want == nil && tc.err != nil {
				t.Errorf("error %v", tc.err)
			}
			if tc.want != nil && !errors.Is(tc.err, tc.want) {
				t.Errorf("error %v, want %v", tc.err, tc.want)
			}
		})
	}
}

// stored returns a stored tensor of the given type and shape, zeroed.
func stored(name string, dt safetensors.DType, shape ...int) safetensors.Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return safetensors.Tensor{Name: name, DType: dt, Shape: shape, Data: make([]byte, n*dt.Size())}
}

func TestCheckWeight(t *testing.T) {
	for _, tc := range []struct {
		name       string
		t          safetensors.Tensor
		rows, cols int
		want       error
	}{
		{"matrix", stored("w", safetensors.F16, 3, 5), 3, 5, nil},
		{"vector", stored("v", safetensors.F32, 7), 1, 7, nil},
		{"int32", stored("i32", safetensors.I32, 2), 0, 0, backend.ErrDType},
		{"short-data", safetensors.Tensor{Name: "short", DType: safetensors.F32, Shape: []int{2, 2}, Data: make([]byte, 12)}, 0, 0, backend.ErrShape},
		{"three-dimensions", stored("3d", safetensors.F32, 1, 1, 1), 0, 0, backend.ErrShape},
		{"empty", stored("empty", safetensors.F32, 0, 4), 0, 0, backend.ErrShape},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, cols, err := backend.CheckWeight(tc.t)
			if tc.want == nil && (err != nil || rows != tc.rows || cols != tc.cols) {
				t.Errorf("CheckWeight = %d, %d, %v; want %d, %d", rows, cols, err, tc.rows, tc.cols)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("CheckWeight: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestCheckExperts(t *testing.T) {
	mk := func(count, hidden, inner int) backend.ExpertTensors {
		e := backend.ExpertTensors{Gate: stored("gate", safetensors.BF16, count, hidden)}
		for range count {
			e.W1 = append(e.W1, stored("w1", safetensors.BF16, inner, hidden))
			e.W2 = append(e.W2, stored("w2", safetensors.BF16, hidden, inner))
			e.W3 = append(e.W3, stored("w3", safetensors.BF16, inner, hidden))
		}
		return e
	}
	wrongInner := mk(4, 6, 10)
	wrongInner.W2[2] = stored("w2", safetensors.BF16, 6, 11)
	missing := mk(4, 6, 10)
	missing.W3 = missing.W3[:3]
	vectorGate := mk(1, 6, 10)
	vectorGate.Gate = stored("gate", safetensors.BF16, 6)
	for _, tc := range []struct {
		name string
		e    backend.ExpertTensors
		want error
	}{
		{"fits", mk(4, 6, 10), nil},
		{"wrong-inner-width", wrongInner, backend.ErrShape},
		{"expert-missing", missing, backend.ErrShape},
		{"router-1-D", vectorGate, backend.ErrShape},
		{"no-experts", backend.ExpertTensors{Gate: stored("gate", safetensors.F32, 2, 4)}, backend.ErrShape},
	} {
		t.Run(tc.name, func(t *testing.T) {
			E, H, I, err := backend.CheckExperts(tc.e)
			if tc.want == nil && (err != nil || E != 4 || H != 6 || I != 10) {
				t.Errorf("CheckExperts = %d, %d, %d, %v; want 4, 6, 10", E, H, I, err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("CheckExperts: %v, want %v", err, tc.want)
			}
		})
	}
}
