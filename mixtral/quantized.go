package mixtral

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/backend/cpu"
	"github.com/fathom-llm/fathom/safetensors"
)

// A quantized checkpoint is a checkpoint directory whose expert and attention weights are
// stored in one of fathom's quantized formats (see backend.QuantizedWeight), written by
// Quantize, which Load binds without quantizing: each such weight is a U8 tensor of shape
// [rows, row bytes] under its usual name, and every safetensors file records in its metadata
// the format's version, the quantization and, for each quantized tensor, the element type it
// was quantized from, its shape and its column panels. The other tensors, the config and
// the tokenizer are as in the original checkpoint.

// QuantizedFormatVersion is the version of the quantized checkpoint format that this package
// writes and reads. It changes whenever the layout of the data changes.
const QuantizedFormatVersion = 1

// Metadata keys of a quantized checkpoint's files.
const (
	metaVersion = "fathom.quantized.version" // QuantizedFormatVersion
	metaQuant   = "fathom.quantization"      // "q8" or "q4"
	metaTensors = "fathom.quantized.tensors" // JSON: name → quantizedEntry
)

// quantizedEntry describes one quantized tensor in the metadata.
type quantizedEntry struct {
	DType safetensors.DType `json:"dtype"`
	Shape [2]int            `json:"shape"`
	Panel int               `json:"panel"`
}

// ErrQuantizedCheckpoint reports a quantized checkpoint that this version cannot load: one
// written in another version of the format, or a damaged one, whose metadata does not
// describe its tensors.
var ErrQuantizedCheckpoint = errors.New("mixtral: unusable quantized checkpoint")

// QuantizeOptions configure Quantize.
type QuantizeOptions struct {
	// Progress, when set, is called as tensors are written with the bytes of the original
	// checkpoint done so far and the total.
	Progress func(done, total int64)
	// ShardBytes is the most bytes of tensor data one file of the output holds (a tensor
	// larger than that takes a file of its own); 0 means DefaultShardBytes.
	ShardBytes int64
}

// DefaultShardBytes is the default size of the files Quantize writes.
const DefaultShardBytes = 4 << 30

