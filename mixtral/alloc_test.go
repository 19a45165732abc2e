package mixtral

import (
	"testing"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/backend/cpu"
)

// TestDecodeStepAllocs checks that a decode step allocates nothing in the steady state, both
// the forward pass itself and a step through the scheduler. (A sequence's block table grows
// once per block, amortised; the steps measured stay within one block.) It checks the model
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
	seq, err := m.cache.NewSequence()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, m.cfg.VocabSize)
	pos := 0
	tokens := []backend.Token{{}}
	rows := []int{0}
	stepOnce := func() {
		tokens[0] = backend.Token{Seq: seq, Pos: pos, ID: 100 + pos}
		if err := m.forward(tokens, rows, out, nil); err != nil {
			t.Fatal(err)
		}
		pos++
	}
	stepOnce()
	if n := testing.AllocsPerRun(10, stepOnce); n != 0 {
		t.Errorf("forward: %v allocations per decode step", n)
	}

	ids := []int{0}
	st := &step{seq: seq, logits: out, done: make(chan struct{}, 1)}
	viaScheduler := func() {
		ids[0] = 100 + pos
		st.pos, st.ids = pos, ids
		if err := m.sched.run(st); err != nil {
			t.Fatal(err)
		}
		pos++
	}
	for pos%blockSize != 0 {
		viaScheduler()
	}
	viaScheduler()
	if n := testing.AllocsPerRun(10, viaScheduler); n != 0 {
		t.Errorf("scheduler: %v allocations per decode step", n)
	}
}
