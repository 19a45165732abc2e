// Package mixtral loads Mixtral-family mixture-of-experts checkpoints and generates text with
// them: configuration, weight binding, the forward pass, the KV cache, Generate and Stream.
package mixtral
