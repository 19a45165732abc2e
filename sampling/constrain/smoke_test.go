package constrain

import (
	"testing"
)

func toyVocab() *Vocab {
	toks := []string{"", "{", "}", "\"", "a", "b", ":", ",", " ", "\"a\"", "1", "12", "true", "{\"", "\":", "é", "\xc3", "\xa9", "[", "]"}
	b := make([][]byte, len(toks))
	for i, s := range toks {
		b[i] = []byte(s)
	}
	return NewVocab(b)
}

func TestSmoke(t *testing.T) {
	v := toyVocab()
	for _, g := range []*Grammar{JSONObject(JSONOptions{}), JSONValue(JSONOptions{}), Seq(Literal("ab"), Plus(Literal("a")))} {
		c, err := v.Compile(g)
		if err != nil {
			t.Fatal(err)
		}
		m := c.NewMatcher()
		mask := make([]uint64, 1)
		if err := m.Allow(mask); err != nil {
			t.Fatal(err)
		}
		var ids []int
		for id := range v.Size() {
			if mask[0]&(1<<id) != 0 {
				ids = append(ids, id)
			}
		}
		t.Logf("allowed %v accepting %v", ids, m.Accepting())
		for _, id := range ids {
			if err := c.NewMatcher().Advance(id); err != nil {
				t.Errorf("allowed %d but %v", id, err)
			}
		}
	}
}
