package mixtral

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/backend/cpu"
	"github.com/fathom-llm/fathom/internal/fixtures"
	"github.com/fathom-llm/fathom/internal/reference"
	"github.com/fathom-llm/fathom/safetensors"
)

// binderOnly is a backend that binds pre-quantized weights but cannot quantize: a model
// loaded on it from a quantized checkpoint has quantized nothing.
type binderOnly struct {
	backend.Backend
	backend.QuantizedBinder
}

func newBinderOnly(t *testing.T) binderOnly {
	be := cpu.New(0)
	t.Cleanup(func() { be.Close() })
	return binderOnly{be, be}
}

// TestQuantizedCheckpoint quantizes checkpoints to q8 and q4 (the bundled model, sharded with
// a tokenizer; a bf16 one in the fused expert layout; an f16 one whose rows of 48 do not split
// into groups), loads them on a backend that cannot quantize, and checks that every logit of a
// prompt is the one of the original checkpoint quantized at load, bit for bit.
func TestQuantizedCheckpoint(t *testing.T) {
	ctx := context.Background()
	ids := reference.LoadPerplexity(t, "tiny-code-mixtral").Tokens[:40]
	for _, name := range []string{"tiny-code-mixtral", "tiny-mixtral-bf16 fused", "tiny-mixtral-swa-f16"} {
		t.Run(name, func(t *testing.T) {
			src := fixtures.Model(t, strings.TrimSuffix(name, " fused"))
			if strings.HasSuffix(name, " fused") {
				src = writeFused(t, src)
			}
			cfg, err := LoadConfig(src)
			if err != nil {
				t.Fatal(err)
			}
			ids := slices.Clone(ids)
			for i := range ids {
				ids[i] %= cfg.VocabSize
			}
			for _, q := range []backend.Quantization{backend.Q8, backend.Q4} {
				dst := filepath.Join(t.TempDir(), "out")
				var last [2]int64
				err := Quantize(ctx, src, dst, q, QuantizeOptions{ShardBytes: 1 << 20, Progress: func(done, total int64) { last = [2]int64{done, total} }})
				if err != nil {
					t.Fatal(err)
				}
				if last[0] != last[1] || last[1] == 0 {
					t.Errorf("%s: progress ended at %d of %d", q, last[0], last[1])
				}
				if _, err := os.Stat(filepath.Join(dst, "config.json")); err != nil {
					t.Errorf("%s: config not copied: %v", q, err)
				}
				if _, err := os.Stat(filepath.Join(src, "tokenizer.json")); err == nil {
					if _, err := os.Stat(filepath.Join(dst, "tokenizer.json")); err != nil {
						t.Errorf("%s: tokenizer not copied: %v", q, err)
					}
				}
				want := evalAll(t, src, Options{Quantize: q}, ids)
				got := evalAll(t, dst, Options{Backend: newBinderOnly(t)}, ids)
				for i := range want {
					if !slices.Equal(got[i], want[i]) {
						t.Fatalf("%s: position %d: logits differ from quantizing at load (relative %.3g)", q, i, reference.RelErr(got[i], want[i]))
					}
				}
				if got := evalAll(t, dst, Options{Quantize: q}, ids); !slices.Equal(got[len(ids)-1], want[len(ids)-1]) {
					t.Errorf("%s: loading with Quantize %s changes the logits", q, q)
				}
				other := backend.Q4
				if q == other {
					other = backend.Q8
				}
				if _, err := Load(ctx, dst, Options{Quantize: other}); !errors.Is(err, backend.ErrQuantization) {
					t.Errorf("%s checkpoint loaded as %s: %v", q, other, err)
				}
				if _, err := Load(ctx, dst, Options{Backend: plainBackend{newBinderOnly(t)}}); !errors.Is(err, backend.ErrQuantization) {
					t.Errorf("%s checkpoint on a backend that binds no quantized weights: %v", q, err)
				}
				if err := Quantize(ctx, dst, filepath.Join(t.TempDir(), "again"), q, QuantizeOptions{}); !errors.Is(err, backend.ErrQuantization) {
					t.Errorf("quantizing a quantized checkpoint: %v", err)
				}
			}
		})
	}
}

