package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// synth builds a tokenizer.json from parts: vocab tokens get ids in order, merges are pairs.
type synth struct {
	vocab   []string
	merges  [][2]string
	added   []map[string]any
	model   map[string]any // extra model fields
	norm    any
	pre     any
	post    any
	decoder any
}

func (s synth) json(t testing.TB) []byte {
	t.Helper()
	vocab := map[string]int{}
	for i, v := range s.vocab {
		vocab[v] = i
	}
	model := map[string]any{"type": "BPE", "vocab": vocab, "merges": s.merges}
	for k, v := range s.model {
		model[k] = v
	}
	data, err := json.Marshal(map[string]any{
		"version": "1.0", "added_tokens": s.added, "normalizer": s.norm, "pre_tokenizer": s.pre,
		"model": model, "post_processor": s.post, "decoder": s.decoder,
	})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func (s synth) load(t testing.TB) *Tokenizer {
	t.Helper()
	tok, err := ParseJSON(s.json(t))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tokens encodes text and returns the token strings.
func tokens(t *testing.T, tok *Tokenizer, text string, parse bool) []string {
	t.Helper()
	ids, err := tok.Encode(text, EncodeOptions{ParseSpecial: parse})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i], _ = tok.TokenText(id)
	}
	return out
}

func chars(s string) []string {
	var out []string
	for _, r := range s {
		if !slices.Contains(out, string(r)) {
			out = append(out, string(r))
		}
	}
	return out
}

func TestSplitBehaviors(t *testing.T) {
	// The example of Hugging Face's SplitDelimiterBehavior documentation.
	want := map[string][]string{
		"Removed":            {"the", "final", "countdown"},
		"Isolated":           {"the", "-", "final", "-", "-", "countdown"},
		"MergedWithPrevious": {"the-", "final-", "-", "countdown"},
		"MergedWithNext":     {"the", "-final", "-", "-countdown"},
		"Contiguous":         {"the", "-", "final", "--", "countdown"},
	}
	text := "the-final--countdown"
	for behavior, w := range want {
		var got []string
		for _, p := range splitBy(piece{text: text}, findSpans(text, "-", nil, false), behavior, nil) {
			got = append(got, p.text)
		}
		if !slices.Equal(got, w) {
			t.Errorf("%s: %q, want %q", behavior, got, w)
		}
	}
}

func TestMetaspacePrependSchemes(t *testing.T) {
	base := synth{
		vocab:  append([]string{"<s>", "▁hello", "▁world", "hello", "world"}, chars("▁helowrd")...),
		added:  []map[string]any{{"id": 0, "content": "<s>", "special": true, "normalized": false}},
		merges: nil,
	}
	tests := []struct {
		scheme string
		split  bool
		text   string
		want   []string
	}{
		{"always", true, "hello world", []string{"▁hello", "▁world"}},
		{"always", false, "hello world", []string{"▁hell", "o▁", "w", "o", "r", "l", "d"}},
		{"always", true, "<s>hello", []string{"<s>", "▁hello"}},
		{"first", true, "hello world", []string{"▁hello", "▁world"}},
		{"first", true, "<s>hello", []string{"<s>", "hello"}},
		{"first", true, " hello", []string{"▁hello"}},
		{"never", true, "hello world", []string{"hello", "▁world"}},
		{"never", true, "hello  world", []string{"hello", "▁", "▁world"}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s split=%v %q", tc.scheme, tc.split, tc.text), func(t *testing.T) {
			s := base
			s.pre = map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": tc.scheme, "split": tc.split}
			// Whole words are vocabulary entries; the model sees pieces, so give it merges.
			// "o▁" merges first, which only an unsplit piece can show.
			s.merges = [][2]string{{"o", "▁"}, {"▁", "h"}, {"▁h", "e"}, {"▁he", "l"}, {"▁hel", "l"}, {"▁hell", "o"},
				{"h", "e"}, {"he", "l"}, {"hel", "l"}, {"hell", "o"},
				{"▁", "w"}, {"▁w", "o"}, {"▁wo", "r"}, {"▁wor", "l"}, {"▁worl", "d"}}
			s.vocab = append(s.vocab[:len(base.vocab):len(base.vocab)], "▁h", "▁he", "▁hel", "▁hell", "he", "hel", "hell", "▁w", "▁wo", "▁wor", "▁worl", "o▁")
			tok := s.load(t)
			if got := tokens(t, tok, tc.text, true); !slices.Equal(got, tc.want) {
				t.Errorf("%q, want %q", got, tc.want)
			}
		})
	}
}

