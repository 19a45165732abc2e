package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/fathom-llm/fathom/backend/cuda"
	"github.com/fathom-llm/fathom/internal/fixtures"
)

// runCLI runs the CLI in-process and returns its exit status and output streams.
func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb}, args)
	return code, out.String(), errb.String()
}

func TestUnknownCommand(t *testing.T) {
	code, _, stderr := runCLI(t, "", "no-such-command")
	if code != 2 || !strings.Contains(stderr, "unknown command") {
		t.Fatalf("code %d, stderr %q", code, stderr)
	}
}

func TestHelpListsCommands(t *testing.T) {
	code, stdout, _ := runCLI(t, "", "help")
	if code != 0 || !strings.Contains(stdout, "commands:") {
		t.Fatalf("code %d, stdout %q", code, stdout)
	}
}

// TestCUDAFlag checks --cuda where the build has no CUDA: a clear error, and --quantize q4
// refused as a usage error before any device is opened.
func TestCUDAFlag(t *testing.T) {
	if cuda.Available() {
		t.Skip("this build has a CUDA device")
	}
	dir := fixtures.Bundled(t)
	code, _, stderr := runCLI(t, "", "run", "--model", dir, "--cuda", "0", "--max-tokens", "2", "def")
	if code != 1 || !strings.Contains(stderr, "not built with CUDA") {
		t.Errorf("--cuda 0: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCLI(t, "", "run", "--model", dir, "--cuda", "0", "--quantize", "q4", "def")
	if code != 2 || !strings.Contains(stderr, "q4 is not available with --cuda") {
		t.Errorf("--cuda 0 --quantize q4: exit %d, stderr %q", code, stderr)
	}
}
