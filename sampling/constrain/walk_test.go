package constrain

import (
	"math/rand/v2"
	"sync"
	"testing"
)

func TestRandomWalkSchemas(t *testing.T) {
	v := bundledVocab(t)
	schemas := []string{
		`{"type":"object","properties":{"name":{"type":"string","maxLength":8},"age":{"type":"integer","minimum":0,"maximum":120},"tags":{"type":"array","items":{"type":"string","enum":["a","b c"]},"maxItems":3}},"required":["name"]}`,
		`{"type":"number","minimum":-2.5,"maximum":10.25}`,
		`{"type":"string","format":"date-time"}`,
		`{"type":"string","format":"email"}`,
		`{"anyOf":[{"type":"null"},{"$ref":"#/$defs/n"}],"$defs":{"n":{"type":"object","properties":{"next":{"$ref":"#"}},"required":["next"],"additionalProperties":false}}}`,
		`{}`,
	}
	for _, schema := range schemas {
		g, err := JSONSchema([]byte(schema), JSONOptions{})
		if err != nil {
			t.Fatalf("%s: %v", schema, err)
		}
		c, err := v.Compile(g)
		if err != nil {
			t.Fatal(err)
		}
		val := validator(t, schema)
		rng := rand.New(rand.NewPCG(1, 2))
		for range 20 {
			text, ok := randomWalk(t, c, rng, 200, 0.5)
			if !ok {
				continue
			}
			validate(t, val, schema, text)
		}
	}
}

// TestConcurrentMatchers runs matchers of one constraint at once, as the sequences of
// concurrent requests do, while its masks are being computed.
func TestConcurrentMatchers(t *testing.T) {
	v := bundledVocab(t)
	g, err := JSONSchema([]byte(`{"type":"object","properties":{"a":{"type":"array","items":{"type":"string","maxLength":4}},"b":{"type":"number","maximum":3}}}`), JSONOptions{MaxBlanks: 3})
	if err != nil {
		t.Fatal(err)
	}
	// A fresh constraint, not the cached one, so that the masks are computed concurrently.
	p, err := g.program()
	if err != nil {
		t.Fatal(err)
	}
	c := newConstraint(p, v)
	var wg sync.WaitGroup
	texts := make([][]byte, 4)
	for i := range texts {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			texts[i], _ = randomWalk(t, c, rng, 40, 0.2)
		})
	}
	wg.Wait()
	for _, text := range texts {
		if err := c.NewMatcherMidText().AdvanceBytes(text); err != nil {
			t.Errorf("%q: %v", text, err)
		}
	}
}
