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

// The tests read tokenizer files from two places: the bundled model (the repository's
// models/tiny-code-mixtral, whose tokenizer.json and tokenizer.model are the fixture's), for
// behaviour that needs real files but no reference output; and the reference fixtures, for
// parity with the Python stack.

var loaded sync.Map // key -> *Tokenizer, so that each file is parsed once

func cached(t testing.TB, key string, load func() (*Tokenizer, error)) *Tokenizer {
	t.Helper()
	if v, ok := loaded.Load(key); ok {
		return v.(*Tokenizer)
	}
	tok, err := load()
	if err != nil {
		t.Fatal(err)
	}
	loaded.Store(key, tok)
	return tok
}

// bundledFile loads "tokenizer.json" or "tokenizer.model" of the bundled model, or
// "tokenizer.metaspace.json": the bundled tokenizer.json as a newer conversion writes it.
func bundledFile(t testing.TB, name string) *Tokenizer {
	t.Helper()
	if name == "tokenizer.metaspace.json" {
		return cached(t, "bundled:"+name, func() (*Tokenizer, error) { return ParseJSON(metaspaceJSON(t)) })
	}
	p := fixtures.Bundled(t, name)
	return cached(t, p, func() (*Tokenizer, error) { return LoadFile(p) })
}

// bundledDir loads the bundled model's directory: its tokenizer_config.json has eos "</s>"
// and no chat template.
func bundledDir(t testing.TB) *Tokenizer {
	t.Helper()
	dir := fixtures.Bundled(t)
	return cached(t, dir, func() (*Tokenizer, error) { return Load(dir) })
}

