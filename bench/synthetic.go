package bench

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"

	"github.com/fathom-llm/fathom/internal/kernels"
	"github.com/fathom-llm/fathom/mixtral"
	"github.com/fathom-llm/fathom/safetensors"
	"github.com/x448/float16"
)

// Mixtral8x7B returns the configuration of Mixtral 8x7B (the shape of Dolphin 2.6 Mixtral
// 8x7b) with the given number of decoder layers (the real model has 32): hidden 4096, 32
// attention heads and 8 key/value heads of 128, 8 experts of width 14336, top-2 routing, a
// vocabulary of 32002 tokens.
func Mixtral8x7B(layers int) mixtral.Config {
	return mixtral.Config{
		VocabSize:             32002,
		HiddenSize:            4096,
		IntermediateSize:      14336,
		NumHiddenLayers:       layers,
		NumAttentionHeads:     32,
		NumKeyValueHeads:      8,
		HeadDim:               128,
		MaxPositionEmbeddings: 32768,
		RMSNormEps:            1e-5,
		RopeTheta:             1e6,
		NumLocalExperts:       8,
		NumExpertsPerTok:      2,
		HiddenAct:             "silu",
		BOSTokenID:            1,
		EOSTokenIDs:           []int{32000},
	}
}

// SmallMixtral returns Mixtral8x7B(layers) shrunk to a shape that tests run in moments:
// hidden 64, expert width 96, 4 attention heads and 2 key/value heads of 16, a vocabulary of
// 300 tokens (end of sequence 2); the 8 experts and top-2 routing stay.
func SmallMixtral(layers int) mixtral.Config {
	cfg := Mixtral8x7B(layers)
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumAttentionHeads, cfg.NumKeyValueHeads = 64, 96, 4, 2
	cfg.HeadDim, cfg.VocabSize, cfg.EOSTokenIDs = 16, 300, []int{2}
	return cfg
}

// Synthetic is an in-memory checkpoint of random bfloat16 weights with the tensor names and
// shapes of a Mixtral checkpoint: a safetensors.Source for mixtral.New.
type Synthetic struct {
	tensors map[string]safetensors.Tensor
}

// TensorShapes returns the name and shape of every tensor of a Mixtral checkpoint of
// configuration cfg, in the original layout (block_sparse_moe.experts.E.w1 ...).
func TensorShapes(cfg mixtral.Config) map[string][]int {
	h, inner, kv := cfg.HiddenSize, cfg.IntermediateSize, cfg.NumKeyValueHeads*cfg.HeadDim
	q := cfg.NumAttentionHeads * cfg.HeadDim
	shapes := map[string][]int{
		"model.embed_tokens.weight": {cfg.VocabSize, h},
		"model.norm.weight":         {h},
	}
	if !cfg.TieWordEmbeddings {
		shapes["lm_head.weight"] = []int{cfg.VocabSize, h}
	}
	for l := range cfg.NumHiddenLayers {
		p := fmt.Sprintf("model.layers.%d.", l)
		shapes[p+"input_layernorm.weight"] = []int{h}
		shapes[p+"post_attention_layernorm.weight"] = []int{h}
		shapes[p+"self_attn.q_proj.weight"] = []int{q, h}
		shapes[p+"self_attn.k_proj.weight"] = []int{kv, h}
		shapes[p+"self_attn.v_proj.weight"] = []int{kv, h}
		shapes[p+"self_attn.o_proj.weight"] = []int{h, q}
		shapes[p+"block_sparse_moe.gate.weight"] = []int{cfg.NumLocalExperts, h}
		for e := range cfg.NumLocalExperts {
			ep := fmt.Sprintf("%sblock_sparse_moe.experts.%d.", p, e)
			shapes[ep+"w1.weight"] = []int{inner, h}
			shapes[ep+"w2.weight"] = []int{h, inner}
			shapes[ep+"w3.weight"] = []int{inner, h}
		}
	}
	return shapes
}

