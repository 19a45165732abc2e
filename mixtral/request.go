package mixtral

import (
	"time"

	"github.com/fathom-llm/fathom/sampling"
	"github.com/fathom-llm/fathom/tokenizer"
)

// Request is one generation request. Exactly one of Messages and Prompt is set, or neither
// and PromptIDs. PromptIDs may also accompany Messages or Prompt: then they are its tokens, as
// Model.PromptIDs returned them, and the prompt is not tokenized again.
type Request struct {
	// Messages is a chat conversation, rendered with the model's chat template with the
	// generation prompt appended.
	Messages []tokenizer.Message
	// Tools are the functions the model may call in a chat (Messages): the chat template
	// describes them, or tokenizer.ChatMLTools when the template takes none. The reply's calls
	// are read with tokenizer.ParseToolCalls.
	Tools []tokenizer.Tool
	// Prompt is raw text, tokenized as the model's tokenizer does (BOS added when its
	// configuration says so).
	Prompt string
	// PromptIDs are token ids used exactly as given (no BOS added).
	PromptIDs []int
	// Params are the sampling parameters; the zero value is greedy decoding, and
	// sampling.DefaultParams gives the hosted API's defaults.
	Params sampling.Params
	// Constraint, when set, restricts the generated tokens (to a JSON Schema, a grammar, a
	// regular expression: see package sampling/constrain). Each sequence follows its own
	// state of it; the tokens it does not allow are masked before any other sampling step,
	// and the stop and end-of-sequence tokens are allowed only where it accepts the end.
	Constraint sampling.Constraint
}

// Usage counts the tokens of a request, as the hosted API reports them.
type Usage struct {
	PromptTokens        int                 `json:"prompt_tokens"`
	CompletionTokens    int                 `json:"completion_tokens"`
	TotalTokens         int                 `json:"total_tokens"`
	PromptTokensDetails PromptTokensDetails `json:"prompt_tokens_details"`
}

// PromptTokensDetails breaks the prompt tokens down.
type PromptTokensDetails struct {
	// CachedTokens is how many prompt tokens were served from the prefix cache, their keys
	// and values computed by an earlier request.
	CachedTokens int `json:"cached_tokens"`
}

// Timings measures a request's prefill (the prompt) and decode (generated tokens) phases.
type Timings struct {
	// Prefill runs from the request's first step to its first token, Decode from there to
	// its last.
	Prefill time.Duration
	Decode  time.Duration
	// PrefillTokensPerSecond is the prompt tokens computed (those not served from the
	// prefix cache) divided by Prefill.
	PrefillTokensPerSecond float64
	// DecodeTokensPerSecond is the tokens generated after the first divided by Decode.
	DecodeTokensPerSecond float64
}

// Response is the result of Generate.
type Response struct {
	// Text is the generated text, without the stop string that ended it.
	Text string
	// IDs are the generated token ids (a stop or eos token that ended generation included).
	IDs []int
	// FinishReason says why generation ended.
	FinishReason sampling.FinishReason
	// Logprobs has one entry per generated token when the request asked for logprobs.
	Logprobs []sampling.Logprobs
	Usage    Usage
	Timings  Timings
}

// Event is one step of Stream: a generated token and the text it makes final. The last event
// has Done set, with the finish reason, usage and timings.
type Event struct {
	// ID is the generated token id (absent, -1, in a final event that carries no token).
	ID int
	// Text is the text that became final with this token: whole UTF-8 characters only, with
	// anything that could still start a stop string held back. It may be empty.
	Text string
	// Logprobs is set when the request asked for logprobs and the event carries a token.
	Logprobs *sampling.Logprobs
	// Done marks the last event.
	Done         bool
	FinishReason sampling.FinishReason
	Usage        Usage
	Timings      Timings
}
