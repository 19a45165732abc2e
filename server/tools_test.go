package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// weatherTool and timeTool are the functions of the tool tests.
var (
	weatherTool = openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
		Name:        "get_weather",
		Description: openai.String("Current weather of a city."),
		Parameters: openai.FunctionParameters{"type": "object", "required": []string{"city"},
			"properties": map[string]any{"city": map[string]any{"type": "string"}}},
	})
	timeTool = openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
		Name: "get_time",
		Parameters: openai.FunctionParameters{"type": "object", "required": []string{"zone"}, "additionalProperties": false,
			"properties": map[string]any{"zone": map[string]any{"type": "string", "enum": []string{"UTC", "CET"}}}},
	})
)

const parisCall = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"

func toolParams(tools ...openai.ChatCompletionToolUnionParam) openai.ChatCompletionNewParams {
	p := chatParams("What is the weather in Paris?")
	p.Tools = tools
	p.MaxTokens = openai.Int(120)
	return p
}

// checkCall checks one call of a response: its ID, type, name and arguments (as JSON values).
func checkCall(t *testing.T, c openai.ChatCompletionMessageToolCallUnion, name, args string) {
	t.Helper()
	if !strings.HasPrefix(c.ID, "call_") || c.Type != "function" || c.Function.Name != name {
		t.Errorf("call %s, want %s(%s)", c.RawJSON(), name, args)
		return
	}
	var got, want any
	if err := json.Unmarshal([]byte(c.Function.Arguments), &got); err != nil {
		t.Errorf("arguments %q: %v", c.Function.Arguments, err)
	}
	json.Unmarshal([]byte(args), &want)
	if g, _ := json.Marshal(got); string(g) != mustJSON(want) {
		t.Errorf("arguments %s, want %s", c.Function.Arguments, args)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestSDKToolCall: with tool_choice "required" the reply is calls alone: content null,
// finish reason "tool_calls", plain and streamed alike (the call's index, ID and name in its
// first delta, the arguments in pieces after it).
func TestSDKToolCall(t *testing.T) {
	m := newFake()
	m.want = parisCall
	_, client := serve(t, m, Options{})
	p := toolParams(weatherTool, timeTool)
	p.ToolChoice = openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")}
	res, err := client.Chat.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	c := res.Choices[0]
	if c.FinishReason != "tool_calls" || len(c.Message.ToolCalls) != 1 || !strings.Contains(c.Message.RawJSON(), `"content":null`) {
		t.Fatalf("choice %s", c.RawJSON())
	}
	checkCall(t, c.Message.ToolCalls[0], "get_weather", `{"city": "Paris"}`)
	if got := m.last.Load().Tools; len(got) != 2 || got[0].Name != "get_weather" || !strings.Contains(string(got[1].Parameters), `"enum"`) {
		t.Errorf("the model got tools %+v", got)
	}

	acc, chunks := collectStream(t, client, p)
	if len(acc.Choices) != 1 || acc.Choices[0].FinishReason != "tool_calls" || len(acc.Choices[0].Message.ToolCalls) != 1 {
		t.Fatalf("stream: %+v", acc.Choices)
	}
	checkCall(t, acc.Choices[0].Message.ToolCalls[0], "get_weather", `{"city": "Paris"}`)
	var pieces int
	for _, ch := range chunks {
		for _, cc := range ch.Choices {
			for j, td := range cc.Delta.ToolCalls {
				first := pieces == 0
				pieces++
				if td.Index != 0 || j != 0 || (first != (td.ID != "")) || (first != (td.Function.Name == "get_weather")) ||
					(first != (td.Type == "function")) {
					t.Errorf("delta %d: %s", pieces, cc.Delta.RawJSON())
				}
			}
		}
	}
	if pieces < 3 {
		t.Errorf("the call came in %d deltas, want its arguments in pieces", pieces)
	}
}

// TestSDKToolChoices: "auto" writes text or calls, "none" never calls (a call written as
// text stays text), a named function is the one called, and parallel_tool_calls false allows
// one call.
func TestSDKToolChoices(t *testing.T) {
	twoCalls := parisCall + "\n" + strings.ReplaceAll(parisCall, "Paris", "Rome")
	for _, tc := range []struct {
		name, want string
		choice     openai.ChatCompletionToolChoiceOptionUnionParam
		parallel   *bool
		text       string   // the content, "" for null
		calls      []string // name(arguments) of each call
		finish     string
	}{
		{name: "auto text", want: "It is sunny.", text: "It is sunny.", finish: "stop"},
		{name: "auto call", want: "Let me look.\n" + parisCall, text: "Let me look.",
			calls: []string{`get_weather{"city":"Paris"}`}, finish: "tool_calls"},
		{name: "auto two calls", want: twoCalls,
			calls: []string{`get_weather{"city":"Paris"}`, `get_weather{"city":"Rome"}`}, finish: "tool_calls"},
		{name: "not parallel", want: twoCalls, parallel: openai.Ptr(false),
			calls: []string{`get_weather{"city":"Paris"}`}, finish: "tool_calls"},
		{name: "none", want: parisCall, choice: openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("none")},
			text: parisCall, finish: "stop"},
		{name: "named", want: parisCall, choice: openai.ToolChoiceOptionFunctionToolChoice(openai.ChatCompletionNamedToolChoiceFunctionParam{Name: "get_time"}),
			calls: []string{`get_time{"zone":"CET"}`}, finish: "tool_calls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newFake()
			m.want = tc.want
			_, client := serve(t, m, Options{})
			p := toolParams(weatherTool, timeTool)
			p.ToolChoice = tc.choice
			if tc.parallel != nil {
				p.ParallelToolCalls = openai.Bool(*tc.parallel)
			}
			res, err := client.Chat.Completions.New(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			acc, _ := collectStream(t, client, p)
			for _, c := range []openai.ChatCompletionChoice{res.Choices[0], acc.Choices[0]} {
				msg := c.Message
				if string(c.FinishReason) != tc.finish || msg.Content != tc.text || len(msg.ToolCalls) != len(tc.calls) {
					t.Fatalf("choice %s", c.RawJSON())
				}
				for i, call := range msg.ToolCalls {
					var args any
					json.Unmarshal([]byte(call.Function.Arguments), &args)
					if got := call.Function.Name + mustJSON(args); got != tc.calls[i] {
						t.Errorf("call %d: %s, want %s", i, got, tc.calls[i])
					}
				}
			}
		})
	}
}

// TestSDKToolConversation: a multi-turn exchange: the assistant's call (content null) and the
// tool's result go back to the model, which answers.
func TestSDKToolConversation(t *testing.T) {
	m := newFake()
	m.want = "It is sunny in Paris."
	_, client := serve(t, m, Options{})
	call := openai.ChatCompletionMessageToolCallUnionParam{OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{
		ID: "call_abc", Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{Name: "get_weather", Arguments: `{"city":"Paris"}`}}}
	p := toolParams(weatherTool)
	p.Messages = []openai.ChatCompletionMessageParamUnion{
		openai.SystemMessage("Be brief."),
		openai.UserMessage("Weather in Paris?"),
		{OfAssistant: &openai.ChatCompletionAssistantMessageParam{ToolCalls: []openai.ChatCompletionMessageToolCallUnionParam{call}}},
		openai.ToolMessage("sunny, 24 C", "call_abc"),
	}
	res, err := client.Chat.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if c := res.Choices[0]; c.Message.Content != "It is sunny in Paris." || c.FinishReason != "stop" || len(c.Message.ToolCalls) != 0 {
		t.Errorf("answer %s", c.RawJSON())
	}
	msgs := m.last.Load().Messages
	if len(msgs) != 4 || len(msgs[2].ToolCalls) != 1 || msgs[2].ToolCalls[0].Arguments != `{"city":"Paris"}` ||
		msgs[2].ToolCalls[0].ID != "call_abc" || msgs[3].Role != "tool" || msgs[3].ToolCallID != "call_abc" ||
		msgs[3].Name != "get_weather" || msgs[3].Content != "sunny, 24 C" {
		t.Errorf("the model got %+v", msgs)
	}
}

// TestLegacyFunctions: the deprecated functions and function_call work as tools do, and the
// call is answered as message.function_call.
func TestLegacyFunctions(t *testing.T) {
	m := newFake()
	m.want = parisCall
	ts, _ := serve(t, m, Options{})
	const fns = `"functions":[{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}]`
	resp, body := post(t, ts, "/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user","content":"hi"}],`+
		fns+`,"function_call":{"name":"get_weather"}}`)
	var got struct {
		Choices []struct {
			Message struct {
				Content      *string
				FunctionCall *struct{ Name, Arguments string } `json:"function_call"`
				ToolCalls    []any                             `json:"tool_calls"`
			}
			FinishReason string `json:"finish_reason"`
		}
	}
	if err := json.Unmarshal(body, &got); err != nil || resp.StatusCode != 200 || len(got.Choices) != 1 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	c := got.Choices[0]
	if c.FinishReason != "function_call" || c.Message.Content != nil || c.Message.ToolCalls != nil ||
		c.Message.FunctionCall == nil || c.Message.FunctionCall.Name != "get_weather" || c.Message.FunctionCall.Arguments != `{"city": "Paris"}` {
		t.Errorf("response %s", body)
	}
	// A conversation with the deprecated call and the function's result.
	resp, body = post(t, ts, "/v1/chat/completions", `{"model":"test-model",`+fns+`,"messages":[{"role":"user","content":"hi"},`+
		`{"role":"assistant","content":null,"function_call":{"name":"get_weather","arguments":"{}"}},`+
		`{"role":"function","name":"get_weather","content":"sunny"}],"function_call":"none"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	msgs := m.last.Load().Messages
	if len(msgs) != 3 || len(msgs[1].ToolCalls) != 1 || msgs[2].Role != "tool" || msgs[2].ToolCallID != msgs[1].ToolCalls[0].ID {
		t.Errorf("the model got %+v", msgs)
	}
}

