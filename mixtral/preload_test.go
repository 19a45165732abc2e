package mixtral

import (
	"context"
	"slices"
	"testing"

	"github.com/fathom-llm/fathom/internal/fixtures"
)

// TestPreload reads in the bundled model's checkpoint with progress up to its size.
func TestPreload(t *testing.T) {
	m, err := Load(context.Background(), fixtures.Bundled(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var last [2]int64
	if err := m.Preload(context.Background(), func(done, total int64) { last = [2]int64{done, total} }); err != nil {
		t.Fatal(err)
	}
	if last[0] != last[1] || last[1] < 10<<20 {
		t.Errorf("progress ended at %d of %d", last[0], last[1])
	}
}

// TestInMemory loads the bundled model read into memory: the logits of the mapped model, bit
// for bit.
func TestInMemory(t *testing.T) {
	dir := fixtures.Bundled(t)
	ids := []int{1, 415, 15052, 721, 262, 9, 77, 3000, 31999, 5}
	var logits [2][][]float32
	for i, inMemory := range []bool{false, true} {
		m, err := Load(context.Background(), dir, Options{InMemory: inMemory})
		if err != nil {
			t.Fatal(err)
		}
		r, err := m.Eval(context.Background(), ids, EvalOptions{AllLogits: true})
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		logits[i] = r.Logits
	}
	for i := range logits[0] {
		if !slices.Equal(logits[0][i], logits[1][i]) {
			t.Fatalf("position %d: the logits of the model in memory differ from the mapped one's", i)
		}
	}
}
