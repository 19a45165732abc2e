package tokenizer

import (
	"encoding/json"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// piece is a span of normalized text on its way through the pre-tokenizers. atStart is true
// when the span begins at the start of the original input (Metaspace's "first" scheme).
type piece struct {
	text    string
	atStart bool
}

// preTokenizer splits pieces into smaller pieces; the model encodes each resulting piece.
type preTokenizer interface {
	preTokenize(in []piece) []piece
}

type preSeq []preTokenizer

func (q preSeq) preTokenize(in []piece) []piece {
	for _, p := range q {
		in = p.preTokenize(in)
	}
	return in
}

// span is a byte range of a string; match marks a delimiter match.
type span struct {
	start, end int
	match      bool
}

// splitBy splits text by the spans (which cover it in order) with one of Hugging Face's
// delimiter behaviors, dropping empty results.
func splitBy(p piece, spans []span, behavior string, out []piece) []piece {
	type cut struct {
		start, end int
		remove     bool
	}
	var cuts []cut
	prevMatch := false
	switch behavior {
	case "Isolated":
		for _, s := range spans {
			cuts = append(cuts, cut{s.start, s.end, false})
		}
	case "Removed":
		for _, s := range spans {
			cuts = append(cuts, cut{s.start, s.end, s.match})
		}
	case "Contiguous":
		for _, s := range spans {
			if s.match == prevMatch && len(cuts) > 0 {
				cuts[len(cuts)-1].end = s.end
			} else {
				cuts = append(cuts, cut{s.start, s.end, false})
			}
			prevMatch = s.match
		}
	case "MergedWithPrevious":
		for _, s := range spans {
			if s.match && !prevMatch && len(cuts) > 0 {
				cuts[len(cuts)-1].end = s.end
			} else {
				cuts = append(cuts, cut{s.start, s.end, false})
			}
			prevMatch = s.match
		}
	case "MergedWithNext":
		for _, s := range slices.Backward(spans) {
			if s.match && !prevMatch && len(cuts) > 0 {
				cuts[len(cuts)-1].start = s.start
			} else {
				cuts = append(cuts, cut{s.start, s.end, false})
			}
			prevMatch = s.match
		}
		slices.Reverse(cuts)
	}
	for _, c := range cuts {
		if c.remove || c.start == c.end {
			continue
		}
		out = append(out, piece{text: p.text[c.start:c.end], atStart: p.atStart && c.start == 0})
	}
	return out
}

// findSpans lists the matches of a literal or regexp in s, with the gaps between them.
func findSpans(s, lit string, re *onigRegexp, invert bool) []span {
	var spans []span
	prev := 0
	add := func(a, b int) {
		if prev != a {
			spans = append(spans, span{prev, a, invert})
		}
		spans = append(spans, span{a, b, !invert})
		prev = b
	}
	if re != nil {
		for _, m := range re.findAll(s) {
			add(m[0], m[1])
		}
	} else if lit != "" {
		for i := 0; i < len(s); {
			j := strings.Index(s[i:], lit)
			if j < 0 {
				break
			}
			add(i+j, i+j+len(lit))
			i += j + len(lit)
		}
	}
	if prev != len(s) {
		spans = append(spans, span{prev, len(s), invert})
	}
	return spans
}

// preSplit is the Split pre-tokenizer.
type preSplit struct {
	lit      string
	re       *onigRegexp
	behavior string
	invert   bool
}

func (p *preSplit) preTokenize(in []piece) []piece {
	var out []piece
	for _, x := range in {
		out = splitBy(x, findSpans(x.text, p.lit, p.re, p.invert), p.behavior, out)
	}
	return out
}

// preMetaspace replaces spaces with the replacement character, optionally prepends it, and
// optionally splits before each replacement character.
type preMetaspace struct {
	replacement string
	scheme      string // "always", "first" or "never"
	split       bool
}

func (p *preMetaspace) preTokenize(in []piece) []piece {
	var out []piece
	for _, x := range in {
		s := strings.ReplaceAll(x.text, " ", p.replacement)
		if !strings.HasPrefix(s, p.replacement) && (p.scheme == "always" || p.scheme == "first" && x.atStart) {
			s = p.replacement + s
		}
		y := piece{text: s, atStart: x.atStart}
		if !p.split {
			out = append(out, y)
			continue
		}
		out = splitBy(y, findSpans(s, p.replacement, nil, false), "MergedWithNext", out)
	}
	return out
}

// preWhitespaceSplit splits on Unicode white space, dropping it.
type preWhitespaceSplit struct{}

func (preWhitespaceSplit) preTokenize(in []piece) []piece {
	var out []piece
	for _, x := range in {
		spans := spansFunc(x.text, unicode.IsSpace)
		out = splitBy(x, spans, "Removed", out)
	}
	return out
}

// preDigits splits digits (Unicode numeric characters) from the rest, one by one or in runs.
type preDigits struct{ individual bool }

func (p preDigits) preTokenize(in []piece) []piece {
	behavior := "Contiguous"
	if p.individual {
		behavior = "Isolated"
	}
	var out []piece
	for _, x := range in {
		out = splitBy(x, spansFunc(x.text, unicode.IsNumber), behavior, out)
	}
	return out
}

// spansFunc marks each character for which f holds as a one-character match.
func spansFunc(s string, f func(rune) bool) []span {
	var spans []span
	prev := 0
	for i, r := range s {
		if f(r) {
			if prev != i {
				spans = append(spans, span{prev, i, false})
			}
			n := utf8.RuneLen(r)
			if n < 0 {
				n = 1
			}
			spans = append(spans, span{i, i + n, true})
			prev = i + n
		}
	}
	if prev != len(s) {
		spans = append(spans, span{prev, len(s), false})
	}
	return spans
}

// preByteLevel is GPT-2's byte-level pre-tokenizer: optional prefix space, the GPT-2 split
// pattern, then each byte mapped to a printable character.
type preByteLevel struct {
	addPrefixSpace bool
	useRegex       bool
}

func (p preByteLevel) preTokenize(in []piece) []piece {
	var out []piece
	for _, x := range in {
		if p.addPrefixSpace && !strings.HasPrefix(x.text, " ") {
			x.text = " " + x.text
		}
		parts := []piece{x}
		if p.useRegex {
			parts = splitBy(x, gpt2Spans(x.text), "Isolated", nil)
		}
		for _, q := range parts {
			out = append(out, piece{text: byteLevelEncode(q.text), atStart: q.atStart})
		}
	}
	return out
}

// gpt2Spans splits s as GPT-2's pattern does:
// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
func gpt2Spans(s string) []span {
	var spans []span
	isOther := func(r rune) bool { return !unicode.IsSpace(r) && !unicode.IsLetter(r) && !unicode.IsNumber(r) }
	run := func(i int, f func(rune) bool) int { // end of the run of f-characters from i
		for i < len(s) {
			r, n := utf8.DecodeRuneInString(s[i:])
			if !f(r) {
				break
			}
			i += n
		}
		return i
	}
	for i := 0; i < len(s); {
		end := 0
		if s[i] == '\'' {
			for _, c := range []string{"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"} {
				if strings.HasPrefix(s[i:], c) {
					end = i + len(c)
					break
				}
			}
		}
		if end == 0 {
			j := i
			if s[j] == ' ' {
				j++
			}
			if j < len(s) {
				r, _ := utf8.DecodeRuneInString(s[j:])
				for _, f := range []func(rune) bool{unicode.IsLetter, unicode.IsNumber, isOther} {
					if f(r) {
						end = run(j, f)
						break
					}
				}
			}
		}
		if end == 0 {
			e := run(i, unicode.IsSpace)
			switch {
			case e == len(s):
				end = e
			case e > i:
				_, last := utf8.DecodeLastRuneInString(s[i:e])
				end = e - last
				if end == i {
					end = e
				}
			}
		}
		if end == 0 { // cannot happen for valid text; keep progress for invalid bytes
			_, n := utf8.DecodeRuneInString(s[i:])
			end = i + n
		}
		spans = append(spans, span{i, end, true})
		i = end
	}
	return spans
}

// byteLevelAlphabet maps each byte to the printable character GPT-2's byte-level BPE uses.
var byteLevelAlphabet, byteLevelInverse = func() ([256]rune, map[rune]byte) {
	var fwd [256]rune
	inv := map[rune]byte{}
	n := 0
	for b := 0; b < 256; b++ {
		if b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE && b <= 0xFF {
			fwd[b] = rune(b)
		} else {
			fwd[b] = rune(256 + n)
			n++
		}
		inv[fwd[b]] = byte(b)
	}
	return fwd, inv
}()

func byteLevelEncode(s string) string {
	var b strings.Builder
	b.Grow(2 * len(s))
	for i := 0; i < len(s); i++ {
		b.WriteRune(byteLevelAlphabet[s[i]])
	}
	return b.String()
}

func parsePreTokenizer(raw json.RawMessage) (preTokenizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	var h struct {
		Type           string            `json:"type"`
		PreTokenizers  []json.RawMessage `json:"pretokenizers"`
		Replacement    string            `json:"replacement"`
		PrependScheme  *string           `json:"prepend_scheme"`
		AddPrefixSpace *bool             `json:"add_prefix_space"`
		Split          *bool             `json:"split"`
		Pattern        pattern           `json:"pattern"`
		Behavior       string            `json:"behavior"`
		Invert         bool              `json:"invert"`
		UseRegex       *bool             `json:"use_regex"`
		Individual     bool              `json:"individual_digits"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, formatErr("pre_tokenizer: %v", err)
	}
	switch h.Type {
	case "Sequence":
		var q preSeq
		for _, r := range h.PreTokenizers {
			p, err := parsePreTokenizer(r)
			if err != nil {
				return nil, err
			}
			if p != nil {
				q = append(q, p)
			}
		}
		return q, nil
	case "Metaspace":
		p := &preMetaspace{replacement: h.Replacement, scheme: "always", split: true}
		if utf8.RuneCountInString(p.replacement) != 1 {
			return nil, formatErr("pre_tokenizer Metaspace: replacement %q is not one character", h.Replacement)
		}
		if h.Split != nil {
			p.split = *h.Split
		}
		switch {
		case h.PrependScheme != nil:
			p.scheme = *h.PrependScheme
		case h.AddPrefixSpace != nil && !*h.AddPrefixSpace:
			p.scheme = "never"
		}
		if p.scheme != "always" && p.scheme != "first" && p.scheme != "never" {
			return nil, unsupported("pre_tokenizer Metaspace prepend_scheme %q", p.scheme)
		}
		return p, nil
	case "Split":
		lit, re, err := h.Pattern.compile("pre_tokenizer Split")
		if err != nil {
			return nil, err
		}
		switch h.Behavior {
		case "Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous":
		default:
			return nil, unsupported("pre_tokenizer Split behavior %q", h.Behavior)
		}
		return &preSplit{lit: lit, re: re, behavior: h.Behavior, invert: h.Invert}, nil
	case "ByteLevel":
		p := preByteLevel{addPrefixSpace: true, useRegex: true}
		if h.AddPrefixSpace != nil {
			p.addPrefixSpace = *h.AddPrefixSpace
		}
		if h.UseRegex != nil {
			p.useRegex = *h.UseRegex
		}
		return p, nil
	case "WhitespaceSplit":
		return preWhitespaceSplit{}, nil
	case "Digits":
		return preDigits{individual: h.Individual}, nil
	}
	return nil, unsupported("pre_tokenizer %q", h.Type)
}
