package backend_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/fathom-llm/fathom/backend"
)

func newPages(t *testing.T, blockSize, blocks int) *backend.Pages {
	t.Helper()
	p, err := backend.NewPages(backend.CacheConfig{Layers: 1, KVHeads: 1, HeadDim: 1, BlockSize: blockSize, Blocks: blocks})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newSeq(t *testing.T, p *backend.Pages) int {
	t.Helper()
	id, err := p.NewSequence()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestPagesConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    backend.CacheConfig
	}{
		{"zero", backend.CacheConfig{}},
		{"no-block-size", backend.CacheConfig{Layers: 1, KVHeads: 1, HeadDim: 1, BlockSize: 0, Blocks: 1}},
		{"negative-blocks", backend.CacheConfig{Layers: 1, KVHeads: 1, HeadDim: 1, BlockSize: 1, Blocks: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := backend.NewPages(tc.c); !errors.Is(err, backend.ErrShape) {
				t.Errorf("NewPages(%+v) error %v, want ErrShape", tc.c, err)
			}
		})
	}
}

func TestPagesExtend(t *testing.T) {
	p := newPages(t, 2, 3)
	a, b := newSeq(t, p), newSeq(t, p)
	toks := []backend.Token{{Seq: a, Pos: 0}, {Seq: b, Pos: 0}, {Seq: a, Pos: 1}, {Seq: a, Pos: 2}}
	if err := p.Extend(toks, nil); err != nil {
		t.Fatal(err)
	}
	if p.Len(a) != 3 || p.Len(b) != 1 {
		t.Fatalf("lengths %d, %d, want 3, 1", p.Len(a), p.Len(b))
	}
	// Blocks are taken from 0 up, in token order.
	if got := p.Blocks(a); !slices.Equal(got, []int{0, 2}) {
		t.Errorf("blocks of a %v, want [0 2]", got)
	}
	var slots []int
	for _, tok := range toks {
		slots = append(slots, p.Slot(tok))
	}
	if !slices.Equal(slots, []int{0, 2, 1, 4}) {
		t.Errorf("slots %v, want [0 2 1 4]", slots)
	}
	// The pool is empty: a new block fails, a position in a held block does not.
	if err := p.Extend([]backend.Token{{Seq: b, Pos: 1}, {Seq: a, Pos: 3}, {Seq: a, Pos: 4}}, nil); !errors.Is(err, backend.ErrCacheFull) {
		t.Errorf("full cache: %v", err)
	}
	if err := p.Extend([]backend.Token{{Seq: b, Pos: 1}}, nil); err != nil {
		t.Error(err)
	}
	for _, bad := range []struct {
		name string
		toks []backend.Token
	}{
		{"unknown-sequence", []backend.Token{{Seq: 7, Pos: 0}}},
		{"gap", []backend.Token{{Seq: a, Pos: 4}}},
		{"repeated-position", []backend.Token{{Seq: a, Pos: 3}, {Seq: a, Pos: 3}}},
	} {
		t.Run(bad.name, func(t *testing.T) {
			if err := p.Extend(bad.toks, nil); !errors.Is(err, backend.ErrSequence) {
				t.Errorf("Extend(%v): %v, want ErrSequence", bad.toks, err)
			}
		})
	}
	if p.Len(a) != 3 || p.Len(b) != 2 {
		t.Errorf("failed Extends changed lengths to %d, %d", p.Len(a), p.Len(b))
	}
	p.Free(a)
	p.Free(a)
	if p.Len(a) != 0 || p.Blocks(a) != nil {
		t.Error("freed sequence still holds positions")
	}
	c := newSeq(t, p)
	if err := p.Extend([]backend.Token{{Seq: c, Pos: 0}, {Seq: c, Pos: 1}, {Seq: c, Pos: 2}}, nil); err != nil {
		t.Errorf("freed blocks not reused: %v", err)
	}
}

func TestPagesDeviceFailureUndoes(t *testing.T) {
	p := newPages(t, 1, 4)
	a, b := newSeq(t, p), newSeq(t, p)
	if err := p.Extend([]backend.Token{{Seq: a, Pos: 0}}, nil); err != nil {
		t.Fatal(err)
	}
	fail := errors.New("device")
	var seen [][]int
	err := p.Extend([]backend.Token{{Seq: a, Pos: 1}, {Seq: b, Pos: 0}, {Seq: b, Pos: 1}}, func() error {
		seen = [][]int{slices.Clone(p.Blocks(a)), slices.Clone(p.Blocks(b))}
		return fail
	})
	if !errors.Is(err, fail) {
		t.Fatalf("error %v, want the device's", err)
	}
	if !slices.Equal(seen[0], []int{0, 1}) || !slices.Equal(seen[1], []int{2, 3}) {
		t.Errorf("device saw tables %v, want [[0 1] [2 3]]", seen)
	}
	if p.Len(a) != 1 || p.Len(b) != 0 || !slices.Equal(p.Blocks(a), []int{0}) || len(p.Blocks(b)) != 0 {
		t.Errorf("after a failed step: len %d, %d, blocks %v, %v", p.Len(a), p.Len(b), p.Blocks(a), p.Blocks(b))
	}
	// The same blocks are taken again, in the same order.
	if err := p.Extend([]backend.Token{{Seq: a, Pos: 1}, {Seq: b, Pos: 0}, {Seq: b, Pos: 1}}, nil); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Blocks(a), []int{0, 1}) || !slices.Equal(p.Blocks(b), []int{2, 3}) {
		t.Errorf("tables %v, %v, want [0 1], [2 3]", p.Blocks(a), p.Blocks(b))
	}
}

func TestPagesClose(t *testing.T) {
	p := newPages(t, 4, 2)
	a := newSeq(t, p)
	if err := p.Extend([]backend.Token{{Seq: a, Pos: 0}}, nil); err != nil {
		t.Fatal(err)
	}
	released := 0
	for range 2 {
		if err := p.Close(func() { released++ }); err != nil {
			t.Fatal(err)
		}
	}
	if released != 1 || !p.Closed() {
		t.Errorf("released %d times, Closed() = %v", released, p.Closed())
	}
	if p.Len(a) != 0 {
		t.Errorf("Len after Close = %d", p.Len(a))
	}
	p.Free(a)
	if _, err := p.NewSequence(); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("NewSequence after Close: %v", err)
	}
	if err := p.Extend([]backend.Token{{Seq: a, Pos: 1}}, nil); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("Extend after Close: %v", err)
	}
}

func ExamplePages() {
	p, err := backend.NewPages(backend.CacheConfig{Layers: 1, KVHeads: 1, HeadDim: 64, BlockSize: 16, Blocks: 8})
	if err != nil {
		fmt.Println(err)
		return
	}
	seq, err := p.NewSequence()
	if err != nil {
		fmt.Println(err)
		return
	}
	prompt := make([]backend.Token, 20)
	for i := range prompt {
		prompt[i] = backend.Token{Seq: seq, Pos: i}
	}
	if err := p.Extend(prompt, nil); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(p.Len(seq), p.Blocks(seq), p.Slot(prompt[17]))
	err = p.Extend([]backend.Token{{Seq: seq, Pos: 30}}, nil)
	fmt.Println(errors.Is(err, backend.ErrSequence))
	// Output:
	// 20 [0 1] 17
	// true
}
