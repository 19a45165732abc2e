package mixtral

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fathom-llm/fathom/backend/backendtest"
	"github.com/fathom-llm/fathom/internal/reference"
	"github.com/fathom-llm/fathom/safetensors"
)

// bundledModel is the repository's own checkpoint.
const bundledModel = "../models/tiny-code-mixtral"

// referenceConfig is c as the float64 reference forward pass takes it.
func referenceConfig(c Config) reference.Config {
	return reference.Config{
		Vocab: c.VocabSize, Hidden: c.HiddenSize, Inner: c.IntermediateSize, Layers: c.NumHiddenLayers,
		Heads: c.NumAttentionHeads, KVHeads: c.NumKeyValueHeads, HeadDim: c.HeadDim,
		Experts: c.NumLocalExperts, TopK: c.NumExpertsPerTok, SlidingWindow: c.SlidingWindow,
		RMSNormEps: c.RMSNormEps, RopeTheta: c.RopeTheta,
	}
}

// randomModel returns a small Mixtral of random bfloat16 weights (float32 norms) with
// grouped-query attention and a sliding window shorter than the sequences the tests run.
func randomModel(seed uint64) (Config, memSource) {
	c := Config{
		VocabSize: 97, HiddenSize: 32, IntermediateSize: 48, NumHiddenLayers: 3,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, HeadDim: 8, MaxPositionEmbeddings: 256,
		RMSNormEps: 1e-5, RopeTheta: 1e4, NumLocalExperts: 4, NumExpertsPerTok: 2, SlidingWindow: 6,
		HiddenAct: "silu", BOSTokenID: 1, EOSTokenIDs: []int{2},
	}
	r := rand.New(rand.NewPCG(seed, 1))
	src := memSource{}
	add := func(name string, dtype safetensors.DType, shape ...int) {
		scale := 1.0
		if len(shape) == 2 && name != "model.embed_tokens.weight" {
			scale = 1 / math.Sqrt(float64(shape[1])) // activations of about unit size
		}
		src[name], _ = backendtest.Weight(r, name, dtype, scale, shape...)
	}
	H, I, Q, KV := c.HiddenSize, c.IntermediateSize, c.NumAttentionHeads*c.HeadDim, c.NumKeyValueHeads*c.HeadDim
	add("model.embed_tokens.weight", safetensors.BF16, c.VocabSize, H)
	add("model.norm.weight", safetensors.F32, H)
	add("lm_head.weight", safetensors.BF16, c.VocabSize, H)
	for l := range c.NumHiddenLayers {
		pre := fmt.Sprintf("model.layers.%d.", l)
		add(pre+"input_layernorm.weight", safetensors.F32, H)
		add(pre+"post_attention_layernorm.weight", safetensors.F32, H)
		add(pre+"self_attn.q_proj.weight", safetensors.BF16, Q, H)
		add(pre+"self_attn.k_proj.weight", safetensors.BF16, KV, H)
		add(pre+"self_attn.v_proj.weight", safetensors.BF16, KV, H)
		add(pre+"self_attn.o_proj.weight", safetensors.BF16, H, Q)
		add(pre+"block_sparse_moe.gate.weight", safetensors.BF16, c.NumLocalExperts, H)
		for e := range c.NumLocalExperts {
			ex := fmt.Sprintf("%sblock_sparse_moe.experts.%d.", pre, e)
			add(ex+"w1.weight", safetensors.BF16, I, H)
			add(ex+"w2.weight", safetensors.BF16, H, I)
			add(ex+"w3.weight", safetensors.BF16, I, H)
		}
	}
	return c, src
}

// TestReferenceParity runs the bundled model and a random one with a sliding window and
// grouped-query attention, as one prefill step, in steps of a few tokens and token by token,
// and compares every position's logits with the float64 reference forward pass.
func TestReferenceParity(t *testing.T) {
	bundled, err := LoadConfig(bundledModel)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := safetensors.OpenDir(bundledModel)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	random, randomSrc := randomModel(7)
	for _, tc := range []struct {
		name string
		cfg  Config
		src  safetensors.Source
		ids  []int
	}{
		{"tiny-code-mixtral", bundled, ck, bundledIDs},
		{"random-swa-gqa", random, randomSrc, []int{1, 5, 17, 96, 3, 3, 40, 62, 8, 11, 90, 33, 2, 71, 54, 20, 9, 77, 15, 44}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref, err := reference.LoadModel(tc.src, referenceConfig(tc.cfg))
			if err != nil {
				t.Fatal(err)
			}
			want := ref.Forward(tc.ids)
			V := tc.cfg.VocabSize
			check := func(what string, logits [][]float32) {
				t.Helper()
				worst := 0.0
				for i, row := range logits {
					e := reference.RelErr(row, float32s(want[i*V:(i+1)*V]))
					worst = max(worst, e)
				}
				t.Logf("%s: worst relative error %.2e over %d positions", what, worst, len(logits))
				if !(worst < logitTolerance) {
					t.Errorf("%s: worst relative error %.3g (tolerance %g)", what, worst, logitTolerance)
				}
			}
			ctx := context.Background()
			for _, maxBatch := range []int{0, 5} {
				m, err := New(tc.cfg, tc.src, Options{MaxBatch: maxBatch, CacheTokens: 256, CacheType: safetensors.F32})
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				ev, err := m.Eval(ctx, tc.ids, EvalOptions{AllLogits: true})
				if err != nil {
					t.Fatal(err)
				}
				check(fmt.Sprintf("prefill in steps of at most %d", m.maxBatch), ev.Logits)
			}
			m, err := New(tc.cfg, tc.src, Options{CacheTokens: 256, CacheType: safetensors.F32})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			s, err := m.NewSequence()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var logits [][]float32
			for _, id := range tc.ids {
				ev, err := s.Append(ctx, []int{id}, EvalOptions{})
				if err != nil {
					t.Fatal(err)
				}
				logits = append(logits, ev.Logits...)
			}
			check("token by token", logits)
		})
	}
}

// TestReferenceFixtures checks the float64 reference forward pass itself against the
// recorded references of the fixture models.
func TestReferenceFixtures(t *testing.T) {
	for _, name := range reference.Models {
		t.Run(name, func(t *testing.T) {
			recorded := reference.Load(t, name)
			m := sharedModel(t, name)
			ref, err := reference.LoadModel(m.ckpt, referenceConfig(m.cfg))
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range recorded.Prompts {
				want := recorded.Tensor(t, fmt.Sprintf("prompt%d.last_logits", p.Index))
				all := ref.Forward(p.IDs)
				got := float32s(all[len(all)-len(want):])
				e := reference.RelErr(got, want)
				t.Logf("prompt %d: relative error %.2e", p.Index, e)
				if !(e < 1e-6) {
					t.Errorf("prompt %d: relative error %.3g", p.Index, e)
				}
			}
		})
	}
}

func float32s(x []float64) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(v)
	}
	return out
}