// writeFused writes the checkpoint in dir in the fused expert layout to a new directory.
func writeFused(t *testing.T, dir string) string {
	cfg, err := LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	fused := fuse(t, readAll(t, dir), cfg)
	out := t.TempDir()
	var tensors []safetensors.Tensor
	for _, n := range fused.Names() {
		tensors = append(tensors, fused[n])
	}
	if err := safetensors.WriteFile(filepath.Join(out, safetensors.SingleFileName), tensors, nil); err != nil {
		t.Fatal(err)
	}
	if err := copyFile(filepath.Join(dir, "config.json"), filepath.Join(out, "config.json")); err != nil {
		t.Fatal(err)
	}
	return out
}

// evalAll loads the checkpoint in dir with opts and returns the logits of every position of
// ids.
func evalAll(t *testing.T, dir string, opts Options, ids []int) [][]float32 {
	t.Helper()
	m, err := Load(context.Background(), dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	r, err := m.Eval(context.Background(), ids, EvalOptions{AllLogits: true})
	if err != nil {
		t.Fatal(err)
	}
	return r.Logits
}

// TestQuantizedCheckpointDamaged loads quantized checkpoints whose metadata is from another
// version of the format or does not describe the tensors, and truncated ones: each is an
// error that names what is wrong.
func TestQuantizedCheckpointDamaged(t *testing.T) {
	ctx := context.Background()
	good := filepath.Join(t.TempDir(), "q4")
	if err := Quantize(ctx, fixtures.Model(t, "tiny-code-mixtral"), good, backend.Q4, QuantizeOptions{ShardBytes: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	shards, _ := filepath.Glob(filepath.Join(good, "model-*.safetensors"))
	if len(shards) < 2 {
		t.Fatalf("%d shards, want several", len(shards))
	}
	const w1 = "model.layers.1.block_sparse_moe.experts.3.w1.weight"
	setMeta := func(key, value string) func(map[string]string, map[string]safetensors.Tensor) {
		return func(meta map[string]string, _ map[string]safetensors.Tensor) {
			if value == "" {
				delete(meta, key)
			} else {
				meta[key] = value
			}
		}
	}
	editTensors := func(f func(map[string]quantizedEntry)) func(map[string]string, map[string]safetensors.Tensor) {
		return func(meta map[string]string, _ map[string]safetensors.Tensor) {
			var entries map[string]quantizedEntry
			if err := json.Unmarshal([]byte(meta[metaTensors]), &entries); err != nil {
				t.Fatal(err)
			}
			f(entries)
			raw, _ := json.Marshal(entries)
			meta[metaTensors] = string(raw)
		}
	}
	cases := []struct {
		name   string
		shards int // how many shards to change, from the first
		edit   func(meta map[string]string, tensors map[string]safetensors.Tensor)
		want   error
		says   string
	}{
		{"another version", -1, setMeta(metaVersion, "2"), ErrQuantizedCheckpoint, `version "2"`},
		{"no version", -1, setMeta(metaVersion, ""), ErrQuantizedCheckpoint, metaVersion},
		{"unknown quantization", -1, setMeta(metaQuant, "q3"), ErrQuantizedCheckpoint, "q3"},
		{"one shard without metadata", 1, func(meta map[string]string, _ map[string]safetensors.Tensor) { clear(meta) }, ErrQuantizedCheckpoint, "different"},
		{"tensors not JSON", -1, setMeta(metaTensors, "{"), ErrQuantizedCheckpoint, metaTensors},
		{"wrong shape", -1, editTensors(func(e map[string]quantizedEntry) {
			w := e[w1]
			w.Shape[1] += backend.QuantGroup
			e[w1] = w
		}), ErrQuantizedCheckpoint, w1},
		{"unaligned panels", -1, editTensors(func(e map[string]quantizedEntry) {
			w := e[w1]
			w.Panel = backend.QuantGroup
			e[w1] = w
		}), ErrQuantizedCheckpoint, w1},
		{"unknown tensor", -1, editTensors(func(e map[string]quantizedEntry) {
			e["no.such.weight"] = quantizedEntry{DType: safetensors.BF16, Shape: [2]int{32, 32}, Panel: 32}
		}), ErrQuantizedCheckpoint, "no.such.weight"},
		{"undescribed tensor", -1, editTensors(func(e map[string]quantizedEntry) { delete(e, w1) }), ErrQuantizedCheckpoint, w1},
		{"a row short", -1, func(_ map[string]string, tensors map[string]safetensors.Tensor) {
			if t, ok := tensors[w1]; ok {
				t.Shape = []int{t.Shape[0] - 1, t.Shape[1]}
				t.Data = t.Data[:len(t.Data)-t.Shape[1]]
				tensors[w1] = t
			}
		}, ErrQuantizedCheckpoint, w1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, good)
			for i, path := range shards {
				if tc.shards >= 0 && i >= tc.shards {
					break
				}
				rewrite(t, filepath.Join(dir, filepath.Base(path)), tc.edit)
			}
			_, err := Load(ctx, dir, Options{})
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("got %v, want %v saying %q", err, tc.want, tc.says)
			}
		})
	}
	t.Run("truncated", func(t *testing.T) {
		dir := copyDir(t, good)
		path := filepath.Join(dir, filepath.Base(shards[0]))
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, st.Size()/2); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(ctx, dir, Options{}); !errors.Is(err, safetensors.ErrInvalidOffsets) {
			t.Errorf("truncated shard: %v", err)
		}
	})
	t.Run("good", func(t *testing.T) {
		m, err := Load(ctx, copyDir(t, good), Options{})
		if err != nil {
			t.Fatal(err)
		}
		m.Close()
	})
}

