package engine

import (
	"context"
	"slices"
	"testing"
)

// TestPromptChunksFollowAttentionCost reads a long prompt while a stream decodes, with a
// model whose tokens cost more the more positions they attend to: each step runs the
// stream's token and as much of the prompt as the rest of the budget pays for, token by
// token 1 + AttentionCost·(positions attended), but at least one token.
func TestPromptChunksFollowAttentionCost(t *testing.T) {
	const budget = 32
	for _, tc := range []struct {
		name   string
		cost   float64
		window int
		prompt int
	}{
		// A power of two, so that the sums are exact in floating point.
		{"growing", 1.0 / 128, 0, 400},
		// Past the window a token attends to 64 positions: the chunks stop shrinking.
		{"window", 1.0 / 128, 64, 300},
		// From position 30 on a token costs more than the budget: one token a step.
		{"over budget", 1, 0, 60},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lay := Layout{BlockSize: 4, Blocks: 256, SlidingWindow: tc.window, AttentionCost: tc.cost}
			e, f := start(t, lay, Options{TokenBudget: budget})
			// The stream's third step waits until the long prompt is submitted.
			reached, gate := make(chan struct{}), make(chan struct{})
			f.hook = func(*Step) {
				if len(f.steps) == 2 {
					close(reached)
					<-gate
				}
			}
			stream := Request{Prompt: prompt(11, 5), Params: seeded(13, 0)}
			h, err := e.Submit(context.Background(), stream)
			if err != nil {
				t.Fatal(err)
			}
			<-reached
			long := Request{Prompt: prompt(12, tc.prompt), Params: seeded(14, 2)}
			hl, err := e.Submit(context.Background(), long)
			close(gate)
			if err != nil {
				t.Fatal(err)
			}
			res, err := collect(hl, 1)
			if err != nil {
				t.Fatal(err)
			}
			check(t, f.lay, long, res)
			h.Close()
			streamed, err := collect(h, 1)
			if err != nil {
				t.Fatal(err)
			}
			if ref, _ := reference(f.lay, stream.Prompt, stream.Params, len(streamed.ids[0])); !slices.Equal(streamed.ids[0], ref) {
				t.Fatalf("stream: %v, want %v", streamed.ids[0], ref)
			}

			// The chunks each step should run: the budget less the stream's token, filled
			// token by token.
			var want []int
			for p := 0; p < tc.prompt; {
				n, spent := 0, 0.0
				for q := p; q < tc.prompt; q++ {
					attended := q + 1
					if tc.window > 0 {
						attended = min(attended, tc.window)
					}
					if spent += 1 + tc.cost*float64(attended); spent > budget-1 {
						break
					}
					n++
				}
				n = max(n, 1)
				want = append(want, n)
				p += n
			}
			var got []int
			for i, r := range f.records()[2:] {
				if r.tokens > budget {
					t.Fatalf("step %d: %d tokens, budget %d", i+2, r.tokens, budget)
				}
				if len(r.seqs) == 0 || r.seqs[0].n != 1 || r.seqs[0].first.Pos < len(stream.Prompt) {
					t.Fatalf("step %d does not start with the stream's token: %+v", i+2, r)
				}
				if len(r.seqs) > 1 && r.seqs[1].first.Pos < tc.prompt {
					got = append(got, r.seqs[1].n)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("chunks %v, want %v", got, want)
			}
			// They shrink as the prompt goes on, down to what one token at the window costs.
			body := want[:len(want)-1] // the last is what was left
			for i := 1; i < len(body); i++ {
				if body[i] > body[i-1] {
					t.Fatalf("chunk %d of %d tokens after one of %d: %v", i, body[i], body[i-1], want)
				}
			}
			if body[len(body)-1] >= body[0] {
				t.Fatalf("chunks do not shrink: %v", want)
			}
			if tc.window > 0 {
				if last, floor := body[len(body)-1], int((budget-1)/(1+tc.cost*float64(tc.window))); last != floor {
					t.Fatalf("the last full chunk has %d tokens, want %d: %v", last, floor, want)
				}
			}
		})
	}
}
