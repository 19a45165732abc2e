package constrain

import (
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// byteVocab has one token per byte value: token i is byte i.
var byteVocab = func() *Vocab {
	toks := make([][]byte, 256)
	for i := range toks {
		toks[i] = []byte{byte(i)}
	}
	return NewVocab(toks)
}()

// accepts reports whether g accepts s as a whole.
func accepts(t testing.TB, g *Grammar, s string) bool {
	t.Helper()
	if g.kind == kNever {
		return false
	}
	c, err := byteVocab.Compile(g)
	if err != nil {
		t.Fatal(err)
	}
	m := c.NewMatcherMidText()
	return m.AdvanceBytes([]byte(s)) == nil && m.Accepting()
}

func mustRegex(t testing.TB, p string) *Grammar {
	t.Helper()
	g, err := Regex(p)
	if err != nil {
		t.Fatalf("Regex(%q): %v", p, err)
	}
	return g
}

func TestGrammarLanguages(t *testing.T) {
	parens := Recursive(func(self *Grammar) *Grammar {
		return Star(Seq(Literal("("), self, Literal(")")))
	})
	for _, tc := range []struct {
		name     string
		g        *Grammar
		yes, not []string
	}{
		{"literal", Literal("abc"), []string{"abc"}, []string{"", "ab", "abcd", "abd"}},
		{"empty", Empty(), []string{""}, []string{"a"}},
		{"never", Never(), nil, []string{"", "a"}},
		{"choice", Choice("yes", "no", "日本"), []string{"yes", "no", "日本"}, []string{"", "ye", "yesno", "日"}},
		{"seq alt", Seq(Alt(Literal("a"), Literal("bb")), Literal("c")), []string{"ac", "bbc"}, []string{"abc", "c", "bc"}},
		{"repeat bounds", Repeat(Literal("ab"), 2, 3), []string{"abab", "ababab"}, []string{"ab", "abababab", ""}},
		{"repeat unbounded", Repeat(Literal("x"), 2, -1), []string{"xx", "xxxxxxx"}, []string{"x", ""}},
		{"optional", Seq(Optional(Literal("-")), Literal("1")), []string{"1", "-1"}, []string{"--1"}},
		{"byte class", Plus(ByteClass("a-c_-")), []string{"a", "c_-b"}, []string{"d", ""}},
		{"nested", parens, []string{"", "()", "(()())()", "((((()))))"}, []string{"(", ")(", "(()"}},
		{"rule", Repeat(Rule(Literal("ab")), 0, 2), []string{"", "ab", "abab"}, []string{"a", "ababab"}},
		{"blanks", Seq(Blanks(2), Literal("x")), []string{"x", " x", "\n\tx"}, []string{"   x"}},
		{"json string", JSONString(1, 2), []string{`"a"`, `"\n"`, `"\u00e9x"`, `"日本"`, `"\""`}, []string{`""`, `"abc"`, `"\x"`, `"\ud800"`, "\"\x01\"", `"a`}},
		{"json number", JSONNumber(), []string{"0", "-1.5", "12e3", "1E-07", "-0.0"}, []string{"01", "1.", ".5", "+1", "1e1234", "--1"}},
		{"json value", JSONValue(JSONOptions{}), []string{`{"a":[1,{"b":null}],"c":true}`, `[ ]`, `"x"`, `{ "k" : "v" }`}, []string{`{"a"}`, `[1,]`, `{,}`, `nul`}},
		{"json object", JSONObject(JSONOptions{MaxBlanks: 1}), []string{`{}`, ` {"a":1}`}, []string{`[]`, `1`, `{  }`, `  {}`}},
		{"regex classes", mustRegex(t, `\d{2}\w\s.`), []string{"12a x", "99_\t!"}, []string{"1a x", "12a x\n", "12a \n"}},
		{"regex alternation", mustRegex(t, `^(ab|c)+d?$`), []string{"ab", "cabd", "ccc"}, []string{"", "d", "abdd"}},
		{"regex fold", mustRegex(t, `(?i)ok`), []string{"ok", "OK", "oK"}, []string{"okk"}},
		{"regex unicode", mustRegex(t, `[α-γ]+é`), []string{"αé", "γβαé"}, []string{"δé", "é"}},
		{"regex dot", mustRegex(t, `a.c`), []string{"abc", "a日c"}, []string{"a\nc", "a\rc", "ac"}},
		{"regex negated", mustRegex(t, `[^a-z]`), []string{"A", "é", "\n"}, []string{"a", "AB"}},
		{"regex lazy", mustRegex(t, `a+?b*?`), []string{"a", "aabb"}, []string{"b"}},
		{"regex s flag", mustRegex(t, `(?s)a.b`), []string{"a\nb"}, []string{"ab"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, s := range tc.yes {
				if !accepts(t, tc.g, s) {
					t.Errorf("%q refused", s)
				}
			}
			for _, s := range tc.not {
				if accepts(t, tc.g, s) {
					t.Errorf("%q accepted", s)
				}
			}
		})
	}
}

func TestRegexRefused(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		err     error
	}{
		{`a\bc`, ErrUnsupported},
		{`a^b`, ErrUnsupported},
		{`a$b`, ErrUnsupported},
		{`(`, ErrInvalidRegex},
		{`a{2,1}`, ErrInvalidRegex},
		{`[^\x00-\x{10FFFF}]`, ErrEmptyLanguage},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			if _, err := Regex(tc.pattern); !errors.Is(err, tc.err) {
				t.Errorf("Regex(%q) = %v, want %v", tc.pattern, err, tc.err)
			}
		})
	}
}

