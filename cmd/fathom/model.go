package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/backend/cpu"
	"github.com/fathom-llm/fathom/backend/cuda"
	"github.com/fathom-llm/fathom/mixtral"
)

// defaultModelDir is the bundled model that commands use when no --model is given, relative
// to the working directory (the repository root).
const defaultModelDir = "models/tiny-code-mixtral"

// modelFlags are the flags shared by the commands that load a checkpoint.
type modelFlags struct {
	dir string
	weightFlags
}

// modelFlag registers --model, --quantize and --cuda.
func modelFlag(fs *flag.FlagSet) *modelFlags {
	f := &modelFlags{}
	fs.StringVar(&f.dir, "model", "", "checkpoint `DIR` to load (default the bundled "+defaultModelDir+")")
	f.weightFlags.register(fs)
	return f
}

// weightFlags choose how and where the weights are kept and multiplied: --quantize, --cuda,
// --bf16-activations, --preload and --in-memory.
type weightFlags struct {
	quant    backend.Quantization
	cuda     int  // CUDA device ordinal, -1 for the CPU
	bf16Acts bool // round the activations of bfloat16 products to bfloat16
	preload  bool // read the checkpoint into memory after loading; its value before register is the default
	inMemory bool // read the checkpoint into memory of its own instead of mapping it
}

func (w *weightFlags) register(fs *flag.FlagSet) {
	fs.Func("quantize", "store the expert and attention weights as `q8` or q4, quantized while loading (default: as stored, which for a checkpoint written by fathom quantize is its quantization); the CUDA backend stores q8", func(s string) error {
		v, err := backend.ParseQuantization(s)
		w.quant = v
		return err
	})
	fs.IntVar(&w.cuda, "cuda", -1, "run on CUDA device `N` (a build with -tags cuda; -1: the CPU)")
	fs.BoolVar(&w.bf16Acts, "bf16-activations", false, "round the activations of products with bfloat16 weights to bfloat16, as bf16 engines do: faster prompts where the CPU has AVX512_BF16 (or on the GPU's tensor cores), at a small cost in accuracy")
	fs.BoolVar(&w.preload, "preload", w.preload, "read the whole checkpoint into memory before the first request, so that it runs as fast as later ones")
	fs.BoolVar(&w.inMemory, "in-memory", false, "read the checkpoint into memory of its own (huge pages, tensors on cache lines) instead of mapping it: a slower load, a faster decode where the page cache cannot give the mapping huge pages")
}

// load loads the checkpoint in dir with opts on the backend the flags choose, and reads it
// into memory with --preload, drawing a progress bar on e's stderr when it is a terminal.
// done releases the model and its backend.
func (w *weightFlags) load(ctx context.Context, e *env, dir string, opts mixtral.Options) (m *mixtral.Model, done func(), err error) {
	opts.Quantize, opts.InMemory = w.quant, w.inMemory
	var be backend.Backend
	if w.cuda < 0 && w.bf16Acts {
		be = cpu.NewWithOptions(cpu.Options{BF16Activations: true})
		opts.Backend = be
	}
	if w.cuda >= 0 {
		if be, err = cuda.New(cuda.Options{Device: w.cuda, BF16Activations: w.bf16Acts}); err != nil {
			return nil, nil, err
		}
		opts.Backend = be
	}
	if isTerminal(e.stderr) && opts.Progress == nil {
		bar := &progressBar{w: e.stderr, label: "loading " + dir}
		opts.Progress = bar.update
		defer bar.finish() // a no-op once finished below
		m, err = mixtral.Load(ctx, dir, opts)
		bar.finish()
	} else {
		m, err = mixtral.Load(ctx, dir, opts)
	}
	if err != nil {
		if be != nil {
			be.Close()
		}
		return nil, nil, err
	}
	done = func() {
		m.Close()
		if be != nil {
			be.Close()
		}
	}
	if w.preload {
		var progress func(done, total int64)
		if isTerminal(e.stderr) {
			bar := &progressBar{w: e.stderr, label: "reading in " + dir}
			progress = bar.update
			defer bar.finish()
		}
		if err := m.Preload(ctx, progress); err != nil {
			done()
			return nil, nil, err
		}
	}
	return m, done, nil
}

// loadModel loads the checkpoint that f names (the bundled default when --model is empty),
// drawing progress bars on stderr when it is a terminal.
func loadModel(ctx context.Context, e *env, f *modelFlags) (*mixtral.Model, func(), error) {
	dir := f.dir
	if dir == "" {
		dir = defaultModelDir
		if _, err := os.Stat(dir); err != nil {
			return nil, nil, fmt.Errorf("%w: no --model given and the bundled model %s is not in the working directory (run from the repository root)", errUsage, dir)
		}
	}
	return f.load(ctx, e, dir, mixtral.Options{})
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

// progressBar draws a one-line progress bar, redrawn in place: of bytes, or with count of
// items.
type progressBar struct {
	w       io.Writer
	label   string
	count   bool
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
	of := fmt.Sprintf("of %.1f GB", float64(total)/1e9)
	if p.count {
		of = fmt.Sprintf("%d of %d", done, total)
	}
	fmt.Fprintf(p.w, "\r%s [%s%s] %3d%% %s", p.label, strings.Repeat("=", fill), strings.Repeat(" ", width-fill), pct, of)
}

// finish ends the bar's line; finishing twice does nothing more.
func (p *progressBar) finish() {
	if p.started {
		fmt.Fprintln(p.w)
		p.started = false
	}
}
