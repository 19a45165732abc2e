package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"

	"github.com/fathom-llm/fathom/sampling/constrain"
	"github.com/fathom-llm/fathom/tokenizer"
)

// functionParam is a function of "tools" (or of the legacy "functions").
type functionParam struct {
	Name        *string         `json:"name"`
	Description string          `json:"description"`
	Parameters  json.RawMessage `json:"parameters"`
	Strict      *bool           `json:"strict"`
}

// toolParam is one entry of "tools".
type toolParam struct {
	Type     string         `json:"type"`
	Function *functionParam `json:"function"`
}

// callParam is a call in an assistant message's "tool_calls".
type callParam struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function *struct {
		Name      string  `json:"name"`
		Arguments *string `json:"arguments"`
	} `json:"function"`
}

// legacyCall is an assistant message's deprecated "function_call".
type legacyCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// Tool choices.
const (
	choiceNone     = "none"
	choiceAuto     = "auto"
	choiceRequired = "required"
	choiceFunction = "function" // one named function
)

// toolPlan is what a chat request says about functions: the functions, the compiled
// grammars of their arguments, and how the reply may call them.
type toolPlan struct {
	tools    []tokenizer.Tool
	args     []*constrain.Grammar // per tool, the grammar of its arguments
	choice   string
	named    string // the function of choiceFunction
	parallel bool   // more than one call allowed
	// legacy: the request used the deprecated "functions"; the reply's call is answered as
	// message.function_call, one call at most.
	legacy bool
}

// parses reports whether the reply is read for calls.
func (p *toolPlan) parses() bool { return p != nil && len(p.tools) > 0 && p.choice != choiceNone }

// functionName is the form of a function name the API accepts.
var functionName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// toolPlan validates "tools", "tool_choice", "parallel_tool_calls" and their deprecated forms
// "functions" and "function_call".
func (c *chatRequest) toolPlan() (*toolPlan, *apiError) {
	plan := &toolPlan{parallel: c.ParallelToolCalls == nil || *c.ParallelToolCalls}
	fns := make([]*functionParam, 0, len(c.Tools)+len(c.Functions))
	toolsParam, choiceParam, choice := "tools", "tool_choice", c.ToolChoice
	switch {
	case len(c.Tools) > 0 && len(c.Functions) > 0:
		return nil, invalid("functions", "Use either 'tools' or the deprecated 'functions', not both.")
	case present(c.ToolChoice) && present(c.FunctionCall):
		return nil, invalid("function_call", "Use either 'tool_choice' or the deprecated 'function_call', not both.")
	case len(c.Functions) > 0 || present(c.FunctionCall):
		toolsParam, choiceParam, choice = "functions", "function_call", c.FunctionCall
		plan.legacy, plan.parallel = true, false
		for i := range c.Functions {
			fns = append(fns, &c.Functions[i])
		}
	default:
		for i, t := range c.Tools {
			if t.Type != "function" {
				return nil, invalid(fmt.Sprintf("tools[%d].type", i),
					"Invalid value for 'tools[%d].type': %q. Supported values are: 'function'.", i, t.Type)
			}
			if t.Function == nil {
				return nil, missing(fmt.Sprintf("tools[%d].function", i))
			}
			fns = append(fns, t.Function)
		}
	}
	seen := map[string]bool{}
	for i, f := range fns {
		prefix := fmt.Sprintf("tools[%d].function", i)
		if toolsParam == "functions" {
			prefix = fmt.Sprintf("functions[%d]", i)
		}
		if f.Name == nil {
			return nil, missing(prefix + ".name")
		}
		if !functionName.MatchString(*f.Name) {
			return nil, invalid(prefix+".name", "Invalid '%s.name': %q. Function names are 1 to 64 letters, digits, underscores and dashes.", prefix, *f.Name)
		}
		if seen[*f.Name] {
			return nil, invalid(prefix+".name", "Invalid '%s.name': the function %q is defined twice.", prefix, *f.Name)
		}
		seen[*f.Name] = true
		args := constrain.JSONObject(constrain.JSONOptions{})
		if present(f.Parameters) {
			g, err := constrain.JSONSchema(f.Parameters, constrain.JSONOptions{})
			if err != nil {
				return nil, invalid(prefix+".parameters", "Invalid schema for function '%s': %v", *f.Name, err)
			}
			args = g
		}
		plan.tools = append(plan.tools, tokenizer.Tool{Name: *f.Name, Description: f.Description,
			Parameters: bytes.TrimSpace(f.Parameters)})
		plan.args = append(plan.args, args)
	}
	if len(plan.tools) == 0 {
		plan.tools, plan.args = nil, nil
	}
	if e := plan.setChoice(choice, choiceParam); e != nil {
		return nil, e
	}
	return plan, nil
}

