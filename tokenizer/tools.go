package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"

	"github.com/ardanlabs/jinja"
)

// ChatMLTools renders a conversation with tools in ChatML, the format of ChatML models tuned
// for function calling (Hermes-style), so that such checkpoints work unchanged. It is used
// when a conversation has tools, tool calls or tool turns and the checkpoint's template does
// not take tools.
//
// The system turn describes the functions, one JSON object per line inside <tools></tools>
// ({"type": "function", "function": {"name", "description", "parameters"}}), after the
// conversation's first message when that is a system message. An assistant turn writes each
// call on its own as
//
//	<tool_call>
//	{"name": "get_weather", "arguments": {"city": "Paris"}}
//	</tool_call>
//
// after its text, if any; calls are separated by a newline. A result comes back in a "tool"
// turn: <|im_start|>tool, then the result inside <tool_response></tool_response> on lines of
// its own. ParseToolCalls and ToolCallParser read calls written this way.
const ChatMLTools = `{%- if tools -%}` +
	`{{- '<|im_start|>system\n' -}}` +
	`{%- if messages and messages[0]['role'] == 'system' -%}{{- messages[0]['content'] + '\n\n' -}}{%- endif -%}` +
	`{{- 'You may call one or more functions to assist with the user query. The functions are described within <tools></tools> XML tags:\n<tools>\n' -}}` +
	`{%- for tool in tools -%}{{- tool | tojson -}}{{- '\n' -}}{%- endfor -%}` +
	`{{- '</tools>\nFor each function call, return a JSON object with the function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n' -}}` +
	`{%- endif -%}` +
	`{%- for message in messages -%}` +
	`{%- if message['role'] == 'system' and tools and loop.first -%}` +
	`{%- elif message['role'] == 'assistant' and message['tool_calls'] -%}` +
	`{{- '<|im_start|>assistant\n' -}}` +
	`{%- if message['content'] -%}{{- message['content'] + '\n' -}}{%- endif -%}` +
	`{%- for call in message['tool_calls'] -%}` +
	`{%- if not loop.first -%}{{- '\n' -}}{%- endif -%}` +
	`{{- '<tool_call>\n{"name": ' + (call['function']['name'] | tojson) + ', "arguments": ' -}}` +
	`{%- if call['function']['arguments'] is string -%}{{- call['function']['arguments'] -}}{%- else -%}{{- call['function']['arguments'] | tojson -}}{%- endif -%}` +
	`{{- '}\n</tool_call>' -}}` +
	`{%- endfor -%}` +
	`{{- '<|im_end|>\n' -}}` +
	`{%- elif message['role'] == 'tool' -%}` +
	`{{- '<|im_start|>tool\n<tool_response>\n' + message['content'] + '\n</tool_response><|im_end|>\n' -}}` +
	`{%- else -%}` +
	`{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' -}}` +
	`{%- endif -%}` +
	`{%- endfor -%}` +
	`{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}`

// toolsWord finds a template that refers to `tools`, the transformers convention for
// templates that describe functions.
var toolsWord = regexp.MustCompile(`\btools\b`)

// takesTools reports whether a chat template takes tools.
func takesTools(src string) bool { return toolsWord.MatchString(src) }

// usesTools reports whether a conversation involves tools: tools given, tool calls made or
// tool results returned.
func usesTools(msgs []Message, tools []Tool) bool {
	if len(tools) > 0 {
		return true
	}
	for _, m := range msgs {
		if len(m.ToolCalls) > 0 || m.Role == "tool" {
			return true
		}
	}
	return false
}

// chatContext builds a template's data. mark transforms every string the caller supplied
// (plain: made valid UTF-8; marked: also wrapped in content markers).
type chatContext struct {
	tok  *Tokenizer
	mark func(string) string
	// risky is set when a string other than a message content holds an added token.
	risky bool
}

// str returns a caller's string as a template value; content says it is a message content.
func (c *chatContext) str(s string, content bool) jinja.Value {
	if s == "" {
		return jinja.NewString("")
	}
	if !content && c.tok.hasAddedMatch(s) {
		c.risky = true
	}
	return jinja.NewString(c.mark(s))
}

// dict returns a template dict of the given keys and values, in order.
func dict(kv ...any) jinja.Value {
	d := jinja.NewDict()
	for i := 0; i+1 < len(kv); i += 2 {
		d.AsDict().Set(kv[i].(string), kv[i+1].(jinja.Value))
	}
	return d
}

