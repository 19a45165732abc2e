package mixtral

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/safetensors"
)

// ErrWeights is wrapped by every weight-binding error.
var ErrWeights = errors.New("mixtral: checkpoint does not match the config")

// WeightsError lists the tensors a checkpoint lacks, the tensors it has that the model does
// not use, and the tensors whose dtype or shape is wrong.
type WeightsError struct {
	Missing, Unexpected, Mismatched []string
}

func (e *WeightsError) Error() string {
	var parts []string
	for _, p := range []struct {
		what  string
		names []string
	}{{"missing", e.Missing}, {"unexpected", e.Unexpected}, {"mismatched", e.Mismatched}} {
		if len(p.names) > 0 {
			list := p.names
			if len(list) > 8 {
				list = append(slices.Clip(list[:8]), fmt.Sprintf("and %d more", len(p.names)-8))
			}
			parts = append(parts, fmt.Sprintf("%s: %s", p.what, strings.Join(list, ", ")))
		}
	}
	return "mixtral: checkpoint does not match the config: " + strings.Join(parts, "; ")
}

// Is makes a WeightsError match ErrWeights.
func (e *WeightsError) Is(target error) bool { return target == ErrWeights }

// layer holds one decoder layer's bound weights.
type layer struct {
	attnNorm, mlpNorm backend.Weight
	wq, wk, wv, wo    backend.Weight
	experts           backend.Experts
}

// layerTensors are one decoder layer's stored tensors.
type layerTensors struct {
	attnNorm, mlpNorm safetensors.Tensor
	wq, wk, wv, wo    safetensors.Tensor
	experts           backend.ExpertTensors
}

// weights are the bound weights of a whole model.
type weights struct {
	embed, norm, lmHead backend.Weight
	layers              []layer
}

// tensorFinder finds and checks the tensors the model needs in a checkpoint, noting the
// used ones and the problems, in either layout: the original Mixtral names
// (block_sparse_moe.experts.E.w1 ...) or the fused one (mlp.experts.gate_up_proj [E, 2I, H]
// with the gate projection first, mlp.experts.down_proj [E, H, I]).
type tensorFinder struct {
	c    Config
	src  safetensors.Source
	used map[string]bool
	errs WeightsError
}

// get returns the named tensor after checking its shape, noting problems.
func (f *tensorFinder) get(name string, shape ...int) safetensors.Tensor {
	t, err := f.src.Tensor(name)
	if err != nil {
		f.errs.Missing = append(f.errs.Missing, name)
		return safetensors.Tensor{}
	}
	f.used[name] = true
	if !slices.Equal(t.Shape, shape) {
		f.errs.Mismatched = append(f.errs.Mismatched, fmt.Sprintf("%s (shape %v, want %v)", name, t.Shape, shape))
	}
	switch t.DType {
	case safetensors.BF16, safetensors.F16, safetensors.F32:
	default:
		f.errs.Mismatched = append(f.errs.Mismatched, fmt.Sprintf("%s (dtype %s)", name, t.DType))
	}
	return t
}

func (f *tensorFinder) has(name string) bool {
	_, err := f.src.Tensor(name)
	return err == nil
}

// experts returns the MoE block of layer l, split into per-expert views in either layout.
func (f *tensorFinder) experts(l int) backend.ExpertTensors {
	c := f.c
	E, H, I := c.NumLocalExperts, c.HiddenSize, c.IntermediateSize
	pre := fmt.Sprintf("model.layers.%d.", l)
	var e backend.ExpertTensors
	if !f.has(pre+"block_sparse_moe.gate.weight") && f.has(pre+"mlp.gate.weight") {
		e.Gate = f.get(pre+"mlp.gate.weight", E, H)
		gateUp := f.get(pre+"mlp.experts.gate_up_proj", E, 2*I, H)
		down := f.get(pre+"mlp.experts.down_proj", E, H, I)
		if len(gateUp.Data) == 0 || len(down.Data) == 0 || !slices.Equal(gateUp.Shape, []int{E, 2 * I, H}) ||
			!slices.Equal(down.Shape, []int{E, H, I}) {
			return e
		}
		gu, dn := len(gateUp.Data)/E, len(down.Data)/E
		for x := range E {
			part := gateUp.Data[x*gu : (x+1)*gu]
			e.W1 = append(e.W1, view(gateUp, fmt.Sprintf("%s[%d].gate", gateUp.Name, x), part[:gu/2], I, H))
			e.W3 = append(e.W3, view(gateUp, fmt.Sprintf("%s[%d].up", gateUp.Name, x), part[gu/2:], I, H))
			e.W2 = append(e.W2, view(down, fmt.Sprintf("%s[%d]", down.Name, x), down.Data[x*dn:(x+1)*dn], H, I))
		}
		return e
	}
	e.Gate = f.get(pre+"block_sparse_moe.gate.weight", E, H)
	for x := range E {
		ex := fmt.Sprintf("%sblock_sparse_moe.experts.%d.", pre, x)
		e.W1 = append(e.W1, f.get(ex+"w1.weight", I, H))
		e.W2 = append(e.W2, f.get(ex+"w2.weight", H, I))
		e.W3 = append(e.W3, f.get(ex+"w3.weight", I, H))
	}
	return e
}