// Quantize writes the checkpoint in the directory src to the directory dst stored as q (Q8 or
// Q4), as Load with Options.Quantize would store it on this machine's CPU backend: the expert
// weights and attention projections quantized, the other tensors as stored, the experts
// under the original Mixtral names whatever the layout of src. The other files of src
// (config, generation config, tokenizer) are copied. dst must be empty or not exist. Load
// binds the result without quantizing, with the same outputs as quantizing src at load.
// Cancelling ctx stops the writing between tensors and leaves dst incomplete.
func Quantize(ctx context.Context, src, dst string, q backend.Quantization, opts QuantizeOptions) error {
	if q != backend.Q8 && q != backend.Q4 {
		return fmt.Errorf("mixtral: Quantize: %w: %q (want q8 or q4)", backend.ErrQuantization, string(q))
	}
	if entries, err := os.ReadDir(dst); err == nil && len(entries) > 0 {
		return fmt.Errorf("mixtral: Quantize: %s is not empty", dst)
	}
	cfg, err := LoadConfig(src)
	if err != nil {
		return err
	}
	ckpt, err := safetensors.OpenDir(src)
	if err != nil {
		return err
	}
	defer ckpt.Close()
	if pre, err := readQuantized(ckpt); err != nil {
		return err
	} else if pre != nil {
		return fmt.Errorf("mixtral: Quantize: %w: %s is stored as %s already", backend.ErrQuantization, src, pre.q)
	}
	// Let bindWeights check the checkpoint and choose what to quantize, recording the
	// tensors instead of binding them.
	rec := &bindRecorder{}
	if _, err := bindWeights(ctx, ckpt, cfg, rec, q, nil); err != nil {
		return err
	}

	be := cpu.New(0)
	defer be.Close()
	limit := opts.ShardBytes
	if limit <= 0 {
		limit = DefaultShardBytes
	}
	meta := map[string]string{metaVersion: strconv.Itoa(QuantizedFormatVersion), metaQuant: string(q)}
	if m := ckpt.Files()[0].Metadata(); m["format"] != "" {
		meta["format"] = m["format"]
	}
	entries := map[string]quantizedEntry{}
	var shards [][]safetensors.Tensor
	var size, total int64
	source := map[string]boundTensor{}
	for _, r := range rec.tensors {
		out := r.t
		out.Name, out.Data = r.name, nil
		if r.quantize {
			entries[r.name] = quantizedEntry{DType: r.t.DType, Shape: [2]int{r.t.Shape[0], r.t.Shape[1]},
				Panel: be.QuantizedPanel(r.t.Shape[0], r.t.Shape[1])}
			out.DType, out.Shape = safetensors.U8, []int{r.t.Shape[0], backend.QuantizedRowBytes(q, r.t.Shape[1])}
		}
		n := int64(out.ByteLen())
		if len(shards) == 0 || size > 0 && size+n > limit {
			shards, size = append(shards, nil), 0
		}
		shards[len(shards)-1] = append(shards[len(shards)-1], out)
		size += n
		total += int64(len(r.t.Data))
		source[r.name] = r
	}
	raw, err := json.Marshal(entries)
	if err != nil {
		return err
	}
	meta[metaTensors] = string(raw)
	// Quantized tensors first, so that their data is aligned to cache lines; then the rest
	// by decreasing element width, which keeps them aligned to their element size.
	for _, s := range shards {
		slices.SortStableFunc(s, func(a, b safetensors.Tensor) int {
			return rank(b) - rank(a)
		})
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	var done int64
	write := safetensors.WriteOptions{Align: 64, InOrder: true, Data: func(t safetensors.Tensor) ([]byte, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r := source[t.Name]
		data := r.t.Data
		if r.quantize {
			qw, err := be.QuantizeWeight(r.t, q)
			if err != nil {
				return nil, err
			}
			data = qw.Data
		}
		done += int64(len(r.t.Data))
		if opts.Progress != nil {
			opts.Progress(done, total)
		}
		return data, nil
	}}
	if err := copyFiles(src, dst); err != nil {
		return err
	}
	return safetensors.WriteDirWith(dst, shards, meta, write)
}

// rank orders the tensors of a quantized file: quantized ones first, then by element width.
func rank(t safetensors.Tensor) int {
	if t.DType == safetensors.U8 {
		return 1 << 10
	}
	return t.DType.Bits()
}

// copyFiles copies the regular files of src other than safetensors weights and their index
// into dst.
func copyFiles(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || strings.HasSuffix(name, ".safetensors") || name == safetensors.IndexFileName {
			continue
		}
		if err := copyFile(filepath.Join(src, name), filepath.Join(dst, name)); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// boundTensor is a tensor that bindWeights bound, under the name a quantized checkpoint stores
// it by, and whether it is stored quantized.
type boundTensor struct {
	name     string
	t        safetensors.Tensor
	quantize bool
}

// bindRecorder is a backend that records the tensors it is asked to bind instead of binding
// them; any other operation is an error.
type bindRecorder struct {
	backend.Backend // nil: only the methods below are called
	tensors         []boundTensor
	layers          int
}

func (r *bindRecorder) Name() string { return "quantize" }

func (r *bindRecorder) Bind(t safetensors.Tensor) (backend.Weight, error) {
	return r.record(t.Name, t, false), nil
}

func (r *bindRecorder) BindQuantized(t safetensors.Tensor, q backend.Quantization) (backend.Weight, error) {
	return r.record(t.Name, t, q != backend.AsStored), nil
}

func (r *bindRecorder) BindExperts(e backend.ExpertTensors) (backend.Experts, error) {
	return r.BindExpertsQuantized(e, backend.AsStored)
}

// BindExpertsQuantized records the router and the experts under the original Mixtral names.
func (r *bindRecorder) BindExpertsQuantized(e backend.ExpertTensors, q backend.Quantization) (backend.Experts, error) {
	pre := fmt.Sprintf("model.layers.%d.block_sparse_moe.", r.layers)
	r.layers++
	r.record(pre+"gate.weight", e.Gate, false)
	for x := range e.W1 {
		for _, w := range []struct {
			name string
			t    safetensors.Tensor
		}{{"w1", e.W1[x]}, {"w2", e.W2[x]}, {"w3", e.W3[x]}} {
			r.record(fmt.Sprintf("%sexperts.%d.%s.weight", pre, x, w.name), w.t, q != backend.AsStored)
		}
	}
	return nil, nil
}

// record notes t under name, quantized when asked and its rows split into groups, as the
// CPU backend's BindQuantized stores it.
func (r *bindRecorder) record(name string, t safetensors.Tensor, quantize bool) backend.Weight {
	quantize = quantize && len(t.Shape) == 2 && t.Shape[1]%backend.QuantGroup == 0
	r.tensors = append(r.tensors, boundTensor{name: name, t: t, quantize: quantize})
	return nil
}

// prequantized is a quantized checkpoint: a Source whose quantized tensors appear with the
// shape and element type they were quantized from (so that the checks of the unquantized
// layout apply) and their quantized data, which bindAs and bindExpertsAs bind as they are.
type prequantized struct {
	safetensors.Source
	q       backend.Quantization
	weights map[string]backend.QuantizedWeight
}

// Tensor returns the named tensor, a quantized one with its original shape and type.
func (p *prequantized) Tensor(name string) (safetensors.Tensor, error) {
	if w, ok := p.weights[name]; ok {
		return safetensors.Tensor{Name: name, DType: w.DType, Shape: []int{w.Rows, w.Cols}, Data: w.Data}, nil
	}
	return p.Source.Tensor(name)
}

// readQuantized returns src as a prequantized source when its files say that it is a
// quantized checkpoint, nil when they say nothing of it, and an error wrapping
// ErrQuantizedCheckpoint when they describe it in another version or wrongly.
func readQuantized(src safetensors.Source) (*prequantized, error) {
	var metas []map[string]string
	var paths []string
	switch s := src.(type) {
	case interface{ Files() []*safetensors.File }:
		for _, f := range s.Files() {
			metas, paths = append(metas, f.Metadata()), append(paths, f.Path())
		}
	case interface{ Metadata() map[string]string }:
		metas, paths = append(metas, s.Metadata()), append(paths, "")
	}
	fathom := func(m map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			if strings.HasPrefix(k, "fathom.") {
				out[k] = v
			}
		}
		return out
	}
	var first map[string]string
	for i, m := range metas {
		f := fathom(m)
		if i == 0 {
			first = f
			continue
		}
		if !maps.Equal(f, first) {
			return nil, fmt.Errorf("%w: %s and %s have different quantization metadata", ErrQuantizedCheckpoint, paths[0], paths[i])
		}
	}
	if len(first) == 0 {
		return nil, nil
	}
	fail := func(format string, args ...any) (*prequantized, error) {
		return nil, fmt.Errorf("%w: %s", ErrQuantizedCheckpoint, fmt.Sprintf(format, args...))
	}
	if v := first[metaVersion]; v != strconv.Itoa(QuantizedFormatVersion) {
		if v == "" {
			return fail("no %s in the metadata", metaVersion)
		}
		return fail("written in version %q of the quantized format; this build reads version %d (quantize the original checkpoint again)", v, QuantizedFormatVersion)
	}
	p := &prequantized{Source: src, q: backend.Quantization(first[metaQuant]), weights: map[string]backend.QuantizedWeight{}}
	if p.q != backend.Q8 && p.q != backend.Q4 {
		return fail("quantization %q", string(p.q))
	}
	var entries map[string]quantizedEntry
	if err := json.Unmarshal([]byte(first[metaTensors]), &entries); err != nil {
		return fail("%s: %v", metaTensors, err)
	}
	for _, name := range slices.Sorted(maps.Keys(entries)) {
		e := entries[name]
		t, err := src.Tensor(name)
		if err != nil {
			return fail("%v", err)
		}
		w := backend.QuantizedWeight{Name: name, Quant: p.q, DType: e.DType, Rows: e.Shape[0], Cols: e.Shape[1], Panel: e.Panel, Data: t.Data}
		if err := w.Check(); err != nil {
			return fail("%v", err)
		}
		if want := []int{w.Rows, backend.QuantizedRowBytes(p.q, w.Cols)}; t.DType != safetensors.U8 || !slices.Equal(t.Shape, want) {
			return fail("tensor %q is %s %v, want U8 %v", name, t.DType, t.Shape, want)
		}
		p.weights[name] = w
	}
	for _, name := range src.Names() {
		if t, err := src.Tensor(name); err == nil && t.DType == safetensors.U8 && entries[name] == (quantizedEntry{}) {
			return fail("tensor %q is U8 but not described in %s", name, metaTensors)
		}
	}
	return p, nil
}

// bindAs binds t stored as q: a tensor of a quantized checkpoint as it is stored, any other
// by backend.BindAs.
func (p *prequantized) bindAs(be backend.Backend, t safetensors.Tensor, q backend.Quantization) (backend.Weight, error) {
	if p == nil {
		return backend.BindAs(be, t, q)
	}
	if w, ok := p.weights[t.Name]; ok {
		return be.(backend.QuantizedBinder).BindQuantizedWeight(w)
	}
	return be.Bind(t)
}

// bindExpertsAs is bindAs for a mixture-of-experts block.
func (p *prequantized) bindExpertsAs(be backend.Backend, e backend.ExpertTensors, q backend.Quantization) (backend.Experts, error) {
	if p == nil {
		return backend.BindExpertsAs(be, e, q)
	}
	var w [3][]backend.QuantizedWeight
	for i, ts := range [][]safetensors.Tensor{e.W1, e.W2, e.W3} {
		for _, t := range ts {
			qw, ok := p.weights[t.Name]
			if !ok {
				qw = backend.QuantizedWeight{Name: t.Name, Quant: backend.AsStored, DType: t.DType, Data: t.Data}
				if len(t.Shape) == 2 {
					qw.Rows, qw.Cols, qw.Panel = t.Shape[0], t.Shape[1], t.Shape[1]
				}
			}
			w[i] = append(w[i], qw)
		}
	}
	return be.(backend.QuantizedBinder).BindQuantizedExperts(e.Gate, w[0], w[1], w[2])
}

// check checks that be can bind the quantized checkpoint p (nil: not one) for a
// model that asked for q, and returns the quantization of the weights bound.
func (p *prequantized) check(be backend.Backend, q backend.Quantization) (backend.Quantization, error) {
	if p == nil {
		return q, nil
	}
	if q != backend.AsStored && q != p.q {
		return q, fmt.Errorf("%w: the checkpoint is stored as %s; it cannot be loaded as %s", backend.ErrQuantization, p.q, q)
	}
	if _, ok := be.(backend.QuantizedBinder); !ok {
		return q, fmt.Errorf("%w: the %s backend cannot bind weights stored as %s", backend.ErrQuantization, be.Name(), p.q)
	}
	return p.q, nil
}