// data returns the template data of a conversation, in the transformers convention:
// messages (role, content; tool_calls [{id, type, function {name, arguments}}] with the
// arguments as an object when they parse as one; tool_call_id and name in tool turns), tools
// ([{type, function {name, description, parameters}}], or none), add_generation_prompt,
// bos_token and eos_token.
func (c *chatContext) data(msgs []Message, opts ChatOptions) (map[string]jinja.Value, error) {
	list := make([]jinja.Value, len(msgs))
	for i, m := range msgs {
		d := dict("role", jinja.NewString(validUTF8(m.Role)), "content", c.str(m.Content, true))
		if len(m.ToolCalls) > 0 {
			calls := make([]jinja.Value, len(m.ToolCalls))
			for j, tc := range m.ToolCalls {
				args, err := c.json([]byte(tc.Arguments))
				if err != nil || !args.IsDict() {
					args = c.str(tc.Arguments, false)
				}
				calls[j] = dict("id", c.str(tc.ID, false), "type", jinja.NewString("function"),
					"function", dict("name", c.str(tc.Name, false), "arguments", args))
			}
			d.AsDict().Set("tool_calls", jinja.NewList(calls))
		}
		if m.ToolCallID != "" {
			d.AsDict().Set("tool_call_id", c.str(m.ToolCallID, false))
		}
		if m.Name != "" {
			d.AsDict().Set("name", c.str(m.Name, false))
		}
		list[i] = d
	}
	tools := jinja.None()
	if len(opts.Tools) > 0 {
		defs := make([]jinja.Value, len(opts.Tools))
		for i, tl := range opts.Tools {
			f := dict("name", c.str(tl.Name, false))
			if tl.Description != "" {
				f.AsDict().Set("description", c.str(tl.Description, false))
			}
			if len(bytes.TrimSpace(tl.Parameters)) > 0 {
				p, err := c.json(tl.Parameters)
				if err != nil {
					return nil, fmt.Errorf("%w: the parameters of tool %q: %v", ErrTemplate, tl.Name, err)
				}
				f.AsDict().Set("parameters", p)
			}
			defs[i] = dict("type", jinja.NewString("function"), "function", f)
		}
		tools = jinja.NewList(defs)
	}
	return map[string]jinja.Value{
		"messages":              jinja.NewList(list),
		"tools":                 tools,
		"add_generation_prompt": jinja.NewBool(opts.AddGenerationPrompt),
		"bos_token":             jinja.NewString(c.tok.tokenOrEmpty(c.tok.bos)),
		"eos_token":             jinja.NewString(c.tok.tokenOrEmpty(c.tok.eos)),
	}, nil
}

// errSpecialKey reports an object key, in tool definitions or arguments, that holds an added
// token: keys cannot be kept plain text, so they may not hold one.
var errSpecialKey = errors.New("an object key holds a special token")

// json converts one JSON value to a template value, objects keeping their key order and
// strings going through c.str.
func (c *chatContext) json(raw []byte) (jinja.Value, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := c.jsonValue(dec)
	if err != nil {
		return jinja.Undefined(), err
	}
	if _, err := dec.Token(); err != io.EOF {
		return jinja.Undefined(), errors.New("unexpected data after the JSON value")
	}
	return v, nil
}

func (c *chatContext) jsonValue(dec *json.Decoder) (jinja.Value, error) {
	tok, err := dec.Token()
	if err != nil {
		return jinja.Undefined(), err
	}
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			var items []jinja.Value
			for dec.More() {
				v, err := c.jsonValue(dec)
				if err != nil {
					return jinja.Undefined(), err
				}
				items = append(items, v)
			}
			_, err := dec.Token()
			return jinja.NewList(items), err
		}
		d := jinja.NewDict()
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return jinja.Undefined(), err
			}
			k, _ := kt.(string)
			if c.tok.hasAddedMatch(k) {
				return jinja.Undefined(), fmt.Errorf("%w: %q", errSpecialKey, k)
			}
			v, err := c.jsonValue(dec)
			if err != nil {
				return jinja.Undefined(), err
			}
			d.AsDict().Set(validUTF8(k), v)
		}
		_, err := dec.Token()
		return d, err
	case string:
		return c.str(t, false), nil
	case json.Number:
		return jinja.FromGoValue(t), nil
	case bool:
		return jinja.NewBool(t), nil
	}
	return jinja.None(), nil
}
