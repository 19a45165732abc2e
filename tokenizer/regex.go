package tokenizer

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// Hugging Face tokenizers runs Replace and Split patterns on Oniguruma with Ruby syntax, where
// ^ and $ match at line breaks and \s, \d and \w are Unicode classes. compileRegex translates
// such a pattern to Go's syntax, and refuses the constructs whose meaning would differ.

// Oniguruma's classes, as bracket-expression contents.
const (
	onigSpace = `\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}`
	onigWord  = `\p{L}\p{M}\p{N}\p{Pc}`
)

// onigRegexp is an Oniguruma pattern running on Go's regexp.
type onigRegexp struct {
	re *regexp.Regexp
	// wsTail, when not 0, is the capture group standing for the final alternatives
	// `\s+(?!\S)|\s+` of the GPT-4 family of split patterns, which Go cannot express: a run
	// of white space followed by other text gives up its last character.
	wsTail int
}

// wsTailSuffix ends the split patterns of GPT-4, Llama 3, Qwen 2 and Mistral's Tekken.
const wsTailSuffix = `|\s+(?!\S)|\s+`

func compileRegex(pat, where string) (*onigRegexp, error) {
	if prefix, ok := strings.CutSuffix(pat, wsTailSuffix); ok {
		// Emulating the look-ahead restarts the search inside the text, so the prefix must not
		// depend on what precedes the search start; and it must stand alone (balanced) for the
		// suffix to be a top-level alternative.
		if head, anchored, err := translateRegex(prefix, pat, where); err == nil && !anchored {
			if re, err := regexp.Compile(head + "|([" + onigSpace + "]+)"); err == nil {
				return &onigRegexp{re: re, wsTail: re.NumSubexp()}, nil
			}
		}
	}
	expr, _, err := translateRegex(pat, pat, where)
	if err != nil {
		return nil, err
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, unsupported("%s regex %q (%v)", where, pat, err)
	}
	return &onigRegexp{re: re}, nil
}

// findAll returns the byte ranges of the successive matches in s.
func (r *onigRegexp) findAll(s string) [][2]int {
	var out [][2]int
	if r.wsTail == 0 {
		for _, m := range r.re.FindAllStringIndex(s, -1) {
			out = append(out, [2]int{m[0], m[1]})
		}
		return out
	}
	for p := 0; p < len(s); {
		m := r.re.FindStringSubmatchIndex(s[p:])
		if m == nil {
			break
		}
		a, b := p+m[0], p+m[1]
		if m[2*r.wsTail] >= 0 && b < len(s) {
			if _, n := utf8.DecodeLastRuneInString(s[a:b]); b-n > a {
				b -= n
			}
		}
		out = append(out, [2]int{a, b})
		if b == a { // the prefix matched empty: step over one character
			_, n := utf8.DecodeRuneInString(s[a:])
			b = a + max(n, 1)
		}
		p = b
	}
	return out
}

// replaceAll replaces every match in s with repl.
func (r *onigRegexp) replaceAll(s, repl string) string {
	ms := r.findAll(s)
	if len(ms) == 0 {
		return s
	}
	var b strings.Builder
	prev := 0
	for _, m := range ms {
		b.WriteString(s[prev:m[0]])
		b.WriteString(repl)
		prev = m[1]
	}
	b.WriteString(s[prev:])
	return b.String()
}

// translateRegex rewrites an Oniguruma pattern in Go's syntax; whole is the pattern named in
// errors. anchored reports an assertion about the text around a match (^, $, \A, \z).
func translateRegex(pat, whole, where string) (expr string, anchored bool, err error) {
	bad := func(what string) error {
		return unsupported("%s regex %q (%s)", where, whole, what)
	}
	var b strings.Builder
	b.WriteString("(?m)")
	inClass := false
	for i := 0; i < len(pat); i++ {
		c := pat[i]
		switch {
		case c == '\\' && i+1 < len(pat):
			i++
			e := pat[i]
			switch {
			case e == 's' && !inClass:
				b.WriteString("[" + onigSpace + "]")
			case e == 's':
				b.WriteString(onigSpace)
			case e == 'S' && !inClass:
				b.WriteString("[^" + onigSpace + "]")
			case e == 'd':
				b.WriteString(`\p{Nd}`)
			case e == 'D':
				b.WriteString(`\P{Nd}`)
			case e == 'w' && !inClass:
				b.WriteString("[" + onigWord + "]")
			case e == 'W' && !inClass:
				b.WriteString("[^" + onigWord + "]")
			case strings.IndexByte("SwWbBhHuRXKGZ", e) >= 0 || e >= '1' && e <= '9':
				return "", false, bad(`\` + string(e) + " differs in Go")
			default:
				anchored = anchored || !inClass && (e == 'A' || e == 'z')
				b.WriteByte('\\')
				b.WriteByte(e)
			}
		case c == '[' && inClass:
			return "", false, bad("nested or POSIX character class")
		case c == '[':
			inClass = true
			b.WriteByte(c)
			// A ']' or '^]' right after '[' is literal in both syntaxes.
			if strings.HasPrefix(pat[i+1:], "^") {
				i++
				b.WriteByte('^')
			}
			if strings.HasPrefix(pat[i+1:], "]") {
				i++
				b.WriteString(`\]`)
			}
		case c == ']' && inClass:
			inClass = false
			b.WriteByte(c)
		case c == '&' && inClass && strings.HasPrefix(pat[i:], "&&"):
			return "", false, bad("class intersection")
		case c == '{' && !inClass && strings.HasPrefix(pat[i:], "{,"):
			return "", false, bad("{,n} repetition")
		default:
			anchored = anchored || !inClass && (c == '^' || c == '$')
			b.WriteByte(c)
		}
	}
	if _, err := regexp.Compile(b.String()); err != nil {
		return "", false, bad(err.Error())
	}
	return b.String(), anchored, nil
}
