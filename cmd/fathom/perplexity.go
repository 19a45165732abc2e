package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
)

func init() {
	register(&command{
		name:    "perplexity",
		summary: "score a JSON list of token ids in independent windows and print the perplexity",
		run:     runPerplexity,
	})
}

func runPerplexity(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "perplexity")
	model := modelFlag(fs)
	idsFile := fs.String("ids-file", "", "`FILE` holding a JSON array of token ids")
	window := fs.Int("window", 512, "tokens predicted per window: the ids are scored in independent windows of N+1")
	setUsage(fs, "usage: fathom perplexity [--model DIR] --ids-file FILE [--window N]")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *idsFile == "" || fs.NArg() > 0 {
		return fmt.Errorf("%w: give --ids-file FILE and no arguments", errUsage)
	}
	if *window < 1 {
		return fmt.Errorf("%w: --window must be at least 1", errUsage)
	}
	data, err := os.ReadFile(*idsFile)
	if err != nil {
		return err
	}
	var ids []int
	if err := json.Unmarshal(data, &ids); err != nil {
		return fmt.Errorf("%s: not a JSON array of token ids: %v", *idsFile, err)
	}
	m, done, err := loadModel(ctx, e, model)
	if err != nil {
		return err
	}
	defer done()
	ppl, err := m.Perplexity(ctx, ids, *window)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%.6f\n", ppl)
	return nil
}
