package constrain

import (
	"math/rand/v2"
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