// setChoice reads "tool_choice" (or "function_call", param): absent, "none" when there are
// no functions and "auto" when there are.
func (p *toolPlan) setChoice(raw json.RawMessage, param string) *apiError {
	if !present(raw) {
		p.choice = choiceNone
		if len(p.tools) > 0 {
			p.choice = choiceAuto
		}
		return nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		switch {
		case s == choiceNone || s == choiceAuto || (s == choiceRequired && param == "tool_choice"):
			p.choice = s
		default:
			return invalid(param, "Invalid value for '%s': %q. Supported values are: 'none', 'auto', 'required', or an object naming a function.", param, s)
		}
		if p.choice == choiceRequired && len(p.tools) == 0 {
			return invalid(param, "Invalid value for '%s': 'required' is only allowed when 'tools' are specified.", param)
		}
		return nil
	}
	// {"type": "function", "function": {"name": ...}}, or {"name": ...} for function_call.
	var named struct {
		Type     string `json:"type"`
		Name     string `json:"name"`
		Function *struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := unmarshalStrict(raw, &named, param); err != nil {
		if e := jsonError(err); e.Code == "unknown_parameter" {
			return e
		}
		return invalidType(param, "a string or an object naming a function")
	}
	name := named.Name
	if param == "tool_choice" {
		if named.Type != "function" || named.Function == nil {
			return invalid(param, "Invalid value for 'tool_choice': an object must be {\"type\": \"function\", \"function\": {\"name\": ...}}.")
		}
		name = named.Function.Name
	}
	for _, t := range p.tools {
		if t.Name == name {
			p.choice, p.named = choiceFunction, name
			return nil
		}
	}
	return invalid(param, "Invalid value for '%s': the function %q is not among the functions given in 'tools'.", param, name)
}

// missing returns a 400 for a required parameter that is absent.
func missing(param string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Param: param,
		Code: "missing_required_parameter", Message: fmt.Sprintf("Missing required parameter: '%s'.", param)}
}

// conversation converts the messages: roles checked, calls of assistant turns read (with the
// deprecated function_call), and every tool result matched to an earlier call.
func (c *chatRequest) conversation() ([]tokenizer.Message, *apiError) {
	if len(c.Messages) == 0 {
		return nil, &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Param: "messages",
			Code: "missing_required_parameter", Message: "'messages' must be a non-empty array."}
	}
	out := make([]tokenizer.Message, len(c.Messages))
	calls := map[string]string{}  // call ID -> function name, of the calls made so far
	lastOf := map[string]string{} // function name -> ID of its latest call
	for i := range c.Messages {
		msg := &c.Messages[i]
		m, e := msg.message(i)
		if e != nil {
			return nil, e
		}
		at := func(field string) string { return fmt.Sprintf("messages[%d].%s", i, field) }
		switch m.Role {
		case "assistant":
			for j, tc := range msg.ToolCalls {
				p := at(fmt.Sprintf("tool_calls[%d]", j))
				switch {
				case tc.ID == "":
					return nil, missing(p + ".id")
				case tc.Type != "function":
					return nil, invalid(p+".type", "Invalid value for '%s.type': %q. Supported values are: 'function'.", p, tc.Type)
				case tc.Function == nil:
					return nil, missing(p + ".function")
				case tc.Function.Name == "":
					return nil, missing(p + ".function.name")
				case tc.Function.Arguments == nil:
					return nil, missing(p + ".function.arguments")
				}
				m.ToolCalls = append(m.ToolCalls, tokenizer.ToolCall{ID: tc.ID, Name: tc.Function.Name, Arguments: *tc.Function.Arguments})
			}
			if msg.FunctionCall != nil {
				if len(m.ToolCalls) > 0 {
					return nil, invalid(at("function_call"), "Use either 'tool_calls' or the deprecated 'function_call' in one message, not both.")
				}
				if msg.FunctionCall.Name == "" {
					return nil, missing(at("function_call.name"))
				}
				m.ToolCalls = []tokenizer.ToolCall{{ID: tokenizer.NewToolCallID(), Name: msg.FunctionCall.Name, Arguments: msg.FunctionCall.Arguments}}
			}
			for _, tc := range m.ToolCalls {
				calls[tc.ID], lastOf[tc.Name] = tc.Name, tc.ID
			}
		case "tool":
			if msg.Role == "function" { // deprecated: answers the latest call of the function named
				if msg.Name == nil || *msg.Name == "" {
					return nil, missing(at("name"))
				}
				id, ok := lastOf[*msg.Name]
				if !ok {
					return nil, invalid(at("name"), "Invalid 'messages[%d].name': no earlier message calls the function %q.", i, *msg.Name)
				}
				m.ToolCallID, m.Name = id, *msg.Name
				break
			}
			if msg.ToolCallID == nil || *msg.ToolCallID == "" {
				return nil, missing(at("tool_call_id"))
			}
			name, ok := calls[*msg.ToolCallID]
			if !ok {
				return nil, invalid(at("tool_call_id"), "Invalid 'messages[%d].tool_call_id': %q answers no tool call of an earlier assistant message.", i, *msg.ToolCallID)
			}
			m.ToolCallID, m.Name = *msg.ToolCallID, name
		}
		if m.Role != "assistant" && (len(msg.ToolCalls) > 0 || msg.FunctionCall != nil) {
			return nil, invalid(at("tool_calls"), "Only assistant messages make tool calls.")
		}
		if m.Role == "assistant" && m.Content == "" && len(m.ToolCalls) == 0 && msg.contentMissing() {
			return nil, missing(at("content"))
		}
		out[i] = m
	}
	return out, nil
}
