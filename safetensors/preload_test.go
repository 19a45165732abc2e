package safetensors

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"unsafe"
)

// TestPreload reads in a sharded checkpoint with progress, and checks the errors of a
// cancelled context and a closed file.
func TestPreload(t *testing.T) {
	dir := t.TempDir()
	big := Tensor{Name: "big", DType: U8, Shape: []int{3*preloadChunk + 5}, Data: make([]byte, 3*preloadChunk+5)}
	small := Tensor{Name: "small", DType: F32, Shape: []int{2}, Data: make([]byte, 8)}
	if err := WriteDir(dir, [][]Tensor{{big}, {small}}, nil); err != nil {
		t.Fatal(err)
	}
	c, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var size int64
	for _, f := range c.Files() {
		st, err := os.Stat(f.Path())
		if err != nil {
			t.Fatal(err)
		}
		size += st.Size()
	}
	var calls int
	var last [2]int64
	err = c.Preload(context.Background(), func(done, total int64) {
		calls++
		if done < last[0] || total != size {
			t.Errorf("progress %d of %d after %d of %d (file bytes %d)", done, total, last[0], last[1], size)
		}
		last = [2]int64{done, total}
	})
	if err != nil {
		t.Fatal(err)
	}
	if last[0] != size || calls < 4 {
		t.Errorf("progress ended at %d of %d after %d calls; want %d in at least 4", last[0], last[1], calls, size)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Preload(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}

	f, err := Open(filepath.Join(dir, "model-00002-of-00002.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Preload(context.Background(), nil); err != nil {
		t.Error(err)
	}
	f.Close()
	if err := f.Preload(context.Background(), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("a closed file: %v", err)
	}
	raw, err := os.ReadFile(f.Path())
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := parsed.Preload(context.Background(), nil); err != nil {
		t.Errorf("a parsed file: %v", err)
	}
}

// TestOpenInMemory opens a checkpoint read into memory: the same tensors as mapped, the data
// section on a cache line, and the memory released at Close.
func TestOpenInMemory(t *testing.T) {
	dir := t.TempDir()
	odd := Tensor{Name: "a", DType: U8, Shape: []int{3}, Data: []byte{1, 2, 3}} // shifts the rest
	big := Tensor{Name: "b", DType: U8, Shape: []int{2*readChunk + 7}, Data: make([]byte, 2*readChunk+7)}
	for i := range big.Data {
		big.Data[i] = byte(i * 7)
	}
	if err := WriteFileWith(filepath.Join(dir, SingleFileName), []Tensor{big, odd}, map[string]string{"k": "v"}, WriteOptions{InOrder: true}); err != nil {
		t.Fatal(err)
	}
	mapped, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer mapped.Close()
	mem, err := OpenDirWith(dir, OpenOptions{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range mapped.Names() {
		a, _ := mapped.Tensor(name)
		b, err := mem.Tensor(name)
		if err != nil || !bytes.Equal(a.Data, b.Data) || !slices.Equal(a.Shape, b.Shape) {
			t.Errorf("%s: in memory %v %v, mapped %v", name, b.Shape, err, a.Shape)
		}
	}
	if b, _ := mem.Tensor("b"); uintptr(unsafe.Pointer(&b.Data[0]))%64 != 0 {
		t.Errorf("the data section starts at %#x, not on a cache line", uintptr(unsafe.Pointer(&b.Data[0])))
	}
	if err := mem.Preload(context.Background(), nil); err != nil {
		t.Error(err)
	}
	if err := mem.Close(); err != nil {
		t.Error(err)
	}
	if _, err := OpenWith(filepath.Join(dir, "none.safetensors"), OpenOptions{InMemory: true}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
}