// rewrite rewrites the safetensors file at path with its metadata and tensors changed by edit.
func rewrite(t *testing.T, path string, edit func(map[string]string, map[string]safetensors.Tensor)) {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	meta := f.Metadata()
	tensors := map[string]safetensors.Tensor{}
	for _, name := range f.Names() {
		tt, _ := f.Tensor(name)
		tt.Data = slices.Clone(tt.Data)
		tensors[name] = tt
	}
	f.Close()
	edit(meta, tensors)
	var list []safetensors.Tensor
	for _, tt := range tensors {
		list = append(list, tt)
	}
	if err := safetensors.WriteFile(path, list, meta); err != nil {
		t.Fatal(err)
	}
}

// copyDir copies the regular files of dir into a new directory.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	out := t.TempDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := copyFile(filepath.Join(dir, e.Name()), filepath.Join(out, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestQuantizeErrors checks the errors of Quantize's arguments.
func TestQuantizeErrors(t *testing.T) {
	ctx := context.Background()
	src := fixtures.Model(t, "tiny-code-mixtral")
	if err := Quantize(ctx, src, t.TempDir(), "q3", QuantizeOptions{}); !errors.Is(err, backend.ErrQuantization) {
		t.Errorf("an unknown quantization: %v", err)
	}
	if err := Quantize(ctx, src, t.TempDir(), backend.AsStored, QuantizeOptions{}); !errors.Is(err, backend.ErrQuantization) {
		t.Errorf("as stored: %v", err)
	}
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Quantize(ctx, src, full, backend.Q8, QuantizeOptions{}); err == nil {
		t.Error("a destination that is not empty was accepted")
	}
	if err := Quantize(ctx, t.TempDir(), filepath.Join(t.TempDir(), "out"), backend.Q8, QuantizeOptions{}); err == nil {
		t.Error("a source without a checkpoint was accepted")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := Quantize(cancelled, src, filepath.Join(t.TempDir(), "out"), backend.Q8, QuantizeOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
