package reference

import (
	"fmt"
	"math"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/safetensors"
)

// Config is the shape of a Mixtral model: the fields of its config.json that the forward
// pass reads.
type Config struct {
	Vocab, Hidden, Inner, Layers int // vocab_size, hidden_size, intermediate_size, num_hidden_layers
	Heads, KVHeads, HeadDim      int // num_attention_heads, num_key_value_heads, head_dim
	Experts, TopK                int // num_local_experts, num_experts_per_tok
	SlidingWindow                int // sliding_window; 0: none
	RMSNormEps, RopeTheta        float64
}

// Model is a Mixtral model with its weights in float64: matrices row-major, [out, in].
type Model struct {
	Config
	Embed, Norm, LMHead []float64 // [vocab, hidden], [hidden], [vocab, hidden]
	Layers              []Layer
}

// Layer is one decoder layer's weights.
type Layer struct {
	AttnNorm, MLPNorm []float64 // [hidden]
	WQ, WK, WV, WO    []float64 // [heads·headDim, hidden], 2× [kvHeads·headDim, hidden], [hidden, heads·headDim]
	Gate              []float64 // the router [experts, hidden]
	W1, W2, W3        [][]float64
}

// LoadModel reads a model's weights, in the original Mixtral tensor names, from src. Without
// lm_head.weight the output projection is the embedding table (tied embeddings).
func LoadModel(src safetensors.Source, c Config) (*Model, error) {
	var err error
	get := func(name string, size int) []float64 {
		t, e := src.Tensor(name)
		var v []float32
		if e == nil {
			v, e = t.Float32s(nil)
		}
		if e == nil && len(v) != size {
			e = fmt.Errorf("reference: %s has %d values, want %d", name, len(v), size)
		}
		if e != nil {
			err = e
			return nil
		}
		out := make([]float64, size)
		for i, f := range v {
			out[i] = float64(f)
		}
		return out
	}
	H, I, Q, KV := c.Hidden, c.Inner, c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	m := &Model{Config: c, Embed: get("model.embed_tokens.weight", c.Vocab*H), Norm: get("model.norm.weight", H)}
	m.LMHead = m.Embed
	if _, e := src.Tensor("lm_head.weight"); e == nil {
		m.LMHead = get("lm_head.weight", c.Vocab*H)
	}
	for l := range c.Layers {
		pre := fmt.Sprintf("model.layers.%d.", l)
		ly := Layer{
			AttnNorm: get(pre+"input_layernorm.weight", H), MLPNorm: get(pre+"post_attention_layernorm.weight", H),
			WQ: get(pre+"self_attn.q_proj.weight", Q*H), WK: get(pre+"self_attn.k_proj.weight", KV*H),
			WV: get(pre+"self_attn.v_proj.weight", KV*H), WO: get(pre+"self_attn.o_proj.weight", H*Q),
			Gate: get(pre+"block_sparse_moe.gate.weight", c.Experts*H),
		}
		for e := range c.Experts {
			ex := fmt.Sprintf("%sblock_sparse_moe.experts.%d.", pre, e)
			ly.W1 = append(ly.W1, get(ex+"w1.weight", I*H))
			ly.W2 = append(ly.W2, get(ex+"w2.weight", H*I))
			ly.W3 = append(ly.W3, get(ex+"w3.weight", I*H))
		}
		m.Layers = append(m.Layers, ly)
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Forward runs the tokens ids, one sequence from position 0, through the model and returns
// the logits of every position ([len(ids), vocab]).
func (m *Model) Forward(ids []int) []float64 {
	c, n := m.Config, len(ids)
	H, Q, KV := c.Hidden, c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	attn := backend.AttentionParams{Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: c.HeadDim,
		Scale: float32(1 / math.Sqrt(float64(c.HeadDim))), SlidingWindow: c.SlidingWindow}

	// The residual stream x starts as the tokens' embeddings.
	x := make([]float64, n*H)
	for i, id := range ids {
		copy(x[i*H:(i+1)*H], m.Embed[id*H:(id+1)*H])
	}
	for _, ly := range m.Layers {
		// Attention: queries, keys and values of the normalised stream, keys and queries
		// rotated by their position; each position attends to itself and those before it.
		xb := RMSNorm(x, ly.AttnNorm, c.RMSNormEps)
		q, k, v := MatMul(xb, n, ly.WQ, Q), MatMul(xb, n, ly.WK, KV), MatMul(xb, n, ly.WV, KV)
		hist := make([][2][]float64, n)
		att := make([]float64, 0, n*Q)
		for i := range n {
			for h := 0; h < Q; h += c.HeadDim {
				RoPE(q[i*Q+h:i*Q+h+c.HeadDim], i, c.RopeTheta)
			}
			for h := 0; h < KV; h += c.HeadDim {
				RoPE(k[i*KV+h:i*KV+h+c.HeadDim], i, c.RopeTheta)
			}
			hist[i] = [2][]float64{k[i*KV : (i+1)*KV], v[i*KV : (i+1)*KV]}
			att = append(att, Attention(q[i*Q:(i+1)*Q], hist, i, attn)...)
		}
		add(x, MatMul(att, n, ly.WO, H))

		// The mixture of experts on the normalised stream.
		xb = RMSNorm(x, ly.MLPNorm, c.RMSNormEps)
		moe, _ := MoE(xb, n, H, c.Inner, c.Experts, c.TopK, ly.Gate, ly.W1, ly.W2, ly.W3)
		add(x, moe)
	}
	return MatMul(RMSNorm(x, m.Norm, c.RMSNormEps), n, m.LMHead, c.Vocab)
}

// add sets x += y.
func add(x, y []float64) {
	for i := range x {
		x[i] += y[i]
	}
}
