package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// addedToken is a token added on top of the model's vocabulary (special or not), matched in
// text before the model sees it.
type addedToken struct {
	id         int
	content    string
	special    bool
	lstrip     bool // absorb white space before the token
	rstrip     bool // absorb white space after the token
	singleWord bool // match only when not inside a word
	normalized bool // match in normalized text rather than in the raw input
}

// segment is a piece of the input: either text for the model (id < 0) or an added token.
type segment struct {
	start, end int
	id         int
}

// splitAdded splits s on the added tokens of tr (values index t.added), leftmost-longest, as
// Hugging Face's AddedVocabulary does. allow, when non-nil, vetoes a match by its byte range;
// a vetoed match does not hide shorter matches inside it.
func (t *Tokenizer) splitAdded(s string, tr *trie, allow func(start, end int) bool, out []segment) []segment {
	if tr.empty() {
		if s != "" {
			out = append(out, segment{0, len(s), -1})
		}
		return out
	}
	offset := 0
	for i := 0; i < len(s); {
		n, v := tr.longest(s[i:], nil)
		if n == 0 {
			i++
			continue
		}
		start, stop := i, i+n
		if allow != nil && !allow(start, stop) {
			i++
			continue
		}
		tok := &t.added[v]
		if tok.singleWord && (endsWithWordChar(s[:start]) || startsWithWordChar(s[stop:])) {
			i = stop
			continue
		}
		if tok.lstrip {
			ns := start
			for ns > 0 {
				r, size := utf8.DecodeLastRuneInString(s[:ns])
				if !unicode.IsSpace(r) {
					break
				}
				ns -= size
			}
			start = max(ns, offset)
		}
		if tok.rstrip {
			for stop < len(s) {
				r, size := utf8.DecodeRuneInString(s[stop:])
				if !unicode.IsSpace(r) {
					break
				}
				stop += size
			}
		}
		if offset < start {
			out = append(out, segment{offset, start, -1})
		}
		out = append(out, segment{start, stop, tok.id})
		offset, i = stop, stop
	}
	if offset < len(s) {
		out = append(out, segment{offset, len(s), -1})
	}
	return out
}

// isWordChar is the \w class of the Rust regex crate.
func isWordChar(r rune) bool {
	return unicode.IsLetter(r) || unicode.Is(unicode.Nl, r) || unicode.Is(unicode.Other_Alphabetic, r) ||
		unicode.IsMark(r) || unicode.Is(unicode.Nd, r) || unicode.Is(unicode.Pc, r) ||
		unicode.Is(unicode.Join_Control, r)
}

func endsWithWordChar(s string) bool {
	r, n := utf8.DecodeLastRuneInString(s)
	return n > 0 && isWordChar(r)
}

func startsWithWordChar(s string) bool {
	r, n := utf8.DecodeRuneInString(s)
	return n > 0 && isWordChar(r)
}
