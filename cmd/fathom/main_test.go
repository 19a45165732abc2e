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

// TestCUDAFlag checks --cuda where the build has no CUDA: a clear error, with or without
// --quantize (which the backend, not the command, accepts or refuses).
func TestCUDAFlag(t *testing.T) {
	if cuda.Available() {
		t.Skip("this build has a CUDA device")
	}
	dir := fixtures.Bundled(t)
	for _, args := range [][]string{{}, {"--quantize", "q8"}} {
		t.Run(strings.Join(append([]string{"cuda"}, args...), " "), func(t *testing.T) {
			args := append([]string{"run", "--model", dir, "--cuda", "0", "--max-tokens", "2"}, append(args, "def")...)
			code, _, stderr := runCLI(t, "", args...)
			if code != 1 || !strings.Contains(stderr, "not built with CUDA") {
				t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
			}
		})
	}
}
