package mixtral

import (
	"testing"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/backend/cpu"
	"github.com/fathom-llm/fathom/engine"
	"github.com/fathom-llm/fathom/sampling"
)

// TestDecodeStepAllocs checks that a decode step allocates nothing in the steady state, both
// the forward pass itself and a step through the serving engine. It checks the model
// as stored, quantized to q8 and q4, and on a backend that records steps.
func TestDecodeStepAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, q := range []backend.Quantization{backend.AsStored, backend.Q8, backend.Q4} {
		name := string(q)
		if q == backend.AsStored {
			name = "as-stored"
		}
		t.Run(name, func(t *testing.T) { testDecodeStepAllocs(t, Options{Quantize: q}) })
	}
	// Through a backend that records steps.
	t.Run("recorded", func(t *testing.T) {
		be := cpu.New(0)
		defer be.Close()
		rec := &recorder{Backend: be, steps: map[any]int{}}
		testDecodeStepAllocs(t, Options{Backend: rec})
		if len(rec.steps) == 0 {
			t.Error("no step was recorded")
		}
	})
}

// testDecodeStepAllocs is TestDecodeStepAllocs for a model loaded with o.
func testDecodeStepAllocs(t *testing.T, o Options) {
	m := loadFixture(t, "tiny-code-mixtral", o)
	out := make([]float32, m.cfg.VocabSize)
	pos := 0
	tokens := []backend.Token{{}}
	tables := [][]int{{0, 1, 2, 3}}
	rows := []int{0}
	stepOnce := func() {
		tokens[0] = backend.Token{Seq: 0, Pos: pos, ID: 100 + pos}
		if err := m.forward(tokens, tables, rows, out, nil); err != nil {
			t.Fatal(err)
		}
		pos++
	}
	stepOnce()
	if n := testing.AllocsPerRun(10, stepOnce); n != 0 {
		t.Errorf("forward: %v allocations per decode step", n)
	}

	// A request's tokens, one step each, through the engine.
	h, err := m.engine.Submit(t.Context(), engine.Request{Prompt: []int{1, 100, 200}, Params: sampling.Params{MaxTokens: 200}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	next := func() {
		if _, err := h.Next(); err != nil {
			t.Fatal(err)
		}
	}
	next()
	if n := testing.AllocsPerRun(50, next); n != 0 {
		t.Errorf("engine: %v allocations per decode step", n)
	}
}