// TestSDKResponseFormat: json_object and json_schema replies are JSON (of the schema), in chat
// and text completions.
func TestSDKResponseFormat(t *testing.T) {
	_, client := serve(t, newFake(), Options{})
	ctx := context.Background()
	schema := map[string]any{"type": "object", "required": []string{"name", "age"}, "additionalProperties": false,
		"properties": map[string]any{"name": map[string]any{"type": "string"}, "age": map[string]any{"type": "integer", "minimum": 3}}}
	p := chatParams("Describe a person.")
	p.MaxTokens = openai.Int(100)
	p.ResponseFormat = openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &openai.ResponseFormatJSONSchemaParam{
		JSONSchema: openai.ResponseFormatJSONSchemaJSONSchemaParam{Name: "person", Schema: schema, Strict: openai.Bool(true)}}}
	res, err := client.Chat.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	var person struct {
		Name *string
		Age  *int
	}
	if err := json.Unmarshal([]byte(res.Choices[0].Message.Content), &person); err != nil || person.Name == nil || person.Age == nil || *person.Age < 3 {
		t.Errorf("json_schema reply %q (%v)", res.Choices[0].Message.Content, err)
	}
	p.ResponseFormat = openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &openai.ResponseFormatJSONObjectParam{}}
	acc, _ := collectStream(t, client, p)
	var obj map[string]any
	if err := json.Unmarshal([]byte(acc.Choices[0].Message.Content), &obj); err != nil {
		t.Errorf("json_object reply %q: %v", acc.Choices[0].Message.Content, err)
	}
	cres, err := client.Completions.New(ctx, openai.CompletionNewParams{Model: testModelName, MaxTokens: openai.Int(50),
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("x")}},
		option.WithJSONSet("response_format", map[string]any{"type": "json_object"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(cres.Choices[0].Text), &obj); err != nil {
		t.Errorf("completion reply %q: %v", cres.Choices[0].Text, err)
	}
}