// NewSynthetic generates random bfloat16 weights for every tensor of cfg, reproducibly from
// seed. The values are small (magnitudes between 2⁻¹¹ and 2⁻⁴, random signs), so activations
// stay finite through any number of layers.
func NewSynthetic(cfg mixtral.Config, seed uint64) (*Synthetic, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Synthetic{tensors: map[string]safetensors.Tensor{}}
	for name, shape := range TensorShapes(cfg) {
		n := 1
		for _, d := range shape {
			n *= d
		}
		s.tensors[name] = safetensors.Tensor{Name: name, DType: safetensors.BF16, Shape: shape, Data: make([]byte, 2*n)}
	}
	names := s.Names()
	next := make(chan int)
	done := make(chan struct{})
	for range runtime.GOMAXPROCS(0) {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range next {
				fillBF16(s.tensors[names[i]].Data, seed, uint64(i))
			}
		}()
	}
	for i := range names {
		next <- i
	}
	close(next)
	for range runtime.GOMAXPROCS(0) {
		<-done
	}
	return s, nil
}

// fillBF16 fills data with random little-endian bfloat16 values from the PCG stream (seed,
// stream): a random sign, a random
// exponent between 2⁻¹¹ and 2⁻⁴ and a random mantissa.
func fillBF16(data []byte, seed, stream uint64) {
	r := rand.New(rand.NewPCG(seed, stream))
	for i := 0; i+8 <= len(data); i += 8 {
		v := r.Uint64()
		for j := range 4 {
			b := uint16(v >> (16 * j))
			bits := b&0x807f | (116+(b>>7)&7)<<7 // sign | exponent 116..123 | mantissa
			data[i+2*j], data[i+2*j+1] = byte(bits), byte(bits>>8)
		}
	}
	for i := len(data) &^ 7; i+2 <= len(data); i += 2 {
		data[i], data[i+1] = 0x80, 0x3c // 2⁻⁶
	}
}

// Tensor returns the named tensor.
func (s *Synthetic) Tensor(name string) (safetensors.Tensor, error) {
	if s.tensors == nil {
		return safetensors.Tensor{}, safetensors.ErrClosed
	}
	t, ok := s.tensors[name]
	if !ok {
		return safetensors.Tensor{}, fmt.Errorf("%w: %s", safetensors.ErrNotFound, name)
	}
	return t, nil
}

// Names returns every tensor name, sorted.
func (s *Synthetic) Names() []string {
	return slices.Sorted(maps.Keys(s.tensors))
}

// Close drops the weights.
func (s *Synthetic) Close() error {
	if s.tensors == nil {
		return errors.New("bench: synthetic checkpoint closed twice")
	}
	s.tensors = nil
	return nil
}

// DecodeWeightBytes returns the bytes of bfloat16 weights that decoding one token reads: per
// layer the two norms, the attention projections, the router and NumExpertsPerTok experts,
// then the final norm and the lm_head (one embedding row is negligible and not counted).
func DecodeWeightBytes(cfg mixtral.Config) int64 {
	h, inner := int64(cfg.HiddenSize), int64(cfg.IntermediateSize)
	q := int64(cfg.NumAttentionHeads * cfg.HeadDim)
	kv := int64(cfg.NumKeyValueHeads * cfg.HeadDim)
	attn := h*q + 2*h*kv + q*h
	experts := int64(cfg.NumExpertsPerTok) * 3 * h * inner
	layer := 2*h + attn + int64(cfg.NumLocalExperts)*h + experts
	return 2 * (int64(cfg.NumHiddenLayers)*layer + h + int64(cfg.VocabSize)*h)
}

// TokenFLOPs returns the floating-point operations (a multiply-add counts two) of the weight
// products of one token: the attention projections, the router, NumExpertsPerTok experts
// and the lm_head. Attention over the context is not counted.
func TokenFLOPs(cfg mixtral.Config) float64 {
	return 2*float64(cfg.NumHiddenLayers)*layerProducts(cfg) + 2*float64(cfg.VocabSize*cfg.HiddenSize)
}

// PrefillFLOPs returns the floating-point operations of evaluating a prompt of n tokens in a
// fresh sequence: every token's weight products in every layer, the attention of each token
// to the positions it sees (q·k and p·v of every query head, the sliding window counted), and
// the lm_head of the last token only, whose logits a prompt computes.
func PrefillFLOPs(cfg mixtral.Config, n int) float64 {
	var seen float64 // positions attended to, over the prompt's tokens
	for p := range n {
		v := p + 1
		if w := cfg.SlidingWindow; w > 0 {
			v = min(v, w)
		}
		seen += float64(v)
	}
	attn := 4 * float64(cfg.NumAttentionHeads*cfg.HeadDim) * seen
	return float64(cfg.NumHiddenLayers)*(2*float64(n)*layerProducts(cfg)+attn) + 2*float64(cfg.VocabSize*cfg.HiddenSize)
}

