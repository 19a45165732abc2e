// Package sampling picks the next token from a vector of logits with every parameter of the
// hosted chat API (temperature, top_p, min_p, top_k, presence, frequency and repetition
// penalties, logit bias, seed), following the semantics of vLLM's V1 sampler, and matches stop
// strings and stop tokens in a stream.
package sampling
