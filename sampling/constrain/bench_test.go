package constrain

import (
	"math/rand/v2"
	"testing"
)

// benchSchemas are typical structured-output and tool schemas.
var benchSchemas = []struct{ name, schema string }{
	{"person", `{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer","minimum":0,"maximum":150},"email":{"type":"string","format":"email"},"tags":{"type":"array","items":{"type":"string"},"maxItems":5}},"required":["name","age"]}`},
	{"weather", `{"type":"object","properties":{"location":{"type":"string","description":"City and country"},"unit":{"type":"string","enum":["celsius","fahrenheit"]},"days":{"type":"integer","minimum":1,"maximum":14}},"required":["location"],"additionalProperties":false}`},
	{"nested", `{"type":"object","properties":{"items":{"type":"array","items":{"type":"object","properties":{"id":{"type":"integer"},"price":{"type":"number"},"note":{"type":["string","null"]}},"required":["id","price"]}},"total":{"type":"number"}},"required":["items"]}`},
	{"json_object", ``},
}

func benchGrammar(b *testing.B, schema string) *Grammar {
	if schema == "" {
		return JSONObject(JSONOptions{})
	}
	g, err := JSONSchema([]byte(schema), JSONOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return g
}

// BenchmarkMask measures Allow, the mask of one decoding step, over the 32k vocabulary of
// the bundled model, at states met on random walks (masks cached, as in steady use).
func BenchmarkMask(b *testing.B) {
	v := bundledVocab(b)
	for _, s := range benchSchemas {
		b.Run(s.name, func(b *testing.B) {
			c, err := v.Compile(benchGrammar(b, s.schema))
			if err != nil {
				b.Fatal(err)
			}
			// Matchers at the states of a few random walks.
			rng := rand.New(rand.NewPCG(3, 4))
			mask := make([]uint64, (v.Size()+63)/64)
			var ms []*Matcher
			for range 8 {
				m := c.NewMatcher()
				for range 60 {
					if m.Done() {
						break
					}
					ms = append(ms, cloneMatcher(b, c, m))
					if err := m.Allow(mask); err != nil {
						b.Fatal(err)
					}
					ids := allowedIDs(mask)
					if err := m.Advance(ids[rng.IntN(len(ids))]); err != nil {
						b.Fatal(err)
					}
				}
			}
			for _, m := range ms { // warm the caches
				_ = m.Allow(mask)
			}
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				_ = ms[i%len(ms)].Allow(mask)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/mask")
		})
	}
}

// cloneMatcher returns a matcher in the state of m (for tests: it copies the state).
func cloneMatcher(t testing.TB, c *Constraint, m *Matcher) *Matcher {
	n := &Matcher{c: c, accepting: m.accepting}
	n.a.reset()
	n.spare.reset()
	for _, x := range m.a.nodes {
		n.a.push(x.frame, x.parent)
	}
	n.ready = append(n.ready, m.ready...)
	n.ex = expander{p: c.p, a: &n.a, mode: bottomEnd}
	return n
}

// BenchmarkCompileSchema measures JSONSchema and Compile of a schema not seen before, and
// the first masks of a walk through it (computed, not cached).
func BenchmarkCompileSchema(b *testing.B) {
	v := bundledVocab(b)
	schema := benchSchemas[0].schema
	mask := make([]uint64, (v.Size()+63)/64)
	for b.Loop() {
		g, err := compileSchema([]byte(schema), JSONOptions{})
		if err != nil {
			b.Fatal(err)
		}
		p, err := compileGrammar(g)
		if err != nil {
			b.Fatal(err)
		}
		m := newConstraint(p, v).NewMatcher()
		if err := m.Allow(mask); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFirstMask measures the computation of the mask of a state met for the first time
// (a walk of the whole prefix tree), for a state inside a string and one before a value.
func BenchmarkFirstMask(b *testing.B) {
	v := bundledVocab(b)
	for _, tc := range []struct{ name, prefix string }{{"string", `{"name": "ab`}, {"value", `{"name": `}, {"start", ``}} {
		b.Run(tc.name, func(b *testing.B) {
			g := benchGrammar(b, benchSchemas[0].schema)
			p, err := g.program()
			if err != nil {
				b.Fatal(err)
			}
			c := newConstraint(p, v)
			m := c.NewMatcherMidText()
			if err := m.AdvanceBytes([]byte(tc.prefix)); err != nil {
				b.Fatal(err)
			}
			k := m.ready[0]
			for b.Loop() {
				c.compute(k.rule, k.state, bottomEnd, &v.trie)
			}
		})
	}
}
