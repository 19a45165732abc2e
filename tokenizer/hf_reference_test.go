package tokenizer

import (
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/fathom-llm/fathom/internal/fixtures"
)

// hfReference is testdata/hf-reference.json: tokenizer.json variants, each the fixture's
// Mixtral tokenizer.json with some components replaced (or, without Base, a whole small file),
// and the ids and texts Hugging Face tokenizers gives for them. The fixture's tokenizer.json is
// the bundled model's.
type hfReference struct {
	Generator string      `json:"generator"`
	Texts     []string    `json:"texts"`
	Variants  []hfVariant `json:"variants"`
}

type hfVariant struct {
	Name       string                     `json:"name"`
	Base       bool                       `json:"base"`        // start from the fixture tokenizer.json
	Override   map[string]json.RawMessage `json:"override"`    // top-level fields replaced
	Model      map[string]json.RawMessage `json:"model"`       // model fields replaced
	ExtraAdded []json.RawMessage          `json:"extra_added"` // added_tokens appended
	IDs        [][]int                    `json:"ids"`         // per text, with special tokens added and matched
	Decode     []hfDecode                 `json:"decode"`
}

type hfDecode struct {
	IDs  []int  `json:"ids"`
	Text string `json:"text"` // Decode(ids, false)
	Skip string `json:"skip"` // Decode(ids, true)
}

// build returns the variant's tokenizer.json.
func (v hfVariant) build(t testing.TB, base []byte) []byte {
	t.Helper()
	m := map[string]json.RawMessage{}
	if v.Base {
		if err := json.Unmarshal(base, &m); err != nil {
			t.Fatal(err)
		}
	}
	for k, raw := range v.Override {
		m[k] = raw
	}
	if len(v.Model) > 0 {
		model := map[string]json.RawMessage{}
		if err := json.Unmarshal(m["model"], &model); err != nil {
			t.Fatal(err)
		}
		for k, raw := range v.Model {
			model[k] = raw
		}
		m["model"], _ = json.Marshal(model)
	}
	if len(v.ExtraAdded) > 0 {
		var added []json.RawMessage
		if err := json.Unmarshal(m["added_tokens"], &added); err != nil {
			t.Fatal(err)
		}
		m["added_tokens"], _ = json.Marshal(append(added, v.ExtraAdded...))
	}
	// Join the fields by hand: re-encoding the 2 MB vocabulary for each variant would be slow.
	var b []byte
	for k, raw := range m {
		if len(b) > 0 {
			b = append(b, ',')
		}
		key, _ := json.Marshal(k)
		b = append(append(append(b, key...), ':'), raw...)
	}
	return append(append([]byte{'{'}, b...), '}')
}

// TestHFReferenceVariants checks normalizers, pre-tokenizers, added-token options, model options,
// post-processors and decoders against Hugging Face tokenizers' own output.
func TestHFReferenceVariants(t *testing.T) {
	data, err := os.ReadFile("testdata/hf-reference.json")
	if err != nil {
		t.Fatal(err)
	}
	var ref hfReference
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile(fixtures.Bundled(t, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range ref.Variants {
		if raceEnabled && i%4 != 0 {
			continue // parsing the 2 MB file is slow under the race detector; check a sample
		}
		tok, err := ParseJSON(v.build(t, base))
		if err != nil {
			t.Errorf("%s: %v", v.Name, err)
			continue
		}
		for i, text := range ref.Texts {
			got, err := tok.Encode(text, EncodeOptions{AddBOS: true, ParseSpecial: true})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, v.IDs[i]) {
				t.Errorf("%s: Encode(%q) = %v, want %v", v.Name, text, got, v.IDs[i])
			}
		}
		for _, d := range v.Decode {
			if got := tok.Decode(d.IDs, false); got != d.Text {
				t.Errorf("%s: Decode(%v) = %q, want %q", v.Name, d.IDs, got, d.Text)
			}
			if got := tok.Decode(d.IDs, true); got != d.Skip {
				t.Errorf("%s: Decode(%v, skip) = %q, want %q", v.Name, d.IDs, got, d.Skip)
			}
			// The streaming decoder agrees with Decode on every variant's decoder chain.
			for _, skip := range []bool{false, true} {
				dec := tok.NewDecoder(skip)
				var s string
				for _, id := range d.IDs {
					s += dec.Add(id)
				}
				if s += dec.Flush(); s != tok.Decode(d.IDs, skip) {
					t.Errorf("%s: stream of %v (skip %v) = %q", v.Name, d.IDs, skip, s)
				}
			}
		}
	}
}

// TestChatTemplatesReference renders common Hugging Face chat templates (Dolphin's ChatML,
// Mixtral and Mistral instruct, Llama 2 and 3, Zephyr, Gemma, and one using namespace and loop
// controls) and compares with Jinja2 configured as transformers configures it.
func TestChatTemplatesReference(t *testing.T) {
	data, err := os.ReadFile("testdata/chat-templates.json")
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Templates     map[string]string `json:"templates"`
		Conversations [][]Message       `json:"conversations"`
		Renders       []struct {
			Template     string `json:"template"`
			Conversation int    `json:"conversation"`
			Generation   bool   `json:"add_generation_prompt"`
			Text         string `json:"text"`
			Error        string `json:"error"`
		} `json:"renders"`
	}
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	tok := bundledFile(t, "tokenizer.json") // bos_token "<s>", eos_token "</s>"
	for _, r := range ref.Renders {
		msgs := ref.Conversations[r.Conversation]
		opts := ChatOptions{Template: ref.Templates[r.Template], AddGenerationPrompt: r.Generation}
		ids, text, err := tok.EncodeChat(msgs, opts)
		if r.Error != "" {
			if !errors.Is(err, ErrTemplate) || !strings.Contains(err.Error(), r.Error) {
				t.Errorf("%s conversation %d: err %v, want %q", r.Template, r.Conversation, err, r.Error)
			}
			continue
		}
		if err != nil || text != r.Text {
			t.Errorf("%s conversation %d gen %v: %q, %v; want %q", r.Template, r.Conversation, r.Generation, text, err, r.Text)
			continue
		}
		// Without special-token text in the contents (conversation 1 has some), the ids are
		// those of the whole prompt read as trusted text.
		want, _ := tok.Encode(text, EncodeOptions{ParseSpecial: true})
		if r.Conversation != 1 && !slices.Equal(ids, want) {
			t.Errorf("%s conversation %d: ids %v, want %v", r.Template, r.Conversation, ids, want)
		}
	}
}
