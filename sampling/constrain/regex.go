package constrain

import (
	"fmt"
	"regexp/syntax"
	"unicode"
	"unicode/utf8"
)

// Regex returns the grammar of the UTF-8 strings that the regular expression pattern
// matches as a whole: the match is anchored at both ends, whether or not the pattern says so
// with ^ and $. The syntax is Go's (RE2's, which JSON Schema patterns mostly share):
// literals, escapes, classes ([a-z], \d, \w, \s, \pL, [[:alpha:]]), '.', groups,
// alternation, the repetitions * + ? {m} {m,} {m,n} (lazy ones too, which match the same
// strings), and the flags (?i) (?s). '.' matches any character but \n, \r, U+2028 and U+2029
// (what it matches in both RE2 and ECMAScript). Anchors anywhere but at the ends, and word
// boundaries, fail with ErrUnsupported; a pattern that does not parse fails with
// ErrInvalidRegex.
func Regex(pattern string) (*Grammar, error) {
	return regexGrammar(pattern, utf8Grammar)
}

// regexGrammar converts pattern, writing each character of a class with char (as UTF-8 for
// Regex, as JSON string contents for JSON Schema patterns).
func regexGrammar(pattern string, char func([]runeRange) *Grammar) (*Grammar, error) {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidRegex, err)
	}
	c := regexConv{char: char}
	g, err := c.conv(re, true, true)
	if err != nil {
		return nil, err
	}
	if g.kind == kNever {
		return nil, fmt.Errorf("%w: the pattern %q matches nothing", ErrEmptyLanguage, pattern)
	}
	return g, nil
}

type regexConv struct {
	char func([]runeRange) *Grammar
}

// notDot are the characters '.' does not match (without the s flag).
var notDot = []runeRange{{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}}

func (c *regexConv) conv(re *syntax.Regexp, atStart, atEnd bool) (*Grammar, error) {
	switch re.Op {
	case syntax.OpNoMatch:
		return neverGrammar, nil
	case syntax.OpEmptyMatch:
		return emptyGrammar, nil
	case syntax.OpLiteral:
		gs := make([]*Grammar, len(re.Rune))
		for i, r := range re.Rune {
			rs := []runeRange{{r, r}}
			if re.Flags&syntax.FoldCase != 0 {
				for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
					rs = append(rs, runeRange{f, f})
				}
			}
			gs[i] = c.char(rs)
		}
		return Seq(gs...), nil
	case syntax.OpCharClass:
		var rs []runeRange
		for i := 0; i+1 < len(re.Rune); i += 2 {
			rs = append(rs, runeRange{re.Rune[i], re.Rune[i+1]})
		}
		if len(rs) == 0 {
			return neverGrammar, nil
		}
		return c.char(rs), nil
	case syntax.OpAnyCharNotNL:
		return c.char(subtractRanges([]runeRange{{0, utf8.MaxRune}}, notDot)), nil
	case syntax.OpAnyChar:
		return c.char([]runeRange{{0, utf8.MaxRune}}), nil
	case syntax.OpBeginLine, syntax.OpBeginText:
		if !atStart {
			return nil, fmt.Errorf("%w: regular expression anchor %s away from the start", ErrUnsupported, re)
		}
		return emptyGrammar, nil
	case syntax.OpEndLine, syntax.OpEndText:
		if !atEnd {
			return nil, fmt.Errorf("%w: regular expression anchor %s away from the end", ErrUnsupported, re)
		}
		return emptyGrammar, nil
	case syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return nil, fmt.Errorf("%w: regular expression word boundary %s", ErrUnsupported, re)
	case syntax.OpCapture:
		return c.conv(re.Sub[0], atStart, atEnd)
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpRepeat:
		sub, err := c.conv(re.Sub[0], false, false)
		if err != nil {
			return nil, err
		}
		switch re.Op {
		case syntax.OpStar:
			return Star(sub), nil
		case syntax.OpPlus:
			return Plus(sub), nil
		case syntax.OpQuest:
			return Optional(sub), nil
		}
		return Repeat(sub, re.Min, re.Max), nil
	case syntax.OpConcat:
		gs := make([]*Grammar, len(re.Sub))
		for i, s := range re.Sub {
			g, err := c.conv(s, atStart && i == 0, atEnd && i == len(re.Sub)-1)
			if err != nil {
				return nil, err
			}
			gs[i] = g
		}
		return Seq(gs...), nil
	case syntax.OpAlternate:
		gs := make([]*Grammar, len(re.Sub))
		for i, s := range re.Sub {
			g, err := c.conv(s, atStart, atEnd)
			if err != nil {
				return nil, err
			}
			gs[i] = g
		}
		return Alt(gs...), nil
	}
	return nil, fmt.Errorf("%w: regular expression operator %s", ErrUnsupported, re)
}

// jsonStringChar returns the grammar of one character of rs written inside a JSON string:
// itself, or escaped when JSON requires it ('"', '\' and the controls).
func jsonStringChar(rs []runeRange) *Grammar {
	rs = normalizeRanges(rs)
	special := []runeRange{{0, 0x1F}, {'"', '"'}, {'\\', '\\'}}
	alts := []*Grammar{utf8Grammar(subtractRanges(rs, special))}
	for _, r := range rs {
		for x := r.lo; x <= min(r.hi, 0x5C); x++ {
			if x < 0x20 || x == '"' || x == '\\' {
				alts = append(alts, Literal(jsonEscape(x)))
			}
		}
	}
	return Alt(alts...)
}

// jsonEscape returns the JSON escape of a control character, '"' or '\'.
func jsonEscape(r rune) string {
	switch r {
	case '"':
		return `\"`
	case '\\':
		return `\\`
	case '\b':
		return `\b`
	case '\f':
		return `\f`
	case '\n':
		return `\n`
	case '\r':
		return `\r`
	case '\t':
		return `\t`
	}
	return fmt.Sprintf(`\u%04x`, r)
}
