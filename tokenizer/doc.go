// Package tokenizer turns text into Mixtral token ids and back, with exact parity with Hugging
// Face tokenizers (tokenizer.json) and SentencePiece (tokenizer.model), renders chat templates,
// and detokenizes streams of ids incrementally.
//
// # Loading
//
// Load reads a checkpoint directory: tokenizer.json when present, otherwise tokenizer.model
// plus added_tokens.json; tokenizer_config.json (with special_tokens_map.json and
// chat_template.jinja) supplies BOS, EOS, add_bos_token and the chat template. LoadFile,
// ParseJSON and ParseSentencePiece read a single file.
//
// From tokenizer.json the package implements the components Llama- and Mistral-family files
// use, following Hugging Face tokenizers' algorithms: normalizers Sequence, Prepend, Replace,
// NFC, NFKC, NFD, NFKD, Strip and Lowercase; pre-tokenizers Sequence, Metaspace (every
// prepend_scheme, with or without split), Split, ByteLevel, WhitespaceSplit and Digits; the
// BPE model (merge ranks, byte_fallback, unk_token, fuse_unk, ignore_merges, subword prefix and
// suffix); added tokens (special or not, lstrip, rstrip, single_word, normalized); the
// TemplateProcessing post-processor; decoders Sequence, Replace, ByteFallback, Fuse, Strip,
// Metaspace and ByteLevel. Any other component is an *UnsupportedError (ErrUnsupported) that
// names it, never a silently different encoding. Replace and Split patterns are Oniguruma
// expressions (Ruby syntax, Unicode classes); they are translated to Go's regexp, including the
// white-space look-ahead that ends the GPT-4, Llama 3, Qwen 2 and Tekken split patterns, and a
// construct whose meaning would differ (other look-around, back-references, \b, nested classes)
// is reported the same way.
//
// From tokenizer.model the package reads SentencePiece BPE models and encodes as SentencePiece
// does: its normalizer (precompiled character map, dummy prefix, white-space folding and
// escaping), user-defined, control, unused and unknown pieces, and byte fallback.
//
// # Encoding
//
// Encode takes EncodeOptions: AddBOS applies the post-processor (BOS for Mixtral), and
// ParseSpecial makes strings such as "<|im_start|>" or "</s>" in the text become their tokens,
// as Hugging Face does by default. Without ParseSpecial, the default, all text is plain text,
// which is what untrusted input needs. Encoding is O(n log n) in the input length.
//
// # Chat
//
// EncodeChat renders []Message with the checkpoint's Jinja chat template (ChatML, the format of
// Dolphin, when there is none) and tokenizes the result so that only the template's own markup
// yields control tokens: special-token text inside message contents stays plain unless
// ChatOptions.ParseSpecial is set.
//
// Function calling follows the transformers convention: ChatOptions.Tools and the messages'
// ToolCalls, ToolCallID and Name are given to the template as `tools` and as the messages'
// tool_calls, tool_call_id and name. When the template takes no tools, a conversation that
// involves them is rendered in ChatMLTools, the format of ChatML models tuned for tools: the
// functions described in the system turn, calls written as
// <tool_call>{"name": ..., "arguments": {...}}</tool_call>, results in "tool" turns.
// ParseToolCalls reads the calls of a reply in that format, ToolCallParser as it streams.
// Descriptions, arguments and results are plain text too.
//
// # Decoding
//
// Decode maps ids back to text through the tokenizer's decoder, optionally leaving special
// tokens out. A Decoder from NewDecoder does the same one id at a time for streaming, emitting
// text as soon as it is final; what it emits, concatenated, equals Decode of the whole
// sequence.
//
// A Tokenizer is safe for concurrent use.
package tokenizer
