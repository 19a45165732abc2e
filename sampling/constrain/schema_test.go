package constrain

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestSchemaErrors(t *testing.T) {
	for _, tc := range []struct {
		name, schema string
		err          error
		mention      string // in the message: the keyword or the path
	}{
		{"if", `{"type":"object","if":{"required":["a"]},"then":{}}`, ErrUnsupported, `"if"`},
		{"not", `{"not":{"type":"string"}}`, ErrUnsupported, `"not"`},
		{"patternProperties", `{"type":"object","patternProperties":{"^a":{}}}`, ErrUnsupported, `"patternProperties"`},
		{"minProperties", `{"type":"object","minProperties":1}`, ErrUnsupported, `"minProperties"`},
		{"multipleOf", `{"type":"integer","multipleOf":3}`, ErrUnsupported, `"multipleOf"`},
		{"uniqueItems", `{"type":"array","uniqueItems":true}`, ErrUnsupported, `uniqueItems`},
		{"contains", `{"type":"array","contains":{"type":"integer"}}`, ErrUnsupported, `"contains"`},
		{"nested keyword", `{"type":"object","properties":{"a/b":{"type":"string","contentEncoding":"base64"}}}`, ErrUnsupported, `#/properties/a~1b`},
		{"format", `{"type":"string","format":"ipv4"}`, ErrUnsupported, `"ipv4"`},
		{"remote ref", `{"$ref":"https://example.com/s.json"}`, ErrUnsupported, `$ref`},
		{"pattern and length", `{"type":"string","pattern":"a+","maxLength":3}`, ErrUnsupported, `pattern`},
		{"oneOf overlapping", `{"oneOf":[{"type":"integer"},{"type":"number"}]}`, ErrUnsupported, `oneOf`},
		{"not json", `{"type":`, ErrInvalidSchema, `#`},
		{"duplicate key", `{"type":"string","type":"integer"}`, ErrInvalidSchema, `duplicate`},
		{"unknown type", `{"type":"float"}`, ErrInvalidSchema, `"float"`},
		{"required", `{"type":"object","required":"a"}`, ErrInvalidSchema, `required`},
		{"dangling ref", `{"$ref":"#/$defs/missing"}`, ErrInvalidSchema, `missing`},
		{"huge exponent", `{"type":"number","minimum":1e999999999}`, ErrInvalidSchema, `minimum`},
		{"bad pattern", `{"type":"string","pattern":"("}`, ErrInvalidRegex, `pattern`},
		{"self ref", `{"$ref":"#"}`, ErrEmptyLanguage, `#`},
		{"ref in allOf", `{"anyOf":[{"type":"null"},{"allOf":[{"$ref":"#"}]}]}`, ErrUnsupported, `$ref`},
		{"left recursion", `{"anyOf":[{"type":"null"},{"$ref":"#"}]}`, ErrInvalidSchema, `$ref cycle`},
		{"false", `false`, ErrEmptyLanguage, `#`},
		{"lengths", `{"type":"string","minLength":5,"maxLength":2}`, ErrEmptyLanguage, `minLength`},
		{"enum types", `{"type":"integer","enum":["a",1.5]}`, ErrEmptyLanguage, `enum`},
		{"bounds", `{"type":"integer","minimum":3,"maximum":2.5}`, ErrEmptyLanguage, `bounds`},
		{"bounds exclusive", `{"type":"number","exclusiveMinimum":1,"maximum":1}`, ErrEmptyLanguage, `bounds`},
		{"endless", `{"type":"object","properties":{"a":{"$ref":"#"}},"required":["a"]}`, ErrEmptyLanguage, ``},
		{"required forbidden", `{"type":"object","properties":{"a":{}},"required":["b"],"additionalProperties":false}`, ErrEmptyLanguage, `"b"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := JSONSchema([]byte(tc.schema), JSONOptions{})
			if !errors.Is(err, tc.err) {
				t.Fatalf("JSONSchema(%s) = %v, want %v", tc.schema, err, tc.err)
			}
			var se *SchemaError
			if !errors.As(err, &se) {
				t.Errorf("%v is not a *SchemaError", err)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("%q does not mention %s", err, tc.mention)
			}
		})
	}
}

// TestSchemaLanguages checks what some schemas accept, exactly.
func TestSchemaLanguages(t *testing.T) {
	for _, tc := range []struct {
		name, schema string
		yes, not     []string
	}{
		{"order and required", `{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"boolean"},"c":{"type":"null"}},"required":["b"]}`,
			[]string{`{"b":true}`, `{"a":1,"b":false,"c":null}`, `{"b":true,"c":null}`, ` { "a" : 1 , "b":true }`},
			[]string{`{}`, `{"a":1}`, `{"b":true,"a":1}`, `{"b":true,"d":1}`, `{"b":true,"b":true}`, `{"b":true,}`}},
		{"additional", `{"type":"object","properties":{"a":{"type":"integer"}},"additionalProperties":{"type":"string","maxLength":1}}`,
			[]string{`{}`, `{"a":1,"x":"y"}`, `{"x":"y","z":""}`, `{"ab":"c"}`},
			[]string{`{"a":"x"}`, `{"x":1}`, `{"a":1,"a":2}`, `{"x\u0061":"y"}`}},
		{"any object", `{"type":"object"}`, []string{`{}`, `{"k":[1,{"z":null}]}`}, []string{`[]`}},
		{"nullable", `{"type":"string","nullable":true,"maxLength":1}`, []string{`null`, `"a"`}, []string{`"ab"`, `1`}},
		{"type list", `{"type":["integer","null"],"minimum":1}`, []string{`null`, `1`, `20`}, []string{`0`, `1.5`}},
		{"enum", `{"enum":["a\"b",1,null,{"k":[true]}]}`, []string{`"a\"b"`, `1`, `null`, `{"k":[true]}`}, []string{`"a"`, `2`}},
		{"const", `{"const":"日本"}`, []string{`"日本"`}, []string{`"日"`}},
		{"anyOf", `{"anyOf":[{"type":"integer","maximum":0},{"type":"string","maxLength":0}]}`, []string{`-3`, `""`}, []string{`3`, `"a"`}},
		{"oneOf discriminated", `{"oneOf":[{"type":"object","properties":{"k":{"const":"a"}},"required":["k"]},{"type":"object","properties":{"k":{"const":"b"},"v":{"type":"integer"}},"required":["k"]}]}`,
			[]string{`{"k":"a"}`, `{"k":"b","v":2}`}, []string{`{"k":"c"}`, `{}`}},
		{"allOf", `{"allOf":[{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]},{"properties":{"a":{"minimum":5},"b":{"type":"string"}}}]}`,
			[]string{`{"a":5}`, `{"a":7,"b":"x"}`}, []string{`{"a":4}`, `{"b":"x"}`}},
		{"ref with siblings", `{"$defs":{"n":{"type":"integer"}},"$ref":"#/$defs/n","maximum":3}`, []string{`3`, `-1`}, []string{`4`, `"a"`}},
		{"prefixItems", `{"type":"array","prefixItems":[{"type":"integer"},{"type":"string"}],"items":false,"minItems":1}`,
			[]string{`[1]`, `[1,"a"]`}, []string{`[]`, `["a"]`, `[1,"a",2]`}},
		{"items counts", `{"type":"array","items":{"type":"boolean"},"minItems":2,"maxItems":3}`,
			[]string{`[true,false]`, `[true, true ,false]`}, []string{`[true]`, `[true,true,true,true]`}},
		{"tuple items draft 7", `{"$schema":"http://json-schema.org/draft-07/schema#","type":"array","items":[{"type":"null"}],"additionalItems":{"type":"integer"}}`,
			[]string{`[]`, `[null]`, `[null,1,2]`}, []string{`[1]`, `[null,null]`}},
		{"recursive", `{"type":"object","properties":{"next":{"$ref":"#"}},"additionalProperties":false}`,
			[]string{`{}`, `{"next":{"next":{}}}`}, []string{`{"next":1}`}},
		{"pattern escapes", `{"type":"string","pattern":"^a\"b\\\\c\n$"}`, []string{`"a\"b\\c\n"`}, []string{`"a"b\\c\n"`}},
		{"uuid", `{"type":"string","format":"uuid"}`, []string{`"123e4567-e89b-12d3-a456-426614174000"`}, []string{`"123e4567e89b12d3a456426614174000"`}},
		{"date-time", `{"type":"string","format":"date-time"}`, []string{`"2024-02-29T23:59:59.5+01:00"`, `"2023-01-01T00:00:00Z"`}, []string{`"2023-02-29T00:00:00Z"`, `"2023-01-01 00:00:00Z"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := JSONSchema([]byte(tc.schema), JSONOptions{MaxBlanks: 1})
			if err != nil {
				t.Fatal(err)
			}
			val := validator(t, tc.schema)
			for _, s := range tc.yes {
				if !accepts(t, g, s) {
					t.Errorf("%s refused", s)
				}
				validate(t, val, tc.schema, []byte(s))
			}
			for _, s := range tc.not {
				if accepts(t, g, s) {
					t.Errorf("%s accepted", s)
				}
			}
		})
	}
}

func TestSchemaCache(t *testing.T) {
	schema := []byte(`{"type":"object","properties":{"cached":{"type":"boolean"}}}`)
	a, err := JSONSchema(schema, JSONOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := JSONSchema(append([]byte(nil), schema...), JSONOptions{})
	if a != b {
		t.Error("the same schema compiled twice")
	}
	if c, _ := JSONSchema(schema, JSONOptions{MaxBlanks: 9}); c == a {
		t.Error("other options share a grammar")
	}
	v := NewVocab([][]byte{[]byte("{"), []byte("}")})
	ca, _ := v.Compile(a)
	// A grammar built again from the same parts is the same grammar.
	cb, _ := v.Compile(Seq(Literal("x"), a))
	cc, _ := v.Compile(Seq(Literal("x"), a))
	if ca == nil || cb != cc || ca == cb {
		t.Error("Compile cache does not key by structure")
	}
	v.SetCacheSize(0)
	if cd, _ := v.Compile(a); cd == ca {
		t.Error("cache kept after SetCacheSize(0)")
	}
}

// FuzzJSONSchema compiles arbitrary schemas: no input may panic, and the values a random
// walk generates under a schema that compiles are valid for an independent validator.
func FuzzJSONSchema(f *testing.F) {
	for _, s := range []string{
		`{}`, `true`, `{"type":"integer","minimum":-3,"exclusiveMaximum":7}`,
		`{"type":"object","properties":{"a":{"type":"string","maxLength":3},"b":{"enum":[1,"x"]}},"required":["b"]}`,
		`{"type":"array","prefixItems":[{"const":null}],"items":{"type":"number","maximum":0.5},"maxItems":3}`,
		`{"anyOf":[{"type":"string","format":"date"},{"$ref":"#/$defs/x"}],"$defs":{"x":{"type":"boolean"}}}`,
		`{"type":"string","pattern":"[a-c]{2}\\d"}`, `{"allOf":[{"type":"object"},{"required":["k"]}]}`,
		`{"$ref":"#/definitions/t","definitions":{"t":{"type":"array","items":{"$ref":"#/definitions/t"},"maxItems":2}}}`,
		`{"oneOf":[{"type":"null"},{"type":"string","format":"uuid"}]}`, `{"type":["number","null"],"minimum":1e2}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, schema []byte) {
		g, err := compileSchema(schema, JSONOptions{MaxBlanks: 1})
		if err != nil {
			return
		}
		c, err := byteVocab.Compile(g)
		if err != nil {
			return
		}
		val, verr := tryValidator(string(schema))
		rng := rand.New(rand.NewPCG(1, uint64(len(schema))))
		for range 3 {
			text, ok := randomWalk(t, c, rng, 64, 0.3)
			if ok && verr == nil {
				validate(t, val, string(schema), text)
			}
		}
	})
}

// FuzzRegex compiles arbitrary patterns: what a random walk generates matches the pattern
// as a whole under Go's regexp.
func FuzzRegex(f *testing.F) {
	for _, p := range []string{`a+b?`, `[α-ω]{2,3}|\d`, `(?i)x(y|z)*`, `^\w\s.$`, `[^abc]{1,2}`, `(a|)+`} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, pattern string) {
		g, err := Regex(pattern)
		if err != nil {
			return
		}
		c, err := byteVocab.Compile(g)
		if err != nil {
			return
		}
		re, err := regexpFull(pattern)
		if err != nil {
			return
		}
		rng := rand.New(rand.NewPCG(2, uint64(len(pattern))))
		for range 3 {
			text, ok := randomWalk(t, c, rng, 40, 0.3)
			if ok && !re.Match(text) {
				t.Errorf("pattern %q: %q does not match", pattern, text)
			}
		}
	})
}
