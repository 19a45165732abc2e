package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/fathom-llm/fathom/bench"
)

// runBenchSynthetic writes a Mixtral 8x7B-shaped checkpoint of random weights, with a
// tokenizer, for serving benchmarks.
func runBenchSynthetic(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "bench synthetic")
	out := fs.String("out", "", "directory `DIR` to write (required; created)")
	layers := fs.Int("layers", 1, "decoder layers (Mixtral 8x7B has 32)")
	tok := fs.String("tokenizer", defaultModelDir, "checkpoint `DIR` whose tokenizer files to copy (Mixtral's vocabulary of 32002)")
	seed := fs.Uint64("seed", 1, "seed of the weights")
	setUsage(fs, "usage: fathom bench synthetic --out DIR [--layers N]",
		"\nWrites a checkpoint of Mixtral 8x7B's shapes with random bfloat16 weights (about 3.4 GB for one layer)",
		"and the tokenizer of another checkpoint, so that `fathom serve` and `fathom bench serve` can measure it.")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" || *layers < 1 || fs.NArg() != 0 {
		return fmt.Errorf("%w: --out is required and --layers must be positive", errUsage)
	}
	cfg := bench.Mixtral8x7B(*layers)
	s, err := bench.NewSynthetic(cfg, *seed)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	if err := s.WriteDir(*out, cfg); err != nil {
		return err
	}
	for _, name := range []string{"tokenizer.json", "tokenizer_config.json", "tokenizer.model", "added_tokens.json", "special_tokens_map.json"} {
		if err := copyFile(filepath.Join(*tok, name), filepath.Join(*out, name)); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	fmt.Fprintf(e.stderr, "fathom bench synthetic: wrote %s (%d layers)\n", *out, *layers)
	return ctx.Err()
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}