func TestBPEOptions(t *testing.T) {
	vocab := []string{"<unk>", "a", "b", "ab", "abc", "c"}
	tests := []struct {
		name  string
		model map[string]any
		text  string
		want  []string
	}{
		{"merges", nil, "abc", []string{"ab", "c"}},
		{"ignore_merges", map[string]any{"ignore_merges": true}, "abc", []string{"abc"}},
		{"unk", map[string]any{"unk_token": "<unk>"}, "axyb", []string{"a", "<unk>", "<unk>", "b"}},
		{"fuse_unk", map[string]any{"unk_token": "<unk>", "fuse_unk": true}, "axyb", []string{"a", "<unk>", "b"}},
		{"no unk drops", nil, "axyb", []string{"ab"}}, // then "a" and "b" merge
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := synth{vocab: vocab, merges: [][2]string{{"a", "b"}}, model: tc.model}.load(t)
			if got := tokens(t, tok, tc.text, false); !slices.Equal(got, tc.want) {
				t.Errorf("%q, want %q", got, tc.want)
			}
		})
	}
	// Byte fallback: a missing character becomes its UTF-8 bytes.
	v := []string{"a"}
	for b := 0; b < 256; b++ {
		v = append(v, byteToken(byte(b)))
	}
	tok := synth{vocab: v, model: map[string]any{"byte_fallback": true}}.load(t)
	if got := tokens(t, tok, "aé", false); !slices.Equal(got, []string{"a", "<0xC3>", "<0xA9>"}) {
		t.Errorf("byte fallback: %q", got)
	}
}

func TestAddedTokenFlags(t *testing.T) {
	vocab := chars("abcdxy <>|")
	tok := synth{vocab: vocab, added: []map[string]any{
		{"id": 100, "content": "<l>", "lstrip": true, "normalized": false, "special": true},
		{"id": 101, "content": "<r>", "rstrip": true, "normalized": false, "special": true},
		{"id": 102, "content": "xy", "single_word": true, "normalized": false},
		{"id": 103, "content": "<|", "normalized": false},
		{"id": 104, "content": "<|a|>", "normalized": false},
	}}.load(t)
	tests := []struct {
		name string
		text string
		want []string
	}{
		{"lstrip", "a  <l> b", []string{"a", "<l>", " ", "b"}},
		{"rstrip", "a  <r>  b", []string{"a", " ", " ", "<r>", "b"}},
		{"single word", "a xy b", []string{"a", " ", "xy", " ", "b"}},
		{"single word inside a word", "axy b", []string{"a", "x", "y", " ", "b"}},
		{"single word at a word's start", "xyb", []string{"x", "y", "b"}},
		{"leftmost longest", "<|a|>b<|c", []string{"<|a|>", "b", "<|", "c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tokens(t, tok, tc.text, true); !slices.Equal(got, tc.want) {
				t.Errorf("%q: %q, want %q", tc.text, got, tc.want)
			}
		})
	}
	// Without ParseSpecial the token is text ("l" is not in the vocabulary and has no unk).
	if got := tokens(t, tok, "a<l>", false); !slices.Equal(got, []string{"a", "<", ">"}) {
		t.Errorf("without ParseSpecial: %q", got)
	}
}

