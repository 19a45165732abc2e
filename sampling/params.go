package sampling

// Params are the sampling parameters of one request, with the hosted chat API's names and
// ranges. DefaultParams returns the API's defaults; Validate checks every range.
type Params struct {
	// Temperature scales the logits (0-2, default 1); below 1e-5 decoding is greedy.
	Temperature float64
	// TopP keeps the smallest set of tokens whose probability mass reaches TopP (0 < p <= 1,
	// default 1 = off).
	TopP float64
	// MinP drops tokens whose probability is below MinP times the top probability (0-1,
	// default 0 = off).
	MinP float64
	// TopK keeps the K most likely tokens, ties at the K-th value included (0-999, 0 = off).
	TopK int
	// PresencePenalty is subtracted from the logit of every token that occurs in the output
	// so far (-2..2, default 0).
	PresencePenalty float64
	// FrequencyPenalty times a token's count in the output so far is subtracted from its
	// logit (-2..2, default 0).
	FrequencyPenalty float64
	// RepetitionPenalty divides positive logits and multiplies negative ones of every token
	// in the prompt or output (0.01-5, default 1 = off).
	RepetitionPenalty float64
	// LogitBias adds a bias, clamped to ±100, to the logits of the given token ids.
	LogitBias map[int]float64
	// Seed, when non-nil, seeds the request's random stream so runs are reproducible.
	Seed *int64
	// MaxTokens bounds the number of generated tokens (0 = up to the context length).
	MaxTokens int
	// Stop lists up to 16 strings that end generation; the matched string is not returned.
	Stop []string
	// StopTokenIDs lists token ids that end generation, in addition to the model's eos ids.
	StopTokenIDs []int
	// Logprobs asks for the log-probability of each chosen token.
	Logprobs bool
	// TopLogprobs asks for that many most likely alternatives at each position (0-20).
	TopLogprobs int
}

// DefaultParams returns the hosted API's defaults: temperature 1, top_p 1, repetition
// penalty 1, everything else off.
func DefaultParams() Params {
	return Params{Temperature: 1, TopP: 1, RepetitionPenalty: 1}
}

// FinishReason says why generation ended, as the hosted API reports it.
type FinishReason string

const (
	// FinishStop: a stop string, a stop token or an end-of-sequence token was produced.
	FinishStop FinishReason = "stop"
	// FinishLength: max_tokens was reached, or the context is full.
	FinishLength FinishReason = "length"
)

// TokenLogprob is the log-probability of one token id.
type TokenLogprob struct {
	ID      int
	Logprob float64
}

// Logprobs describes one generated position: the chosen token and the most likely
// alternatives (best first), all as log-softmax of the raw logits.
type Logprobs struct {
	Chosen TokenLogprob
	Top    []TokenLogprob
}
