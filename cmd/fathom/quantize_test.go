package main

import (
	"context"
	"math"
	"path/filepath"
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

// TestQuantizeCommand quantizes the bundled model with the quantize command and scores
// tokens with the result: the perplexity is the one of --quantize on the original. Bad
// arguments are usage errors.
func TestQuantizeCommand(t *testing.T) {
	dir := fixtures.Bundled(t)
	_, file := idsFile(t, 65)
	for _, q := range []backend.Quantization{backend.Q8, backend.Q4} {
		dst := filepath.Join(t.TempDir(), "out")
		code, stdout, stderr := runCLI(t, "", "quantize", "--"+string(q), dir, dst)
		if code != 0 || !strings.Contains(stdout, "as "+string(q)) {
			t.Fatalf("%s: exit %d: %s%s", q, code, stdout, stderr)
		}
		var ppl [2]string
		for i, args := range [][]string{{"--model", dst}, {"--model", dir, "--quantize", string(q)}} {
			code, stdout, stderr := runCLI(t, "", append([]string{"perplexity", "--ids-file", file, "--window", "64"}, args...)...)
			if code != 0 {
				t.Fatalf("%s %v: exit %d: %s", q, args, code, stderr)
			}
			ppl[i] = stdout
		}
		if ppl[0] != ppl[1] {
			t.Errorf("%s: perplexity %s of the quantized checkpoint, %s quantizing at load", q, ppl[0], ppl[1])
		}
		if code, _, stderr := runCLI(t, "", "quantize", "--"+string(q), dir, dst); code != 1 || !strings.Contains(stderr, "not empty") {
			t.Errorf("%s into a full directory: exit %d, %q", q, code, stderr)
		}
	}
	for _, args := range [][]string{{dir, "x"}, {"--q8", "--q4", dir, "x"}, {"--q8", dir}, {"--q4", dir, "x", "y"}} {
		if code, _, _ := runCLI(t, "", append([]string{"quantize"}, args...)...); code != 2 {
			t.Errorf("quantize %v: exit %d, want 2", args, code)
		}
	}
}
