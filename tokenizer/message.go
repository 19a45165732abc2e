package tokenizer

import "encoding/json"

// Message is one turn of a chat conversation.
type Message struct {
	// Role is "system", "user", "assistant" or "tool".
	Role string `json:"role"`
	// Content is the turn's text. Special tokens written in it stay plain text unless the
	// caller asks for special-token parsing.
	Content string `json:"content"`
	// ToolCalls are the function calls an assistant turn made.
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
	// ToolCallID is, in a "tool" turn, the ID of the call whose result Content is.
	ToolCallID string `json:"tool_call_id,omitempty"`
	// Name is, in a "tool" turn, the name of the function that was called (optional).
	Name string `json:"name,omitempty"`
}

// Tool is a function that the model may call.
type Tool struct {
	// Name is the function's name.
	Name string `json:"name"`
	// Description says what the function does, for the model.
	Description string `json:"description,omitempty"`
	// Parameters is the JSON Schema of the function's arguments object (nil: no schema).
	Parameters json.RawMessage `json:"parameters,omitempty"`
}

// ToolCall is one call of a function, as an assistant turn made it.
type ToolCall struct {
	// ID identifies the call, so that a "tool" turn can answer it.
	ID string `json:"id"`
	// Name is the function's name.
	Name string `json:"name"`
	// Arguments is the JSON text of the arguments object.
	Arguments string `json:"arguments"`
}
