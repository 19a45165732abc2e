package main

import (
	"bufio"
	"context"
	"fmt"
	"strings"

	"github.com/fathom-llm/fathom/mixtral"
	"github.com/fathom-llm/fathom/tokenizer"
)

func init() {
	register(&command{
		name:    "chat",
		summary: "chat with a model interactively; the conversation is kept across turns",
		run:     runChat,
	})
}

func runChat(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "chat")
	model := modelFlag(fs)
	system := fs.String("system", "", "system `PROMPT` that opens the conversation")
	var req mixtral.Request
	samplingFlags(fs, &req.Params)
	setUsage(fs, "usage: fathom chat [--model DIR] [--system PROMPT] [sampling flags]\n\nEach line on standard input is a user turn; /reset starts over; end of input ends the chat.")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: chat takes no arguments", errUsage)
	}
	if err := validSampling(req.Params); err != nil {
		return err
	}
	m, done, err := loadModel(ctx, e, model)
	if err != nil {
		return err
	}
	defer done()

	var history []tokenizer.Message
	reset := func() {
		history = history[:0]
		if *system != "" {
			history = append(history, tokenizer.Message{Role: "system", Content: *system})
		}
	}
	reset()
	in := bufio.NewScanner(e.stdin)
	in.Buffer(make([]byte, 64*1024), 16<<20)
	for {
		fmt.Fprint(e.stdout, "> ")
		if !in.Scan() {
			fmt.Fprintln(e.stdout)
			return in.Err()
		}
		line := strings.TrimSpace(in.Text())
		switch line {
		case "":
			continue
		case "/reset":
			reset()
			continue
		}
		history = append(history, tokenizer.Message{Role: "user", Content: line})
		req.Messages = history
		var reply strings.Builder
		for ev, err := range m.Stream(ctx, req) {
			if err != nil {
				return err
			}
			reply.WriteString(ev.Text)
			fmt.Fprint(e.stdout, ev.Text)
		}
		fmt.Fprintln(e.stdout)
		history = append(history, tokenizer.Message{Role: "assistant", Content: reply.String()})
	}
}
