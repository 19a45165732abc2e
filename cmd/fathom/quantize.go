package main

import (
	"context"
	"fmt"
	"time"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/mixtral"
)

func init() {
	register(&command{
		name:    "quantize",
		summary: "write a checkpoint with its expert and attention weights stored as q8 or q4",
		run:     runQuantize,
	})
}

// runQuantize writes SRC quantized to DST, which loads without quantizing.
func runQuantize(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "quantize")
	q8 := fs.Bool("q8", false, "store the weights as q8: int8 in groups of 32, 8.5 bits per weight")
	q4 := fs.Bool("q4", false, "store the weights as q4: 4 bits in groups of 32 with a scale and a minimum, 5 bits per weight")
	setUsage(fs, "usage: fathom quantize --q8|--q4 SRC DST",
		"",
		"Writes the checkpoint directory SRC to DST (empty or new) with its expert weights and",
		"attention projections quantized as loading with --quantize would store them on this",
		"machine, and the config and tokenizer copied: loading DST takes no quantizing.")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *q8 == *q4 || fs.NArg() != 2 {
		return fmt.Errorf("%w: give one of --q8 and --q4, then SRC and DST", errUsage)
	}
	q := backend.Q8
	if *q4 {
		q = backend.Q4
	}
	src, dst := fs.Arg(0), fs.Arg(1)
	var opts mixtral.QuantizeOptions
	if isTerminal(e.stderr) {
		bar := &progressBar{w: e.stderr, label: "quantizing " + src}
		opts.Progress = bar.update
		defer bar.finish()
	}
	start := time.Now()
	if err := mixtral.Quantize(ctx, src, dst, q, opts); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "wrote %s as %s in %.1f s\n", dst, q, time.Since(start).Seconds())
	return nil
}
