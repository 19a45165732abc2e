package main

import (
	"context"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/fathom-llm/fathom/backend/cpu"
	"github.com/fathom-llm/fathom/internal/fixtures"
	"github.com/fathom-llm/fathom/mixtral"
)

// TestPreloadFlag generates with --preload and with --in-memory: the same text.
func TestPreloadFlag(t *testing.T) {
	dir := fixtures.Bundled(t)
	var out [2]string
	for i, flag := range []string{"--preload", "--in-memory"} {
		code, stdout, stderr := runCLI(t, "", "run", "--model", dir, flag, "--temperature", "0", "--max-tokens", "8", "def add(a, b):")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", flag, code, stderr)
		}
		out[i] = stdout
	}
	if out[0] != out[1] || out[0] == "" {
		t.Errorf("--in-memory changes the text: %q vs %q", out[1], out[0])
	}
}

// TestBF16ActivationsFlag scores tokens with --bf16-activations: the perplexity of the
// library on a CPU backend with bfloat16 activations, a little off the exact one.
func TestBF16ActivationsFlag(t *testing.T) {
	dir := fixtures.Bundled(t)
	ids, file := idsFile(t, 129)
	var ppl [2]float64
	for i, flags := range [][]string{nil, {"--bf16-activations"}} {
		code, stdout, stderr := runCLI(t, "", append([]string{"perplexity", "--model", dir, "--ids-file", file, "--window", "128"}, flags...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", flags, code, stderr)
		}
		var err error
		if ppl[i], err = strconv.ParseFloat(strings.TrimSpace(stdout), 64); err != nil {
			t.Fatal(err)
		}
	}
	be := cpu.NewWithOptions(cpu.Options{BF16Activations: true})
	defer be.Close()
	m, err := mixtral.Load(context.Background(), dir, mixtral.Options{Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	want, err := m.Perplexity(context.Background(), ids, 128)
	m.Close()
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(ppl[1]-want) > 1e-5*want {
		t.Errorf("--bf16-activations: perplexity %v, want %v", ppl[1], want)
	}
	if d := math.Abs(ppl[1]-ppl[0]) / ppl[0]; d == 0 || d > 0.01 {
		t.Errorf("--bf16-activations moves the perplexity from %v to %v", ppl[0], ppl[1])
	}
}
