package main

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fathom-llm/fathom/internal/fixtures"
	"github.com/fathom-llm/fathom/internal/reference"
	"github.com/fathom-llm/fathom/mixtral"
	"github.com/fathom-llm/fathom/tokenizer"
)

// pythonSource is text of the kind the bundled model was trained on.
const pythonSource = `def fibonacci(n):
    """Return the first n Fibonacci numbers."""
    result = []
    a, b = 0, 1
    while len(result) < n:
        result.append(a)
        a, b = b, a + b
    return result


class Stack:
    def __init__(self):
        self._items = []

    def push(self, item):
        self._items.append(item)

    def pop(self):
        if not self._items:
            raise IndexError("pop from an empty stack")
        return self._items.pop()
`

// idsFile writes the first n ids of pythonSource, as the bundled tokenizer encodes it with
// BOS, to a JSON file for --ids-file, and returns the ids and the file's path.
func idsFile(t *testing.T, n int) ([]int, string) {
	t.Helper()
	tok, err := tokenizer.Load(fixtures.Bundled(t))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := tok.Encode(pythonSource, tokenizer.EncodeOptions{AddBOS: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) < n {
		t.Fatalf("%d ids, want %d", len(ids), n)
	}
	ids = ids[:n]
	file := filepath.Join(t.TempDir(), "ids.json")
	data, _ := json.Marshal(ids)
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return ids, file
}

func joinIDs(ids []int) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(id)
	}
	return strings.Join(s, ",")
}

func TestRunGreedyMatchesReference(t *testing.T) {
	dir := fixtures.Model(t, "tiny-code-mixtral")
	prompts := reference.Load(t, "tiny-code-mixtral").Prompts
	p := prompts[0]
	// Compare up to the first step whose margin is too small to decide the argmax.
	n := len(p.Greedy)
	for i, m := range p.GreedyMargins {
		if m <= 1e-3 {
			n = i + 1
			break
		}
	}
	code, stdout, stderr := runCLI(t, "", "run", "--model", dir, "--temperature", "0", "--max-tokens", strconv.Itoa(n),
		"--json", "--prompt-ids", joinIDs(p.IDs))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res runResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout)
	}
	if got := res.IDs; len(got) != n || joinIDs(got) != joinIDs(p.Greedy[:n]) {
		t.Fatalf("ids %v, want %v", got, p.Greedy[:n])
	}
	if res.FinishReason != "length" || res.Usage.PromptTokens != len(p.IDs) || res.Usage.CompletionTokens != n ||
		res.Usage.TotalTokens != len(p.IDs)+n {
		t.Fatalf("finish %q usage %+v", res.FinishReason, res.Usage)
	}
}

func TestRunStreamsText(t *testing.T) {
	dir := fixtures.Bundled(t)
	code, stdout, stderr := runCLI(t, "", "run", "--model", dir, "--seed", "7", "--max-tokens", "12", "def add(a, b):")
	if code != 0 || strings.TrimSpace(stdout) == "" || !strings.Contains(stderr, "12 generated tokens") {
		t.Fatalf("exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
	}
	// The same seed gives the same text.
	_, again, _ := runCLI(t, "", "run", "--model", dir, "--seed", "7", "--max-tokens", "12", "def add(a, b):")
	if again != stdout {
		t.Fatalf("seeded runs differ: %q vs %q", stdout, again)
	}
}

func TestRunUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"run"},
		{"run", "--prompt-ids", "1,x"},
		{"run", "--prompt-ids", "1", "text"},
		{"run", "--temperature", "3", "hi"},
		{"run", "--seed", "abc", "hi"},
		{"run", "--model", t.TempDir(), "--top-k", "-5", "hi"},
	} {
		if code, _, stderr := runCLI(t, "", args...); code != 2 {
			t.Errorf("%v: exit %d (%s), want 2", args, code, stderr)
		}
	}
	if code, _, _ := runCLI(t, "", "run", "--model", filepath.Join(t.TempDir(), "none"), "hi"); code != 1 {
		t.Errorf("missing model: exit %d, want 1", code)
	}
}

func TestChatKeepsConversation(t *testing.T) {
	dir := fixtures.Bundled(t)
	code, stdout, stderr := runCLI(t, "first\n\n/reset\nsecond\n", "chat", "--model", dir, "--max-tokens", "5", "--temperature", "0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if got := strings.Count(stdout, "> "); got < 4 {
		t.Fatalf("expected a prompt per input line, got output %q", stdout)
	}
}

func TestPerplexityCommand(t *testing.T) {
	dir := fixtures.Bundled(t)
	ids, file := idsFile(t, 129)
	code, stdout, stderr := runCLI(t, "", "perplexity", "--model", dir, "--ids-file", file, "--window", "64")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	got, err := strconv.ParseFloat(strings.TrimSpace(stdout), 64)
	if err != nil {
		t.Fatal(err)
	}
	m, err := mixtral.Load(context.Background(), dir, mixtral.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	want, err := m.Perplexity(context.Background(), ids, 64)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(got-want) > 1e-5*want || got < 1 {
		t.Fatalf("perplexity %v, want %v", got, want)
	}
	if code, _, _ := runCLI(t, "", "perplexity", "--model", dir); code != 2 {
		t.Fatalf("missing --ids-file: exit %d, want 2", code)
	}
}