func TestLeftRecursionRefused(t *testing.T) {
	g := Recursive(func(self *Grammar) *Grammar { return Alt(Seq(self, Literal("a")), Literal("b")) })
	if _, err := byteVocab.Compile(g); !errors.Is(err, ErrLeftRecursion) {
		t.Errorf("Compile = %v, want ErrLeftRecursion", err)
	}
	// A rule that can only end by calling itself accepts nothing.
	g = Recursive(func(self *Grammar) *Grammar { return Seq(Literal("a"), self) })
	if _, err := byteVocab.Compile(g); !errors.Is(err, ErrEmptyLanguage) {
		t.Errorf("Compile = %v, want ErrEmptyLanguage", err)
	}
}

// TestUTF8Ranges checks the UTF-8 automata of code point ranges against the encoder: every
// code point in the ranges is accepted, and nothing else, surrogates and overlong forms
// included.
func TestUTF8Ranges(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 40 {
		var rs []runeRange
		for range 1 + rng.IntN(3) {
			lo := rune(rng.IntN(0x110000))
			if rng.IntN(2) == 0 {
				lo = rune(rng.IntN(0x900))
			}
			rs = append(rs, runeRange{lo, lo + rune(rng.IntN(0x3000))})
		}
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			g := utf8Grammar(rs)
			in := func(r rune) bool {
				if r >= 0xD800 && r <= 0xDFFF || r > utf8.MaxRune {
					return false
				}
				for _, x := range rs {
					if r >= x.lo && r <= x.hi {
						return true
					}
				}
				return false
			}
			for range 300 {
				r := rs[rng.IntN(len(rs))].lo + rune(rng.IntN(0x3100)) - 0x80
				if r < 0 {
					continue
				}
				s := string(r)
				if r >= 0xD800 && r <= 0xDFFF {
					s = string([]byte{0xED, byte(0xA0 | (r>>6)&0x1F), byte(0x80 | r&0x3F)})
				}
				if got := accepts(t, g, s); got != in(r) {
					t.Errorf("U+%04X (% x): accepted %v, want %v", r, s, got, in(r))
				}
			}
			for _, bad := range []string{"\xc0\x80", "\xe0\x80\x80", "\xf8\x88\x80\x80\x80", "\x80"} {
				if accepts(t, g, bad) {
					t.Errorf("% x accepted", bad)
				}
			}
		})
	}
}

