package constrain

import (
	"sync"
	"unicode/utf8"
)

// JSONOptions shape the JSON that the JSON grammars allow.
type JSONOptions struct {
	// MaxBlanks bounds each run of whitespace (spaces, tabs, newlines) between JSON tokens
	// and before the value, so that a model cannot loop on blanks: 0 means
	// DefaultMaxBlanks, a negative value allows no whitespace at all (compact JSON).
	MaxBlanks int
}

// DefaultMaxBlanks is the longest run of whitespace the JSON grammars allow by default.
const DefaultMaxBlanks = 4

func (o JSONOptions) blanks() int {
	switch {
	case o.MaxBlanks < 0:
		return 0
	case o.MaxBlanks == 0:
		return DefaultMaxBlanks
	}
	return o.MaxBlanks
}

// Blanks returns the grammar of at most max JSON whitespace bytes (space, tab, newline).
func Blanks(max int) *Grammar {
	var s byteSet
	s.add(' ')
	s.add('\t')
	s.add('\n')
	return Repeat(bytesOf(s), 0, max)
}

// jsonChars are the grammars of JSON string contents, built once.
var jsonChars = sync.OnceValue(func() (g struct{ char, keyChar *Grammar }) {
	// A character written as itself: anything but '"', '\' and the controls.
	raw := utf8Grammar([]runeRange{{0x20, 0x21}, {0x23, 0x5B}, {0x5D, utf8.MaxRune}})
	hex := ByteClass("0-9a-fA-F")
	// \uXXXX, surrogates excepted (a lone surrogate is not a character).
	uEsc := Seq(Literal(`\u`), Alt(
		Seq(ByteClass("0-9a-cA-Ce-fE-F"), hex, hex, hex),
		Seq(ByteClass("dD"), ByteClass("0-7"), hex, hex)))
	esc := Alt(Seq(Literal(`\`), ByteClass(`"\\/bfnrt`)), uEsc)
	g.char = Alt(raw, esc)
	g.keyChar = raw
	return g
})

// ByteClass returns the grammar of one byte of a class written as in a regular expression's
// brackets, without them: "a-z0-9_". A '-' first or last stands for itself, and so does one
// between two bytes in descending order.
func ByteClass(class string) *Grammar {
	var s byteSet
	for i := 0; i < len(class); i++ {
		lo := class[i]
		if i+2 < len(class) && class[i+1] == '-' && class[i+2] >= lo {
			s.addRange(lo, class[i+2])
			i += 2
			continue
		}
		s.add(lo)
	}
	return bytesOf(s)
}

// JSONString returns the grammar of a JSON string (quotes included) of at least min and at
// most max characters (max < 0: no limit), escapes allowed.
func JSONString(min, max int) *Grammar {
	return Seq(Literal(`"`), Repeat(jsonChars().char, min, max), Literal(`"`))
}

// maxIntDigits bounds the integer part of the numbers generated, and exponents have at most
// two digits, so that every number fits a float64 (parsers that read numbers as doubles
// fail on larger ones).
const maxIntDigits = 20

var (
	digit    = ByteClass("0-9")
	digit19  = ByteClass("1-9")
	intPart  = Alt(Literal("0"), Seq(digit19, Repeat(digit, 0, maxIntDigits-1)))
	fraction = Seq(Literal("."), Plus(digit))
	exponent = Seq(ByteClass("eE"), Optional(ByteClass("+-")), Repeat(digit, 1, 2))
)

// JSONNumber returns the grammar of a JSON number: at most 20 integer digits and two
// exponent digits, so that it fits a float64.
func JSONNumber() *Grammar {
	return Seq(Optional(Literal("-")), intPart, Optional(fraction), Optional(exponent))
}

// JSONInteger returns the grammar of a JSON integer of at most 20 digits, written without
// fraction or exponent.
func JSONInteger() *Grammar { return Seq(Optional(Literal("-")), intPart) }

// anyValues memoizes the grammar of any JSON value per whitespace bound, so that equal
// options give the same nonterminal (and hit the compile cache).
var anyValues sync.Map // int -> *Grammar

// JSONValue returns the grammar of any JSON value.
func JSONValue(opts JSONOptions) *Grammar {
	n := opts.blanks()
	if g, ok := anyValues.Load(n); ok {
		return g.(*Grammar)
	}
	ws := Blanks(n)
	g := Recursive(func(v *Grammar) *Grammar {
		member := Seq(JSONString(0, -1), ws, Literal(":"), ws, v)
		return Alt(
			Seq(Literal("{"), ws, Optional(Seq(member, ws, Star(Seq(Literal(","), ws, member, ws)))), Literal("}")),
			Seq(Literal("["), ws, Optional(Seq(v, ws, Star(Seq(Literal(","), ws, v, ws)))), Literal("]")),
			JSONString(0, -1), JSONNumber(), Literal("true"), Literal("false"), Literal("null"))
	})
	actual, _ := anyValues.LoadOrStore(n, g)
	return actual.(*Grammar)
}

var anyObjects sync.Map // int -> *Grammar

// JSONObject returns the grammar of any JSON object (the API's json_object mode), after at
// most MaxBlanks blanks.
func JSONObject(opts JSONOptions) *Grammar {
	n := opts.blanks()
	if g, ok := anyObjects.Load(n); ok {
		return g.(*Grammar)
	}
	ws := Blanks(n)
	v := JSONValue(opts)
	member := Seq(JSONString(0, -1), ws, Literal(":"), ws, v)
	g := Seq(ws, Literal("{"), ws, Optional(Seq(member, ws, Star(Seq(Literal(","), ws, member, ws)))), Literal("}"))
	actual, _ := anyObjects.LoadOrStore(n, g)
	return actual.(*Grammar)
}
