package safetensors

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"unsafe"
)

func sampleTensors() []Tensor {
	return []Tensor{
		{Name: "z.bf16", DType: BF16, Shape: []int{3}, Data: []byte{1, 2, 3, 4, 5, 6}},
		{Name: "a.u8", DType: U8, Shape: []int{5}, Data: []byte{7, 8, 9, 10, 11}},
		{Name: "m.f64", DType: F64, Shape: []int{1, 1}, Data: []byte{1, 2, 3, 4, 5, 6, 7, 8}},
		{Name: "s.f32", DType: F32, Shape: []int{}, Data: []byte{0, 0, 0x80, 0x3f}},
		{Name: "e.i32", DType: I32, Shape: []int{0, 4}, Data: nil},
		{Name: "q.f4", DType: F4, Shape: []int{2}, Data: []byte{0x21}},
		{Name: `we"ird<&>名`, DType: I16, Shape: []int{1}, Data: []byte{1, 2}},
	}
}

func TestWriteRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	meta := map[string]string{"format": "pt", "note": "héllo \"x\""}
	if err := Write(&buf, sampleTensors(), meta); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	n := binary.LittleEndian.Uint64(b)
	if n%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", n)
	}
	if pad := bytes.TrimRight(b[8:8+n], " "); pad[len(pad)-1] != '}' {
		t.Errorf("header not padded with spaces: %q", b[8:8+n])
	}
	f, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Metadata(); got["format"] != "pt" || got["note"] != meta["note"] || len(got) != 2 {
		t.Errorf("metadata %v", got)
	}
	for i, want := range sampleTensors() {
		got, err := f.Tensor(want.Name)
		if err != nil {
			t.Fatal(err)
		}
		if got.DType != want.DType || !slices.Equal(got.Shape, want.Shape) || !bytes.Equal(got.Data, want.Data) {
			t.Errorf("%d: got %+v, want %+v", i, got, want)
		}
		if s := want.DType.Size(); s > 0 && len(got.Data) > 0 && (8+int(n)+offsetOf(b, got.Data))%s != 0 {
			t.Errorf("%s is not aligned to %d bytes", want.Name, s)
		}
	}
	// Data is laid out by decreasing element width, then by name.
	order := slices.DeleteFunc(f.Names(), func(n string) bool { return n == "e.i32" }) // empty: no place
	slices.SortStableFunc(order, func(x, y string) int {
		tx, _ := f.Tensor(x)
		ty, _ := f.Tensor(y)
		return cmp.Compare(offsetOf(b, tx.Data), offsetOf(b, ty.Data))
	})
	want := []string{"m.f64", "s.f32", "z.bf16", `we"ird<&>名`, "a.u8", "q.f4"}
	if !slices.Equal(order, want) {
		t.Errorf("data order %q, want %q", order, want)
	}
}

// offsetOf returns the offset of sub within b.
func offsetOf(b, sub []byte) int {
	return int(uintptr(unsafe.Pointer(unsafe.SliceData(sub))) - uintptr(unsafe.Pointer(&b[0])))
}

func TestWriteRejects(t *testing.T) {
	cases := []struct {
		name    string
		tensors []Tensor
		want    error
	}{
		{"duplicate", []Tensor{{Name: "a", DType: U8, Shape: []int{1}, Data: []byte{1}}, {Name: "a", DType: F32, Shape: []int{}, Data: make([]byte, 4)}}, ErrDuplicateName},
		{"metadata name", []Tensor{{Name: "__metadata__", DType: U8, Shape: []int{1}, Data: []byte{1}}}, ErrDuplicateName},
		{"short data", []Tensor{{Name: "a", DType: F32, Shape: []int{2}, Data: make([]byte, 4)}}, ErrShapeMismatch},
		{"unknown dtype", []Tensor{{Name: "a", DType: "F12", Shape: []int{1}, Data: []byte{1}}}, ErrUnknownDType},
		{"negative dimension", []Tensor{{Name: "a", DType: U8, Shape: []int{-1}}}, ErrOverflow},
		{"half a byte", []Tensor{{Name: "a", DType: F4, Shape: []int{1}, Data: []byte{1}}}, ErrShapeMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := Write(&bytes.Buffer{}, tc.tensors, nil); !errors.Is(err, tc.want) {
				t.Errorf("%v, want %v", err, tc.want)
			}
		})
	}
	path := filepath.Join(t.TempDir(), "bad.safetensors")
	if err := WriteFile(path, cases[0].tensors, nil); !errors.Is(err, ErrDuplicateName) {
		t.Errorf("WriteFile: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 0 {
		t.Errorf("WriteFile left %v behind", entries)
	}
}

