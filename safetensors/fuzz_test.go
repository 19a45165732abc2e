package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/fathom-llm/fathom/internal/fixtures"
)

// FuzzParseHeader parses a file made of the length of header, header, and data. It must never
// panic; what it accepts must satisfy the format's invariants and survive a rewrite.
func FuzzParseHeader(f *testing.F) {
	var buf bytes.Buffer
	if err := Write(&buf, sampleTensors(), map[string]string{"k": "v"}); err != nil {
		f.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(buf.Bytes())
	f.Add(buf.Bytes()[8:8+n], buf.Bytes()[8+n:])
	for _, h := range []string{
		`{}`, `{"__metadata__":{"a":"b"}}`, `{"__metadata__":null}`,
		`{"a":{"dtype":"F4","shape":[2,3],"data_offsets":[0,3]}}`,
		`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`,
		`{"a":{"dtype":"BF16","shape":[0,3],"data_offsets":[0,0]},"b":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}`,
		`{"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,1]}}`,
	} {
		f.Add([]byte(h), make([]byte, 4))
	}
	// The headers of a real checkpoint: the bundled model's shards.
	paths, _ := filepath.Glob(filepath.Join(fixtures.Bundled(f), "*.safetensors"))
	if len(paths) == 0 {
		f.Fatal("no bundled shards")
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		n := binary.LittleEndian.Uint64(b)
		f.Add(b[8:8+n], []byte(nil))
	}
	f.Fuzz(func(t *testing.T, header, data []byte) {
		file := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
		file = append(append(file, header...), data...)
		checkParse(t, file)
		checkParse(t, file[:len(file)/2])
	})
}

func checkParse(t *testing.T, file []byte) {
	f, err := Parse(file)
	if err != nil {
		var fe *FormatError
		if !errors.As(err, &fe) || fe.Err == nil {
			t.Fatalf("error %v is not a *FormatError", err)
		}
		return
	}
	names := f.Names()
	if !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
		t.Fatalf("names %q not sorted and unique", names)
	}
	var tensors []Tensor
	for _, name := range names {
		tensor, err := f.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		if n := tensor.ByteLen(); n != len(tensor.Data) {
			t.Fatalf("%s: %d bytes, ByteLen %d", name, len(tensor.Data), n)
		}
		tensor.Float32s(nil)
		tensors = append(tensors, tensor)
	}
	var buf bytes.Buffer
	if err := Write(&buf, tensors, f.Metadata()); err != nil {
		t.Fatalf("rewrite: %v", err)
	}
	g, err := Parse(buf.Bytes())
	if err != nil {
		t.Fatalf("reparse: %v", err)
	}
	if !slices.Equal(g.Names(), names) || !maps.Equal(g.Metadata(), f.Metadata()) {
		t.Fatalf("rewrite changed names or metadata")
	}
	for _, tensor := range tensors {
		again, _ := g.Tensor(tensor.Name)
		if again.DType != tensor.DType || !slices.Equal(again.Shape, tensor.Shape) || !bytes.Equal(again.Data, tensor.Data) {
			t.Fatalf("%s changed in the rewrite", tensor.Name)
		}
	}
}
