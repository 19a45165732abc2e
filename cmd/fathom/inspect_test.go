package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fathom-llm/fathom/internal/fixtures"
)

func TestInspectModel(t *testing.T) {
	dir := fixtures.Model(t, "tiny-mixtral-bf16")
	code, stdout, stderr := runCLI(t, "", "inspect", dir)
	if code != 0 {
		t.Fatalf("code %d, stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	var embed string
	col := strings.Index(lines[0], "DTYPE")
	for _, l := range lines[1:] {
		if l == "" {
			break
		}
		if !strings.HasPrefix(l[col:], "BF16 ") {
			t.Errorf("DTYPE column not aligned in %q", l)
		}
		if strings.HasPrefix(l, "model.embed_tokens.weight ") {
			embed = l
		}
	}
	if f := strings.Fields(embed); len(f) != 5 || f[1] != "BF16" || f[2]+f[3] != "[32002,64]" || f[4] != "4096256" {
		t.Errorf("embed_tokens line %q", embed)
	}
	// 65 tensors, 9030784 bytes (the index's total_size), 4515392 parameters.
	want := []string{"BF16", "65", "9030784", "4515392"}
	for _, l := range lines[len(lines)-2:] {
		if f := strings.Fields(l); len(f) != 4 || strings.Join(f[1:], " ") != strings.Join(want[1:], " ") {
			t.Errorf("totals line %q, want counts %v", l, want[1:])
		}
	}
	if !strings.HasPrefix(lines[len(lines)-1], "total ") || !strings.HasPrefix(lines[len(lines)-2], "BF16 ") {
		t.Errorf("totals:\n%s", strings.Join(lines[len(lines)-3:], "\n"))
	}
}

func TestInspectFile(t *testing.T) {
	path := filepath.Join(fixtures.Model(t, "tiny-mixtral-swa-f16"), "model.safetensors")
	code, stdout, stderr := runCLI(t, "", "inspect", path)
	if code != 0 || !strings.Contains(stdout, "lm_head.weight") || !strings.Contains(stdout, "\nF16 ") {
		t.Fatalf("code %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestInspectCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.safetensors")
	header := `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(append(b, header...), make([]byte, 12)...) // 4 bytes too many
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"inspect", path}, {"inspect", filepath.Join(t.TempDir(), "missing")}} {
		code, stdout, stderr := runCLI(t, "", args...)
		if code != 1 || stdout != "" || !strings.HasPrefix(stderr, "fathom inspect: ") ||
			strings.Count(stderr, "\n") != 1 || strings.Contains(stderr, "goroutine") {
			t.Errorf("%v: code %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
	if code, _, stderr := runCLI(t, "", "inspect", path); !strings.Contains(stderr, "bytes after the last tensor") {
		t.Errorf("code %d, stderr %q", code, stderr)
	}
	if code, _, _ := runCLI(t, "", "inspect"); code != 2 {
		t.Errorf("no PATH: code %d, want 2", code)
	}
}
