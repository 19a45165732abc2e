package server

import (
	"encoding/json"
	"testing"

	"github.com/fathom-llm/fathom/internal/fixtures"
	"github.com/fathom-llm/fathom/sampling"
	"github.com/fathom-llm/fathom/sampling/constrain"
	"github.com/fathom-llm/fathom/tokenizer"
)

// BenchmarkToolMask measures the token mask of one decoding step of a reply with tool_choice
// "auto" (free text, then a call) and "required", over the bundled model's 32k vocabulary,
// at the steps of a typical reply (masks cached, as in steady use).
func BenchmarkToolMask(b *testing.B) {
	tok, err := tokenizer.Load(fixtures.Model(b, "tiny-code-mixtral"))
	if err != nil {
		b.Fatal(err)
	}
	v := constrain.VocabFor(tok)
	params := json.RawMessage(`{"type":"object","properties":{"location":{"type":"string"},"unit":{"enum":["celsius","fahrenheit"]}},"required":["location"]}`)
	args, err := constrain.JSONSchema(params, constrain.JSONOptions{})
	if err != nil {
		b.Fatal(err)
	}
	call := "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris, France\", \"unit\": \"celsius\"}}\n</tool_call>"
	for _, tc := range []struct{ choice, reply string }{
		{choiceAuto, "Let me look that up for you.\n" + call},
		{choiceRequired, call},
	} {
		b.Run(tc.choice, func(b *testing.B) {
			plan := &toolPlan{tools: []tokenizer.Tool{{Name: "get_weather", Parameters: params}},
				args: []*constrain.Grammar{args}, choice: tc.choice, parallel: true}
			g := plan.callsGrammar()
			if tc.choice == choiceAuto {
				g = constrain.Seq(freeText(), constrain.Optional(g))
			}
			c, err := v.Compile(g)
			if err != nil {
				b.Fatal(err)
			}
			ids, err := tok.Encode(tc.reply, tokenizer.EncodeOptions{})
			if err != nil {
				b.Fatal(err)
			}
			// The states of the reply's steps, each reached afresh.
			mask := make([]uint64, sampling.MaskWords(v.Size()))
			states := make([]sampling.ConstraintState, len(ids))
			for i := range ids {
				st := c.NewState()
				for _, id := range ids[:i] {
					if err := st.Advance(id); err != nil {
						b.Fatalf("token %d of %q: %v", i, tc.reply, err)
					}
				}
				states[i] = st
				_ = st.Allow(mask) // warm the caches
			}
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				_ = states[i%len(states)].Allow(mask)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/mask")
		})
	}
}
