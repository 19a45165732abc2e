// Package mixtral loads Mixtral-family mixture-of-experts checkpoints and generates text with
// them: configuration, weight binding, the forward pass, the KV cache, Generate and Stream.
//
// Load opens a Hugging Face checkpoint directory (config.json, generation_config.json, the
// safetensors weights in either the original or the fused expert layout, the tokenizer) and
// binds the weights on a backend, the pure-Go CPU backend by default; the weights stay in the
// memory map in their stored dtype.
//
// The forward pass (forward.go) is written once over the coarse operations of
// backend.Backend: embed, then per layer RMSNorm → attention with the paged KV cache →
// residual → RMSNorm → mixture of experts → residual, then the final norm, and the lm_head
// for the positions whose logits are wanted. A step is a batch of tokens, each with its sequence and
// position, so a prompt's prefill and the decoding of many sequences share one path.
//
// Generate and Stream run requests (chat messages, text or token ids, with sampling
// parameters) through the model's serving engine (package engine): concurrent requests share
// each forward step, their KV cache blocks are taken as they grow, and prompts that start
// with what earlier requests computed reuse those blocks (Usage.PromptTokensDetails). Sequence
// and Eval give the low-level view: logits of every position, hidden states and router
// logits, and Perplexity.
package mixtral
