package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/fathom-llm/fathom/internal/fixtures"
	"github.com/x448/float16"
)

var fixtureModels = []string{"tiny-code-mixtral", "tiny-mixtral-bf16", "tiny-mixtral-swa-f16"}

// rawHeader decodes a file's header with encoding/json, independently of the package.
func rawHeader(t *testing.T, path string) (header map[string]json.RawMessage, data []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(b)
	if err := json.Unmarshal(b[8:8+n], &header); err != nil {
		t.Fatal(err)
	}
	delete(header, "__metadata__")
	return header, b[8+n:]
}

type rawInfo struct {
	DType   DType    `json:"dtype"`
	Shape   []int    `json:"shape"`
	Offsets [2]int64 `json:"data_offsets"`
}

func TestFixtureModels(t *testing.T) {
	for _, model := range fixtureModels {
		t.Run(model, func(t *testing.T) {
			dir := fixtures.Model(t, model)
			c, err := OpenDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			checkAgainstIndex(t, c, dir)
			checkAgainstConfig(t, c, dir)
			checkValues(t, c)
		})
	}
}

// checkAgainstIndex checks that the checkpoint holds exactly the tensors of its index (or of
// its single file), each from the named shard.
func checkAgainstIndex(t *testing.T, c *Checkpoint, dir string) {
	weightMap := map[string]string{}
	if raw, err := os.ReadFile(filepath.Join(dir, IndexFileName)); err == nil {
		var idx struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(raw, &idx); err != nil {
			t.Fatal(err)
		}
		weightMap = idx.WeightMap
	} else {
		header, _ := rawHeader(t, filepath.Join(dir, SingleFileName))
		for name := range header {
			weightMap[name] = SingleFileName
		}
	}
	if len(c.Names()) != len(weightMap) {
		t.Errorf("%d tensors, index has %d", len(c.Names()), len(weightMap))
	}
	shards := map[string]*File{}
	for _, f := range c.Files() {
		shards[filepath.Base(f.Path())] = f
	}
	for name, shard := range weightMap {
		f := shards[shard]
		if f == nil {
			t.Fatalf("shard %s not opened", shard)
		}
		want, err := f.Tensor(name)
		if err != nil {
			t.Fatalf("%s in %s: %v", name, shard, err)
		}
		got, err := c.Tensor(name)
		if err != nil || &got.Data[0] != &want.Data[0] {
			t.Errorf("%s not taken from %s: %v", name, shard, err)
		}
	}
}

// checkAgainstConfig checks the tensors' dtypes and shapes against config.json.
func checkAgainstConfig(t *testing.T, c *Checkpoint, dir string) {
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct{ Vocab, Hidden, Inter, Layers, Heads, KVHeads, Experts int }
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	num := func(k string) int { return int(m[k].(float64)) }
	cfg.Vocab, cfg.Hidden, cfg.Inter = num("vocab_size"), num("hidden_size"), num("intermediate_size")
	cfg.Layers, cfg.Heads, cfg.KVHeads = num("num_hidden_layers"), num("num_attention_heads"), num("num_key_value_heads")
	cfg.Experts = num("num_local_experts")
	dtype := map[string]DType{"bfloat16": BF16, "float16": F16, "float32": F32}[m["torch_dtype"].(string)]
	headDim := cfg.Hidden / cfg.Heads

	want := map[string][]int{
		"model.embed_tokens.weight": {cfg.Vocab, cfg.Hidden},
		"lm_head.weight":            {cfg.Vocab, cfg.Hidden},
		"model.norm.weight":         {cfg.Hidden},
	}
	for l := range cfg.Layers {
		p := fmt.Sprintf("model.layers.%d.", l)
		want[p+"input_layernorm.weight"] = []int{cfg.Hidden}
		want[p+"post_attention_layernorm.weight"] = []int{cfg.Hidden}
		want[p+"self_attn.q_proj.weight"] = []int{cfg.Heads * headDim, cfg.Hidden}
		want[p+"self_attn.k_proj.weight"] = []int{cfg.KVHeads * headDim, cfg.Hidden}
		want[p+"self_attn.v_proj.weight"] = []int{cfg.KVHeads * headDim, cfg.Hidden}
		want[p+"self_attn.o_proj.weight"] = []int{cfg.Hidden, cfg.Heads * headDim}
		want[p+"block_sparse_moe.gate.weight"] = []int{cfg.Experts, cfg.Hidden}
		for e := range cfg.Experts {
			q := fmt.Sprintf("%sblock_sparse_moe.experts.%d.", p, e)
			want[q+"w1.weight"] = []int{cfg.Inter, cfg.Hidden}
			want[q+"w2.weight"] = []int{cfg.Hidden, cfg.Inter}
			want[q+"w3.weight"] = []int{cfg.Inter, cfg.Hidden}
		}
	}
	if len(c.Names()) != len(want) {
		t.Errorf("%d tensors, config implies %d", len(c.Names()), len(want))
	}
	for name, shape := range want {
		tensor, err := c.Tensor(name)
		if err != nil {
			t.Error(err)
			continue
		}
		if !slices.Equal(tensor.Shape, shape) || tensor.DType != dtype || len(tensor.Data) != tensor.ByteLen() {
			t.Errorf("%s: %s %v (%d bytes), want %s %v", name, tensor.DType, tensor.Shape, len(tensor.Data), dtype, shape)
		}
	}
}

