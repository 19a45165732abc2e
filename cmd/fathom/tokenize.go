package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/fathom-llm/fathom/tokenizer"
)

func init() {
	register(&command{
		name:    "tokenize",
		summary: "print the token ids of the text on standard input as a JSON array",
		run:     runTokenize,
	})
	register(&command{
		name:    "detokenize",
		summary: "print the text of a JSON array of token ids read from standard input",
		run:     runDetokenize,
	})
}

// tokenizerFlags are the flags that choose the tokenizer.
type tokenizerFlags struct {
	model, file string
}

func (f *tokenizerFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.model, "model", "", "checkpoint `DIR` whose tokenizer to use (default "+defaultModelDir+")")
	fs.StringVar(&f.file, "tokenizer", "", "tokenizer `FILE` (tokenizer.json or tokenizer.model) to use instead of a checkpoint")
}

// parse parses a command's args, which must hold only flags, and loads the tokenizer.
func (f *tokenizerFlags) parse(fs *flag.FlagSet, args []string) (*tokenizer.Tokenizer, error) {
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() != 0 {
		return nil, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	switch {
	case f.model != "" && f.file != "":
		return nil, fmt.Errorf("%w: give --model or --tokenizer, not both", errUsage)
	case f.file != "":
		return tokenizer.LoadFile(f.file)
	case f.model != "":
		return tokenizer.Load(f.model)
	}
	return tokenizer.Load(defaultModelDir)
}

func runTokenize(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "tokenize")
	var tf tokenizerFlags
	tf.register(fs)
	noBOS := fs.Bool("no-bos", false, "do not prepend the BOS token")
	allowSpecial := fs.Bool("allow-special", false, "match special and added tokens written in the text (otherwise they are plain text)")
	setUsage(fs, "usage: fathom tokenize [--model DIR | --tokenizer FILE] [--no-bos] [--allow-special] < text\n\nThe whole of standard input, trailing newline included, is tokenized.")
	tok, err := tf.parse(fs, args)
	if err != nil {
		return err
	}
	text, err := io.ReadAll(io.LimitReader(e.stdin, tokenizer.MaxInputBytes+1))
	if err != nil {
		return err
	}
	ids, err := tok.Encode(string(text), tokenizer.EncodeOptions{AddBOS: !*noBOS, ParseSpecial: *allowSpecial})
	if err != nil {
		return err
	}
	if ids == nil {
		ids = []int{}
	}
	out, err := json.Marshal(ids)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "%s\n", out)
	return err
}

func runDetokenize(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "detokenize")
	var tf tokenizerFlags
	tf.register(fs)
	skip := fs.Bool("skip-special", false, "leave special tokens out of the text")
	setUsage(fs, "usage: fathom detokenize [--model DIR | --tokenizer FILE] [--skip-special] < ids.json\n\nStandard input holds a JSON array of token ids; the text is printed as is, without a newline.")
	tok, err := tf.parse(fs, args)
	if err != nil {
		return err
	}
	var ids []int
	dec := json.NewDecoder(e.stdin)
	if err := dec.Decode(&ids); err != nil {
		return fmt.Errorf("reading ids: want a JSON array of integers: %w", err)
	}
	if dec.More() {
		return fmt.Errorf("reading ids: unexpected data after the JSON array")
	}
	for _, id := range ids {
		if id < 0 || id >= tok.VocabSize() {
			return fmt.Errorf("token id %d out of range [0, %d)", id, tok.VocabSize())
		}
	}
	_, err = io.WriteString(e.stdout, tok.Decode(ids, *skip))
	return err
}
