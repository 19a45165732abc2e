package tokenizer

// Message is one turn of a chat conversation.
type Message struct {
	// Role is "system", "user" or "assistant".
	Role string `json:"role"`
	// Content is the turn's text. Special tokens written in it stay plain text unless the
	// caller asks for special-token parsing.
	Content string `json:"content"`
}
