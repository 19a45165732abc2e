package reference_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/fathom-llm/fathom/backend"
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

func TestRMSNorm(t *testing.T) {
	// Rows [3 4] and [0 2]: mean squares 12.5 and 2.
	got := reference.RMSNorm([]float64{3, 4, 0, 2}, []float64{1, 2}, 0)
	s, u := 1/math.Sqrt(12.5), 1/math.Sqrt(2)
	want := []float64{3 * s, 8 * s, 0, 4 * u}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-15 {
			t.Fatalf("RMSNorm = %v, want %v", got, want)
		}
	}
}

func TestRoPE(t *testing.T) {
	x := []float64{1, 2, 3, 4}
	reference.RoPE(x, 0, 1e4)
	if x[0] != 1 || x[1] != 2 || x[2] != 3 || x[3] != 4 {
		t.Errorf("position 0 rotated: %v", x)
	}
	// The pair (x[0], x[2]) turns by pos radians, (x[1], x[3]) by pos/100 (theta 1e4, 4 dims).
	x = []float64{1, 1, 0, 0}
	reference.RoPE(x, 2, 1e4)
	want := []float64{math.Cos(2), math.Cos(0.02), math.Sin(2), math.Sin(0.02)}
	for i := range want {
		if math.Abs(x[i]-want[i]) > 1e-15 {
			t.Fatalf("RoPE at 2 = %v, want %v", x, want)
		}
	}
}

func TestAttention(t *testing.T) {
	// Two query heads share one key/value head; position 2 with a window of 2 sees
	// positions 1 and 2, whose keys are equal, so each head averages their values.
	p := backend.AttentionParams{Heads: 2, KVHeads: 1, HeadDim: 2, Scale: 1, SlidingWindow: 2}
	hist := [][2][]float64{
		{{9, 9}, {100, 100}},
		{{1, 0}, {2, 4}},
		{{1, 0}, {4, 8}},
	}
	got := reference.Attention([]float64{1, 2, -3, 5}, hist, 2, p)
	want := []float64{3, 6, 3, 6}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-12 {
			t.Fatalf("Attention = %v, want %v", got, want)
		}
	}
}

func TestMoE(t *testing.T) {
	// Two experts of one hidden and one inner unit, both chosen (top 2): expert e computes
	// w2·silu(w1·x)·(w3·x); the router's logits 0 and ln 3 weigh them 1/4 and 3/4.
	x := []float64{2}
	gate := []float64{0, math.Log(3) / 2}
	w1, w2, w3 := [][]float64{{1}, {0.5}}, [][]float64{{1}, {-1}}, [][]float64{{1}, {2}}
	out, logits := reference.MoE(x, 1, 1, 1, 2, 2, gate, w1, w2, w3)
	silu := func(v float64) float64 { return v / (1 + math.Exp(-v)) }
	want := 0.25*silu(2)*2 + 0.75*-silu(1)*4
	if math.Abs(out[0]-want) > 1e-12 || math.Abs(logits[1]-math.Log(3)) > 1e-15 {
		t.Errorf("MoE = %v (router %v), want %v", out, logits, want)
	}
	// With top 1, only the second expert, at weight 1.
	out, _ = reference.MoE(x, 1, 1, 1, 2, 1, gate, w1, w2, w3)
	if want := -silu(1) * 4; math.Abs(out[0]-want) > 1e-12 {
		t.Errorf("MoE top 1 = %v, want %v", out, want)
	}
}
