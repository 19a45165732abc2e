package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// rawFile returns a safetensors file with the given header text (unpadded) and data length.
func rawFile(header string, dataLen int) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, make([]byte, dataLen)...)
}

func TestMalformed(t *testing.T) {
	withLength := func(n uint64, rest int) []byte {
		return append(binary.LittleEndian.AppendUint64(nil, n), make([]byte, rest)...)
	}
	cases := []struct {
		name   string
		file   []byte
		want   error
		tensor string // the tensor the error must name, if any
	}{
		{"empty file", nil, ErrHeaderTooSmall, ""},
		{"shorter than the length", []byte{1, 0, 0}, ErrHeaderTooSmall, ""},
		{"header too large", withLength(MaxHeaderSize+1, 16), ErrHeaderTooLarge, ""},
		{"header length huge", withLength(1<<63, 16), ErrHeaderTooLarge, ""},
		{"header past the end", withLength(100, 10), ErrHeaderLength, ""},
		{"invalid UTF-8", rawFile("{\"a\xff\":{}}", 0), ErrInvalidUTF8, ""},
		{"empty header", rawFile("", 0), ErrInvalidJSON, ""},
		{"truncated JSON", rawFile(`{"a":{"dtype":"F32",`, 0), ErrInvalidJSON, "a"},
		{"not an object", rawFile(`[]`, 0), ErrInvalidJSON, ""},
		{"leading space", rawFile(` {}`, 0), ErrInvalidJSON, ""},
		{"text after the object", rawFile(`{} {}`, 0), ErrInvalidJSON, ""},
		{"tensor not an object", rawFile(`{"a":1}`, 0), ErrInvalidJSON, "a"},
		{"missing dtype", rawFile(`{"a":{"shape":[],"data_offsets":[0,0]}}`, 0), ErrInvalidJSON, "a"},
		{"missing shape", rawFile(`{"a":{"dtype":"U8","data_offsets":[0,0]}}`, 0), ErrInvalidJSON, "a"},
		{"missing offsets", rawFile(`{"a":{"dtype":"U8","shape":[]}}`, 0), ErrInvalidJSON, "a"},
		{"dtype not a string", rawFile(`{"a":{"dtype":8,"shape":[1],"data_offsets":[0,1]}}`, 1), ErrInvalidJSON, "a"},
		{"lowercase field", rawFile(`{"a":{"DTYPE":"U8","shape":[1],"data_offsets":[0,1]}}`, 1), ErrInvalidJSON, "a"},
		{"duplicate field", rawFile(`{"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 1), ErrInvalidJSON, "a"},
		{"negative dimension", rawFile(`{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}`, 1), ErrInvalidJSON, "a"},
		{"fractional dimension", rawFile(`{"a":{"dtype":"U8","shape":[1.0],"data_offsets":[0,1]}}`, 1), ErrInvalidJSON, "a"},
		{"three offsets", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,1]}}`, 1), ErrInvalidJSON, "a"},
		{"offset beyond uint64", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,18446744073709551616]}}`, 1), ErrInvalidJSON, "a"},
		{"unknown dtype", rawFile(`{"a":{"dtype":"F17","shape":[1],"data_offsets":[0,1]}}`, 1), ErrUnknownDType, "a"},
		{"lowercase dtype", rawFile(`{"a":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}`, 4), ErrUnknownDType, "a"},
		{"metadata value not a string", rawFile(`{"__metadata__":{"k":1}}`, 0), ErrInvalidMetadata, ""},
		{"metadata not an object", rawFile(`{"__metadata__":"k"}`, 0), ErrInvalidMetadata, ""},
		{"metadata nested", rawFile(`{"__metadata__":{"k":{"x":"y"}}}`, 0), ErrInvalidMetadata, ""},
		{"gap at the start", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, 2), ErrInvalidOffsets, "a"},
		{"gap between", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}`, 3), ErrInvalidOffsets, "b"},
		{"overlap", rawFile(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}`, 3), ErrInvalidOffsets, "b"},
		{"backwards", rawFile(`{"a":{"dtype":"U8","shape":[0],"data_offsets":[2,0]}}`, 2), ErrInvalidOffsets, "a"},
		{"past the data", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 4), ErrInvalidOffsets, "a"},
		{"length not shape times size", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, 4), ErrShapeMismatch, "a"},
		{"sub-byte length", rawFile(`{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}`, 2), ErrShapeMismatch, "a"},
		{"element count overflow", rawFile(`{"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,1]}}`, 1), ErrOverflow, "a"},
		{"byte size overflow", rawFile(`{"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,1]}}`, 1), ErrOverflow, "a"},
		{"dimension beyond int", rawFile(`{"a":{"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,1]}}`, 1), ErrOverflow, "a"},
		{"trailing bytes", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 2), ErrTrailingBytes, ""},
		{"trailing bytes, no tensors", rawFile(`{}`, 1), ErrTrailingBytes, ""},
		{"duplicate name", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, 2), ErrDuplicateName, "a"},
		{"duplicate metadata", rawFile(`{"__metadata__":{},"__metadata__":{}}`, 0), ErrDuplicateName, "__metadata__"},
	}
	dir := t.TempDir()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".safetensors")
			if err := os.WriteFile(path, tc.file, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := Open(path)
			if err == nil {
				f.Close()
				t.Fatalf("case %d opened without error", i)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			var fe *FormatError
			if !errors.As(err, &fe) || fe.File != path || fe.Tensor != tc.tensor {
				t.Fatalf("error %#v does not name file %s and tensor %q", err, path, tc.tensor)
			}
			if _, perr := Parse(tc.file); !errors.Is(perr, tc.want) {
				t.Fatalf("Parse: %v, want %v", perr, tc.want)
			}
		})
	}
}

