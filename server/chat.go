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
	Tools               json.RawMessage `json:"tools"`
	Functions           json.RawMessage `json:"functions"`
	ResponseFormat      *struct {
		Type string `json:"type"`
	} `json:"response_format"`
}

// chatMessage is one message of a chat request.
type chatMessage struct {
	Role      string          `json:"role"`
	Content   json.RawMessage `json:"content"`
	ToolCalls json.RawMessage `json:"tool_calls"`
}

// present reports whether a raw JSON value is set to something other than null or empty.
func present(raw json.RawMessage) bool {
	v := string(bytes.TrimSpace(raw))
	return v != "" && v != "null" && v != "[]"
}

// request validates the chat request and returns the generation request for choice 0 and
// the number of choices.
func (c *chatRequest) request() (mixtral.Request, int, *apiError) {
	var req mixtral.Request
	n, e := c.choices()
	if e != nil {
		return req, 0, e
	}
	if e := c.streamCheck(); e != nil {
		return req, 0, e
	}
	if present(c.Tools) {
		return req, 0, unsupported("tools", "Tool calling is not supported by this server.")
	}
	if present(c.Functions) {
		return req, 0, unsupported("functions", "Function calling is not supported by this server.")
	}
	if c.ResponseFormat != nil && c.ResponseFormat.Type != "" && c.ResponseFormat.Type != "text" {
		return req, 0, unsupported("response_format", "response_format %q is not supported; only \"text\" is.", c.ResponseFormat.Type)
	}
	if len(c.Messages) == 0 {
		return req, 0, &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Param: "messages",
			Code: "missing_required_parameter", Message: "'messages' must be a non-empty array."}
	}
	req.Messages = make([]tokenizer.Message, len(c.Messages))
	for i, msg := range c.Messages {
		tm, e := msg.message(i)
		if e != nil {
			return req, 0, e
		}
		req.Messages[i] = tm
	}
	maxTokens, maxParam := c.MaxCompletionTokens, "max_completion_tokens"
	if maxTokens == nil {
		maxTokens, maxParam = c.MaxTokens, "max_tokens"
	}
	logprobs := c.Logprobs != nil && *c.Logprobs
	top := 0
	if c.TopLogprobs != nil {
		top = *c.TopLogprobs
	}
	p, e := c.params(maxTokens, maxParam, logprobs, top)
	if e != nil {
		return req, 0, e
	}
	req.Params = p
	return req, n, nil
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
	case "system", "user", "assistant":
	case "developer":
		role = "system"
	case "tool", "function":
		return tokenizer.Message{}, unsupported(fmt.Sprintf("messages[%d].role", i),
			"Messages with role %q are not supported by this server.", role)
	default:
		return tokenizer.Message{}, invalid(fmt.Sprintf("messages[%d].role", i),
			"Invalid value for 'messages[%d].role': %q. Supported values are 'system', 'user', 'assistant' and 'developer'.", i, msg.Role)
	}
	if present(msg.ToolCalls) {
		return tokenizer.Message{}, unsupported(fmt.Sprintf("messages[%d].tool_calls", i), "Tool calls are not supported by this server.")
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

// chatMessageOut is the message of a chat choice.
type chatMessageOut struct {
	Role    string `json:"role"`
	Content string `json:"content"`
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

// chatDelta is the delta of a chat chunk choice.
type chatDelta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
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

// chatStream renders the chunks of a streamed chat completion.
type chatStream struct {
	m         Model
	id, model string
	created   int64
	withUsage bool
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

func (f *chatStream) token(i int, text string, lp *sampling.Logprobs) any {
	c := chatChunkChoice{Index: i, Delta: chatDelta{Content: &text}}
	if lp != nil {
		c.Logprobs = chatLogprobsOf(f.m, []sampling.Logprobs{*lp})
	}
	return f.chunk(c)
}

func (f *chatStream) finish(i int, reason sampling.FinishReason) any {
	return f.chunk(chatChunkChoice{Index: i, FinishReason: &reason})
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
	req, n, e := body.request()
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
		f := &chatStream{m: s.model, id: id, model: body.Model, created: created, withUsage: body.includeUsage()}
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
		resp.Choices[i] = chatChoice{Index: i, FinishReason: c.finish,
			Message: chatMessageOut{Role: "assistant", Content: c.text.String()}}
		if req.Params.Logprobs {
			resp.Choices[i].Logprobs = chatLogprobsOf(s.model, c.logprobs)
		}
		usages[i] = c.usage
	}
	resp.Usage = s.totalUsage(usages, promptOf)
	writeJSON(w, http.StatusOK, resp)
	return nil
}
