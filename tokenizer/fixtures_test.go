package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/fathom-llm/fathom/internal/fixtures"
)

type textCase struct {
	Text               string `json:"text"`
	IDs                []int  `json:"ids"`
	IDsNoBOS           []int  `json:"ids_no_bos"`
	SentencePieceIDs   []int  `json:"sentencepiece_ids"`
	MetaspaceJSONIDs   []int  `json:"metaspace_json_ids"`
	Decoded            string `json:"decoded"`
	DecodedSkipSpecial string `json:"decoded_skip_special"`
	Pieces             []string
}

type chatCase struct {
	Messages []Message `json:"messages"`
	Text     string    `json:"text"`
	IDs      []int     `json:"ids"`
}

func readJSON[T any](t testing.TB, elems ...string) T {
	t.Helper()
	data, err := os.ReadFile(fixtures.Path(t, elems...))
	if err != nil {
		t.Fatal(err)
	}
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

var loaded sync.Map // path -> *Tokenizer, so that each fixture file is parsed once

func loadFile(t testing.TB, name string) *Tokenizer {
	t.Helper()
	p := fixtures.Path(t, "tokenizer", name)
	if v, ok := loaded.Load(p); ok {
		return v.(*Tokenizer)
	}
	tok, err := LoadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	loaded.Store(p, tok)
	return tok
}

func loadDir(t testing.TB) *Tokenizer {
	t.Helper()
	dir := filepath.Dir(fixtures.Path(t, "tokenizer", "tokenizer.json"))
	if v, ok := loaded.Load(dir); ok {
		return v.(*Tokenizer)
	}
	tok, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	loaded.Store(dir, tok)
	return tok
}

func TestFixtureCases(t *testing.T) {
	cases := readJSON[[]textCase](t, "tokenizer", "cases.json")
	files := []struct {
		name string
		want func(c textCase) []int
	}{
		{"tokenizer.json", func(c textCase) []int { return c.IDs }},
		{"tokenizer.metaspace.json", func(c textCase) []int { return c.MetaspaceJSONIDs }},
	}
	for _, f := range files {
		tok := loadFile(t, f.name)
		for _, c := range cases {
			got, err := tok.Encode(c.Text, EncodeOptions{AddBOS: true, ParseSpecial: true})
			if err != nil {
				t.Fatal(err)
			}
			if want := f.want(c); !slices.Equal(got, want) {
				t.Errorf("%s: Encode(%q) = %v, want %v", f.name, c.Text, got, want)
			}
			noBOS, _ := tok.Encode(c.Text, EncodeOptions{ParseSpecial: true})
			if f.name == "tokenizer.json" && !slices.Equal(noBOS, c.IDsNoBOS) {
				t.Errorf("%s: Encode(%q) without BOS = %v, want %v", f.name, c.Text, noBOS, c.IDsNoBOS)
			}
			if got := tok.Decode(c.IDs, false); got != c.Decoded {
				t.Errorf("%s: Decode(%v) = %q, want %q", f.name, c.IDs, got, c.Decoded)
			}
			if got := tok.Decode(c.IDs, true); got != c.DecodedSkipSpecial {
				t.Errorf("%s: Decode(%v, skip) = %q, want %q", f.name, c.IDs, got, c.DecodedSkipSpecial)
			}
		}
	}
}

func TestFixtureSentencePiece(t *testing.T) {
	cases := readJSON[[]textCase](t, "tokenizer", "cases.json")
	tok := loadFile(t, "tokenizer.model")
	for _, c := range cases {
		// SentencePiece knows no added tokens, so matching them changes nothing.
		for _, parse := range []bool{false, true} {
			got, err := tok.Encode(c.Text, EncodeOptions{AddBOS: true, ParseSpecial: parse})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, c.SentencePieceIDs) {
				t.Errorf("Encode(%q, parse=%v) = %v, want %v", c.Text, parse, got, c.SentencePieceIDs)
			}
		}
		if slices.Max(append([]int{0}, c.IDs...)) >= tok.VocabSize() {
			continue // the ChatML tokens are not part of the SentencePiece model
		}
		if got := tok.Decode(c.IDs, false); got != c.Decoded {
			t.Errorf("Decode(%v) = %q, want %q", c.IDs, got, c.Decoded)
		}
		if got := tok.Decode(c.IDs, true); got != c.DecodedSkipSpecial {
			t.Errorf("Decode(%v, skip) = %q, want %q", c.IDs, got, c.DecodedSkipSpecial)
		}
	}
}

