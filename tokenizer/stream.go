package tokenizer

import "strings"

// Decoder detokenizes a stream of ids incrementally. Feed it one id at a time with Add; it
// returns text as soon as that text is final, and Flush returns the rest at the end of the
// stream. The concatenation of everything returned equals Tokenizer.Decode of all the ids:
// runs of byte tokens are held until the run ends (so only whole characters are emitted), and
// the leading space is removed only at the start of the stream. A Decoder is not safe for
// concurrent use; create one per stream.
type Decoder struct {
	t       *Tokenizer
	skip    bool
	ctx     []string // tokens already emitted, kept as decoding context
	base    string   // decoded text of ctx
	pending []string // tokens whose text is not final yet
}

// NewDecoder returns a streaming decoder. With skipSpecial, special tokens produce no text.
func (t *Tokenizer) NewDecoder(skipSpecial bool) *Decoder {
	return &Decoder{t: t, skip: skipSpecial}
}

// Add feeds one id and returns the text that became final, possibly "". Ids outside the
// vocabulary are ignored, as Decode ignores them.
func (d *Decoder) Add(id int) string {
	s, ok := d.t.decodable(id, d.skip)
	if !ok {
		return ""
	}
	d.pending = append(d.pending, s)
	if !d.settled() {
		return ""
	}
	return d.emit()
}

// Flush ends the stream: it returns the text not yet returned and resets the decoder for a new
// stream.
func (d *Decoder) Flush() string {
	out := d.emit()
	d.ctx, d.base, d.pending = nil, "", nil
	return out
}

// settled reports whether the text of the pending tokens can no longer change.
func (d *Decoder) settled() bool {
	switch d.t.stream {
	case streamByteRuns:
		_, isByte := parseByteToken(d.pending[len(d.pending)-1])
		return !isByte
	case streamByteLevel:
		var b []byte
		for _, s := range d.pending {
			b = appendByteLevel(b, s)
		}
		return incompleteTail(b) == 0
	case streamAtEnd:
		return false
	}
	return true
}

// emit returns the text the pending tokens add after the context, and makes them context.
func (d *Decoder) emit() string {
	if len(d.pending) == 0 {
		return ""
	}
	all := append(d.ctx[:len(d.ctx):len(d.ctx)], d.pending...)
	full := d.t.decodeTokens(all)
	if !strings.HasPrefix(full, d.base) {
		// Cannot happen for the decoders this package accepts; keep the output a prefix-free
		// continuation rather than repeat text.
		full = d.base
	}
	out := full[len(d.base):]
	// The pending tokens become the context when their own text is not empty, so that
	// start-of-text rules (a stripped leading space) apply to them alike in both decodes.
	if alone := d.t.decodeTokens(d.pending); alone != "" {
		d.ctx, d.base = d.pending, alone
	} else {
		d.ctx, d.base = all, full
	}
	d.pending = nil
	return out
}

// TokenBytes returns the bytes that id adds to decoded text in the middle of a stream, as the
// hosted API reports a logprob entry's bytes: a byte-fallback token such as "<0xE2>" is that
// one raw byte (possibly part of a multi-byte character), "▁Hello" is " Hello" with its space
// kept, and a special token is its own text. It returns nil for an id outside the vocabulary.
func (t *Tokenizer) TokenBytes(id int) []byte {
	s, ok := t.TokenText(id)
	if !ok {
		return nil
	}
	switch t.stream {
	case streamByteRuns:
		if b, isByte := parseByteToken(s); isByte {
			return []byte{b}
		}
	case streamByteLevel:
		return appendByteLevel(nil, s)
	}
	// Decode the token after a copy of itself and keep what the second copy adds: the rules
	// for the start of the text (a stripped leading space) then apply to the first only.
	first := t.decodeTokens([]string{s})
	both := t.decodeTokens([]string{s, s})
	if !strings.HasPrefix(both, first) {
		return []byte(first)
	}
	return []byte(both[len(first):])
}