func TestNormalizedAddedToken(t *testing.T) {
	// A normalized added token is matched after normalization (here: lowercasing).
	tok := synth{
		vocab: chars("abdy"),
		norm:  map[string]any{"type": "Lowercase"},
		added: []map[string]any{{"id": 50, "content": "DAY", "normalized": true}},
	}.load(t)
	if got := tokens(t, tok, "aDaYb", true); !slices.Equal(got, []string{"a", "DAY", "b"}) {
		t.Errorf("%q", got)
	}
}

func TestByteLevel(t *testing.T) {
	var vocab []string
	for b := 0; b < 256; b++ {
		vocab = append(vocab, string(byteLevelAlphabet[b]))
	}
	tok := synth{
		vocab:   vocab,
		pre:     map[string]any{"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
		decoder: map[string]any{"type": "ByteLevel"},
	}.load(t)
	var words []string
	for _, p := range (preByteLevel{useRegex: true}).preTokenize([]piece{{text: "Hello my friend, it's 2026!  ok   \n"}}) {
		words = append(words, p.text)
	}
	want := []string{"Hello", "Ġmy", "Ġfriend", ",", "Ġit", "'s", "Ġ2026", "!", "Ġ", "Ġok", "ĠĠĠĊ"}
	if !slices.Equal(words, want) {
		t.Errorf("pre-tokens %q, want %q", words, want)
	}
	text := "héllo 🎉 wörld\n"
	ids, _ := tok.Encode(text, EncodeOptions{})
	if got := tok.Decode(ids, false); got != text || len(ids) != len(text) {
		t.Errorf("round trip %q (%d ids)", got, len(ids))
	}
	// Invalid byte sequences decode as Rust's from_utf8_lossy does.
	if got := lossyUTF8([]byte("a\xe3\x81b\xff\xf0\x9f")); got != "a\uFFFDb\uFFFD\uFFFD" {
		t.Errorf("lossy %q", got)
	}
}

func TestDecoderSteps(t *testing.T) {
	tests := []struct {
		name string
		dec  decodeStep
		in   []string
		want string
	}{
		{"metaspace with prepend", decMetaspace{replacement: '▁', prepend: true}, []string{"▁▁Hey", "▁there"}, "Hey there"},
		{"metaspace", decMetaspace{replacement: '▁', prepend: false}, []string{"▁Hey", "▁there"}, " Hey there"},
		{"strip", decStrip{content: ' ', start: 1, stop: 1}, []string{" a ", "  b  "}, "a b "},
		{"byte fallback", decByteFallback{}, []string{"<0xE6>", "<0x97>", "<0xA5>", "x", "<0xFF>", "<0x41>"}, "日x\uFFFD\uFFFD"},
		{"fuse then strip", decSeq{decFuse{}, decStrip{content: ' ', start: 1}}, []string{" a", " b"}, "a b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(tc.dec.decodeChain(tc.in), ""); got != tc.want {
				t.Errorf("%T %q: %q, want %q", tc.dec, tc.in, got, tc.want)
			}
		})
	}
}

