package tokenizer

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// decodeStep is one step of a tokenizer.json decoder: it maps the list of token strings to a new
// list, as Hugging Face's decode_chain does. The final text is the concatenation of the list.
type decodeStep interface {
	decodeChain(tokens []string) []string
}

type decSeq []decodeStep

func (q decSeq) decodeChain(t []string) []string {
	for _, d := range q {
		t = d.decodeChain(t)
	}
	return t
}

// decReplace replaces a literal or regexp pattern in each token.
type decReplace struct {
	lit     string
	re      *onigRegexp
	content string
}

func (d *decReplace) decodeChain(t []string) []string {
	out := make([]string, len(t))
	for i, s := range t {
		switch {
		case d.re != nil:
			out[i] = d.re.replaceAll(s, d.content)
		case d.lit != "":
			out[i] = strings.ReplaceAll(s, d.lit, d.content)
		default:
			out[i] = s
		}
	}
	return out
}

// decByteFallback turns runs of <0xNN> tokens into text; a run that is not valid UTF-8
// becomes one U+FFFD per byte.
type decByteFallback struct{}

func (decByteFallback) decodeChain(t []string) []string {
	out := make([]string, 0, len(t))
	var run []byte
	flush := func() {
		if len(run) == 0 {
			return
		}
		if utf8.Valid(run) {
			out = append(out, string(run))
		} else {
			for range run {
				out = append(out, "\uFFFD")
			}
		}
		run = run[:0]
	}
	for _, s := range t {
		if b, ok := parseByteToken(s); ok {
			run = append(run, b)
			continue
		}
		flush()
		out = append(out, s)
	}
	flush()
	return out
}

// decFuse joins all tokens into one.
type decFuse struct{}

func (decFuse) decodeChain(t []string) []string { return []string{strings.Join(t, "")} }

// decStrip removes up to start leading and stop trailing content characters of each token.
type decStrip struct {
	content     rune
	start, stop int
}

func (d decStrip) decodeChain(t []string) []string {
	out := make([]string, len(t))
	for i, s := range t {
		r := []rune(s)
		a := 0
		for a < d.start && a < len(r) && r[a] == d.content {
			a++
		}
		b := len(r)
		for k := 0; k < d.stop && b > a && r[b-1] == d.content; k++ {
			b--
		}
		out[i] = string(r[a:b])
	}
	return out
}

// decMetaspace turns the replacement character back into spaces, dropping it in the first
// token unless the prepend scheme is "never".
type decMetaspace struct {
	replacement rune
	prepend     bool
}

func (d decMetaspace) decodeChain(t []string) []string {
	out := make([]string, len(t))
	for i, s := range t {
		var b strings.Builder
		for _, c := range s {
			switch {
			case c != d.replacement:
				b.WriteRune(c)
			case i == 0 && d.prepend:
			default:
				b.WriteByte(' ')
			}
		}
		out[i] = b.String()
	}
	return out
}

// decByteLevel maps GPT-2 byte-level characters back to bytes and decodes them leniently.
type decByteLevel struct{}

func (decByteLevel) decodeChain(t []string) []string {
	var b []byte
	for _, s := range t {
		b = appendByteLevel(b, s)
	}
	return []string{lossyUTF8(b)}
}

// appendByteLevel appends the bytes a byte-level token stands for; a token with a character
// outside the byte-level alphabet stands for its own UTF-8 bytes.
func appendByteLevel(dst []byte, s string) []byte {
	n := len(dst)
	for _, c := range s {
		b, ok := byteLevelInverse[c]
		if !ok {
			return append(dst[:n], s...)
		}
		dst = append(dst, b)
	}
	return dst
}

// lossyUTF8 decodes b, replacing each maximal invalid subsequence with one U+FFFD, as Rust's
// String::from_utf8_lossy does.
func lossyUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var out strings.Builder
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError || n > 1 {
			out.Write(b[i : i+n])
			i += n
			continue
		}
		out.WriteString("\uFFFD")
		i += invalidPrefixLen(b[i:])
	}
	return out.String()
}