// TestNumberRanges checks numeric bounds against exact arithmetic on random numbers, near
// the bounds and far from them.
func TestNumberRanges(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	dec := func() string {
		s := fmt.Sprint(rng.IntN(2000) - 1000)
		if rng.IntN(2) == 0 {
			s += "." + fmt.Sprint(rng.IntN(1000))
		}
		return s
	}
	syntax := regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?$`)
	for i := range 60 {
		var lo, hi *bound
		if rng.IntN(4) > 0 {
			r, _ := new(big.Rat).SetString(dec())
			lo = &bound{r, rng.IntN(3) == 0}
		}
		if rng.IntN(4) > 0 {
			r, _ := new(big.Rat).SetString(dec())
			if lo != nil && rng.IntN(2) == 0 {
				r.Add(lo.v, big.NewRat(int64(rng.IntN(300)), []int64{1, 2, 4, 5, 10}[rng.IntN(5)]))
			}
			hi = &bound{r, rng.IntN(3) == 0}
		}
		integer := rng.IntN(3) == 0
		name := fmt.Sprintf("%d:%v..%v int=%v", i, lo, hi, integer)
		t.Run(name, func(t *testing.T) {
			g, err := numberRange(lo, hi, integer)
			if err != nil {
				t.Fatal(err)
			}
			var probes []string
			for range 150 {
				probes = append(probes, dec(), fmt.Sprint(rng.IntN(20)-10))
			}
			for _, b := range []*bound{lo, hi} {
				if b != nil {
					x := ratJSON(b.v)
					probes = append(probes, x, x+"0", x+"1", "-"+x, x+".0", x+".00001")
				}
			}
			probes = append(probes, "-0", "0", "0.0", "00", "1.", "-", "1e2", "01.5")
			for _, p := range probes {
				// Negative zero is left out: "-0" is 0, written another way.
				want := syntax.MatchString(p) && (strings.Trim(p, "-0.") != "" || !strings.HasPrefix(p, "-"))
				if want {
					r, _ := new(big.Rat).SetString(p)
					want = (!integer || !strings.Contains(p, ".")) &&
						(lo == nil || r.Cmp(lo.v) > 0 || !lo.excl && r.Cmp(lo.v) == 0) &&
						(hi == nil || r.Cmp(hi.v) < 0 || !hi.excl && r.Cmp(hi.v) == 0)
				}
				if got := accepts(t, g, p); got != want {
					t.Errorf("%s: accepted %v, want %v", p, got, want)
				}
			}
		})
	}
}

// TestDateFormat checks the date format against the calendar, leap years included.
func TestDateFormat(t *testing.T) {
	g, err := JSONSchema([]byte(`{"type":"string","format":"date"}`), JSONOptions{MaxBlanks: -1})
	if err != nil {
		t.Fatal(err)
	}
	for _, y := range []int{0, 1900, 1999, 2000, 2023, 2024, 2100, 2400, 9999} {
		for m := 1; m <= 12; m++ {
			for d := 28; d <= 32; d++ {
				s := fmt.Sprintf("%04d-%02d-%02d", y, m, d)
				_, perr := time.Parse("2006-01-02", s)
				if got := accepts(t, g, `"`+s+`"`); got != (perr == nil) {
					t.Errorf("%s: accepted %v, valid %v", s, got, perr == nil)
				}
			}
		}
	}
}

// TestMultiByteTokens checks masks where tokens split characters: a token may carry the
// first bytes of a character, and the next token must complete it.
func TestMultiByteTokens(t *testing.T) {
	toks := []string{"α", "\xce", "\xb1", "\xb2", "β", "αβ", "a", "\xce\xb1\xce"}
	b := make([][]byte, len(toks))
	for i, s := range toks {
		b[i] = []byte(s)
	}
	v := NewVocab(b)
	c, err := v.Compile(mustRegex(t, `α+`))
	if err != nil {
		t.Fatal(err)
	}
	m := c.NewMatcher()
	mask := make([]uint64, 1)
	step := func(want []int, id int) {
		t.Helper()
		if err := m.Allow(mask); err != nil {
			t.Fatal(err)
		}
		if got := allowedIDs(mask); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("allowed %v, want %v", got, want)
		}
		if id >= 0 {
			if err := m.Advance(id); err != nil {
				t.Fatal(err)
			}
		}
	}
	step([]int{0, 1, 7}, 1) // "α", a lead byte, "α" + a lead byte
	step([]int{2}, 2)       // only the continuation of α
	step([]int{0, 1, 7}, 7)
	step([]int{2}, -1)
	if m.Accepting() {
		t.Error("accepting in the middle of a character")
	}
}

// TestByteFallbackTokens checks that the bundled vocabulary's byte tokens (<0xNN>) carry
// characters the vocabulary has no token for, and only where the grammar allows them.
func TestByteFallbackTokens(t *testing.T) {
	v := bundledVocab(t)
	tok, _ := bundledTokenizer()
	c, err := v.Compile(mustRegex(t, `[\x{1F600}-\x{1F64F}]{2}`)) // emoji
	if err != nil {
		t.Fatal(err)
	}
	m := c.NewMatcher()
	mask := make([]uint64, (v.Size()+63)/64)
	lead, _ := tok.ID("<0xF0>")
	bad, _ := tok.ID("<0xE2>")
	if err := m.Allow(mask); err != nil {
		t.Fatal(err)
	}
	has := func(id int) bool { return mask[id/64]&(1<<(id%64)) != 0 }
	if !has(lead) || has(bad) {
		t.Fatalf("<0xF0> allowed %v, <0xE2> allowed %v", has(lead), has(bad))
	}
	for _, b := range []string{"<0xF0>", "<0x9F>", "<0x98>", "<0x80>"} {
		id, _ := tok.ID(b)
		if err := m.Allow(mask); err != nil {
			t.Fatal(err)
		}
		if !has(id) {
			t.Fatalf("%s not allowed", b)
		}
		if n := len(allowedIDs(mask)); b != "<0xF0>" && n > 64 {
			t.Errorf("%d tokens allowed inside a character", n)
		}
		if err := m.Advance(id); err != nil {
			t.Fatal(err)
		}
	}
	if m.Accepting() {
		t.Error("accepting after one of two characters")
	}
}

// TestMaskMatchesTokens compares masks with a direct check of every token against the
// configurations, at the states of random walks, for grammars with nesting, recursion and
// tokens that cross the ends of nonterminals.
func TestMaskMatchesTokens(t *testing.T) {
	v := bundledVocab(t)
	grammars := map[string]*Grammar{
		"json object": JSONObject(JSONOptions{}),
		"tool calls":  Seq(Plus(Seq(Literal("<tool_call>\n"), mustSchema(t, `{"type":"object","properties":{"city":{"type":"string","maxLength":5},"n":{"type":"integer"}},"required":["city"]}`), Literal("\n</tool_call>"))), Optional(Literal("\n"))),
		"regex":       mustRegex(t, `(\d+, )*"[a-zé]{1,3}"`),
		"long string": mustSchema(t, `{"type":"object","properties":{"s":{"type":"string","minLength":30,"maxLength":60}},"required":["s"]}`),
		"recursive":   mustSchema(t, `{"$defs":{"t":{"type":"array","items":{"anyOf":[{"type":"integer"},{"$ref":"#/$defs/t"}]},"maxItems":3}},"$ref":"#/$defs/t"}`),
	}
	rng := rand.New(rand.NewPCG(9, 10))
	mask := make([]uint64, (v.Size()+63)/64)
	for name, g := range grammars {
		t.Run(name, func(t *testing.T) {
			c, err := v.Compile(g)
			if err != nil {
				t.Fatal(err)
			}
			for walk := range 4 {
				m := c.NewMatcher()
				if walk%2 == 1 {
					m = c.NewMatcherMidText()
				}
				for range 25 {
					if err := m.Allow(mask); err != nil {
						t.Fatal(err)
					}
					for id := range v.Size() {
						b := v.TokenBytes(id)
						if m.atStart {
							b = v.startBytes(id)
						}
						want := false
						for _, k := range m.ready {
							if len(b) > 0 && m.reads(k, b) {
								want = true
							}
						}
						if got := mask[id/64]&(1<<(id%64)) != 0; got != want {
							t.Fatalf("token %d %q: allowed %v, want %v", id, b, got, want)
						}
					}
					ids := allowedIDs(mask)
					if len(ids) == 0 {
						break
					}
					if err := m.Advance(ids[rng.IntN(len(ids))]); err != nil {
						t.Fatal(err)
					}
				}
			}
		})
	}
}

func mustSchema(t testing.TB, s string) *Grammar {
	t.Helper()
	g, err := JSONSchema([]byte(s), JSONOptions{})
	if err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return g
}

// TestStartForms checks the first token of an output: SentencePiece's decoder drops the
// leading space of "▁yes" there, so the token writes "yes" at the start and " yes" later.
func TestStartForms(t *testing.T) {
	v := bundledVocab(t)
	tok, _ := bundledTokenizer()
	spaced, ok := tok.ID("▁yes")
	if !ok {
		t.Skip("no ▁yes in the vocabulary")
	}
	c, err := v.Compile(Seq(Choice("yes", "no"), Optional(Literal(" yes"))))
	if err != nil {
		t.Fatal(err)
	}
	mask := make([]uint64, (v.Size()+63)/64)
	allowed := func(m *Matcher) bool {
		if err := m.Allow(mask); err != nil {
			t.Fatal(err)
		}
		return mask[spaced/64]&(1<<(spaced%64)) != 0
	}
	m := c.NewMatcher()
	if !allowed(m) {
		t.Error("▁yes refused at the start of the output")
	}
	if err := m.Advance(spaced); err != nil {
		t.Fatal(err)
	}
	if !allowed(m) {
		t.Error("▁yes refused after yes")
	}
	if err := m.Advance(spaced); err != nil || !m.Accepting() {
		t.Errorf("yes yes: %v, accepting %v", err, m.Accepting())
	}
	if allowed(c.NewMatcherMidText()) {
		t.Error("▁yes allowed mid-text, where it writes \" yes\"")
	}
}

// TestShortMask checks a mask shorter than the vocabulary (a model with fewer ids than its
// tokenizer): the tokens beyond it are left out.
func TestShortMask(t *testing.T) {
	toks := make([][]byte, 100)
	for i := range toks {
		toks[i] = []byte{'a'}
	}
	c, err := NewVocab(toks).Compile(Literal("a"))
	if err != nil {
		t.Fatal(err)
	}
	mask := []uint64{0}
	if err := c.NewMatcher().Allow(mask); err != nil || mask[0] != ^uint64(0) {
		t.Errorf("Allow = %v, mask %x", err, mask)
	}
}
