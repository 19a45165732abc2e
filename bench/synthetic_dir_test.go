package bench

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/fathom-llm/fathom/mixtral"
)

// TestSyntheticWriteDir writes a small synthetic checkpoint and loads it back: the loaded
// model computes what the in-memory one does.
func TestSyntheticWriteDir(t *testing.T) {
	cfg := Mixtral8x7B(1)
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumAttentionHeads, cfg.NumKeyValueHeads, cfg.HeadDim = 64, 96, 4, 2, 16
	cfg.VocabSize, cfg.EOSTokenIDs = 300, []int{2}
	s, err := NewSynthetic(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dir := t.TempDir()
	if err := s.WriteDir(dir, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "model.safetensors")); err != nil {
		t.Fatal(err)
	}
	loaded, err := mixtral.Load(context.Background(), dir, mixtral.Options{CacheTokens: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer loaded.Close()
	mem, err := mixtral.New(cfg, s, mixtral.Options{CacheTokens: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	ids := []int{1, 7, 42, 299}
	a, err := loaded.Eval(context.Background(), ids, mixtral.EvalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := mem.Eval(context.Background(), ids, mixtral.EvalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range a.Logits[0] {
		if a.Logits[0][i] != b.Logits[0][i] {
			t.Fatalf("logit %d: %g loaded, %g in memory", i, a.Logits[0][i], b.Logits[0][i])
		}
	}
	if loaded.Config().NumHiddenLayers != 1 || loaded.Config().VocabSize != 300 {
		t.Errorf("config %+v", loaded.Config())
	}
}