// layerProducts returns the multiply-adds of one token's weight products in one layer.
func layerProducts(cfg mixtral.Config) float64 {
	h, inner := float64(cfg.HiddenSize), float64(cfg.IntermediateSize)
	q := float64(cfg.NumAttentionHeads * cfg.HeadDim)
	kv := float64(cfg.NumKeyValueHeads * cfg.HeadDim)
	return h*q + 2*h*kv + q*h + float64(cfg.NumLocalExperts)*h + float64(cfg.NumExpertsPerTok)*3*h*inner
}

// WriteDir writes the checkpoint to dir, which must exist, as a Hugging Face checkpoint of
// configuration cfg (the one it was made with): config.json and model.safetensors. The caller
// adds a tokenizer.
func (s *Synthetic) WriteDir(dir string, cfg mixtral.Config) error {
	if s.tensors == nil {
		return safetensors.ErrClosed
	}
	if err := writeConfig(dir, cfg, "bfloat16"); err != nil {
		return err
	}
	tensors := make([]safetensors.Tensor, 0, len(s.tensors))
	for _, name := range s.Names() {
		tensors = append(tensors, s.tensors[name])
	}
	return safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), tensors, map[string]string{"format": "pt"})
}

// WriteSynthetic writes the synthetic checkpoint NewSynthetic(cfg, seed) makes to dir as a
// checkpoint directory that mixtral.Load reads: config.json and model.safetensors, its
// weights stored as dtype (BF16, or F16: the same values, which float16 represents exactly).
// The weights are generated tensor by tensor as the file is written, so a checkpoint larger
// than memory can be written.
func WriteSynthetic(dir string, cfg mixtral.Config, dtype safetensors.DType, seed uint64) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if dtype != safetensors.BF16 && dtype != safetensors.F16 {
		return fmt.Errorf("bench: synthetic weights as %s (want BF16 or F16)", dtype)
	}
	if err := writeConfig(dir, cfg, map[safetensors.DType]string{safetensors.BF16: "bfloat16", safetensors.F16: "float16"}[dtype]); err != nil {
		return err
	}
	shapes := TensorShapes(cfg)
	names := make([]string, 0, len(shapes))
	for n := range shapes {
		names = append(names, n)
	}
	slices.Sort(names)
	stream := map[string]uint64{}
	var tensors []safetensors.Tensor
	for i, n := range names {
		stream[n] = uint64(i)
		tensors = append(tensors, safetensors.Tensor{Name: n, DType: dtype, Shape: shapes[n]})
	}
	var buf []byte
	data := func(t safetensors.Tensor) ([]byte, error) {
		buf = slices.Grow(buf[:0], t.ByteLen())[:t.ByteLen()]
		fillBF16(buf, seed, stream[t.Name])
		if dtype == safetensors.F16 {
			for i := 0; i < len(buf); i += 2 {
				h := float16.Fromfloat32(kernels.BF16ToF32(binary.LittleEndian.Uint16(buf[i:])))
				binary.LittleEndian.PutUint16(buf[i:], h.Bits())
			}
		}
		return buf, nil
	}
	return safetensors.WriteDirWith(dir, [][]safetensors.Tensor{tensors}, map[string]string{"format": "pt"},
		safetensors.WriteOptions{Data: data})
}

// writeConfig writes cfg to dir as the config.json of a Mixtral checkpoint whose weights are
// of the given torch dtype.
func writeConfig(dir string, cfg mixtral.Config, torchDType string) error {
	c, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	var fields map[string]any
	if err := json.Unmarshal(c, &fields); err != nil {
		return err
	}
	fields["model_type"] = "mixtral"
	fields["architectures"] = []string{"MixtralForCausalLM"}
	fields["torch_dtype"] = torchDType
	if c, err = json.MarshalIndent(fields, "", "  "); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), c, 0o644)
}
