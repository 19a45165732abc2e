// Package tokenizer turns text into Mixtral token ids and back, with exact parity with Hugging
// Face tokenizers (tokenizer.json) and SentencePiece (tokenizer.model), renders chat templates,
// and detokenizes streams of ids incrementally.
package tokenizer
