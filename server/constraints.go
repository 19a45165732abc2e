package server

import (
	"encoding/json"
	"sync"

	"github.com/fathom-llm/fathom/sampling"
	"github.com/fathom-llm/fathom/sampling/constrain"
	"github.com/fathom-llm/fathom/tokenizer"
)

// responseFormat is the "response_format" parameter.
type responseFormat struct {
	Type       string `json:"type"`
	JSONSchema *struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Schema      json.RawMessage `json:"schema"`
		Strict      *bool           `json:"strict"`
	} `json:"json_schema"`
}

// grammar returns the grammar of the replies a response format allows: nil for text.
func (rf *responseFormat) grammar() (*constrain.Grammar, *apiError) {
	if rf == nil {
		return nil, nil
	}
	switch rf.Type {
	case "", "text":
		return nil, nil
	case "json_object":
		return constrain.JSONObject(constrain.JSONOptions{}), nil
	case "json_schema":
		js := rf.JSONSchema
		if js == nil {
			return nil, missing("response_format.json_schema")
		}
		if !functionName.MatchString(js.Name) {
			return nil, invalid("response_format.json_schema.name",
				"Invalid 'response_format.json_schema.name': %q. Names are 1 to 64 letters, digits, underscores and dashes.", js.Name)
		}
		schema := js.Schema
		if !present(schema) {
			schema = json.RawMessage(`{}`) // no schema: any JSON value
		}
		g, err := constrain.JSONSchema(schema, constrain.JSONOptions{})
		if err != nil {
			return nil, invalid("response_format.json_schema.schema", "Invalid schema for response_format '%s': %v", js.Name, err)
		}
		return g, nil
	}
	return nil, invalid("response_format.type", "Invalid value for 'response_format.type': %q. Supported values are: 'text', 'json_object' and 'json_schema'.", rf.Type)
}

// freeText is the grammar of text that does not contain tokenizer.ToolCallOpen: what a reply
// may write before its calls when the model chooses (tool_choice "auto").
var freeText = sync.OnceValue(func() *constrain.Grammar {
	t := tokenizer.ToolCallOpen // its '<' occurs only at its start
	notBytes := func(ex ...byte) *constrain.Grammar {
		var alts []*constrain.Grammar
		lo := 0
		for b := range 257 {
			if b == 256 || containsByte(ex, byte(b)) {
				if b > lo {
					alts = append(alts, constrain.ByteRange(byte(lo), byte(b-1)))
				}
				lo = b + 1
			}
		}
		return constrain.Alt(alts...)
	}
	// After '<', a partial match of the markup: a proper prefix of the rest of it.
	var partial, closed []*constrain.Grammar
	for k := 1; k < len(t); k++ {
		partial = append(partial, constrain.Literal(t[1:k]))
		// The partial match then a byte that neither continues it nor begins it again.
		closed = append(closed, constrain.Seq(constrain.Literal(t[1:k]), notBytes('<', t[k])))
	}
	partials := constrain.Star(constrain.Seq(constrain.Literal("<"), constrain.Alt(partial...)))
	// Partial matches stand before another '<' or at the end; one closed by a byte ends the run.
	run := constrain.Seq(partials, constrain.Literal("<"), constrain.Alt(closed...))
	tail := constrain.Optional(constrain.Seq(constrain.Literal("<"), constrain.Alt(partial...), partials))
	return constrain.Seq(constrain.Star(constrain.Alt(notBytes('<'), run)), tail)
})

func containsByte(bs []byte, b byte) bool {
	for _, c := range bs {
		if c == b {
			return true
		}
	}
	return false
}

// callsGrammar returns the grammar of one call or more (or one, when the plan forbids
// parallel calls) in the ChatMLTools format, of the functions the plan allows.
func (p *toolPlan) callsGrammar() *constrain.Grammar {
	var calls []*constrain.Grammar
	for i, t := range p.tools {
		if p.choice == choiceFunction && t.Name != p.named {
			continue
		}
		name, _ := json.Marshal(t.Name)
		calls = append(calls, constrain.Seq(constrain.Literal(`{"name": `+string(name)+`, "arguments": `),
			p.args[i], constrain.Literal("}")))
	}
	one := constrain.Seq(constrain.Literal(tokenizer.ToolCallOpen+"\n"), constrain.Alt(calls...),
		constrain.Literal("\n"+tokenizer.ToolCallClose))
	if !p.parallel {
		return one
	}
	return constrain.Seq(one, constrain.Star(constrain.Seq(constrain.Literal("\n"), one)))
}

// constraint returns the constraint of a request's replies, or nil when they are free: the
// response format's JSON, and the calls the tool choice allows ("auto": text, or the
// response format's JSON, or calls; "required" and a named function: calls only).
func (s *Server) constraint(rf *responseFormat, plan *toolPlan) (sampling.Constraint, *apiError) {
	text, e := rf.grammar()
	if e != nil {
		return nil, e
	}
	var g *constrain.Grammar
	param := "response_format"
	switch {
	case plan == nil || len(plan.tools) == 0 || plan.choice == choiceNone:
		g = text
	case plan.choice == choiceAuto && text == nil:
		g = constrain.Seq(freeText(), constrain.Optional(plan.callsGrammar()))
		param = "tool_choice"
	case plan.choice == choiceAuto:
		g = constrain.Alt(text, plan.callsGrammar())
	default:
		g, param = plan.callsGrammar(), "tool_choice"
	}
	if g == nil {
		return nil, nil
	}
	v := s.vocab()
	if v == nil {
		if plan != nil && plan.choice == choiceAuto && text == nil {
			return nil, nil // calls are read from the reply without constraint
		}
		return nil, unsupported(param, "This model does not support constrained decoding (structured output, required tool calls).")
	}
	c, err := v.Compile(g)
	if err != nil {
		return nil, invalid(param, "The schemas of this request cannot be enforced: %v", err)
	}
	return c, nil
}

// vocab returns the vocabulary that constraints are compiled against: that of the model's
// tokenizer, or nil when the model has none.
func (s *Server) vocab() *constrain.Vocab {
	switch m := s.model.(type) {
	case interface{ Vocab() *constrain.Vocab }:
		return m.Vocab()
	case interface{ Tokenizer() *tokenizer.Tokenizer }:
		if tok := m.Tokenizer(); tok != nil {
			return constrain.VocabFor(tok)
		}
	}
	return nil
}