// TestModelOnlyDirectory loads a checkpoint directory that has tokenizer.model but no
// tokenizer.json: added_tokens.json and tokenizer_config.json supply the ChatML tokens.
func TestModelOnlyDirectory(t *testing.T) {
	src := filepath.Dir(fixtures.Path(t, "tokenizer", "tokenizer.model"))
	dir := t.TempDir()
	for _, name := range []string{"tokenizer.model", "tokenizer_config.json", "added_tokens.json", "chat_template.jinja"} {
		data, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if tok.BOS() != 1 || tok.EOS() != 32000 || tok.VocabSize() != 32002 || !tok.AddsBOS() {
		t.Fatalf("BOS %d EOS %d size %d addsBOS %v", tok.BOS(), tok.EOS(), tok.VocabSize(), tok.AddsBOS())
	}
	for _, name := range []string{"<|im_start|>", "<|im_end|>", "<s>", "</s>", "<unk>"} {
		id, ok := tok.ID(name)
		if !ok || !tok.IsSpecial(id) {
			t.Errorf("%s: id %d %v, special %v", name, id, ok, tok.IsSpecial(id))
		}
	}
	cases := readJSON[[]chatCase](t, "tokenizer", "chat_cases.json")
	for i, c := range cases {
		ids, text, err := tok.EncodeChat(c.Messages, ChatOptions{AddGenerationPrompt: true})
		if err != nil {
			t.Fatal(err)
		}
		if text != c.Text || !slices.Equal(ids, c.IDs) {
			t.Errorf("case %d: got %q %v, want %q %v", i, text, ids, c.Text, c.IDs)
		}
	}
	all := readJSON[[]textCase](t, "tokenizer", "cases.json")
	for _, c := range all {
		if got := tok.Decode(c.IDs, false); got != c.Decoded {
			t.Errorf("Decode(%v) = %q, want %q", c.IDs, got, c.Decoded)
		}
		if got := tok.Decode(c.IDs, true); got != c.DecodedSkipSpecial {
			t.Errorf("Decode(%v, skip) = %q, want %q", c.IDs, got, c.DecodedSkipSpecial)
		}
	}
}

func TestFixturePieces(t *testing.T) {
	cases := readJSON[[]textCase](t, "tokenizer", "cases.json")
	tok := loadFile(t, "tokenizer.json")
	for _, c := range cases {
		for i, id := range c.IDs {
			if got, ok := tok.TokenText(id); !ok || got != c.Pieces[i] {
				t.Errorf("TokenText(%d) = %q, %v; want %q", id, got, ok, c.Pieces[i])
			}
			if got, ok := tok.ID(c.Pieces[i]); !ok || got != id {
				t.Errorf("ID(%q) = %d, %v; want %d", c.Pieces[i], got, ok, id)
			}
		}
	}
}

func TestFixtureChat(t *testing.T) {
	cases := readJSON[[]chatCase](t, "tokenizer", "chat_cases.json")
	for _, tok := range []*Tokenizer{loadDir(t), loadFile(t, "tokenizer.json")} {
		for i, c := range cases {
			ids, text, err := tok.EncodeChat(c.Messages, ChatOptions{AddGenerationPrompt: true})
			if err != nil {
				t.Fatal(err)
			}
			if text != c.Text {
				t.Errorf("case %d: text %q, want %q", i, text, c.Text)
			}
			if !slices.Equal(ids, c.IDs) {
				t.Errorf("case %d: ids %v, want %v", i, ids, c.IDs)
			}
		}
	}
}
