package tokenizer

import (
	"encoding/json"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// normalizer is one step of a tokenizer.json normalizer: a function of the whole segment.
type normalizer interface {
	normalize(s string) string
}

type normSeq []normalizer

func (q normSeq) normalize(s string) string {
	for _, n := range q {
		s = n.normalize(s)
	}
	return s
}

// normPrepend prepends a string to non-empty segments.
type normPrepend string

func (p normPrepend) normalize(s string) string {
	if s == "" {
		return s
	}
	return string(p) + s
}

// normReplace replaces every match of a literal or regular-expression pattern.
type normReplace struct {
	lit     string
	re      *onigRegexp
	content string
}

func (r *normReplace) normalize(s string) string {
	if r.re != nil {
		return r.re.replaceAll(s, r.content)
	}
	if r.lit == "" {
		return s
	}
	return strings.ReplaceAll(s, r.lit, r.content)
}

type normForm struct{ f norm.Form }

func (n normForm) normalize(s string) string { return n.f.String(s) }

// normStrip removes leading and/or trailing Unicode white space.
type normStrip struct{ left, right bool }

func (n normStrip) normalize(s string) string {
	if n.left {
		s = strings.TrimLeftFunc(s, unicode.IsSpace)
	}
	if n.right {
		s = strings.TrimRightFunc(s, unicode.IsSpace)
	}
	return s
}

// normLowercase lowercases each character on its own, as Rust's char::to_lowercase does.
type normLowercase struct{}

func (normLowercase) normalize(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if r == 'İ' { // the one character whose lowercase is two characters
			b.WriteString("i\u0307")
			continue
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// pattern is the tokenizer.json encoding of a Replace or Split pattern.
type pattern struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

// compile returns either a literal or a compiled regular expression. where names the
// component for error messages.
func (p pattern) compile(where string) (lit string, re *onigRegexp, err error) {
	switch {
	case p.String != nil:
		return *p.String, nil, nil
	case p.Regex != nil:
		re, err := compileRegex(*p.Regex, where)
		if err != nil {
			return "", nil, err
		}
		return "", re, nil
	}
	return "", nil, formatErr("%s: pattern has neither String nor Regex", where)
}

func parseNormalizer(raw json.RawMessage) (normalizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	var h struct {
		Type        string            `json:"type"`
		Normalizers []json.RawMessage `json:"normalizers"`
		Prepend     string            `json:"prepend"`
		Pattern     pattern           `json:"pattern"`
		Content     string            `json:"content"`
		StripLeft   bool              `json:"strip_left"`
		StripRight  bool              `json:"strip_right"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, formatErr("normalizer: %v", err)
	}
	switch h.Type {
	case "Sequence":
		var q normSeq
		for _, r := range h.Normalizers {
			n, err := parseNormalizer(r)
			if err != nil {
				return nil, err
			}
			if n != nil {
				q = append(q, n)
			}
		}
		return q, nil
	case "Prepend":
		return normPrepend(h.Prepend), nil
	case "Replace":
		lit, re, err := h.Pattern.compile("normalizer Replace")
		if err != nil {
			return nil, err
		}
		return &normReplace{lit: lit, re: re, content: h.Content}, nil
	case "NFC":
		return normForm{norm.NFC}, nil
	case "NFKC":
		return normForm{norm.NFKC}, nil
	case "NFD":
		return normForm{norm.NFD}, nil
	case "NFKD":
		return normForm{norm.NFKD}, nil
	case "Strip":
		return normStrip{left: h.StripLeft, right: h.StripRight}, nil
	case "Lowercase":
		return normLowercase{}, nil
	}
	return nil, unsupported("normalizer %q", h.Type)
}

func isNull(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s == "" || s == "null"
}
