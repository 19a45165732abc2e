package constrain_test

import (
	"encoding/json"
	"fmt"
	"math/bits"

	"github.com/fathom-llm/fathom/sampling/constrain"
)

// A tool-call grammar: one or more calls to either of two functions, each call's arguments
// constrained by the function's JSON Schema, driven by hand over a small vocabulary.
func Example() {
	tools := []struct {
		name   string
		schema string
	}{
		{"get_weather", `{"type":"object","properties":{"city":{"type":"string","maxLength":20},"unit":{"enum":["C","F"]}},"required":["city"],"additionalProperties":false}`},
		{"get_time", `{"type":"object","properties":{"zone":{"type":"string","format":"uuid"}}}`},
	}
	var calls []*constrain.Grammar
	for _, t := range tools {
		args, err := constrain.JSONSchema([]byte(t.schema), constrain.JSONOptions{MaxBlanks: -1})
		if err != nil {
			fmt.Println(err)
			return
		}
		name, _ := json.Marshal(t.name)
		calls = append(calls, constrain.Seq(
			constrain.Literal(`{"name":`+string(name)+`,"arguments":`), args, constrain.Literal("}")))
	}
	call := constrain.Seq(constrain.Literal("<tool_call>"), constrain.Alt(calls...), constrain.Literal("</tool_call>"))
	g := constrain.Seq(call, constrain.Star(constrain.Seq(constrain.Literal("\n"), call)))

	// A toy vocabulary; a real one comes from constrain.VocabFor(tokenizer).
	words := []string{"<tool_call>", "</tool_call>", `{"name":`, `"get_weather"`, `"get_time"`,
		`,"arguments":`, `{"city":`, `"Paris"`, `,"unit":`, `"C"`, "}", "\n", "hello"}
	tokens := make([][]byte, len(words))
	for i, w := range words {
		tokens[i] = []byte(w)
	}
	c, err := constrain.NewVocab(tokens).Compile(g)
	if err != nil {
		fmt.Println(err)
		return
	}
	m := c.NewMatcher()
	mask := make([]uint64, 1)
	// A model would choose among the allowed tokens; this script chooses for it.
	script := []int{0, 2, 3, 5, 6, 7, 8, 9, 10, 10, 1}
	for _, want := range script {
		if err := m.Allow(mask); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%d allowed, %q chosen\n", bits.OnesCount64(mask[0]), words[want])
		if err := m.Advance(want); err != nil {
			fmt.Println(err)
			return
		}
	}
	fmt.Println("accepting:", m.Accepting())
	fmt.Println("hello refused:", m.Advance(12) != nil)
	// Output:
	// 1 allowed, "<tool_call>" chosen
	// 1 allowed, "{\"name\":" chosen
	// 2 allowed, "\"get_weather\"" chosen
	// 1 allowed, ",\"arguments\":" chosen
	// 1 allowed, "{\"city\":" chosen
	// 4 allowed, "\"Paris\"" chosen
	// 2 allowed, ",\"unit\":" chosen
	// 1 allowed, "\"C\"" chosen
	// 1 allowed, "}" chosen
	// 1 allowed, "}" chosen
	// 1 allowed, "</tool_call>" chosen
	// accepting: true
	// hello refused: true
}

// A regular expression and a choice of strings.
func ExampleRegex() {
	g, err := constrain.Regex(`[A-Z]{2}-\d{3}`)
	if err != nil {
		fmt.Println(err)
		return
	}
	g = constrain.Alt(g, constrain.Choice("none", "unknown"))
	tokens := [][]byte{[]byte("AB"), []byte("-"), []byte("123"), []byte("12"), []byte("3"), []byte("none")}
	c, _ := constrain.NewVocab(tokens).Compile(g)
	m := c.NewMatcher()
	for _, id := range []int{0, 1, 3, 4} {
		fmt.Println(string(tokens[id]), m.Advance(id) == nil, m.Accepting())
	}
	// Output:
	// AB true false
	// - true false
	// 12 true false
	// 3 true true
}