// TestSDKToolErrors: each mistake about functions is a 400 naming its parameter.
func TestSDKToolErrors(t *testing.T) {
	_, client := serve(t, newFake(), Options{})
	ctx := context.Background()
	user := openai.UserMessage("hi")
	call := openai.ChatCompletionMessageToolCallUnionParam{OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{
		ID: "call_1", Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{Name: "get_weather", Arguments: `{}`}}}
	assistant := openai.ChatCompletionMessageParamUnion{OfAssistant: &openai.ChatCompletionAssistantMessageParam{
		ToolCalls: []openai.ChatCompletionMessageToolCallUnionParam{call}}}
	for _, tc := range []struct {
		name, param string
		opts        []option.RequestOption
		edit        func(p *openai.ChatCompletionNewParams)
	}{
		{name: "unknown tool_choice", param: "tool_choice", opts: []option.RequestOption{option.WithJSONSet("tool_choice", "bogus")}},
		{name: "named function not in tools", param: "tool_choice", edit: func(p *openai.ChatCompletionNewParams) {
			p.ToolChoice = openai.ToolChoiceOptionFunctionToolChoice(openai.ChatCompletionNamedToolChoiceFunctionParam{Name: "launch"})
		}},
		{name: "required without tools", param: "tool_choice", edit: func(p *openai.ChatCompletionNewParams) {
			p.Tools = nil
			p.ToolChoice = openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")}
		}},
		{name: "tool_call_id matches no call", param: "messages[2].tool_call_id", edit: func(p *openai.ChatCompletionNewParams) {
			p.Messages = []openai.ChatCompletionMessageParamUnion{user, assistant, openai.ToolMessage("sunny", "call_2")}
		}},
		{name: "tool result before its call", param: "messages[1].tool_call_id", edit: func(p *openai.ChatCompletionNewParams) {
			p.Messages = []openai.ChatCompletionMessageParamUnion{user, openai.ToolMessage("sunny", "call_1"), assistant}
		}},
		{name: "tool message without tool_call_id", param: "messages[2].tool_call_id", opts: []option.RequestOption{
			option.WithJSONSet("messages", []any{map[string]any{"role": "user", "content": "hi"},
				map[string]any{"role": "assistant", "tool_calls": []any{map[string]any{"id": "c", "type": "function",
					"function": map[string]any{"name": "get_weather", "arguments": "{}"}}}},
				map[string]any{"role": "tool", "content": "x"}})}},
		{name: "call without id", param: "messages[1].tool_calls[0].id", opts: []option.RequestOption{
			option.WithJSONSet("messages", []any{map[string]any{"role": "user", "content": "hi"},
				map[string]any{"role": "assistant", "tool_calls": []any{map[string]any{"type": "function",
					"function": map[string]any{"name": "get_weather", "arguments": "{}"}}}}})}},
		{name: "tool type", param: "tools[0].type", opts: []option.RequestOption{option.WithJSONSet("tools.0.type", "retrieval")}},
		{name: "function name", param: "tools[1].function.name", opts: []option.RequestOption{option.WithJSONSet("tools.1.function.name", "get time")}},
		{name: "duplicate function", param: "tools[1].function.name", opts: []option.RequestOption{option.WithJSONSet("tools.1.function.name", "get_weather")}},
		{name: "invalid schema", param: "tools[0].function.parameters", opts: []option.RequestOption{
			option.WithJSONSet("tools.0.function.parameters", map[string]any{"type": "object", "properties": map[string]any{"x": map[string]any{"type": "strange"}}})}},
		{name: "unsupported keyword", param: "tools[0].function.parameters", opts: []option.RequestOption{
			option.WithJSONSet("tools.0.function.parameters", map[string]any{"type": "object", "if": map[string]any{}})}},
		{name: "response_format type", param: "response_format.type", opts: []option.RequestOption{option.WithJSONSet("response_format", map[string]any{"type": "yaml"})}},
		{name: "response_format schema", param: "response_format.json_schema.schema", edit: func(p *openai.ChatCompletionNewParams) {
			p.ResponseFormat = openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &openai.ResponseFormatJSONSchemaParam{
				JSONSchema: openai.ResponseFormatJSONSchemaJSONSchemaParam{Name: "x", Schema: map[string]any{"type": "object", "minProperties": "two"}}}}
		}},
		{name: "response_format name", param: "response_format.json_schema.name", opts: []option.RequestOption{
			option.WithJSONSet("response_format", map[string]any{"type": "json_schema", "json_schema": map[string]any{"schema": map[string]any{}}})}},
		{name: "tools and functions", param: "functions", opts: []option.RequestOption{
			option.WithJSONSet("functions", []any{map[string]any{"name": "f"}})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := toolParams(weatherTool, timeTool)
			if tc.edit != nil {
				tc.edit(&p)
			}
			_, err := client.Chat.Completions.New(ctx, p, tc.opts...)
			checkSDKError(t, err, http.StatusBadRequest, tc.param, "")
		})
	}
}

// TestToolsWithoutVocabulary: a model without a vocabulary for constraints reads calls from
// "auto" replies unconstrained and refuses what needs constraints.
func TestToolsWithoutVocabulary(t *testing.T) {
	m := newFake()
	m.script = []int{10, 11}
	s, _ := New(plainModel{m}, Options{ModelNames: []string{testModelName}})
	ts := httptest.NewServer(s)
	defer ts.Close()
	const tools = `"tools":[{"type":"function","function":{"name":"f"}}]`
	resp, body := post(t, ts, "/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user","content":"hi"}],`+tools+`}`)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"content":" one two"`) {
		t.Errorf("auto: %d %s", resp.StatusCode, body)
	}
	resp, body = post(t, ts, "/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user","content":"hi"}],`+tools+`,"tool_choice":"required"}`)
	checkError(t, "required", resp, body, 400, "tool_choice")
	resp, body = post(t, ts, "/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}}`)
	checkError(t, "json_object", resp, body, 400, "response_format")
}

// plainModel hides the fake model's vocabulary.
type plainModel struct{ *fakeModel }

func (plainModel) Vocab() {}