func TestWriteDirSharded(t *testing.T) {
	dir := t.TempDir()
	all := sampleTensors()
	shards := [][]Tensor{all[:3], all[3:5], all[5:]}
	if err := WriteDir(dir, shards, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	c, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var names []string
	for _, tensor := range all {
		names = append(names, tensor.Name)
		got, err := c.Tensor(tensor.Name)
		if err != nil || !bytes.Equal(got.Data, tensor.Data) {
			t.Errorf("%s: %v, %v", tensor.Name, got, err)
		}
	}
	slices.Sort(names)
	if !slices.Equal(c.Names(), names) {
		t.Errorf("names %q, want %q", c.Names(), names)
	}
	if len(c.Files()) != 3 || c.Files()[0].Metadata()["format"] != "pt" {
		t.Errorf("files %v", c.Files())
	}
	if _, err := c.Tensor("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Tensor(all[0].Name); !errors.Is(err, ErrClosed) {
		t.Errorf("after close: %v", err)
	}
}

func TestOpenDirSingle(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenDir(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("empty dir: %v", err)
	}
	if err := WriteDir(dir, [][]Tensor{sampleTensors()}, nil); err != nil {
		t.Fatal(err)
	}
	c, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if len(c.Names()) != len(sampleTensors()) || len(c.Files()) != 1 || c.Files()[0].Metadata() != nil {
		t.Errorf("names %q, files %d", c.Names(), len(c.Files()))
	}
}

func TestOpenDirIndexErrors(t *testing.T) {
	u8 := func(name string) Tensor { return Tensor{Name: name, DType: U8, Shape: []int{1}, Data: []byte{1}} }
	cases := []struct {
		name   string
		shards map[string][]Tensor // file → tensors
		index  string
		want   error
		tensor string
	}{
		{"missing shard", map[string][]Tensor{"a.safetensors": {u8("x")}},
			`{"weight_map":{"x":"a.safetensors","y":"b.safetensors"}}`, ErrMissingShard, "y"},
		{"shard outside the directory", map[string][]Tensor{"a.safetensors": {u8("x")}},
			`{"weight_map":{"x":"../a.safetensors"}}`, ErrMissingShard, "x"},
		{"tensor absent from its shard", map[string][]Tensor{"a.safetensors": {u8("x")}, "b.safetensors": {u8("y")}},
			`{"weight_map":{"x":"a.safetensors","y":"b.safetensors","z":"b.safetensors"}}`, ErrMisplacedTensor, "z"},
		{"tensor in another shard", map[string][]Tensor{"a.safetensors": {u8("x"), u8("y")}, "b.safetensors": {u8("w")}},
			`{"weight_map":{"x":"a.safetensors","y":"b.safetensors","w":"b.safetensors"}}`, ErrMisplacedTensor, "y"},
		{"tensor not in the index", map[string][]Tensor{"a.safetensors": {u8("x"), u8("extra")}},
			`{"weight_map":{"x":"a.safetensors"}}`, ErrMisplacedTensor, "extra"},
		{"tensor in two shards", map[string][]Tensor{"a.safetensors": {u8("x")}, "b.safetensors": {u8("x"), u8("y")}},
			`{"weight_map":{"x":"a.safetensors","y":"b.safetensors"}}`, ErrDuplicateName, "x"},
		{"index not JSON", map[string][]Tensor{"a.safetensors": {u8("x")}}, `{"weight_map":`, ErrInvalidJSON, ""},
		{"index without weight_map", map[string][]Tensor{"a.safetensors": {u8("x")}}, `{"metadata":{}}`, ErrInvalidJSON, ""},
		{"weight_map of numbers", map[string][]Tensor{"a.safetensors": {u8("x")}}, `{"weight_map":{"x":1}}`, ErrInvalidJSON, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for file, tensors := range tc.shards {
				if err := WriteFile(filepath.Join(dir, file), tensors, nil); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(dir, IndexFileName), []byte(tc.index), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := OpenDir(dir)
			if err == nil {
				c.Close()
				t.Fatal("opened without error")
			}
			var fe *FormatError
			if !errors.Is(err, tc.want) || !errors.As(err, &fe) || fe.Tensor != tc.tensor || fe.File == "" {
				t.Fatalf("error %v, want %v naming tensor %q", err, tc.want, tc.tensor)
			}
		})
	}
	// A corrupt shard reports its own error and file.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.safetensors"), rawFile(`{}`, 3), 0o644)
	os.WriteFile(filepath.Join(dir, IndexFileName), []byte(`{"weight_map":{"x":"a.safetensors"}}`), 0o644)
	var fe *FormatError
	if _, err := OpenDir(dir); !errors.Is(err, ErrTrailingBytes) || !errors.As(err, &fe) || fe.File != filepath.Join(dir, "a.safetensors") {
		t.Errorf("corrupt shard: %v", err)
	}
}

// TestWriteWith writes the sample tensors in the given order, their data produced as the file
// is written, with the data aligned to 64 bytes, and reads them back.
func TestWriteWith(t *testing.T) {
	tensors := sampleTensors()
	var calls []string
	o := WriteOptions{Align: 64, InOrder: true, Data: func(t Tensor) ([]byte, error) {
		calls = append(calls, t.Name)
		for _, s := range sampleTensors() {
			if s.Name == t.Name {
				return s.Data, nil
			}
		}
		return nil, errors.New("unknown tensor")
	}}
	header := slices.Clone(tensors)
	for i := range header {
		header[i].Data = nil
	}
	var buf bytes.Buffer
	if err := WriteWith(&buf, header, map[string]string{"k": "v"}, o); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if n := binary.LittleEndian.Uint64(b); (8+n)%64 != 0 {
		t.Errorf("data starts at %d, not a multiple of 64", 8+n)
	}
	var want []string
	for _, s := range tensors {
		want = append(want, s.Name)
	}
	if !slices.Equal(calls, want) {
		t.Errorf("data asked for in the order %q, want %q", calls, want)
	}
	f, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	prev := -1
	for _, s := range tensors {
		got, err := f.Tensor(s.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Data, s.Data) {
			t.Errorf("%s: data %v, want %v", s.Name, got.Data, s.Data)
		}
		if len(got.Data) > 0 {
			if off := offsetOf(b, got.Data); off < prev {
				t.Errorf("%s at %d, before the tensor given before it (%d)", s.Name, off, prev)
			} else {
				prev = off
			}
		}
	}

	short := o
	short.Data = func(Tensor) ([]byte, error) { return []byte{1}, nil }
	if err := WriteWith(&bytes.Buffer{}, header, nil, short); !errors.Is(err, ErrShapeMismatch) {
		t.Errorf("data of the wrong length: %v", err)
	}
	failing := o
	boom := errors.New("boom")
	failing.Data = func(Tensor) ([]byte, error) { return nil, boom }
	path := filepath.Join(t.TempDir(), "x.safetensors")
	if err := WriteFileWith(path, header, nil, failing); !errors.Is(err, boom) {
		t.Errorf("data that fails: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed write left %s: %v", path, err)
	}
	if err := WriteWith(&bytes.Buffer{}, tensors, nil, WriteOptions{Align: 12}); err == nil {
		t.Error("an alignment that is no multiple of 8 was accepted")
	}
}
