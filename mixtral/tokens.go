package mixtral

// TokenText returns the text token id adds in the middle of generated output, as raw bytes
// in a string: a byte-fallback token is its single byte, "▁Hello" is " Hello" (see
// tokenizer.Tokenizer.TokenBytes). It is "" for a model without a tokenizer or an id outside
// the vocabulary.
func (m *Model) TokenText(id int) string {
	tok := m.Tokenizer()
	if tok == nil {
		return ""
	}
	return string(tok.TokenBytes(id))
}
