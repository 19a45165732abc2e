package main

import (
	"context"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/internal/fixtures"
	"github.com/fathom-llm/fathom/mixtral"
)

// TestQuantizeFlag scores tokens with --quantize q8 and q4: the perplexity is the one the
// library computes with the same quantization, and an unknown format is a usage error.
func TestQuantizeFlag(t *testing.T) {
	dir := fixtures.Bundled(t)
	ids, file := idsFile(t, 65)
	for _, q := range []backend.Quantization{backend.Q8, backend.Q4} {
		code, stdout, stderr := runCLI(t, "", "perplexity", "--model", dir, "--quantize", string(q), "--ids-file", file, "--window", "64")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", q, code, stderr)
		}
		got, err := strconv.ParseFloat(strings.TrimSpace(stdout), 64)
		if err != nil {
			t.Fatal(err)
		}
		m, err := mixtral.Load(context.Background(), dir, mixtral.Options{Quantize: q})
		if err != nil {
			t.Fatal(err)
		}
		want, err := m.Perplexity(context.Background(), ids, 64)
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(got-want) > 1e-5*want {
			t.Errorf("%s: perplexity %v, want %v", q, got, want)
		}
	}
	for _, cmd := range []string{"perplexity", "run", "serve"} {
		if code, _, stderr := runCLI(t, "", cmd, "--model", dir, "--quantize", "q3"); code != 2 || !strings.Contains(stderr, "q3") {
			t.Errorf("%s --quantize q3: exit %d, %q; want 2", cmd, code, stderr)
		}
	}
}
