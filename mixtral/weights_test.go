package mixtral

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fathom-llm/fathom/internal/fixtures"
	"github.com/fathom-llm/fathom/internal/reference"
	"github.com/fathom-llm/fathom/safetensors"
)

// memSource is an in-memory safetensors.Source.
type memSource map[string]safetensors.Tensor

func (s memSource) Tensor(name string) (safetensors.Tensor, error) {
	t, ok := s[name]
	if !ok {
		return safetensors.Tensor{}, fmt.Errorf("%s: %w", name, safetensors.ErrNotFound)
	}
	return t, nil
}

func (s memSource) Names() []string {
	var names []string
	for n := range s {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func (s memSource) Close() error { return nil }

// readAll loads every tensor of a fixture checkpoint into memory.
func readAll(t *testing.T, dir string) memSource {
	t.Helper()
	ck, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ck.Close() })
	src := memSource{}
	for _, name := range ck.Names() {
		tt, err := ck.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		tt.Data = slices.Clone(tt.Data)
		src[name] = tt
	}
	return src
}

// fuse converts the original expert tensors to the fused layout newer writers use.
func fuse(t *testing.T, src memSource, c Config) memSource {
	t.Helper()
	out := memSource{}
	for name, tt := range src {
		out[name] = tt
	}
	E, H, I := c.NumLocalExperts, c.HiddenSize, c.IntermediateSize
	for l := range c.NumHiddenLayers {
		pre := fmt.Sprintf("model.layers.%d.", l)
		gate := out[pre+"block_sparse_moe.gate.weight"]
		delete(out, pre+"block_sparse_moe.gate.weight")
		gate.Name = pre + "mlp.gate.weight"
		out[gate.Name] = gate
		var gateUp, down []byte
		var dtype safetensors.DType
		for e := range E {
			ex := fmt.Sprintf("%sblock_sparse_moe.experts.%d.", pre, e)
			w1, w2, w3 := out[ex+"w1.weight"], out[ex+"w2.weight"], out[ex+"w3.weight"]
			dtype = w1.DType
			gateUp = append(append(gateUp, w1.Data...), w3.Data...)
			down = append(down, w2.Data...)
			delete(out, ex+"w1.weight")
			delete(out, ex+"w2.weight")
			delete(out, ex+"w3.weight")
		}
		out[pre+"mlp.experts.gate_up_proj"] = safetensors.Tensor{Name: pre + "mlp.experts.gate_up_proj", DType: dtype, Shape: []int{E, 2 * I, H}, Data: gateUp}
		out[pre+"mlp.experts.down_proj"] = safetensors.Tensor{Name: pre + "mlp.experts.down_proj", DType: dtype, Shape: []int{E, H, I}, Data: down}
	}
	return out
}

// TestFusedLayout writes a fixture model in the fused expert layout and checks that it
// loads and computes identical logits.
func TestFusedLayout(t *testing.T) {
	for _, name := range []string{"tiny-mixtral-bf16", "tiny-mixtral-swa-f16"} {
		t.Run(name, func(t *testing.T) {
			orig := fixtures.Model(t, name)
			cfg, err := LoadConfig(orig)
			if err != nil {
				t.Fatal(err)
			}
			fused := fuse(t, readAll(t, orig), cfg)
			dir := t.TempDir()
			var tensors []safetensors.Tensor
			for _, n := range fused.Names() {
				tensors = append(tensors, fused[n])
			}
			if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), tensors, nil); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"config.json", "generation_config.json"} {
				data, err := os.ReadFile(filepath.Join(orig, f))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			a := sharedModel(t, name)
			b, err := Load(context.Background(), dir, Options{CacheType: safetensors.F32})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			ids := []int{1, 415, 15052, 721, 262, 9, 77, 3000, 31999, 5}
			ea, err := a.Eval(context.Background(), ids, EvalOptions{AllLogits: true})
			if err != nil {
				t.Fatal(err)
			}
			eb, err := b.Eval(context.Background(), ids, EvalOptions{AllLogits: true})
			if err != nil {
				t.Fatal(err)
			}
			for i := range ea.Logits {
				if !slices.Equal(ea.Logits[i], eb.Logits[i]) {
					t.Fatalf("position %d: fused layout logits differ (relative %.3g)", i, reference.RelErr(eb.Logits[i], ea.Logits[i]))
				}
			}
		})
	}
}

func TestWeightsErrors(t *testing.T) {
	dir := fixtures.Model(t, "tiny-code-mixtral")
	cfg, err := LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	src := readAll(t, dir)
	check := func(what string, s memSource, missing, unexpected, mismatched []string) {
		t.Helper()
		m, err := New(cfg, s, Options{})
		if err == nil {
			m.Close()
			t.Fatalf("%s: loaded", what)
		}
		var we *WeightsError
		if !errors.As(err, &we) || !errors.Is(err, ErrWeights) {
			t.Fatalf("%s: %v, want a *WeightsError", what, err)
		}
		if !slices.Equal(we.Missing, missing) || !slices.Equal(we.Unexpected, unexpected) || len(we.Mismatched) != len(mismatched) {
			t.Errorf("%s: %+v, want missing %v, unexpected %v, mismatched %v", what, we, missing, unexpected, mismatched)
		}
		for i, m := range mismatched {
			if len(we.Mismatched) > i && !strings.HasPrefix(we.Mismatched[i], m) {
				t.Errorf("%s: mismatched %q, want %q...", what, we.Mismatched[i], m)
			}
		}
	}
	without := func(names ...string) memSource {
		s := memSource{}
		for n, tt := range src {
			s[n] = tt
		}
		for _, n := range names {
			delete(s, n)
		}
		return s
	}
	check("missing", without("model.layers.1.block_sparse_moe.experts.3.w2.weight", "lm_head.weight"),
		[]string{"lm_head.weight", "model.layers.1.block_sparse_moe.experts.3.w2.weight"}, nil, nil)

	extra := without()
	past := fmt.Sprintf("model.layers.%d.input_layernorm.weight", cfg.NumHiddenLayers) // one layer too many
	extra[past] = src["model.layers.1.input_layernorm.weight"]
	check("unexpected", extra, nil, []string{past}, nil)

	bad := without()
	bad["model.layers.0.self_attn.k_proj.weight"] = src["model.layers.0.self_attn.q_proj.weight"]
	check("shape", bad, nil, nil, []string{"model.layers.0.self_attn.k_proj.weight"})

	// A checkpoint that keeps the rotary inverse frequencies loads.
	inv := without()
	inv["model.layers.0.self_attn.rotary_emb.inv_freq"] = safetensors.Tensor{Name: "inv", DType: safetensors.F32, Shape: []int{8}, Data: make([]byte, 32)}
	m, err := New(cfg, inv, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()

	// Progress reaches the total.
	var done, total int64
	m, err = New(cfg, src, Options{Progress: func(d, t int64) { done, total = d, t }})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	var size int64
	for _, tt := range src {
		size += int64(len(tt.Data))
	}
	if done != total || total != size {
		t.Errorf("progress %d of %d, want %d", done, total, size)
	}
}