func TestUnsupportedAndMalformed(t *testing.T) {
	ok := synth{vocab: []string{"a"}}
	unsupportedCases := []synth{
		{vocab: ok.vocab, norm: map[string]any{"type": "BertNormalizer"}},
		{vocab: ok.vocab, norm: map[string]any{"type": "Precompiled", "precompiled_charsmap": ""}},
		{vocab: ok.vocab, pre: map[string]any{"type": "Whitespace"}},
		{vocab: ok.vocab, pre: map[string]any{"type": "Split", "pattern": map[string]any{"Regex": `\s+(?!\S)`}, "behavior": "Isolated"}},
		{vocab: ok.vocab, decoder: map[string]any{"type": "WordPiece"}},
		{vocab: ok.vocab, post: map[string]any{"type": "BertProcessing"}},
		{vocab: ok.vocab, model: map[string]any{"type": "WordPiece"}},
		{vocab: ok.vocab, model: map[string]any{"dropout": 0.1}},
	}
	for i, s := range unsupportedCases {
		_, err := ParseJSON(s.json(t))
		var ue *UnsupportedError
		if !errors.Is(err, ErrUnsupported) || !errors.As(err, &ue) || ue.Component == "" {
			t.Errorf("case %d: err %v, want an UnsupportedError", i, err)
		}
	}
	malformed := []string{
		``, `{`, `[]`, `{"model": null}`,
		`{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}`,
		`{"model": {"type": "BPE", "vocab": {"a": 0}, "unk_token": "<unk>"}}`,
		`{"model": {"type": "BPE", "vocab": {"a": -1}}}`,
		`{"model": {"type": "BPE", "vocab": {"a": 0}}, "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}], "special_tokens": {}}}`,
	}
	for _, m := range malformed {
		if _, err := ParseJSON([]byte(m)); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err %v, want ErrFormat", m, err)
		}
	}
	for _, b := range [][]byte{nil, {0xff}, {0x0a, 0x02, 0x0a}} {
		if _, err := ParseSentencePiece(b); err == nil {
			t.Errorf("ParseSentencePiece(%x) succeeded", b)
		}
	}
}

func TestMergesFormats(t *testing.T) {
	for _, doc := range []string{
		`{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "\u00e9": 3, "a\"": 4}, "merges": ["a b"]}}`,
		`{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "é": 3, "a\"": 4}, "merges": [["a", "b"]]}}`,
		`{"model": {"type": "BPE", "vocab": { "a" : 0 , "b":1,"ab":2,"é":3,"a\"":4 }, "merges": [ [ "\u0061" , "b" ] ] }}`,
	} {
		tok, err := ParseJSON([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		ids, _ := tok.Encode("abéab", EncodeOptions{})
		if !slices.Equal(ids, []int{2, 3, 2}) {
			t.Errorf("%s: ids %v", doc, ids)
		}
		if id, ok := tok.ID(`a"`); !ok || id != 4 {
			t.Errorf("%s: escaped token: %d %v", doc, id, ok)
		}
	}
	for _, doc := range []string{
		`{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a"]}}`,
		`{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a"]]}}`,
		`{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": {}}}`,
		`{"model": {"type": "BPE", "vocab": {"a": 1.5}}}`,
		`{"model": {"type": "BPE", "vocab": {"a": 99999999999}}}`,
	} {
		if _, err := ParseJSON([]byte(doc)); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err %v, want ErrFormat", doc, err)
		}
	}
}

// TestSplitRegexReference checks Split patterns (translated from Oniguruma's syntax, where ^
// and $ match at line breaks and \s, \d and \w are Unicode classes) against Hugging Face
// tokenizers' own pieces.
func TestSplitRegexReference(t *testing.T) {
	data, err := os.ReadFile("testdata/hf-split-regex.json")
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Texts []string `json:"texts"`
		Cases []struct {
			Pattern string     `json:"pattern"`
			Pieces  [][]string `json:"pieces"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	for _, c := range ref.Cases {
		re, err := compileRegex(c.Pattern, "test")
		if err != nil {
			t.Errorf("%q: %v", c.Pattern, err)
			continue
		}
		for i, text := range ref.Texts {
			var got []string
			for _, p := range (&preSplit{re: re, behavior: "Isolated"}).preTokenize([]piece{{text: text}}) {
				got = append(got, p.text)
			}
			if !slices.Equal(got, c.Pieces[i]) {
				t.Errorf("%q on %q: %q, want %q", c.Pattern, text, got, c.Pieces[i])
			}
		}
	}
	for _, pat := range []string{`\s+(?!\S)`, `[\w]`, `[^\S]`, `\bx`, `a{,2}`, `[a-z&&[^b]]`, `[[:alpha:]]`, `\h`} {
		if _, err := compileRegex(pat, "test"); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%q: err %v, want ErrUnsupported", pat, err)
		}
	}
}
