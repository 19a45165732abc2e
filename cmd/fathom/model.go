package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/mixtral"
)

// defaultModelDir is the bundled model that commands use when no --model is given, relative
// to the working directory (the repository root).
const defaultModelDir = "models/tiny-code-mixtral"

// modelFlags are the flags shared by the commands that load a checkpoint.
type modelFlags struct {
	dir   string
	quant backend.Quantization
}

// modelFlag registers --model and --quantize.
func modelFlag(fs *flag.FlagSet) *modelFlags {
	f := &modelFlags{}
	fs.StringVar(&f.dir, "model", "", "checkpoint `DIR` to load (default the bundled "+defaultModelDir+")")
	quantizeFlag(fs, &f.quant)
	return f
}

// quantizeFlag registers --quantize, which sets *q.
func quantizeFlag(fs *flag.FlagSet, q *backend.Quantization) {
	fs.Func("quantize", "store the expert and attention weights as `q8` or q4, quantized while loading (default: as stored)", func(s string) error {
		v, err := backend.ParseQuantization(s)
		*q = v
		return err
	})
}

// loadModel loads the checkpoint that f names (the bundled default when --model is empty),
// drawing a progress bar on stderr when it is a terminal.
func loadModel(ctx context.Context, e *env, f *modelFlags) (*mixtral.Model, error) {
	dir := f.dir
	if dir == "" {
		dir = defaultModelDir
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("%w: no --model given and the bundled model %s is not in the working directory (run from the repository root)", errUsage, dir)
		}
	}
	opts := mixtral.Options{Quantize: f.quant}
	if isTerminal(e.stderr) {
		bar := &progressBar{w: e.stderr, label: "loading " + dir}
		opts.Progress = bar.update
		defer bar.finish()
	}
	return mixtral.Load(ctx, dir, opts)
}

// isTerminal reports whether w is a character device such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progressBar draws a one-line progress bar, redrawn in place.
type progressBar struct {
	w       io.Writer
	label   string
	last    int
	started bool
}

func (p *progressBar) update(done, total int64) {
	if total <= 0 {
		return
	}
	pct := int(done * 100 / total)
	if p.started && pct == p.last {
		return
	}
	p.started, p.last = true, pct
	const width = 30
	fill := pct * width / 100
	fmt.Fprintf(p.w, "\r%s [%s%s] %3d%% of %.1f GB", p.label, strings.Repeat("=", fill), strings.Repeat(" ", width-fill), pct, float64(total)/1e9)
}

func (p *progressBar) finish() {
	if p.started {
		fmt.Fprintln(p.w)
	}
}
