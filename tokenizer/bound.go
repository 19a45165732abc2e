package tokenizer

// MaxTokenBytes returns the most bytes of input text that one token can stand for, when the
// tokenizer provably never lets a token cover more input than its own bytes, so that a
// text of n bytes encodes to at least n/MaxTokenBytes tokens; otherwise 0. It is provable
// for the byte-fallback BPE of Llama and Mistral checkpoints: no normalizer, or one that only
// prepends and replaces spaces (a space becomes "▁", which TokenBytes writes back as one
// space), no pre-tokenizer or a Metaspace one, and every character the vocabulary lacks
// spelled in byte tokens rather than folded into an unknown token.
func (t *Tokenizer) MaxTokenBytes() int {
	if t.bpe == nil || !t.bpe.byteFallback || !spacesOnly(t.norm) {
		return 0
	}
	if _, ok := t.pre.(*preMetaspace); t.pre != nil && !ok {
		return 0
	}
	most := 0
	for id := range t.tokens {
		most = max(most, len(t.TokenBytes(id)))
	}
	return most
}

// spacesOnly reports whether a normalizer at most prepends strings and replaces single
// spaces.
func spacesOnly(n normalizer) bool {
	switch n := n.(type) {
	case nil, normPrepend:
		return true
	case normSeq:
		for _, m := range n {
			if !spacesOnly(m) {
				return false
			}
		}
		return true
	case *normReplace:
		return n.re == nil && n.lit == " "
	}
	return false
}
