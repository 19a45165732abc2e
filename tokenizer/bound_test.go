package tokenizer

import (
	"strings"
	"testing"
)

// TestMaxTokenBytes checks the bound on the bundled model's tokenizer: no text encodes to
// fewer tokens than its bytes divided by it.
func TestMaxTokenBytes(t *testing.T) {
	tok, err := Load("../models/tiny-code-mixtral")
	if err != nil {
		t.Fatal(err)
	}
	most := tok.MaxTokenBytes()
	if most <= 0 || most > 64 {
		t.Fatalf("MaxTokenBytes = %d", most)
	}
	for _, text := range []string{
		"def main():\n    return 0\n", strings.Repeat(" ", 300), strings.Repeat("a", 500),
		"naïve façade — 日本語 🙂", "</s><s>[INST] literal special tokens [/INST]",
		strings.Repeat("if x is not None:\n        ", 40),
	} {
		ids, err := tok.Encode(text, EncodeOptions{ParseSpecial: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(ids)*most < len(text) {
			t.Errorf("%q: %d tokens of at most %d bytes for %d bytes", text, len(ids), most, len(text))
		}
	}
	// A normalizer that may shrink text proves nothing.
	tok.norm = normForm{}
	if got := tok.MaxTokenBytes(); got != 0 {
		t.Errorf("with an NFC normalizer: %d", got)
	}
}