// checkValues compares every tensor's Float32s and raw bytes with an independent decoding of
// the file.
func checkValues(t *testing.T, c *Checkpoint) {
	for _, f := range c.Files() {
		header, data := rawHeader(t, f.Path())
		for name, raw := range header {
			var info rawInfo
			if err := json.Unmarshal(raw, &info); err != nil {
				t.Fatal(err)
			}
			want := data[info.Offsets[0]:info.Offsets[1]]
			tensor, err := c.Tensor(name)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(tensor.Data, want) {
				t.Fatalf("%s: bytes differ from the file", name)
			}
			got, err := tensor.Float32s(nil)
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range got {
				h := binary.LittleEndian.Uint16(want[2*i:])
				var ref float32
				switch info.DType {
				case BF16:
					ref = math.Float32frombits(uint32(h) << 16)
				case F16:
					ref = float16.Frombits(h).Float32()
				default:
					t.Fatalf("%s: unexpected dtype %s", name, info.DType)
				}
				if math.Float32bits(v) != math.Float32bits(ref) {
					t.Fatalf("%s[%d] = %v, want %v", name, i, v, ref)
				}
			}
			if u, err := tensor.Uint16s(); err != nil || len(u) != len(got) {
				t.Fatalf("%s: Uint16s: %v", name, err)
			}
		}
	}
}

func TestFixtureReferences(t *testing.T) {
	for _, name := range append(slices.Clone(fixtureModels), "logits_processors") {
		file := name + ".safetensors"
		if name == "logits_processors" {
			file = "logits_processors.reference.safetensors"
		}
		path := fixtures.Path(t, "reference", file)
		f, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		header, data := rawHeader(t, path)
		if len(f.Names()) != len(header) || len(header) == 0 {
			t.Errorf("%s: %d tensors, header has %d", file, len(f.Names()), len(header))
		}
		for tname, raw := range header {
			var info rawInfo
			json.Unmarshal(raw, &info)
			tensor, err := f.Tensor(tname)
			if err != nil || tensor.DType != F32 || !slices.Equal(tensor.Shape, info.Shape) {
				t.Fatalf("%s: %+v %v", tname, info, err)
			}
			got, err := tensor.Float32s(nil)
			if err != nil {
				t.Fatal(err)
			}
			view, err := View[float32](tensor)
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range got {
				ref := math.Float32frombits(binary.LittleEndian.Uint32(data[info.Offsets[0]+4*int64(i):]))
				if math.Float32bits(v) != math.Float32bits(ref) || math.Float32bits(view[i]) != math.Float32bits(ref) {
					t.Fatalf("%s[%d] = %v, want %v", tname, i, v, ref)
				}
			}
		}
		f.Close()
	}
}

// TestRewriteFixtures checks that Write reproduces files written by the reference writer
// byte for byte: each fixture model's shards, and the reference outputs.
func TestRewriteFixtures(t *testing.T) {
	rewrite := func(t *testing.T, pattern string, atLeast int) {
		paths, _ := filepath.Glob(pattern)
		if len(paths) < atLeast {
			t.Errorf("%s: %d files, want at least %d", pattern, len(paths), atLeast)
		}
		for _, path := range paths {
			f, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			var tensors []Tensor
			for _, name := range f.Names() {
				tensor, _ := f.Tensor(name)
				tensors = append(tensors, tensor)
			}
			var buf bytes.Buffer
			if err := Write(&buf, tensors, f.Metadata()); err != nil {
				t.Fatal(err)
			}
			want, _ := os.ReadFile(path)
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("%s: rewritten file differs (%d bytes, want %d)", path, buf.Len(), len(want))
			}
			f.Close()
		}
	}
	for _, model := range fixtureModels {
		t.Run(model, func(t *testing.T) {
			rewrite(t, filepath.Join(fixtures.Model(t, model), "*.safetensors"), 1)
		})
	}
	t.Run("reference", func(t *testing.T) {
		rewrite(t, filepath.Join(fixtures.Path(t, "reference"), "*.safetensors"), 4)
	})
}
