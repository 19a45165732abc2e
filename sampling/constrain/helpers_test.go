package constrain

import (
	"bytes"
	"encoding/json"
	"math/bits"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"runtime"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/fathom-llm/fathom/tokenizer"
)

// bundledTokenizer loads the tokenizer of the bundled model (the Mixtral vocabulary, with
// byte fallback).
var bundledTokenizer = sync.OnceValues(func() (*tokenizer.Tokenizer, error) {
	_, file, _, _ := runtime.Caller(0)
	return tokenizer.Load(filepath.Join(filepath.Dir(file), "..", "..", "models", "tiny-code-mixtral"))
})

func bundledVocab(t testing.TB) *Vocab {
	t.Helper()
	tok, err := bundledTokenizer()
	if err != nil {
		t.Fatal(err)
	}
	return VocabFor(tok)
}

// allowedIDs lists the ids set in mask.
func allowedIDs(mask []uint64) []int {
	var ids []int
	for i, w := range mask {
		for ; w != 0; w &= w - 1 {
			ids = append(ids, i*64+bits.TrailingZeros64(w))
		}
	}
	return ids
}

// randomWalk generates up to maxTokens tokens under c, each drawn uniformly from the allowed
// ones (ending, where allowed, with probability pEnd). It checks each chosen token against a
// fresh matcher fed the whole text, and returns the text and whether it ended where the
// grammar accepts.
func randomWalk(t testing.TB, c *Constraint, rng *rand.Rand, maxTokens int, pEnd float64) ([]byte, bool) {
	t.Helper()
	m := c.NewMatcher()
	mask := make([]uint64, (c.Vocab().Size()+63)/64)
	var text []byte
	for range maxTokens {
		if m.Accepting() && (m.Done() || rng.Float64() < pEnd) {
			return text, true
		}
		if err := m.Allow(mask); err != nil {
			t.Fatal(err)
		}
		ids := allowedIDs(mask)
		if len(ids) == 0 {
			t.Fatalf("no token allowed after %q", text)
		}
		id := ids[rng.IntN(len(ids))]
		b := c.Vocab().TokenBytes(id)
		if m.atStart {
			b = c.Vocab().startBytes(id)
		}
		if err := m.Advance(id); err != nil {
			t.Fatalf("after %q: allowed token %d (%q) rejected: %v", text, id, b, err)
		}
		text = append(text, b...)
	}
	return text, m.Accepting()
}

// validator compiles a JSON Schema for validation, formats asserted. OpenAPI's nullable,
// which JSON Schema does not know, is rewritten as the type "null" beside the others.
func validator(t testing.TB, schema string) *jsonschema.Schema {
	t.Helper()
	s, err := tryValidator(schema)
	if err != nil {
		t.Fatalf("schema %s: %v", schema, err)
	}
	return s
}

func tryValidator(schema string) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(schema)))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("schema.json", rewriteNullable(doc)); err != nil {
		return nil, err
	}
	return c.Compile("schema.json")
}

// regexpFull compiles pattern to match whole strings.
func regexpFull(pattern string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:` + pattern + `)$`)
}

// validate checks that text is one JSON value that s accepts.
func validate(t testing.TB, s *jsonschema.Schema, schema string, text []byte) {
	t.Helper()
	if !json.Valid(text) {
		t.Errorf("schema %s: output %q is not JSON", schema, text)
		return
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(text))
	if err != nil {
		t.Errorf("output %q: %v", text, err)
		return
	}
	if err := s.Validate(v); err != nil {
		t.Errorf("schema %s: output %q invalid: %v", schema, text, err)
	}
}

// rewriteNullable replaces "nullable": true by "null" among the types, throughout v.
func rewriteNullable(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, x := range v {
			out[k] = rewriteNullable(x)
		}
		if n, _ := out["nullable"].(bool); n {
			delete(out, "nullable")
			switch t := out["type"].(type) {
			case string:
				out["type"] = []any{t, "null"}
			case []any:
				out["type"] = append(t, "null")
			}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = rewriteNullable(x)
		}
		return out
	}
	return v
}
