package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/fathom-llm/fathom/safetensors"
)

func init() {
	register(&command{
		name:    "inspect",
		summary: "list the tensors of a safetensors file or checkpoint directory",
		run:     runInspect,
	})
}

// runInspect prints each tensor's name, dtype, shape and size, then totals per dtype.
func runInspect(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "inspect")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: fathom inspect PATH\n\nPATH is a .safetensors file or a checkpoint directory.")
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want one PATH, got %d arguments", errUsage, fs.NArg())
	}
	src, err := openSource(fs.Arg(0))
	if err != nil {
		return err
	}
	defer src.Close()

	type total struct{ count, bytes, params int }
	totals := map[safetensors.DType]*total{}
	var all total
	w := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tDTYPE\tSHAPE\tBYTES")
	for _, name := range src.Names() {
		t, err := src.Tensor(name)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\n", name, t.DType, formatShape(t.Shape), len(t.Data))
		if totals[t.DType] == nil {
			totals[t.DType] = &total{}
		}
		for _, s := range []*total{totals[t.DType], &all} {
			s.count++
			s.bytes += len(t.Data)
			s.params += t.NumElements()
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "DTYPE\tTENSORS\tBYTES\tPARAMETERS")
	for _, dt := range slices.Sorted(maps.Keys(totals)) {
		s := totals[dt]
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\n", dt, s.count, s.bytes, s.params)
	}
	fmt.Fprintf(w, "total\t%d\t%d\t%d\n", all.count, all.bytes, all.params)
	return w.Flush()
}

// openSource opens a checkpoint directory or a single file.
func openSource(path string) (safetensors.Source, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return safetensors.OpenDir(path)
	}
	return safetensors.Open(path)
}

func formatShape(shape []int) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = strconv.Itoa(d)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
