package main

import (
	"testing"

	"github.com/fathom-llm/fathom/internal/fixtures"
)

// TestPreloadFlag generates with and without --preload: the same text.
func TestPreloadFlag(t *testing.T) {
	dir := fixtures.Model(t, "tiny-code-mixtral")
	var out [2]string
	for i, flag := range []string{"--preload", "--preload=false"} {
		code, stdout, stderr := runCLI(t, "", "run", "--model", dir, flag, "--temperature", "0", "--max-tokens", "8", "def add(a, b):")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", flag, code, stderr)
		}
		out[i] = stdout
	}
	if out[0] != out[1] || out[0] == "" {
		t.Errorf("--preload changes the text: %q vs %q", out[0], out[1])
	}
}