// view is a 2-D tensor over part of t's data.
func view(t safetensors.Tensor, name string, data []byte, rows, cols int) safetensors.Tensor {
	return safetensors.Tensor{Name: name, DType: t.DType, Shape: []int{rows, cols}, Data: data}
}

// ignored are tensors some checkpoints carry that the model recomputes.
func ignored(name string) bool { return strings.HasSuffix(name, ".rotary_emb.inv_freq") }

// bindWeights checks src against the config and binds every weight on be, the attention
// projections and the experts stored as q. progress, when not nil, is called with the bytes
// bound so far and the total. Binding stops between layers once ctx is done.
func bindWeights(ctx context.Context, src safetensors.Source, c Config, be backend.Backend, q backend.Quantization, progress func(done, total int64)) (*weights, error) {
	pre, err := readQuantized(src)
	if err != nil {
		return nil, err
	}
	if pre != nil {
		if q, err = pre.check(be, q); err != nil {
			return nil, err
		}
		src = pre
	} else if _, ok := be.(backend.Quantizer); q != backend.AsStored && !ok {
		return nil, fmt.Errorf("%w: the %s backend cannot store %s weights", backend.ErrQuantization, be.Name(), q)
	}
	f := &tensorFinder{c: c, src: src, used: map[string]bool{}}
	H, V := c.HiddenSize, c.VocabSize
	qDim, kvDim := c.NumAttentionHeads*c.HeadDim, c.NumKeyValueHeads*c.HeadDim
	embed := f.get("model.embed_tokens.weight", V, H)
	norm := f.get("model.norm.weight", H)
	lmHead := embed
	if !c.TieWordEmbeddings || f.has("lm_head.weight") {
		lmHead = f.get("lm_head.weight", V, H)
	}
	stored := make([]layerTensors, c.NumHiddenLayers)
	for l := range stored {
		pre := fmt.Sprintf("model.layers.%d.", l)
		stored[l] = layerTensors{
			attnNorm: f.get(pre+"input_layernorm.weight", H),
			wq:       f.get(pre+"self_attn.q_proj.weight", qDim, H),
			wk:       f.get(pre+"self_attn.k_proj.weight", kvDim, H),
			wv:       f.get(pre+"self_attn.v_proj.weight", kvDim, H),
			wo:       f.get(pre+"self_attn.o_proj.weight", H, qDim),
			mlpNorm:  f.get(pre+"post_attention_layernorm.weight", H),
			experts:  f.experts(l),
		}
	}
	for _, name := range src.Names() {
		if !f.used[name] && !ignored(name) {
			f.errs.Unexpected = append(f.errs.Unexpected, name)
		}
	}
	if len(f.errs.Missing)+len(f.errs.Unexpected)+len(f.errs.Mismatched) > 0 {
		return nil, &f.errs
	}

	// Bind, reporting progress in bytes.
	var total, done int64
	for name := range f.used {
		t, _ := src.Tensor(name)
		total += int64(len(t.Data))
	}
	var quantErr error
	bindAs := func(t safetensors.Tensor, q backend.Quantization) backend.Weight {
		w, err := pre.bindAs(be, t, q)
		if errors.Is(err, backend.ErrQuantization) && quantErr == nil {
			quantErr = err
		}
		if err != nil {
			f.errs.Mismatched = append(f.errs.Mismatched, fmt.Sprintf("%s (%v)", t.Name, err))
			return nil
		}
		done += int64(len(t.Data))
		if progress != nil {
			progress(done, total)
		}
		return w
	}
	bind := func(t safetensors.Tensor) backend.Weight { return bindAs(t, backend.AsStored) }
	w := &weights{embed: bind(embed), norm: bind(norm), layers: make([]layer, len(stored))}
	if c.TieWordEmbeddings && lmHead.Name == embed.Name {
		w.lmHead = w.embed
	} else {
		w.lmHead = bind(lmHead)
	}
	for l, st := range stored {
		if quantErr != nil {
			break // weights that do not quantize: quantizing the rest would be wasted
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ly := &w.layers[l]
		ly.attnNorm, ly.mlpNorm = bind(st.attnNorm), bind(st.mlpNorm)
		ly.wq, ly.wk, ly.wv, ly.wo = bindAs(st.wq, q), bindAs(st.wk, q), bindAs(st.wv, q), bindAs(st.wo, q)
		e, err := pre.bindExpertsAs(be, st.experts, q)
		if errors.Is(err, backend.ErrQuantization) && quantErr == nil {
			quantErr = err
		}
		if err != nil {
			f.errs.Mismatched = append(f.errs.Mismatched, fmt.Sprintf("layer %d experts (%v)", l, err))
		}
		ly.experts = e
		done += int64(len(st.experts.Gate.Data))
		for x := range st.experts.W1 {
			done += int64(len(st.experts.W1[x].Data) + len(st.experts.W2[x].Data) + len(st.experts.W3[x].Data))
		}
		if progress != nil {
			progress(done, total)
		}
	}
	if quantErr != nil {
		// The checkpoint matches; the backend cannot store it as asked.
		return nil, quantErr
	}
	if len(f.errs.Mismatched) > 0 {
		return nil, &f.errs
	}
	return w, nil
}