// metaspaceJSON returns the bundled tokenizer.json with the Metaspace pre-tokenizer that newer
// conversions write instead of the legacy normalizer: the fixture tokenizer.metaspace.json
// (TestFixtureCases checks that both encode alike).
func metaspaceJSON(t testing.TB) []byte {
	t.Helper()
	base, err := os.ReadFile(fixtures.Bundled(t, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	v := hfVariant{
		Base: true,
		Override: map[string]json.RawMessage{
			"normalizer":    json.RawMessage(`null`),
			"pre_tokenizer": json.RawMessage(`{"type":"Metaspace","replacement":"\u2581","prepend_scheme":"always","split":false}`),
		},
		Model: map[string]json.RawMessage{"unk_token": json.RawMessage(`null`)},
	}
	return v.build(t, base)
}

// fixtureFile loads a file of the reference fixtures' tokenizer directory.
func fixtureFile(t testing.TB, name string) *Tokenizer {
	t.Helper()
	p := fixtures.Path(t, "tokenizer", name)
	return cached(t, p, func() (*Tokenizer, error) { return LoadFile(p) })
}

// fixtureDir loads the reference fixtures' tokenizer directory, configured as Dolphin is: eos
// "<|im_end|>" and a ChatML chat template.
func fixtureDir(t testing.TB) *Tokenizer {
	t.Helper()
	dir := filepath.Dir(fixtures.Path(t, "tokenizer", "tokenizer.json"))
	return cached(t, dir, func() (*Tokenizer, error) { return Load(dir) })
}

// copyFiles copies the named files from the directory src into dst.
func copyFiles(t testing.TB, dst, src string, names ...string) {
	t.Helper()
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFixtureCases(t *testing.T) {
	cases := readJSON[[]textCase](t, "tokenizer", "cases.json")
	files := []struct {
		name string
		tok  func(t testing.TB) *Tokenizer
		want func(c textCase) []int
	}{
		{"tokenizer.json", func(t testing.TB) *Tokenizer { return fixtureFile(t, "tokenizer.json") },
			func(c textCase) []int { return c.IDs }},
		{"tokenizer.metaspace.json", func(t testing.TB) *Tokenizer { return fixtureFile(t, "tokenizer.metaspace.json") },
			func(c textCase) []int { return c.MetaspaceJSONIDs }},
		{"bundled metaspace", func(t testing.TB) *Tokenizer { return bundledFile(t, "tokenizer.metaspace.json") },
			func(c textCase) []int { return c.MetaspaceJSONIDs }},
	}
	for _, f := range files {
		t.Run(f.name, func(t *testing.T) {
			tok := f.tok(t)
			for _, c := range cases {
				got, err := tok.Encode(c.Text, EncodeOptions{AddBOS: true, ParseSpecial: true})
				if err != nil {
					t.Fatal(err)
				}
				if want := f.want(c); !slices.Equal(got, want) {
					t.Errorf("Encode(%q) = %v, want %v", c.Text, got, want)
				}
				noBOS, _ := tok.Encode(c.Text, EncodeOptions{ParseSpecial: true})
				if f.name == "tokenizer.json" && !slices.Equal(noBOS, c.IDsNoBOS) {
					t.Errorf("Encode(%q) without BOS = %v, want %v", c.Text, noBOS, c.IDsNoBOS)
				}
				if got := tok.Decode(c.IDs, false); got != c.Decoded {
					t.Errorf("Decode(%v) = %q, want %q", c.IDs, got, c.Decoded)
				}
				if got := tok.Decode(c.IDs, true); got != c.DecodedSkipSpecial {
					t.Errorf("Decode(%v, skip) = %q, want %q", c.IDs, got, c.DecodedSkipSpecial)
				}
			}
		})
	}
}

func TestFixtureSentencePiece(t *testing.T) {
	cases := readJSON[[]textCase](t, "tokenizer", "cases.json")
	tok := fixtureFile(t, "tokenizer.model")
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
	dir := t.TempDir()
	copyFiles(t, dir, fixtures.Bundled(t), "tokenizer.model", "added_tokens.json")
	if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(dolphinConfig), 0o644); err != nil {
		t.Fatal(err)
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
	// The added tokens are matched in trusted text, and the rest is SentencePiece's.
	sp := bundledFile(t, "tokenizer.model")
	ids, err := tok.Encode("<|im_start|>user\nHi<|im_end|>", EncodeOptions{ParseSpecial: true})
	if err != nil {
		t.Fatal(err)
	}
	user, _ := sp.Encode("user\nHi", EncodeOptions{})
	if want := slices.Concat([]int{32001}, user, []int{32000}); !slices.Equal(ids, want) {
		t.Errorf("Encode = %v, want %v", ids, want)
	}
	if got := tok.Decode(ids, true); got != "user\nHi" {
		t.Errorf("Decode(%v, skip) = %q", ids, got)
	}
}

func TestFixturePieces(t *testing.T) {
	cases := readJSON[[]textCase](t, "tokenizer", "cases.json")
	tok := fixtureFile(t, "tokenizer.json")
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

// TestFixtureChat renders and encodes the reference conversations with the fixture directory,
// its tokenizer.json alone (ChatML by default), and a directory of its tokenizer.model with the
// added tokens and configuration beside it.
func TestFixtureChat(t *testing.T) {
	cases := readJSON[[]chatCase](t, "tokenizer", "chat_cases.json")
	all := readJSON[[]textCase](t, "tokenizer", "cases.json")
	modelOnly := func(t testing.TB) *Tokenizer {
		dir := t.TempDir()
		copyFiles(t, dir, filepath.Dir(fixtures.Path(t, "tokenizer", "tokenizer.model")),
			"tokenizer.model", "tokenizer_config.json", "added_tokens.json", "chat_template.jinja")
		tok, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	for _, tc := range []struct {
		name string
		tok  func(t testing.TB) *Tokenizer
	}{
		{"directory", fixtureDir},
		{"tokenizer.json", func(t testing.TB) *Tokenizer { return fixtureFile(t, "tokenizer.json") }},
		{"tokenizer.model directory", modelOnly},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.tok(t)
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
			for _, c := range all {
				if got := tok.Decode(c.IDs, false); got != c.Decoded {
					t.Errorf("Decode(%v) = %q, want %q", c.IDs, got, c.Decoded)
				}
				if got := tok.Decode(c.IDs, true); got != c.DecodedSkipSpecial {
					t.Errorf("Decode(%v, skip) = %q, want %q", c.IDs, got, c.DecodedSkipSpecial)
				}
			}
		})
	}
}
