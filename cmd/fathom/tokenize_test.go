package main

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fathom-llm/fathom/internal/fixtures"
)

func TestTokenizeCLI(t *testing.T) {
	dir := fixtures.Bundled(t)
	file := filepath.Join(dir, "tokenizer.json")
	tests := []struct {
		name  string
		args  []string
		stdin string
		want  []int
	}{
		{"tokenizer.json", []string{"--tokenizer", file}, "Hello world", []int{1, 22557, 1526}},
		{"model without BOS", []string{"--model", dir, "--no-bos"}, "Hello world", []int{22557, 1526}},
		{"special tokens allowed", []string{"--model", dir, "--allow-special"}, "<|im_start|>user\nHi<|im_end|>\n", []int{1, 32001, 2188, 13, 23809, 32000, 28705, 13}},
		{"tokenizer.model", []string{"--tokenizer", filepath.Join(dir, "tokenizer.model")}, " Hello", []int{1, 28705, 22557}},
		{"empty", []string{"--tokenizer", file, "--no-bos"}, "", []int{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tc.stdin, append([]string{"tokenize"}, tc.args...)...)
			if code != 0 {
				t.Fatalf("%v: code %d, stderr %q", tc.args, code, stderr)
			}
			var got []int
			if err := json.Unmarshal([]byte(stdout), &got); err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("%v %q: stdout %q, want %v", tc.args, tc.stdin, stdout, tc.want)
			}
		})
	}
	// Without --allow-special the markers are plain text.
	_, stdout, _ := runCLI(t, "<|im_start|>", "tokenize", "--model", dir)
	if strings.Contains(stdout, "32001") {
		t.Errorf("special token matched without --allow-special: %s", stdout)
	}
}

func TestDetokenizeCLI(t *testing.T) {
	dir := fixtures.Bundled(t)
	code, stdout, stderr := runCLI(t, "[1, 32001, 2188, 13, 23809, 32000]\n", "detokenize", "--model", dir)
	if code != 0 || stdout != "<s><|im_start|> user\nHi<|im_end|>" {
		t.Fatalf("code %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	_, stdout, _ = runCLI(t, "[1, 32001, 2188, 13, 23809, 32000]", "detokenize", "--model", dir, "--skip-special")
	if stdout != "user\nHi" {
		t.Fatalf("--skip-special: %q", stdout)
	}
	for _, bad := range []string{"[1, 99999]", "not json", "[1] [2]", `["a"]`} {
		if code, _, stderr := runCLI(t, bad, "detokenize", "--model", dir); code != 1 || stderr == "" {
			t.Errorf("%q: code %d, stderr %q", bad, code, stderr)
		}
	}
}

func TestTokenizeCLIUsage(t *testing.T) {
	file := fixtures.Bundled(t, "tokenizer.json")
	for _, args := range [][]string{
		{"tokenize", "--model", "x", "--tokenizer", file},
		{"tokenize", "--bogus"},
		{"detokenize", "extra"},
	} {
		if code, _, _ := runCLI(t, "", args...); code != 2 {
			t.Errorf("%v: code %d, want 2", args, code)
		}
	}
	if code, _, stderr := runCLI(t, "", "tokenize", "--model", t.TempDir()); code != 1 || !strings.Contains(stderr, "tokenizer") {
		t.Errorf("empty directory: code %d, stderr %q", code, stderr)
	}
}
