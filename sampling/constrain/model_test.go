package constrain

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/fathom-llm/fathom/internal/fixtures"
	"github.com/fathom-llm/fathom/mixtral"
	"github.com/fathom-llm/fathom/sampling"
)

// models are the models the generation tests run: random weights (the fixture), and the
// bundled model, whose logits favour Python.
var models struct {
	sync.Mutex
	m map[string]*mixtral.Model
}

func loadModel(t *testing.T, name string) *mixtral.Model {
	t.Helper()
	var dir string
	if name == "tiny-code-mixtral" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "..", "models", name)
	} else {
		dir = fixtures.Model(t, name)
	}
	models.Lock()
	defer models.Unlock()
	if m := models.m[name]; m != nil {
		return m
	}
	m, err := mixtral.Load(context.Background(), dir, mixtral.Options{ContextLength: 512, CacheTokens: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if models.m == nil {
		models.m = map[string]*mixtral.Model{}
	}
	models.m[name] = m
	return m
}

// genSchema returns a random JSON Schema of the kinds the compiler supports, nested up to
// depth levels, whose values a random model can finish within a few hundred tokens (strings
// and arrays are bounded).
func genSchema(rng *rand.Rand, depth int, top bool) map[string]any {
	names := []string{"id", "name", "a", "naïve", `q"uote`, "back\\slash", "日本", "x y", "tab\t"}
	strs := []any{"a", "b c", `q"t`, "é", "日本語", "line\nbreak", "", "\\"}
	leaf := func() map[string]any {
		switch rng.IntN(13) {
		case 0:
			n := rng.IntN(7)
			return map[string]any{"type": "string", "maxLength": n, "minLength": rng.IntN(n + 1)}
		case 1:
			k := 1 + rng.IntN(3)
			e := slices.Clone(strs)
			rng.Shuffle(len(e), func(i, j int) { e[i], e[j] = e[j], e[i] })
			return map[string]any{"type": "string", "enum": e[:k]}
		case 2:
			f := []string{"date", "date-time", "uuid", "email", "time"}
			return map[string]any{"type": "string", "format": f[rng.IntN(len(f))]}
		case 3:
			p := []string{`^[a-z]{1,5}$`, `[0-9]{2}-[A-Z]`, `(ab|cd)+x?`, `\d{3}`, `.{0,4}`, `[α-ω]{1,3}`, `a"b\\c`, `(?i)yes|no`, `[^a-z"]{2}`}
			return map[string]any{"type": "string", "pattern": p[rng.IntN(len(p))]}
		case 4:
			s := map[string]any{"type": "integer"}
			lo := rng.IntN(2000) - 1000
			if rng.IntN(2) == 0 {
				s["minimum"] = lo
			}
			if rng.IntN(2) == 0 {
				s["maximum"] = lo + rng.IntN(300)
			}
			if rng.IntN(4) == 0 {
				s["exclusiveMaximum"] = lo + 1 + rng.IntN(300)
			}
			return s
		case 5:
			s := map[string]any{"type": "number"}
			lo := float64(rng.IntN(4000)-2000) / 8
			if rng.IntN(2) == 0 {
				s["minimum"] = lo
			}
			if rng.IntN(2) == 0 {
				s["maximum"] = lo + float64(rng.IntN(100))/4
			}
			if rng.IntN(4) == 0 {
				s["exclusiveMinimum"] = lo - 0.5
			}
			return s
		case 6:
			return map[string]any{"type": "boolean"}
		case 7:
			return map[string]any{"type": "null"}
		case 8:
			vals := []any{1, "x", nil, true, 2.5, -7, map[string]any{"k": []any{1, "z"}}, []any{}}
			return map[string]any{"const": vals[rng.IntN(len(vals))]}
		case 9:
			return map[string]any{"enum": []any{1, "x", nil, false, 2.5, "日"}}
		case 10:
			return map[string]any{"type": []any{"string", "null"}, "maxLength": 3}
		case 11:
			return map[string]any{"type": "integer", "nullable": true, "minimum": 0, "maximum": 9}
		}
		return map[string]any{"type": "number", "minimum": -1.5, "maximum": 1.25}
	}
	if depth <= 0 || rng.IntN(3) == 0 {
		return leaf()
	}
	kinds := 6
	if top {
		kinds = 7 // a recursive schema: its $ref is to the root document's $defs
	}
	switch rng.IntN(kinds) {
	case 0, 1:
		props := map[string]any{}
		var req []any
		for range 1 + rng.IntN(4) {
			n := names[rng.IntN(len(names))]
			props[n] = genSchema(rng, depth-1, false)
			if rng.IntN(2) == 0 && !slices.Contains(req, any(n)) {
				req = append(req, n)
			}
		}
		s := map[string]any{"type": "object", "properties": props}
		if len(req) > 0 {
			s["required"] = req
		}
		switch rng.IntN(4) {
		case 0:
			s["additionalProperties"] = false
		case 1:
			s["additionalProperties"] = map[string]any{"type": "integer", "minimum": 0, "maximum": 9}
		}
		return s
	case 2:
		lo := rng.IntN(3)
		s := map[string]any{"type": "array", "items": genSchema(rng, depth-1, false), "minItems": lo, "maxItems": lo + rng.IntN(3)}
		if rng.IntN(3) == 0 {
			s["prefixItems"] = []any{leaf(), leaf()}
		}
		return s
	case 3:
		return map[string]any{"anyOf": []any{genSchema(rng, depth-1, false), genSchema(rng, depth-1, false)}}
	case 4:
		return map[string]any{"oneOf": []any{
			map[string]any{"type": "object", "properties": map[string]any{"kind": map[string]any{"const": "a"}, "v": leaf()}, "required": []any{"kind"}},
			map[string]any{"type": "object", "properties": map[string]any{"kind": map[string]any{"const": "b"}, "w": leaf()}, "required": []any{"kind"}},
			map[string]any{"type": "integer", "maximum": 5},
		}}
	case 5:
		return map[string]any{"allOf": []any{
			map[string]any{"type": "object", "properties": map[string]any{"a": leaf()}, "required": []any{"a"}},
			map[string]any{"properties": map[string]any{"b": leaf()}},
		}}
	}
	return map[string]any{
		"$defs": map[string]any{"node": map[string]any{"type": "object", "properties": map[string]any{
			"v":    map[string]any{"type": "integer", "minimum": 0, "maximum": 99},
			"kids": map[string]any{"type": "array", "items": map[string]any{"$ref": "#/$defs/node"}, "maxItems": 2},
		}, "required": []any{"v"}, "additionalProperties": false}},
		"$ref": "#/$defs/node",
	}
}

// TestGenerateSchemas generates JSON with the fixture models under random schemas: every
// output that ends is a JSON value the schema accepts (checked by an independent validator)
// and every output cut by max_tokens is a prefix the grammar accepts.
func TestGenerateSchemas(t *testing.T) {
	for _, tc := range []struct {
		name           string
		schemas, seeds int
	}{{"tiny-mixtral-bf16", 100, 2}, {"tiny-code-mixtral", 50, 2}} {
		name, schemas, seeds := tc.name, tc.schemas, tc.seeds
		if raceEnabled || testing.Short() {
			schemas, seeds = 10, 1
		}
		t.Run(name, func(t *testing.T) {
			m := loadModel(t, name)
			v := VocabFor(m.Tokenizer())
			rng := rand.New(rand.NewPCG(11, uint64(len(name))))
			complete := 0
			for i := range schemas {
				sb, err := json.Marshal(genSchema(rng, 3, true))
				if err != nil {
					t.Fatal(err)
				}
				schema := string(sb)
				g, err := JSONSchema(sb, JSONOptions{MaxBlanks: 2})
				if err != nil {
					t.Fatalf("schema %s: %v", schema, err)
				}
				c, err := v.Compile(g)
				if err != nil {
					t.Fatal(err)
				}
				val := validator(t, schema)
				for s := range seeds {
					seed := int64(i*seeds + s)
					resp, err := m.Generate(context.Background(), mixtral.Request{
						Prompt: "{", Constraint: c,
						Params: sampling.Params{Temperature: 1, Seed: &seed, MaxTokens: 160},
					})
					if err != nil {
						t.Fatalf("schema %s seed %d: %v", schema, seed, err)
					}
					if resp.FinishReason == sampling.FinishStop {
						complete++
						validate(t, val, schema, []byte(resp.Text))
						continue
					}
					if err := c.NewMatcherMidText().AdvanceBytes([]byte(resp.Text)); err != nil {
						t.Errorf("schema %s: cut output %q is not a prefix: %v", schema, resp.Text, err)
					}
				}
			}
			t.Logf("%d of %d outputs complete", complete, schemas*seeds)
			if complete < schemas*seeds/2 {
				t.Errorf("only %d of %d outputs complete", complete, schemas*seeds)
			}
		})
	}
}

// BenchmarkDecodeStep measures a decode step of the bundled model with and without a
// constraint (masks warm: the same generation has run before), as µs per generated token.
// The schema needs more tokens than max_tokens, so both generate as many.
func BenchmarkDecodeStep(b *testing.B) {
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "models", "tiny-code-mixtral")
	m, err := mixtral.Load(context.Background(), dir, mixtral.Options{ContextLength: 512, CacheTokens: 2048})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	schema := []byte(`{"type":"object","properties":{"name":{"type":"string","maxLength":10},"values":{"type":"array","items":{"type":"number"},"minItems":40}},"required":["name","values"]}`)
	g, err := JSONSchema(schema, JSONOptions{})
	if err != nil {
		b.Fatal(err)
	}
	c, err := VocabFor(m.Tokenizer()).Compile(g)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		c    sampling.Constraint
	}{{"plain", nil}, {"schema", c}} {
		b.Run(tc.name, func(b *testing.B) {
			seed := int64(1)
			req := mixtral.Request{Prompt: "{", Constraint: tc.c,
				Params: sampling.Params{Temperature: 1, Seed: &seed, MaxTokens: 64}}
			if _, err := m.Generate(context.Background(), req); err != nil {
				b.Fatal(err)
			}
			var tokens int
			var decode float64
			for b.Loop() {
				resp, err := m.Generate(context.Background(), req)
				if err != nil {
					b.Fatal(err)
				}
				tokens += resp.Usage.CompletionTokens - 1 // the first token comes with the prefill
				decode += resp.Timings.Decode.Seconds()
			}
			b.ReportMetric(decode/float64(tokens)*1e6, "µs/token")
		})
	}
}
