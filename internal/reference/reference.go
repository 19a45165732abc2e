// Package reference holds what tests compare with.
//
// A Mixtral forward pass in float64 (Model.Forward), built from plain float64 versions of
// the operations of backend.Backend (MatMul, RMSNorm, RoPE, Attention, MoE): the model
// written out once with nothing but loops, and an oracle for any checkpoint, the bundled
// one or random weights made in a test, with no recorded outputs needed.
//
// The reference outputs recorded for the fixture models: for each model, a JSON file of
// prompts (token ids, greedy continuations and their margins) and perplexity data, and a
// safetensors file of logits, hidden states and router logits. Tests of every package that
// compares with the recorded references read them through Load.
package reference

import (
	"encoding/json"
	"math"
	"os"
	"testing"

	"github.com/fathom-llm/fathom/internal/fixtures"
	"github.com/fathom-llm/fathom/safetensors"
)

// Models are the fixture models that have reference outputs.
var Models = []string{"tiny-mixtral-bf16", "tiny-mixtral-swa-f16", "tiny-code-mixtral"}

// Prompt is one reference prompt. Its tensors are named "prompt<Index>.<what>", for
// example prompt0.last_logits, prompt0.all_logits, prompt0.hidden_state.<layer> and
// prompt0.router_logits.<layer>.
type Prompt struct {
	Index int    `json:"index"`
	Text  string `json:"text"`
	// IDs are the prompt's token ids.
	IDs []int `json:"ids"`
	// Greedy is the greedy continuation; GreedyMargins[i] is the margin of the top logit
	// over the runner-up at step i.
	Greedy        []int     `json:"greedy"`
	GreedyMargins []float64 `json:"greedy_margins"`
}

// Perplexity is a reference perplexity: PPL of Tokens evaluated in windows of WindowsOf
// tokens.
type Perplexity struct {
	Tokens    []int   `json:"tokens"`
	WindowsOf int     `json:"windows_of"`
	PPL       float64 `json:"ppl"`
}

// Reference is one model's reference outputs.
type Reference struct {
	Prompts []Prompt `json:"prompts"`
	// Perplexity is nil when the model has no perplexity reference.
	Perplexity *Perplexity `json:"perplexity"`
	// Tensors holds the reference tensors; it is closed when the test ends.
	Tensors *safetensors.File `json:"-"`
}

// Load reads the reference outputs of the fixture model with the given name, skipping the
// test when the fixtures are absent (failing under CI=true, as fixtures.Path does).
func Load(tb testing.TB, model string) *Reference {
	tb.Helper()
	data, err := os.ReadFile(fixtures.Path(tb, "reference", model+".json"))
	if err != nil {
		tb.Fatal(err)
	}
	var ref Reference
	if err := json.Unmarshal(data, &ref); err != nil {
		tb.Fatalf("reference %s: %v", model, err)
	}
	f, err := safetensors.Open(fixtures.Path(tb, "reference", model+".safetensors"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	ref.Tensors = f
	return &ref
}

// LoadPerplexity reads the perplexity reference of the fixture model with the given name,
// failing the test when the model has none.
func LoadPerplexity(tb testing.TB, model string) *Perplexity {
	tb.Helper()
	p := Load(tb, model).Perplexity
	if p == nil {
		tb.Fatalf("reference %s: no perplexity reference", model)
	}
	return p
}

// Tensor returns the reference tensor with the given name as float32s, or nil when there is
// none.
func (r *Reference) Tensor(tb testing.TB, name string) []float32 {
	tb.Helper()
	t, err := r.Tensors.Tensor(name)
	if err != nil {
		return nil
	}
	v, err := t.Float32s(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// RelErr returns the relative error ‖got−want‖/‖want‖ (‖got−want‖ when want is all zero),
// or +Inf when the lengths differ.
func RelErr(got, want []float32) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var num, den float64
	for i, w := range want {
		d := float64(got[i]) - float64(w)
		num += d * d
		den += float64(w) * float64(w)
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}
