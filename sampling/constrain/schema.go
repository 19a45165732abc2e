package constrain

import (
	"container/list"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// JSONSchema returns the grammar of the JSON texts that satisfy schema: at most
// opts.MaxBlanks blanks, then the value, with nothing after it. Grammars are cached by the
// schema's bytes and the options (a bounded cache), so that the same schema compiles once.
//
// Supported keywords: type (one or a list; "integer", "number", "string", "boolean",
// "null", "object", "array"), nullable, enum, const, anyOf, oneOf (when its alternatives
// exclude each other), allOf, $ref within the document (with $defs or definitions;
// recursion allowed), properties, required, additionalProperties, items, prefixItems (and
// items as a list, with additionalItems), minItems, maxItems, minLength, maxLength,
// pattern, format (date-time, date, time, uuid, email), minimum, maximum, exclusiveMinimum,
// exclusiveMaximum, uniqueItems false. The annotations title, description, default,
// examples, deprecated, readOnly, writeOnly, $schema, $id, $comment and extensions
// ("x-...") are ignored. Any other keyword fails with ErrUnsupported naming it; a malformed
// schema fails with ErrInvalidSchema, and one no value satisfies with ErrEmptyLanguage.
//
// What is generated is a subset of what the schema accepts, chosen so that every value
// generated is valid:
//   - Properties come in the order of "properties", each at most once; optional ones may
//     be left out. Other properties appear only when additionalProperties allows them
//     explicitly (true or a schema), after the declared ones, with keys that need no
//     escapes; an object schema without properties and without additionalProperties takes
//     any members.
//   - Numbers have at most 20 integer digits (more only where a bound requires them) and
//     exponents at most two digits, so that they fit a float64; numbers with a minimum or
//     maximum have no exponent. A pattern is matched against the whole string (as if
//     anchored).
//   - Strings are written as JSON requires; an escape counts as one character. A maxLength
//     above 1024 generates at most 1024 characters, a maxItems above 256 at most 256 items
//     (a minLength or minItems above these fails with ErrTooComplex).
func JSONSchema(schema []byte, opts JSONOptions) (*Grammar, error) {
	key := schemaKey{string(schema), opts.blanks()}
	schemaCache.Lock()
	if e, ok := schemaCache.byKey[key]; ok {
		schemaCache.lru.MoveToFront(e)
		r := e.Value.(*schemaResult)
		schemaCache.Unlock()
		return r.g, r.err
	}
	schemaCache.Unlock()
	g, err := compileSchema(schema, opts)
	if err == nil {
		if _, err = g.program(); err != nil {
			g = nil
			if errors.Is(err, ErrLeftRecursion) {
				err = fmt.Errorf("%w: a $ref cycle that reads nothing (%v)", ErrInvalidSchema, err)
			}
			err = &SchemaError{Path: "#", Err: err}
		}
	}
	schemaCache.Lock()
	defer schemaCache.Unlock()
	if e, ok := schemaCache.byKey[key]; ok { // compiled meanwhile: keep one
		r := e.Value.(*schemaResult)
		return r.g, r.err
	}
	schemaCache.byKey[key] = schemaCache.lru.PushFront(&schemaResult{key, g, err})
	for schemaCache.lru.Len() > SchemaCacheSize {
		e := schemaCache.lru.Back()
		delete(schemaCache.byKey, e.Value.(*schemaResult).key)
		schemaCache.lru.Remove(e)
	}
	return g, err
}

// SchemaCacheSize is the number of schemas whose grammars JSONSchema keeps.
const SchemaCacheSize = 256

type schemaKey struct {
	schema string
	blanks int
}

type schemaResult struct {
	key schemaKey
	g   *Grammar
	err error
}

var schemaCache = struct {
	sync.Mutex
	lru   *list.List
	byKey map[schemaKey]*list.Element
}{lru: list.New(), byKey: map[schemaKey]*list.Element{}}

// SchemaError is the error for a schema that cannot be compiled: Path is the JSON pointer
// of the subschema at fault ("#/properties/date"), Err the reason, matching ErrUnsupported,
// ErrInvalidSchema, ErrEmptyLanguage or ErrTooComplex.
type SchemaError struct {
	Path string
	Err  error
}

func (e *SchemaError) Error() string { return fmt.Sprintf("%v at %s", e.Err, e.Path) }
func (e *SchemaError) Unwrap() error { return e.Err }

func schemaErr(path string, kind error, format string, args ...any) error {
	return &SchemaError{Path: path, Err: fmt.Errorf("%w: %s", kind, fmt.Sprintf(format, args...))}
}

// schemaCompiler turns one schema document into a grammar.
type schemaCompiler struct {
	root  *jv
	ws    *Grammar
	opts  JSONOptions
	refs  map[string]*refState
	depth int
}

// refState is a $ref target: compiled once, a nonterminal when it refers to itself.
type refState struct {
	busy, recursive bool
	self, g         *Grammar
	err             error
}

// maxSchemaDepth bounds the nesting of subschemas followed at once.
const maxSchemaDepth = 128

func compileSchema(schema []byte, opts JSONOptions) (*Grammar, error) {
	root, err := parseJV(schema)
	if err != nil {
		return nil, schemaErr("#", ErrInvalidSchema, "%v", err)
	}
	c := &schemaCompiler{root: root, ws: Blanks(opts.blanks()), opts: opts, refs: map[string]*refState{}}
	g, err := c.ref("#", "#")
	if err != nil {
		return nil, err
	}
	return Seq(c.ws, g), nil
}

// Keywords by what they constrain.
var (
	annotationKeywords = []string{"title", "description", "default", "examples", "deprecated",
		"readOnly", "writeOnly", "$schema", "$id", "$comment", "$defs", "definitions"}
	objectKeywords = []string{"properties", "required", "additionalProperties"}
	arrayKeywords  = []string{"items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems"}
	stringKeywords = []string{"minLength", "maxLength", "pattern", "format"}
	numberKeywords = []string{"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}
	otherKeywords  = []string{"type", "nullable", "enum", "const", "anyOf", "oneOf", "allOf", "$ref"}
)

// checkKeywords refuses a keyword the compiler does not enforce.
func checkKeywords(s *jv, path string) error {
	for i, k := range s.keys {
		switch {
		case strings.HasPrefix(k, "x-"), slices.Contains(annotationKeywords, k),
			slices.Contains(objectKeywords, k), slices.Contains(arrayKeywords, k),
			slices.Contains(stringKeywords, k), slices.Contains(numberKeywords, k),
			slices.Contains(otherKeywords, k):
		default:
			return schemaErr(path, ErrUnsupported, "keyword %q", k)
		}
		if k == "uniqueItems" {
			if v := s.vals[i]; v.kind != jBool {
				return schemaErr(path, ErrInvalidSchema, "uniqueItems must be a boolean")
			} else if v.b {
				return schemaErr(path, ErrUnsupported, "keyword \"uniqueItems\": true")
			}
		}
	}
	return nil
}

// validating reports whether s has a keyword that constrains values (not only annotations).
func validating(s *jv) bool {
	for _, k := range s.keys {
		if !strings.HasPrefix(k, "x-") && !slices.Contains(annotationKeywords, k) {
			return true
		}
	}
	return false
}

// ref returns the grammar of the subschema at JSON pointer ptr ("#/$defs/name").
func (c *schemaCompiler) ref(ptr, path string) (*Grammar, error) {
	if st, ok := c.refs[ptr]; ok {
		if st.busy {
			st.recursive = true
			return st.self, nil
		}
		return st.g, st.err
	}
	target, err := c.resolve(ptr, path)
	if err != nil {
		return nil, err
	}
	st := &refState{busy: true}
	c.refs[ptr] = st
	self := Recursive(func(self *Grammar) *Grammar {
		st.self = self
		var g *Grammar
		g, st.err = c.compile(target, ptr)
		return g
	})
	st.busy = false
	if st.err == nil {
		st.g = self
		if !st.recursive {
			st.g = self.rule.body
		}
	}
	return st.g, st.err
}

// resolve follows a JSON pointer within the document.
func (c *schemaCompiler) resolve(ptr, path string) (*jv, error) {
	frag, ok := strings.CutPrefix(ptr, "#")
	if !ok {
		return nil, schemaErr(path, ErrUnsupported, "$ref %q outside the document", ptr)
	}
	frag, err := url.PathUnescape(frag)
	if err != nil {
		return nil, schemaErr(path, ErrInvalidSchema, "$ref %q: %v", ptr, err)
	}
	v := c.root
	if frag == "" {
		return v, nil
	}
	if !strings.HasPrefix(frag, "/") {
		return nil, schemaErr(path, ErrUnsupported, "$ref %q to an anchor", ptr)
	}
	for _, tok := range strings.Split(frag[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch v.kind {
		case jObj:
			v = v.get(tok)
		case jArr:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(v.arr) {
				v = nil
			} else {
				v = v.arr[i]
			}
		default:
			v = nil
		}
		if v == nil {
			return nil, schemaErr(path, ErrInvalidSchema, "$ref %q leads nowhere", ptr)
		}
	}
	return v, nil
}

// compile returns the grammar of the values satisfying subschema s, found at path.
func (c *schemaCompiler) compile(s *jv, path string) (*Grammar, error) {
	c.depth++
	defer func() { c.depth-- }()
	if c.depth > maxSchemaDepth {
		return nil, schemaErr(path, ErrTooComplex, "subschemas nested deeper than %d", maxSchemaDepth)
	}
	switch s.kind {
	case jBool:
		if s.b {
			return JSONValue(c.opts), nil
		}
		return nil, schemaErr(path, ErrEmptyLanguage, "the schema false")
	case jObj:
	default:
		return nil, schemaErr(path, ErrInvalidSchema, "a schema must be an object or a boolean, not %s", s)
	}
	if err := checkKeywords(s, path); err != nil {
		return nil, err
	}
	if r := s.get("$ref"); r != nil {
		if r.kind != jStr {
			return nil, schemaErr(path, ErrInvalidSchema, "$ref must be a string")
		}
		rest := s.with("$ref", nil)
		if !validating(rest) {
			return c.ref(r.s, path)
		}
		if st := c.refs[r.s]; st != nil && st.busy {
			return nil, schemaErr(path, ErrUnsupported, "$ref %q to an enclosing schema beside other keywords", r.s)
		}
		target, err := c.resolve(r.s, path)
		if err != nil {
			return nil, err
		}
		merged, err := c.merge([]*jv{target, rest}, path)
		if err != nil {
			return nil, err
		}
		return c.compile(merged, path)
	}
	if all := s.get("allOf"); all != nil {
		if all.kind != jArr || len(all.arr) == 0 {
			return nil, schemaErr(path, ErrInvalidSchema, "allOf must be a non-empty list")
		}
		parts := append([]*jv{s.with("allOf", nil)}, all.arr...)
		merged, err := c.merge(parts, path+"/allOf")
		if err != nil {
			return nil, err
		}
		return c.compile(merged, path)
	}
	for _, kw := range []string{"anyOf", "oneOf"} {
		if alts := s.get(kw); alts != nil {
			return c.alternatives(s, kw, alts, path)
		}
	}
	return c.typed(s, path)
}

// alternatives compiles anyOf or oneOf: each alternative, with the keywords beside it.
func (c *schemaCompiler) alternatives(s *jv, kw string, alts *jv, path string) (*Grammar, error) {
	if alts.kind != jArr || len(alts.arr) == 0 {
		return nil, schemaErr(path, ErrInvalidSchema, "%s must be a non-empty list", kw)
	}
	rest := s.with(kw, nil)
	branches := alts.arr
	if validating(rest) {
		branches = make([]*jv, len(alts.arr))
		for i, b := range alts.arr {
			m, err := c.merge([]*jv{rest, b}, fmt.Sprintf("%s/%s/%d", path, kw, i))
			if err != nil {
				return nil, err
			}
			branches[i] = m
		}
	}
	if kw == "oneOf" {
		if err := c.disjoint(branches, path+"/oneOf"); err != nil {
			return nil, err
		}
	}
	var gs []*Grammar
	var firstErr error
	for i, b := range branches {
		g, err := c.compile(b, fmt.Sprintf("%s/%s/%d", path, kw, i))
		switch {
		case err == nil:
			gs = append(gs, g)
		case isEmpty(err):
			if firstErr == nil {
				firstErr = err
			}
		default:
			return nil, err
		}
	}
	if len(gs) == 0 {
		return nil, firstErr
	}
	return Alt(gs...), nil
}

func isEmpty(err error) bool { return errors.Is(err, ErrEmptyLanguage) }

// Types, as bits.
const (
	tNull = 1 << iota
	tBool
	tInteger
	tNumber // non-integers too
	tString
	tArray
	tObject
	tAll = tNull | tBool | tInteger | tNumber | tString | tArray | tObject
)

var typeNames = map[string]int{"null": tNull, "boolean": tBool, "integer": tInteger,
	"number": tNumber | tInteger, "string": tString, "array": tArray, "object": tObject}

// types returns the types s allows.
func types(s *jv, path string) (int, error) {
	t := s.get("type")
	var set int
	switch {
	case t == nil:
		// Without a type, the keywords present say what to generate (any value satisfies
		// the keywords of the other types).
		for _, kw := range []struct {
			names []string
			t     int
		}{{objectKeywords, tObject}, {arrayKeywords, tArray}, {stringKeywords, tString}, {numberKeywords, tNumber | tInteger}} {
			for _, k := range kw.names {
				if s.get(k) != nil {
					set |= kw.t
				}
			}
		}
		if set == 0 {
			set = tAll
		}
	case t.kind == jStr:
		set = typeNames[t.s]
		if set == 0 {
			return 0, schemaErr(path, ErrInvalidSchema, "unknown type %q", t.s)
		}
	case t.kind == jArr:
		for _, e := range t.arr {
			x := 0
			if e.kind == jStr {
				x = typeNames[e.s]
			}
			if x == 0 {
				return 0, schemaErr(path, ErrInvalidSchema, "unknown type %s", e)
			}
			set |= x
		}
	default:
		return 0, schemaErr(path, ErrInvalidSchema, "type must be a string or a list of strings")
	}
	if n := s.get("nullable"); n != nil {
		if n.kind != jBool {
			return 0, schemaErr(path, ErrInvalidSchema, "nullable must be a boolean")
		}
		if n.b {
			set |= tNull
		}
	}
	return set, nil
}

// typed compiles a schema without combinators: enum or const, else each type it allows.
func (c *schemaCompiler) typed(s *jv, path string) (*Grammar, error) {
	set, err := types(s, path)
	if err != nil {
		return nil, err
	}
	var values []*jv
	if e := s.get("enum"); e != nil {
		if e.kind != jArr {
			return nil, schemaErr(path, ErrInvalidSchema, "enum must be a list")
		}
		values = e.arr
	}
	if k := s.get("const"); k != nil {
		if values != nil && !slices.ContainsFunc(values, k.equal) {
			return nil, schemaErr(path, ErrEmptyLanguage, "const is not in enum")
		}
		values = []*jv{k}
	}
	if values != nil {
		var gs []*Grammar
		for _, v := range values {
			ok, err := c.accepts(s, set, v, path)
			if err != nil {
				return nil, err
			}
			if ok {
				gs = append(gs, Literal(v.String()))
			}
		}
		if len(gs) == 0 {
			return nil, schemaErr(path, ErrEmptyLanguage, "no value of enum or const satisfies the other keywords")
		}
		return Alt(gs...), nil
	}
	var gs []*Grammar
	var emptyErr error // why the first type that allows no value does not
	add := func(g *Grammar, err error) error {
		switch {
		case err == nil:
			gs = append(gs, g)
		case !isEmpty(err):
			return err
		case emptyErr == nil:
			emptyErr = err
		}
		return nil
	}
	if set&tNull != 0 {
		gs = append(gs, Literal("null"))
	}
	if set&tBool != 0 {
		gs = append(gs, Literal("true"), Literal("false"))
	}
	if set&(tNumber|tInteger) != 0 {
		if err := add(c.number(s, set&tNumber == 0, path)); err != nil {
			return nil, err
		}
	}
	if set&tString != 0 {
		if err := add(c.str(s, path)); err != nil {
			return nil, err
		}
	}
	if set&tArray != 0 {
		if err := add(c.array(s, path)); err != nil {
			return nil, err
		}
	}
	if set&tObject != 0 {
		if err := add(c.object(s, path)); err != nil {
			return nil, err
		}
	}
	if len(gs) == 0 {
		if emptyErr != nil {
			return nil, emptyErr
		}
		return nil, schemaErr(path, ErrEmptyLanguage, "no value satisfies the schema")
	}
	return Alt(gs...), nil
}

// accepts reports whether an enum or const value v satisfies the other keywords of s.
func (c *schemaCompiler) accepts(s *jv, set int, v *jv, path string) (bool, error) {
	switch v.kind {
	case jNull:
		return set&tNull != 0, nil
	case jBool:
		return set&tBool != 0, nil
	case jNum:
		r, ok := v.rat()
		if !ok || set&(tNumber|tInteger) == 0 || set&tNumber == 0 && !r.IsInt() {
			return false, nil
		}
		lo, hi, err := c.bounds(s, path)
		if err != nil {
			return false, err
		}
		if lo != nil && (r.Cmp(lo.v) < 0 || lo.excl && r.Cmp(lo.v) == 0) ||
			hi != nil && (r.Cmp(hi.v) > 0 || hi.excl && r.Cmp(hi.v) == 0) {
			return false, nil
		}
		return true, nil
	case jStr:
		if set&tString == 0 {
			return false, nil
		}
		n := len([]rune(v.s))
		lo, hi, err := c.lengths(s, "minLength", "maxLength", path)
		if err != nil {
			return false, err
		}
		if n < lo || hi >= 0 && n > hi {
			return false, nil
		}
		if p := s.get("pattern"); p != nil {
			re, err := regexp.Compile(p.s)
			if err != nil || p.kind != jStr {
				return false, schemaErr(path, ErrInvalidSchema, "pattern %s: %v", p, err)
			}
			if !re.MatchString(v.s) {
				return false, nil
			}
		}
		if f := s.get("format"); f != nil {
			pat, ok := formats[f.s]
			if !ok {
				return false, schemaErr(path, ErrUnsupported, "format %s", f)
			}
			if !regexp.MustCompile("^(?:" + pat + ")$").MatchString(v.s) {
				return false, nil
			}
		}
		return true, nil
	case jArr:
		if set&tArray == 0 {
			return false, nil
		}
	case jObj:
		if set&tObject == 0 {
			return false, nil
		}
	}
	// An array or object value: accepted as it is, when nothing else constrains it.
	for _, k := range append(slices.Clone(objectKeywords), arrayKeywords...) {
		if s.get(k) != nil {
			return false, schemaErr(path, ErrUnsupported, "enum or const of objects or arrays beside %q", k)
		}
	}
	return true, nil
}

// number compiles a number or integer with its bounds.
func (c *schemaCompiler) number(s *jv, integer bool, path string) (*Grammar, error) {
	lo, hi, err := c.bounds(s, path)
	if err != nil {
		return nil, err
	}
	if lo == nil && hi == nil {
		if integer {
			return JSONInteger(), nil
		}
		return JSONNumber(), nil
	}
	g, err := numberRange(lo, hi, integer)
	if err != nil {
		return nil, &SchemaError{Path: path, Err: err}
	}
	if g.kind == kNever {
		return nil, schemaErr(path, ErrEmptyLanguage, "no number within the bounds")
	}
	return g, nil
}

// bounds reads minimum, maximum and their exclusive forms (numbers, or draft 4's booleans).
func (c *schemaCompiler) bounds(s *jv, path string) (lo, hi *bound, err error) {
	num := func(k string) (*big.Rat, error) {
		v := s.get(k)
		if v == nil {
			return nil, nil
		}
		r, ok := v.rat()
		if !ok {
			return nil, schemaErr(path, ErrInvalidSchema, "%s must be a number (exponent within ±1000)", k)
		}
		return r, nil
	}
	pick := func(cur *bound, r *big.Rat, excl, lower bool) *bound {
		if r == nil {
			return cur
		}
		if cur == nil {
			return &bound{r, excl}
		}
		c := r.Cmp(cur.v)
		if lower && c > 0 || !lower && c < 0 || c == 0 && excl {
			return &bound{r, excl}
		}
		return cur
	}
	for _, side := range []struct {
		kw, ex string
		lower  bool
		out    **bound
	}{{"minimum", "exclusiveMinimum", true, &lo}, {"maximum", "exclusiveMaximum", false, &hi}} {
		r, err := num(side.kw)
		if err != nil {
			return nil, nil, err
		}
		excl := false
		if e := s.get(side.ex); e != nil {
			switch e.kind {
			case jBool: // draft 4: the bound itself is exclusive
				excl = e.b
			case jNum:
				x, err := num(side.ex)
				if err != nil {
					return nil, nil, err
				}
				*side.out = pick(*side.out, x, true, side.lower)
			default:
				return nil, nil, schemaErr(path, ErrInvalidSchema, "%s must be a number or a boolean", side.ex)
			}
		}
		*side.out = pick(*side.out, r, excl, side.lower)
	}
	return lo, hi, nil
}

// lengths reads a pair of non-negative integer bounds (max -1 when absent).
func (c *schemaCompiler) lengths(s *jv, minKw, maxKw, path string) (int, int, error) {
	get := func(k string, def int) (int, error) {
		v := s.get(k)
		if v == nil {
			return def, nil
		}
		r, ok := v.rat()
		if !ok || !r.IsInt() || r.Sign() < 0 {
			return 0, schemaErr(path, ErrInvalidSchema, "%s must be a non-negative integer", k)
		}
		if !r.Num().IsInt64() || r.Num().Int64() > maxCount {
			return 0, schemaErr(path, ErrTooComplex, "%s above %d", k, maxCount)
		}
		return int(r.Num().Int64()), nil
	}
	lo, err := get(minKw, 0)
	if err != nil {
		return 0, 0, err
	}
	hi, err := get(maxKw, -1)
	if err != nil {
		return 0, 0, err
	}
	if hi >= 0 && hi < lo {
		return 0, 0, schemaErr(path, ErrEmptyLanguage, "%s above %s", minKw, maxKw)
	}
	return lo, hi, nil
}

// maxCount bounds minLength, maxLength, minItems and maxItems.
const maxCount = 100000

// formats are the string formats, as regular expressions over the string's characters.
var formats = func() map[string]string {
	const (
		year  = `[0-9]{4}`
		md    = `(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))`
		leap  = `(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[048]|[2468][048]|[13579][26])00)`
		date  = `(?:` + year + `-` + md + `|` + leap + `-02-29)`
		hms   = `(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?`
		zone  = `(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])`
		hex   = `[0-9a-fA-F]`
		label = `[a-zA-Z0-9]{1,20}`
	)
	return map[string]string{
		"date":      date,
		"time":      hms + zone,
		"date-time": date + `T` + hms + zone,
		"uuid":      hex + `{8}-` + hex + `{4}-` + hex + `{4}-` + hex + `{4}-` + hex + `{12}`,
		"email":     `[a-zA-Z0-9_+-]{1,20}(?:\.[a-zA-Z0-9_+-]{1,20}){0,2}@` + label + `(?:\.` + label + `){0,2}\.[a-zA-Z]{2,10}`,
	}
}()

// str compiles a string with its length bounds, pattern or format.
func (c *schemaCompiler) str(s *jv, path string) (*Grammar, error) {
	lo, hi, err := c.lengths(s, "minLength", "maxLength", path)
	if err != nil {
		return nil, err
	}
	pattern, format := s.get("pattern"), s.get("format")
	bounded := s.get("minLength") != nil || s.get("maxLength") != nil
	switch {
	case pattern != nil && (format != nil || bounded):
		return nil, schemaErr(path, ErrUnsupported, "keyword \"pattern\" together with format, minLength or maxLength")
	case format != nil && bounded:
		return nil, schemaErr(path, ErrUnsupported, "keyword \"format\" together with minLength or maxLength")
	case pattern != nil:
		if pattern.kind != jStr {
			return nil, schemaErr(path, ErrInvalidSchema, "pattern must be a string")
		}
		g, err := regexGrammar(pattern.s, jsonStringChar)
		if err != nil {
			return nil, &SchemaError{Path: path, Err: fmt.Errorf("pattern %q: %w", pattern.s, err)}
		}
		return Seq(Literal(`"`), g, Literal(`"`)), nil
	case format != nil:
		pat, ok := formats[format.s]
		if format.kind != jStr || !ok {
			return nil, schemaErr(path, ErrUnsupported, "format %s", format)
		}
		g, err := regexGrammar(pat, jsonStringChar)
		if err != nil {
			return nil, err
		}
		return Seq(Literal(`"`), g, Literal(`"`)), nil
	}
	// Characters are expanded in place, one automaton state per count: a nonterminal called
	// at each count would make every token that ends a character uncertain. Long strings
	// are cut to maxStringChars characters, which still satisfies maxLength.
	if lo > maxStringChars {
		return nil, schemaErr(path, ErrTooComplex, "minLength above %d", maxStringChars)
	}
	if hi > maxStringChars {
		hi = maxStringChars
	}
	return Seq(Literal(`"`), Repeat(jsonChars().char, lo, hi), Literal(`"`)), nil
}

// The longest strings and arrays generated when maxLength or maxItems allow more.
const (
	maxStringChars = 1024
	maxArrayItems  = 256
)

// bigRepeat is the count beyond which repeated array items become a nonterminal of their
// own, so that the automaton grows with the count, not with the count times their size.
const bigRepeat = 64

// share makes g a nonterminal of its own when it is large.
func share(g *Grammar) *Grammar {
	if g.size > 256 {
		return Rule(g)
	}
	return g
}

// array compiles an array: prefixItems (or items as a list), items, minItems, maxItems.
func (c *schemaCompiler) array(s *jv, path string) (*Grammar, error) {
	lo, hi, err := c.lengths(s, "minItems", "maxItems", path)
	if err != nil {
		return nil, err
	}
	var prefix []*jv
	rest := s.get("items")
	prefixPath := path + "/prefixItems"
	if p := s.get("prefixItems"); p != nil {
		if p.kind != jArr {
			return nil, schemaErr(path, ErrInvalidSchema, "prefixItems must be a list")
		}
		prefix = p.arr
	} else if rest != nil && rest.kind == jArr {
		prefix, rest, prefixPath = rest.arr, s.get("additionalItems"), path+"/items"
	}
	// The grammars of the prefix items, then of the others (nil: none allowed).
	var items []*Grammar
	for i, p := range prefix {
		if len(items) == hi {
			break
		}
		g, err := c.compile(p, fmt.Sprintf("%s/%d", prefixPath, i))
		if isEmpty(err) {
			break // no array reaches beyond this item
		}
		if err != nil {
			return nil, err
		}
		items = append(items, g)
	}
	var more *Grammar
	if len(items) == len(prefix) {
		switch {
		case rest == nil:
			more = JSONValue(c.opts)
		case rest.kind == jBool && !rest.b:
		default:
			g, err := c.compile(rest, path+"/items")
			if err != nil && !isEmpty(err) {
				return nil, err
			}
			more = g
		}
	}
	maxLen := hi
	if more == nil && (hi < 0 || hi > len(items)) {
		maxLen = len(items)
	}
	if lo > maxArrayItems {
		return nil, schemaErr(path, ErrTooComplex, "minItems above %d", maxArrayItems)
	}
	if maxLen > maxArrayItems {
		maxLen = maxArrayItems
	}
	if lo > maxLen && maxLen >= 0 {
		return nil, schemaErr(path, ErrEmptyLanguage, "no array of at least %d items", lo)
	}
	if more != nil && (maxLen < 0 || maxLen-len(items) > bigRepeat) {
		more = share(more)
	}
	sep := Seq(c.ws, Literal(","), c.ws)
	// tail(i): the items after the first i, each preceded by a comma.
	var tail func(i int) *Grammar
	tail = func(i int) *Grammar {
		if i == maxLen {
			return emptyGrammar
		}
		if i >= len(items) {
			n := -1
			if maxLen >= 0 {
				n = maxLen - i
			}
			return Repeat(Seq(sep, more), max(lo-i, 0), n)
		}
		g := Seq(sep, items[i], tail(i+1))
		if i >= lo {
			g = Optional(g)
		}
		return g
	}
	var body *Grammar
	if maxLen != 0 {
		first := more
		if len(items) > 0 {
			first = items[0]
		}
		body = Seq(first, tail(1))
		if lo == 0 {
			body = Optional(body)
		}
	} else {
		body = emptyGrammar
	}
	return Seq(Literal("["), c.ws, body, c.ws, Literal("]")), nil
}

// object compiles an object: properties in order, required ones present, and other
// members where additionalProperties allows them.
func (c *schemaCompiler) object(s *jv, path string) (*Grammar, error) {
	props := s.get("properties")
	if props != nil && props.kind != jObj {
		return nil, schemaErr(path, ErrInvalidSchema, "properties must be an object")
	}
	var required []string
	if r := s.get("required"); r != nil {
		if r.kind != jArr {
			return nil, schemaErr(path, ErrInvalidSchema, "required must be a list of strings")
		}
		for _, e := range r.arr {
			if e.kind != jStr {
				return nil, schemaErr(path, ErrInvalidSchema, "required must be a list of strings")
			}
			if !slices.Contains(required, e.s) {
				required = append(required, e.s)
			}
		}
	}
	addl := s.get("additionalProperties")
	var extra *jv // the schema of other members; nil: none
	switch {
	case addl == nil:
		if props == nil || len(props.keys) == 0 {
			extra = &jv{kind: jBool, b: true}
		}
	case addl.kind == jBool:
		if addl.b {
			extra = addl
		}
	case addl.kind == jObj:
		extra = addl
	default:
		return nil, schemaErr(path, ErrInvalidSchema, "additionalProperties must be a schema")
	}
	type member struct {
		name     string
		g        *Grammar
		required bool
	}
	var members []member
	var names []string
	addMember := func(name string, schema *jv, p string) error {
		names = append(names, name)
		req := slices.Contains(required, name)
		g, err := c.compile(schema, p)
		if isEmpty(err) && !req {
			return nil // the member can never appear
		}
		if err != nil {
			return err
		}
		key := appendJSONString(nil, name)
		members = append(members, member{name, Seq(Literal(string(key)), c.ws, Literal(":"), c.ws, share(g)), req})
		return nil
	}
	if props != nil {
		for i, name := range props.keys {
			if err := addMember(name, props.vals[i], path+"/properties/"+escapePointer(name)); err != nil {
				return nil, err
			}
		}
	}
	for _, name := range required {
		if slices.Contains(names, name) {
			continue
		}
		if extra == nil {
			return nil, schemaErr(path, ErrEmptyLanguage, "required property %q is not allowed", name)
		}
		if err := addMember(name, extra, path+"/additionalProperties"); err != nil {
			return nil, err
		}
	}
	var extraMember *Grammar
	if extra != nil {
		g, err := c.compile(extra, path+"/additionalProperties")
		switch {
		case isEmpty(err):
		case err != nil:
			return nil, err
		default:
			extraMember = Seq(otherKey(names), c.ws, Literal(":"), c.ws, share(g))
		}
	}
	sep := Seq(c.ws, Literal(","), c.ws)
	var extras *Grammar = emptyGrammar
	if extraMember != nil {
		extras = Star(Seq(sep, extraMember))
	}
	// tail(i): members i.. after at least one member, each after a comma.
	tails := make([]*Grammar, len(members)+1)
	tails[len(members)] = extras
	for i := len(members) - 1; i >= 0; i-- {
		g := Seq(sep, members[i].g)
		if !members[i].required {
			g = Optional(g)
		}
		tails[i] = Seq(g, tails[i+1])
	}
	// The first member written is some member k, every one before it optional.
	var starts []*Grammar
	anyRequired := false
	for k, m := range members {
		starts = append(starts, Seq(m.g, tails[k+1]))
		if m.required {
			anyRequired = true
			break
		}
	}
	if !anyRequired {
		if extraMember != nil {
			starts = append(starts, Seq(extraMember, extras))
		}
		starts = append(starts, emptyGrammar)
	}
	return Seq(Literal("{"), c.ws, Alt(starts...), c.ws, Literal("}")), nil
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// keyRunes are the characters of keys that need no escape.
var keyRunes = []runeRange{{0x20, 0x21}, {0x23, 0x5B}, {0x5D, 0xD7FF}, {0xE000, 0x10FFFF}}

// otherKey returns the grammar of a JSON string, without escapes, other than the names.
func otherKey(names []string) *Grammar {
	raw := jsonChars().keyChar
	// Walk the trie of the names: at each node, a character that leaves the trie frees the
	// rest; ending is allowed unless the node ends a name.
	type tnode struct {
		kids map[rune]*tnode
		end  bool
	}
	root := &tnode{kids: map[rune]*tnode{}}
	for _, n := range names {
		at := root
		for _, r := range n {
			k := at.kids[r]
			if k == nil {
				k = &tnode{kids: map[rune]*tnode{}}
				at.kids[r] = k
			}
			at = k
		}
		at.end = true
	}
	free := Star(raw)
	var build func(t *tnode) *Grammar
	build = func(t *tnode) *Grammar {
		var alts []*Grammar
		if !t.end {
			alts = append(alts, emptyGrammar)
		}
		var cut []runeRange
		keys := make([]rune, 0, len(t.kids))
		for r := range t.kids {
			keys = append(keys, r)
		}
		slices.Sort(keys)
		for _, r := range keys {
			cut = append(cut, runeRange{r, r})
			if r >= 0x20 && r != '"' && r != '\\' { // else no key without escapes goes there
				alts = append(alts, Seq(utf8Grammar([]runeRange{{r, r}}), build(t.kids[r])))
			}
		}
		others := subtractRanges(keyRunes, normalizeRanges(cut))
		alts = append(alts, Seq(utf8Grammar(others), free))
		return Alt(alts...)
	}
	return Seq(Literal(`"`), build(root), Literal(`"`))
}
