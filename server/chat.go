package server

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/fathom-llm/fathom/mixtral"
	"github.com/fathom-llm/fathom/sampling"
	"github.com/fathom-llm/fathom/tokenizer"
)

// chatRequest is the body of POST /v1/chat/completions.
type chatRequest struct {
	commonRequest
	Messages            []chatMessage   `json:"messages"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Logprobs            *bool           `json:"logprobs"`
	TopLogprobs         *int            `json:"top_logprobs"`
	Tools               []toolParam     `json:"tools"`
	ToolChoice          json.RawMessage `json:"tool_choice"`
	ParallelToolCalls   *bool           `json:"parallel_tool_calls"`
	Functions           []functionParam `json:"functions"`
	FunctionCall        json.RawMessage `json:"function_call"`
}

// chatMessage is one message of a chat request.
type chatMessage struct {
	Role         string          `json:"role"`
	Content      json.RawMessage `json:"content"`
	ToolCalls    []callParam     `json:"tool_calls"`
	ToolCallID   *string         `json:"tool_call_id"`
	Name         *string         `json:"name"`
	FunctionCall *legacyCall     `json:"function_call"`
}

// present reports whether a raw JSON value is set to something other than null.
func present(raw json.RawMessage) bool {
	v := string(bytes.TrimSpace(raw))
	return v != "" && v != "null"
}

// contentMissing reports whether the message has no content (absent or null).
func (msg *chatMessage) contentMissing() bool { return !present(msg.Content) }

// request validates the chat request and returns the generation request for choice 0, the
// number of choices and what the request says about functions.
func (c *chatRequest) request(s *Server) (mixtral.Request, int, *toolPlan, *apiError) {
	var req mixtral.Request
	n, e := c.choices()
	if e != nil {
		return req, 0, nil, e
	}
	if e := c.streamCheck(); e != nil {
		return req, 0, nil, e
	}
	plan, e := c.toolPlan()
	if e != nil {
		return req, 0, nil, e
	}
	if req.Messages, e = c.conversation(); e != nil {
		return req, 0, nil, e
	}
	req.Tools = plan.tools
	maxTokens, maxParam := c.MaxCompletionTokens, "max_completion_tokens"
	if maxTokens == nil {
		maxTokens, maxParam = c.MaxTokens, "max_tokens"
	}
	logprobs := c.Logprobs != nil && *c.Logprobs
	top := 0
	if c.TopLogprobs != nil {
		top = *c.TopLogprobs
	}
	if req.Params, e = c.params(maxTokens, maxParam, logprobs, top); e != nil {
		return req, 0, nil, e
	}
	if req.Constraint, e = s.constraint(c.ResponseFormat, plan); e != nil {
		return req, 0, nil, e
	}
	return req, n, plan, nil
}

// generatesNothing reports whether the request asks for no tokens (max_tokens 0).
func (c *chatRequest) generatesNothing() bool {
	m := c.MaxCompletionTokens
	if m == nil {
		m = c.MaxTokens
	}
	return m != nil && *m == 0
}

// message converts message i to the tokenizer's form.
func (msg *chatMessage) message(i int) (tokenizer.Message, *apiError) {
	role := msg.Role
	switch role {
	case "system", "user", "assistant", "tool":
	case "developer":
		role = "system"
	case "function":
		role = "tool"
	default:
		return tokenizer.Message{}, invalid(fmt.Sprintf("messages[%d].role", i),
			"Invalid value for 'messages[%d].role': %q. Supported values are 'system', 'developer', 'user', 'assistant', 'tool' and 'function'.", i, msg.Role)
	}
	param := fmt.Sprintf("messages[%d].content", i)
	raw := bytes.TrimSpace(msg.Content)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		if role != "assistant" {
			return tokenizer.Message{}, &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Param: param,
				Code: "missing_required_parameter", Message: fmt.Sprintf("Missing required parameter: '%s'.", param)}
		}
		return tokenizer.Message{Role: role}, nil
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return tokenizer.Message{}, invalid(param, "Invalid '%s': %v", param, err)
		}
		return tokenizer.Message{Role: role, Content: s}, nil
	case raw[0] == '[':
		var parts []struct {
			Type string  `json:"type"`
			Text *string `json:"text"`
		}
		if err := unmarshalStrict(raw, &parts, param); err != nil {
			if e := jsonError(err); e.Code == "unknown_parameter" {
				return tokenizer.Message{}, e
			}
			return tokenizer.Message{}, invalidType(param, "a string or an array of content parts")
		}
		texts := make([]string, 0, len(parts))
		for j, part := range parts {
			if part.Type != "text" || part.Text == nil {
				return tokenizer.Message{}, unsupported(fmt.Sprintf("%s[%d]", param, j),
					"Content parts of type %q are not supported; only text parts are.", part.Type)
			}
			texts = append(texts, *part.Text)
		}
		return tokenizer.Message{Role: role, Content: strings.Join(texts, "\n")}, nil
	}
	return tokenizer.Message{}, invalidType(param, "a string or an array of content parts")
}

// invalidType returns a 400 for a parameter of the wrong JSON type.
func invalidType(param, want string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Param: param, Code: "invalid_type",
		Message: fmt.Sprintf("Invalid type for '%s': expected %s.", param, want)}
}

// newID returns a fresh response id with the given prefix.
func newID(prefix string) string { return prefix + rand.Text() }

// Finish reasons of replies that end with calls, and with a call of the deprecated
// "functions".
const (
	finishToolCalls    sampling.FinishReason = "tool_calls"
	finishFunctionCall sampling.FinishReason = "function_call"
)

// functionCall is the deprecated "function_call" of a message, or a piece of it in a chunk.
type functionCall struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// toolCallOut is a call in a response message.
type toolCallOut struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// chatMessageOut is the message of a chat choice; Content is null when the reply is calls
// alone.
type chatMessageOut struct {
	Role         string        `json:"role"`
	Content      *string       `json:"content"`
	ToolCalls    []toolCallOut `json:"tool_calls,omitempty"`
	FunctionCall *functionCall `json:"function_call,omitempty"`
}

// chatChoice is one choice of a chat completion.
type chatChoice struct {
	Index        int                   `json:"index"`
	Message      chatMessageOut        `json:"message"`
	Logprobs     *chatLogprobs         `json:"logprobs"`
	FinishReason sampling.FinishReason `json:"finish_reason"`
}

// chatCompletion is the response of a chat completion.
type chatCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   *usage       `json:"usage"`
}

// toolCallDelta is a piece of a call in a chunk: its first carries the index, ID, type and
// name, the others the index and the next piece of the arguments.
type toolCallDelta struct {
	Index    int    `json:"index"`
	ID       string `json:"id,omitempty"`
	Type     string `json:"type,omitempty"`
	Function struct {
		Name      string `json:"name,omitempty"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// chatDelta is the delta of a chat chunk choice.
type chatDelta struct {
	Role         string          `json:"role,omitempty"`
	Content      *string         `json:"content,omitempty"`
	ToolCalls    []toolCallDelta `json:"tool_calls,omitempty"`
	FunctionCall *functionCall   `json:"function_call,omitempty"`
}

// chatChunkChoice is one choice of a chat completion chunk.
type chatChunkChoice struct {
	Index        int                    `json:"index"`
	Delta        chatDelta              `json:"delta"`
	Logprobs     *chatLogprobs          `json:"logprobs"`
	FinishReason *sampling.FinishReason `json:"finish_reason"`
}

// chatChunk is one event of a streamed chat completion.
type chatChunk struct {
	ID      string            `json:"id"`
	Object  string            `json:"object"`
	Created int64             `json:"created"`
	Model   string            `json:"model"`
	Choices []chatChunkChoice `json:"choices"`
	// Usage is omitted (nil), null (nullJSON) or the usage of the request.
	Usage any `json:"usage,omitempty"`
}

// nullJSON encodes as null.
var nullJSON = json.RawMessage("null")

// replyReader reads one streamed choice's reply for calls, when the request has functions
// the reply may call; otherwise all of it is text.
type replyReader struct {
	parser *tokenizer.ToolCallParser // nil: no calls
	calls  bool                      // the reply has made calls
	legacy bool                      // calls are answered as function_call
}

func newReplyReader(plan *toolPlan) *replyReader {
	r := &replyReader{}
	if plan.parses() {
		r.parser, r.legacy = &tokenizer.ToolCallParser{}, plan.legacy
	}
	return r
}

// push reads the next piece of the reply (final: the rest of it, text held back included).
func (r *replyReader) push(text string, final bool) tokenizer.ToolDelta {
	if r.parser == nil {
		return tokenizer.ToolDelta{Text: text}
	}
	d := r.parser.Push(text)
	if final {
		f := r.parser.Flush()
		d.Text += f.Text
		d.Calls = append(d.Calls, f.Calls...)
	}
	r.calls = r.calls || len(d.Calls) > 0
	return d
}

// replyFinish returns the finish reason of a reply: "tool_calls" (or "function_call" for the
// deprecated "functions") when it made calls and was not cut short.
func replyFinish(calls, legacy bool, reason sampling.FinishReason) sampling.FinishReason {
	switch {
	case !calls || reason != sampling.FinishStop:
		return reason
	case legacy:
		return finishFunctionCall
	}
	return finishToolCalls
}

// chatStream renders the chunks of a streamed chat completion.
type chatStream struct {
	m         Model
	id, model string
	created   int64
	withUsage bool
	readers   []*replyReader // per choice
}

func (f *chatStream) chunk(c chatChunkChoice) chatChunk {
	ch := chatChunk{ID: f.id, Object: "chat.completion.chunk", Created: f.created, Model: f.model,
		Choices: []chatChunkChoice{c}}
	if f.withUsage {
		ch.Usage = nullJSON
	}
	return ch
}

func (f *chatStream) begin(i int) any {
	empty := ""
	return f.chunk(chatChunkChoice{Index: i, Delta: chatDelta{Role: "assistant", Content: &empty}})
}

// deltas returns the chunks of what choice i's reply adds: text (with the logprobs of the
// token, if any), then pieces of calls.
func (f *chatStream) deltas(i int, d tokenizer.ToolDelta, lp *sampling.Logprobs) []any {
	var out []any
	if d.Text != "" || lp != nil {
		c := chatChunkChoice{Index: i, Delta: chatDelta{Content: &d.Text}}
		if lp != nil {
			c.Logprobs = chatLogprobsOf(f.m, []sampling.Logprobs{*lp})
		}
		out = append(out, f.chunk(c))
	}
	for _, tc := range d.Calls {
		if f.readers[i].legacy {
			if tc.Index == 0 {
				out = append(out, f.chunk(chatChunkChoice{Index: i, Delta: chatDelta{
					FunctionCall: &functionCall{Name: tc.Name, Arguments: tc.Arguments}}}))
			}
			continue
		}
		td := toolCallDelta{Index: tc.Index, ID: tc.ID}
		if tc.ID != "" {
			td.Type = "function"
		}
		td.Function.Name, td.Function.Arguments = tc.Name, tc.Arguments
		out = append(out, f.chunk(chatChunkChoice{Index: i, Delta: chatDelta{ToolCalls: []toolCallDelta{td}}}))
	}
	return out
}

func (f *chatStream) token(i int, text string, lp *sampling.Logprobs) []any {
	return f.deltas(i, f.readers[i].push(text, false), lp)
}

func (f *chatStream) finish(i int, text string, lp *sampling.Logprobs, reason sampling.FinishReason) []any {
	r := f.readers[i]
	out := f.deltas(i, r.push(text, true), lp)
	reason = replyFinish(r.calls, r.legacy, reason)
	return append(out, f.chunk(chatChunkChoice{Index: i, FinishReason: &reason}))
}

func (f *chatStream) usage(u *usage) any {
	return chatChunk{ID: f.id, Object: "chat.completion.chunk", Created: f.created, Model: f.model,
		Choices: []chatChunkChoice{}, Usage: u}
}

// chatCompletions serves POST /v1/chat/completions.
func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request) *apiError {
	var body chatRequest
	if e := decodeJSON(r, &body); e != nil {
		return e
	}
	if e := s.checkModel(body.Model); e != nil {
		return e
	}
	req, n, plan, e := body.request(s)
	if e != nil {
		return e
	}
	g, promptOf, e := s.begin(w, r, []mixtral.Request{req}, n, body.generatesNothing(), "messages")
	if e != nil {
		return e
	}
	defer g.stop()
	id, created := newID("chatcmpl-"), time.Now().Unix()

	if body.Stream {
		f := &chatStream{m: s.model, id: id, model: body.Model, created: created, withUsage: body.includeUsage(),
			readers: make([]*replyReader, n)}
		for i := range f.readers {
			f.readers[i] = newReplyReader(plan)
		}
		return s.stream(w, g, n, promptOf, f, f.withUsage)
	}
	results, err := g.collect(n)
	if err != nil {
		return s.generationError(err)
	}
	resp := chatCompletion{ID: id, Object: "chat.completion", Created: created, Model: body.Model,
		Choices: make([]chatChoice, n)}
	usages := make([]mixtral.Usage, n)
	for i := range results {
		c := &results[i]
		text, calls := c.text.String(), []tokenizer.ToolCall(nil)
		if plan.parses() {
			text, calls = tokenizer.ParseToolCalls(text)
		}
		msg := chatMessageOut{Role: "assistant", Content: &text}
		switch {
		case len(calls) > 0 && plan.legacy:
			msg.FunctionCall = &functionCall{Name: calls[0].Name, Arguments: calls[0].Arguments}
		default:
			for _, tc := range calls {
				out := toolCallOut{ID: tc.ID, Type: "function"}
				out.Function.Name, out.Function.Arguments = tc.Name, tc.Arguments
				msg.ToolCalls = append(msg.ToolCalls, out)
			}
		}
		if text == "" && len(calls) > 0 {
			msg.Content = nil
		}
		resp.Choices[i] = chatChoice{Index: i, FinishReason: replyFinish(len(calls) > 0, plan.legacy, c.finish), Message: msg}
		if req.Params.Logprobs {
			resp.Choices[i].Logprobs = chatLogprobsOf(s.model, c.logprobs)
		}
		usages[i] = c.usage
	}
	resp.Usage = s.totalUsage(usages, promptOf)
	writeJSON(w, http.StatusOK, resp)
	return nil
}