// invalidPrefixLen is the length of the maximal prefix of b (which does not start with a valid
// character) that could begin a valid UTF-8 sequence; at least 1.
func invalidPrefixLen(b []byte) int {
	c := b[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 2
	case c == 0xE0:
		need, lo = 3, 0xA0
	case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
		need = 3
	case c == 0xED:
		need, hi = 3, 0x9F
	case c == 0xF0:
		need, lo = 4, 0x90
	case c >= 0xF1 && c <= 0xF3:
		need = 4
	case c == 0xF4:
		need, hi = 4, 0x8F
	default:
		return 1
	}
	n := 1
	for n < need && n < len(b) {
		x := b[n]
		if n == 1 && (x < lo || x > hi) || n > 1 && (x < 0x80 || x > 0xBF) {
			break
		}
		n++
	}
	return n
}

// incompleteTail is the length of a trailing sequence of b that is a proper prefix of a
// valid UTF-8 character (so more bytes could complete it), or 0.
func incompleteTail(b []byte) int {
	for k := 1; k <= 3 && k <= len(b); k++ {
		tail := b[len(b)-k:]
		if tail[0] < 0xC0 {
			continue
		}
		if invalidPrefixLen(tail) == k && !utf8.FullRune(tail) {
			return k
		}
		return 0
	}
	return 0
}

// streamKind says how a decoder chain joins tokens, which decides when streamed text is final.
type streamKind int

const (
	streamTokens    streamKind = iota // each token's text is final when it arrives
	streamByteRuns                    // <0xNN> runs are decoded together (ByteFallback)
	streamByteLevel                   // bytes join across tokens (ByteLevel)
	streamAtEnd                       // trailing text may be stripped: final only at the end
)

func parseDecoder(raw json.RawMessage) (decodeStep, streamKind, error) {
	if isNull(raw) {
		return nil, streamTokens, nil
	}
	var h struct {
		Type           string            `json:"type"`
		Decoders       []json.RawMessage `json:"decoders"`
		Pattern        pattern           `json:"pattern"`
		Content        json.RawMessage   `json:"content"`
		Start          int               `json:"start"`
		Stop           int               `json:"stop"`
		Replacement    string            `json:"replacement"`
		PrependScheme  *string           `json:"prepend_scheme"`
		AddPrefixSpace *bool             `json:"add_prefix_space"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, 0, formatErr("decoder: %v", err)
	}
	switch h.Type {
	case "Sequence":
		var q decSeq
		kind := streamTokens
		for _, r := range h.Decoders {
			d, k, err := parseDecoder(r)
			if err != nil {
				return nil, 0, err
			}
			if d != nil {
				q = append(q, d)
			}
			kind = max(kind, k)
		}
		return q, kind, nil
	case "Replace":
		var content string
		if err := json.Unmarshal(h.Content, &content); err != nil {
			return nil, 0, formatErr("decoder Replace: content: %v", err)
		}
		lit, re, err := h.Pattern.compile("decoder Replace")
		if err != nil {
			return nil, 0, err
		}
		return &decReplace{lit: lit, re: re, content: content}, streamTokens, nil
	case "ByteFallback":
		return decByteFallback{}, streamByteRuns, nil
	case "Fuse":
		return decFuse{}, streamTokens, nil
	case "Strip":
		var content string
		if err := json.Unmarshal(h.Content, &content); err != nil || utf8.RuneCountInString(content) != 1 {
			return nil, 0, formatErr("decoder Strip: content must be one character")
		}
		if h.Start < 0 || h.Stop < 0 {
			return nil, 0, formatErr("decoder Strip: negative start or stop")
		}
		c, _ := utf8.DecodeRuneInString(content)
		kind := streamTokens
		if h.Stop > 0 || h.Start > 1 {
			kind = streamAtEnd // streamed text is settled only when the stream ends
		}
		return decStrip{content: c, start: h.Start, stop: h.Stop}, kind, nil
	case "Metaspace":
		r, n := utf8.DecodeRuneInString(h.Replacement)
		if n == 0 || n != len(h.Replacement) {
			return nil, 0, formatErr("decoder Metaspace: replacement %q is not one character", h.Replacement)
		}
		prepend := true
		switch {
		case h.PrependScheme != nil:
			prepend = *h.PrependScheme != "never"
		case h.AddPrefixSpace != nil:
			prepend = *h.AddPrefixSpace
		}
		return decMetaspace{replacement: r, prepend: prepend}, streamTokens, nil
	case "ByteLevel":
		return decByteLevel{}, streamByteLevel, nil
	}
	return nil, 0, unsupported("decoder %q", h.Type)
}
