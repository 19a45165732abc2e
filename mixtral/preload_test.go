package mixtral

import (
	"context"
	"testing"

	"github.com/fathom-llm/fathom/internal/fixtures"
)

// TestPreload reads in the bundled model's checkpoint with progress up to its size.
func TestPreload(t *testing.T) {
	m, err := Load(context.Background(), fixtures.Model(t, "tiny-code-mixtral"), Options{})
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
