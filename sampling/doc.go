// Package sampling picks the next token from a vector of logits with every parameter of the
// hosted chat API (temperature, top_p, min_p, top_k, presence, frequency and repetition
// penalties, logit bias, seed), following the semantics of vLLM's V1 sampler, and matches stop
// strings and stop tokens in a stream.
//
// # A sampling step
//
// A Sampler (NewSampler) serves one sequence. Each call to Sample takes the model's logits
// for the next position and, in vLLM's order:
//
//  1. adds the logit bias (each value clamped to ±100);
//  2. applies the repetition penalty to every token of the prompt or the output so far
//     (positive logits divided by it, the others multiplied), then subtracts the frequency
//     penalty times each token's count in the output and the presence penalty from each
//     token in the output;
//  3. with a temperature below 1e-5 returns the argmax of these logits (greedy decoding,
//     the lowest id among equal maxima); otherwise
//  4. divides the logits by the temperature; min-p drops the tokens whose probability is
//     below min_p times the top probability; top-k keeps the k most likely, ties at the
//     k-th value included; top-p keeps the smallest set of the most likely tokens whose
//     probability mass reaches top_p (the top token always stays); each filter works on
//     the probabilities left by the one before;
//  5. draws the token from the softmax of what is left, with the Sampler's own random
//     stream, and records it for the penalties of the next steps.
//
// Sample never modifies the caller's logits and allocates nothing: the Sampler owns its
// scratch buffers. Top-k is a heap selection and top-p a quickselect that carries
// probability masses, so no step sorts the vocabulary. Without min-p, top-k and top-p (the
// API's defaults) the draw is an exact rejection sampler over buckets of log-probability,
// which computes a few exponentials instead of a softmax over the vocabulary. Logprobs
// reports the log-softmax of the raw logits, before penalties and temperature, as vLLM does
// by default.
//
// The processors are also exported one by one (ApplyLogitBias, ApplyRepetitionPenalty,
// ApplyFrequencyPresencePenalty, ApplyTemperature, ApplyMinP, ApplyTopK, ApplyTopP): each
// rewrites a full logits vector, marking filtered tokens -Inf, and Sample's filtered
// distribution is theirs applied in the order above.
//
// # Details that implementations differ on
//
//   - Top-p ranks equal logits by id, the larger id first: the order of an ascending stable
//     sort read from the top, which is how Hugging Face's TopPLogitsWarper and vLLM's
//     top-p rank (both sort ascending and drop tokens whose cumulative mass is at most
//     1 - top_p). Their kept sets and this package's agree.
//   - Min-p runs before top-k and top-p (vLLM's order; Hugging Face applies min-p last).
//     Min-p compares in log space: a token stays when (logit - top logit) / temperature is
//     at least ln(min_p), which is p >= min_p * p_max.
//   - Probabilities are computed in float32 with float64 sums, as vLLM does in float32: a
//     token whose probability or cumulative mass lies within about 1e-6 (relative) of a
//     min-p or top-p boundary may fall on either side in either implementation.
//   - The draw takes uniform numbers from a PCG stream seeded from the request's seed, where
//     vLLM uses an exponential race on torch's generator: the distributions are the same,
//     the streams are not, so seeded runs repeat exactly within this package (on one
//     architecture: Go may fuse multiply-adds on some) but do not reproduce vLLM's tokens.
//   - NaN logits are read as -Inf (never drawn) and +Inf as the largest float32.
//
// # Parameters
//
// Params.Validate checks the hosted API's ranges and returns a *ParamError (matching
// ErrInvalidParam) that names the API's field. The zero Params is valid and greedy: a zero
// TopP or RepetitionPenalty means unset (off), and TopK -1 is accepted as off, as
// OpenAI-compatible servers write it. With several choices per request, choice i uses
// Params.ForChoice(i), seeded with seed + i. An unseeded Sampler draws its seed from
// crypto/rand; Sampler.Seed reports it.
//
// # Stopping
//
// Generation ends with FinishStop on a stop token (Params.IsStopToken: the request's stop
// token ids or the model's eos ids) or a stop string, and with FinishLength when
// Params.MaxNewTokens tokens have been generated (max_tokens, or the context is full). A
// StopMatcher finds stop strings in the streamed text, across token boundaries; it holds
// back only the longest suffix that could still begin a stop string, drops the stop string
// and everything after it, and ends the text at the earliest occurrence when several stop
// strings occur (vLLM takes the first in list order that occurs in the newest text).
package sampling
