package engine_test

import (
	"context"
	"fmt"
	"io"

	"github.com/fathom-llm/fathom/engine"
	"github.com/fathom-llm/fathom/sampling"
)

// counter is a toy model that predicts the token after the last one, id+1 modulo its
// vocabulary of 10. A real model reads its keys and values through the step's tables.
type counter struct{}

func (counter) Layout() engine.Layout {
	return engine.Layout{BlockSize: 4, Blocks: 64, BlockBytes: 1 << 10, VocabSize: 10, ContextLength: 256, MaxStepTokens: 64}
}

func (counter) Forward(s *engine.Step, logits []float32) error {
	clear(logits)
	for r, row := range s.Rows {
		logits[r*10+(s.Tokens[row].ID+1)%10] = 1
	}
	return nil
}

func Example() {
	e, err := engine.New(counter{}, engine.Options{})
	if err != nil {
		panic(err)
	}
	defer e.Close()
	for range 2 {
		h, err := e.Submit(context.Background(), engine.Request{
			Prompt: []int{1, 2, 3, 4, 5, 6}, Params: sampling.Params{MaxTokens: 5},
		})
		if err != nil {
			panic(err)
		}
		for {
			o, err := h.Next()
			if err == io.EOF {
				break
			} else if err != nil {
				panic(err)
			}
			fmt.Print(o.ID, " ")
			if o.Finish != "" {
				fmt.Printf("(%s; %d prompt tokens, %d cached)\n", o.Finish, o.Usage.PromptTokens, o.Usage.CachedTokens)
			}
		}
	}
	m := e.Metrics()
	fmt.Printf("prefix cache: %d of %d prompt tokens\n", m.PrefixHits, m.PrefixQueries)
	// Output:
	// 7 8 9 0 1 (length; 6 prompt tokens, 0 cached)
	// 7 8 9 0 1 (length; 6 prompt tokens, 4 cached)
	// prefix cache: 4 of 12 prompt tokens
}
