package reference_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/fathom-llm/fathom/internal/reference"
)

func TestLoad(t *testing.T) {
	for _, model := range reference.Models {
		t.Run(model, func(t *testing.T) {
			ref := reference.Load(t, model)
			if len(ref.Prompts) == 0 {
				t.Fatal("no prompts")
			}
			for _, p := range ref.Prompts {
				if len(p.IDs) == 0 || len(p.Greedy) == 0 || len(p.GreedyMargins) != len(p.Greedy) {
					t.Errorf("prompt %d: %d ids, %d greedy, %d margins", p.Index, len(p.IDs), len(p.Greedy), len(p.GreedyMargins))
				}
				if ref.Tensor(t, fmt.Sprintf("prompt%d.last_logits", p.Index)) == nil {
					t.Errorf("prompt %d: no last_logits", p.Index)
				}
			}
			if ref.Tensor(t, "no.such.tensor") != nil {
				t.Error("a missing tensor is not nil")
			}
		})
	}
}

func TestLoadPerplexity(t *testing.T) {
	p := reference.LoadPerplexity(t, "tiny-code-mixtral")
	if len(p.Tokens) <= p.WindowsOf || p.WindowsOf < 1 || !(p.PPL > 1) {
		t.Errorf("perplexity reference: %d tokens, windows of %d, ppl %g", len(p.Tokens), p.WindowsOf, p.PPL)
	}
}

func TestRelErr(t *testing.T) {
	for _, tc := range []struct {
		got, want []float32
		e         float64
	}{
		{[]float32{3, 4}, []float32{3, 4}, 0},
		{[]float32{3, 5}, []float32{3, 4}, 0.2},
		{[]float32{0, 2}, []float32{0, 0}, 2},
		{[]float32{1}, []float32{1, 2}, math.Inf(1)},
	} {
		if e := reference.RelErr(tc.got, tc.want); math.Abs(e-tc.e) > 1e-12 && e != tc.e {
			t.Errorf("RelErr(%v, %v) = %g, want %g", tc.got, tc.want, e, tc.e)
		}
	}
}

func ExampleRelErr() {
	fmt.Println(reference.RelErr([]float32{3, 5}, []float32{3, 4}))
	// Output: 0.2
}