func TestWellFormedEdgeCases(t *testing.T) {
	cases := []struct {
		name  string
		file  []byte
		names []string
	}{
		{"no tensors", rawFile(`{}`, 0), nil},
		{"padded with whitespace", rawFile("{}    \n\t\r ", 0), nil},
		{"null metadata", rawFile(`{"__metadata__":null}`, 0), nil},
		{"scalar", rawFile(`{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}`, 4), []string{"s"}},
		{"empty tensors", rawFile(`{"z2":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]},"z1":{"dtype":"BF16","shape":[0],"data_offsets":[0,0]}}`, 0), []string{"z1", "z2"}},
		{"out of order", rawFile(`{"b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 2), []string{"a", "b"}},
		{"extra field", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"note":{"x":[1,2]}}}`, 1), []string{"a"}},
		{"sub-byte", rawFile(`{"a":{"dtype":"F4","shape":[2,3],"data_offsets":[0,3]}}`, 3), []string{"a"}},
		{"every dtype", rawFile(`{"a":{"dtype":"C64","shape":[1],"data_offsets":[0,8]},"b":{"dtype":"F8_E8M0","shape":[1],"data_offsets":[8,9]}}`, 9), []string{"a", "b"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if got := f.Names(); strings.Join(got, ",") != strings.Join(tc.names, ",") {
				t.Fatalf("names %q, want %q", got, tc.names)
			}
			for _, n := range tc.names {
				tensor, err := f.Tensor(n)
				if err != nil || len(tensor.Data) != tensor.ByteLen() {
					t.Fatalf("%s: %+v, %v", n, tensor, err)
				}
			}
		})
	}
}

func TestFileLookupAndClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.safetensors")
	err := WriteFile(path, []Tensor{{Name: "a", DType: U8, Shape: []int{2}, Data: []byte{1, 2}}}, map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := f.Metadata(); m["k"] != "v" || len(m) != 1 {
		t.Errorf("metadata %v", m)
	}
	if _, err := f.Tensor("b"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing tensor: %v", err)
	}
	a, err := f.Tensor("a")
	if err != nil || string(a.Data) != "\x01\x02" {
		t.Fatalf("a = %v, %v", a, err)
	}
	a.Shape[0] = 99 // the caller's own copy
	if a2, _ := f.Tensor("a"); a2.Shape[0] != 2 {
		t.Errorf("shape shared with the file")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := f.Tensor("a"); !errors.Is(err, ErrClosed) {
		t.Errorf("after close: %v", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// TestOpenReadsOnlyTheHeader opens a sparse 8 GiB file: mapping it must not read its data.
func TestOpenReadsOnlyTheHeader(t *testing.T) {
	if strconv.IntSize < 64 {
		t.Skip("needs a 64-bit address space")
	}
	size := int64(8) << 30
	header := fmt.Sprintf(`{"big":{"dtype":"BF16","shape":[65536,65536],"data_offsets":[0,%d]}}`, size)
	path := filepath.Join(t.TempDir(), "big.safetensors")
	if err := os.WriteFile(path, rawFile(header, 0), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, int64(8+len(header))+size); err != nil {
		t.Skip("no sparse files here:", err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	big, err := f.Tensor("big")
	if err != nil || int64(len(big.Data)) != size || big.Data[size-1] != 0 {
		t.Fatalf("big: %d bytes, %v", len(big.Data), err)
	}
}

func TestConcurrentUse(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, sampleTensors(), nil); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "x.safetensors")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for _, name := range f.Names() {
				if _, err := f.Tensor(name); err != nil && !errors.Is(err, ErrClosed) {
					t.Error(err)
				}
			}
		})
	}
	wg.Go(func() { f.Close() })
	wg.Wait()
}
