package tokenizer

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

func FuzzEncode(f *testing.F) {
	for _, s := range []string{"", " ", "Hello world", "<|im_start|>user\n<s>", "\xff\x00▁▁", "日本語 🎉", "  a  "} {
		f.Add(s, true)
	}
	json := bundledFile(f, "tokenizer.json")
	meta := bundledFile(f, "tokenizer.metaspace.json")
	model := bundledFile(f, "tokenizer.model")
	f.Fuzz(func(t *testing.T, text string, parse bool) {
		for _, tok := range []*Tokenizer{json, meta, model} {
			ids, err := tok.Encode(text, EncodeOptions{AddBOS: true, ParseSpecial: parse})
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range ids {
				if id < 0 || id >= tok.VocabSize() {
					t.Fatalf("id %d out of range", id)
				}
			}
			got := tok.Decode(ids, false)
			if !utf8.ValidString(got) {
				t.Fatalf("Decode gave invalid UTF-8 %q", got)
			}
			want := strings.ReplaceAll(validUTF8(text), "▁", " ")
			if tok != meta && !parse && tok.Decode(ids, true) != want {
				t.Fatalf("round trip of %q: %q", text, tok.Decode(ids, true))
			}
		}
	})
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte{1, 0, 3, 0, 0xE3, 0x7D, 0x81, 0})
	tok := bundledFile(f, "tokenizer.json")
	f.Fuzz(func(t *testing.T, raw []byte) {
		// Two bytes per id, biased towards byte tokens by the high bit of the first.
		var ids []int
		for i := 0; i+1 < len(raw); i += 2 {
			id := int(raw[i]&0x7F)<<8 | int(raw[i+1])
			if raw[i]&0x80 == 0 {
				id = 3 + int(raw[i+1])
			}
			ids = append(ids, id-1)
		}
		for _, skip := range []bool{false, true} {
			want := tok.Decode(ids, skip)
			d := tok.NewDecoder(skip)
			var b strings.Builder
			for _, id := range ids {
				b.WriteString(d.Add(id))
			}
			b.WriteString(d.Flush())
			if b.String() != want {
				t.Fatalf("ids %v: stream %q, Decode %q", ids, b.String(), want)
			}
		}
	})
}

func FuzzParseJSON(f *testing.F) {
	f.Add(synth{vocab: []string{"a", "b", "ab", "▁"}, merges: [][2]string{{"a", "b"}},
		norm:    map[string]any{"type": "Sequence", "normalizers": []any{map[string]any{"type": "Prepend", "prepend": "▁"}, map[string]any{"type": "NFKC"}}},
		pre:     map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true},
		added:   []map[string]any{{"id": 9, "content": "<x>", "special": true, "lstrip": true}},
		decoder: map[string]any{"type": "Sequence", "decoders": []any{map[string]any{"type": "ByteFallback"}, map[string]any{"type": "Strip", "content": " ", "start": 1, "stop": 0}}},
	}.json(f))
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"pre_tokenizer":{"type":"ByteLevel"},"decoder":{"type":"ByteLevel"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := ParseJSON(data)
		if err != nil {
			return
		}
		ids, _ := tok.Encode("ab <x> a\xffb", EncodeOptions{AddBOS: true, ParseSpecial: true})
		tok.Decode(append(ids, -1, 5, 1<<30), false)
		d := tok.NewDecoder(false)
		for _, id := range ids {
			d.Add(id)
		}
		d.Flush()
	})
}

// spmProto builds a small SentencePiece BPE model.
func spmProto(pieces []string, types []int, byteFallback bool) []byte {
	var b []byte
	for i, p := range pieces {
		var sp []byte
		sp = protowire.AppendTag(sp, 1, protowire.BytesType)
		sp = protowire.AppendString(sp, p)
		sp = protowire.AppendTag(sp, 2, protowire.Fixed32Type)
		sp = protowire.AppendFixed32(sp, uint32(0xBF800000)+uint32(i)) // descending scores
		sp = protowire.AppendTag(sp, 3, protowire.VarintType)
		sp = protowire.AppendVarint(sp, uint64(types[i]))
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, sp)
	}
	var ts []byte
	ts = protowire.AppendTag(ts, 3, protowire.VarintType)
	ts = protowire.AppendVarint(ts, 2)
	ts = protowire.AppendTag(ts, 35, protowire.VarintType)
	ts = protowire.AppendVarint(ts, protowire.EncodeBool(byteFallback))
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, ts)
	var ns []byte
	ns = protowire.AppendTag(ns, 4, protowire.VarintType)
	ns = protowire.AppendVarint(ns, 0)
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	return protowire.AppendBytes(b, ns)
}

func FuzzParseSentencePiece(f *testing.F) {
	f.Add(spmProto([]string{"<unk>", "<s>", "</s>", "▁a", "▁", "a", "b", "[U]"}, []int{2, 3, 3, 1, 1, 1, 1, 4}, false))
	if data, err := os.ReadFile("testdata/spm-small.model"); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := ParseSentencePiece(data)
		if err != nil {
			return
		}
		ids, _ := tok.Encode(" a[U]b  c\xff", EncodeOptions{AddBOS: true})
		for _, id := range ids {
			if id < 0 || id >= tok.VocabSize() {
				t.Fatalf("id %d out of range", id)
			}
		}
		tok.Decode(ids, true)
	})
}

func TestSmallSentencePieceModel(t *testing.T) {
	tok, err := ParseSentencePiece(spmProto(
		[]string{"<unk>", "<s>", "</s>", "▁a", "▁", "a", "b", "[U]", "ab", "bb"},
		[]int{2, 3, 3, 1, 1, 1, 1, 4, 5, 1}, false))
	if err != nil {
		t.Fatal(err)
	}
	// remove_extra_whitespaces is off; "[U]" is user-defined (never split); "ab" is unused
	// (resegmented into "a" "b"); "c" is unknown and a run of unknowns is one <unk>.
	ids, _ := tok.Encode(" a[U]abbcc", EncodeOptions{AddBOS: true})
	want := []int{1, 4, 3, 7, 5, 6, 6, 0}
	if !slices.Equal(ids, want) {
		t.Fatalf("ids %v, want %v", ids, want)
	}
}

// TestSentencePieceReference checks a model with a precompiled character map, user-defined
// and control symbols and white-space folding against ids from SentencePiece itself.
func TestSentencePieceReference(t *testing.T) {
	tok, err := LoadFile("testdata/spm-small.model")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("testdata/spm-small-cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Text string `json:"text"`
		IDs  []int  `json:"ids"`
	}
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		got, err := tok.Encode(c.Text, EncodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, c.IDs) {
			t.Errorf("Encode(%q) = %v, want %v", c.Text, got, c.IDs)
		}
	}
}

func FuzzRegex(f *testing.F) {
	f.Add(`(?i:'s|'t)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`, "Hello  world\n\n 123 ")
	f.Add(`^\s+|[\d\s]|\W+`, "a\u3000b\n c")
	f.Fuzz(func(t *testing.T, pat, text string) {
		re, err := compileRegex(pat, "fuzz")
		if err != nil {
			return
		}
		prev := 0
		for _, m := range re.findAll(text) {
			if m[0] < prev || m[1] < m[0] || m[1] > len(text) {
				t.Fatalf("%q on %q: bad match %v after %d", pat, text, m, prev)
			}
			prev = m[1]
		}
		re.replaceAll(text, "x")
	})
}
