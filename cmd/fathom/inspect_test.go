package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fathom-llm/fathom/internal/fixtures"
)

func TestInspectModel(t *testing.T) {
	dir := fixtures.Bundled(t)
	raw, err := os.ReadFile(filepath.Join(dir, "model.safetensors.index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var index struct {
		Metadata struct {
			TotalSize int `json:"total_size"`
		} `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &index); err != nil {
		t.Fatal(err)
	}
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
	// vocabulary 32002, hidden 128: 4096256 parameters of two bytes.
	if f := strings.Fields(embed); len(f) != 5 || f[1] != "BF16" || f[2]+f[3] != "[32002,128]" || f[4] != "8192512" {
		t.Errorf("embed_tokens line %q", embed)
	}
	// The tensors of the index, its total_size in bytes, and half as many parameters.
	size := index.Metadata.TotalSize
	want := fmt.Sprint(len(index.WeightMap), size, size/2)
	for _, l := range lines[len(lines)-2:] {
		if f := strings.Fields(l); len(f) != 4 || strings.Join(f[1:], " ") != want {
			t.Errorf("totals line %q, want counts %v", l, want)
		}
	}
	if !strings.HasPrefix(lines[len(lines)-1], "total ") || !strings.HasPrefix(lines[len(lines)-2], "BF16 ") {
		t.Errorf("totals:\n%s", strings.Join(lines[len(lines)-3:], "\n"))
	}
}

func TestInspectFile(t *testing.T) {
	path := fixtures.Bundled(t, "model-00002-of-00002.safetensors")
	code, stdout, stderr := runCLI(t, "", "inspect", path)
	if code != 0 || !strings.Contains(stdout, "lm_head.weight") || !strings.Contains(stdout, "\nBF16 ") ||
		strings.Contains(stdout, "model.embed_tokens.weight") {
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
