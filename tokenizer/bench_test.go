package tokenizer

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fathom-llm/fathom/internal/fixtures"
)

// mixedText returns about n bytes of deterministic mixed text: English prose, code, other
// scripts, emoji and odd white space.
func mixedText(n int) string {
	parts := []string{
		"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "Mixtral", "experts",
		"tokenizer", "streaming", "café", "naïve", "Grüße", "日本語", "中文", "한국어", "Привет",
		"مرحبا", "🎉", "👍🏽", "∑", "x := 42", "func main() {", "}", "return nil", "if err != nil {",
		"def f(x):", "    ", "\t", "\n", "\n\n", "  ", "3.14159", "2026-11-27", "<0x41>", "<s>",
	}
	r := rand.New(rand.NewPCG(42, 42))
	var b strings.Builder
	b.Grow(n + 64)
	for b.Len() < n {
		b.WriteString(parts[r.IntN(len(parts))])
		if r.IntN(3) > 0 {
			b.WriteByte(' ')
		}
	}
	return b.String()
}

// BenchmarkEncode encodes 10 MB of mixed text with each tokenizer file, and with SentencePiece's
// own spm_encode when that program is installed.
func BenchmarkEncode(b *testing.B) {
	text := mixedText(10 << 20)
	for _, name := range []string{"tokenizer.json", "tokenizer.metaspace.json", "tokenizer.model"} {
		b.Run(name, func(b *testing.B) {
			tok := bundledFile(b, name)
			b.SetBytes(int64(len(text)))
			var n int
			for b.Loop() {
				ids, _ := tok.Encode(text, EncodeOptions{})
				n = len(ids)
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
	b.Run("spm_encode", func(b *testing.B) {
		bin, err := exec.LookPath("spm_encode")
		if err != nil {
			b.Skip("spm_encode not installed (Debian package sentencepiece)")
		}
		model := fixtures.Bundled(b, "tokenizer.model")
		in := filepath.Join(b.TempDir(), "text")
		if err := os.WriteFile(in, []byte(text), 0o644); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			cmd := exec.Command(bin, "--model="+model, "--output_format=id", "--input="+in, "--output="+os.DevNull)
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("spm_encode: %v: %s", err, out)
			}
		}
	})
}

// BenchmarkEncodeDegenerate encodes 1 MB without spaces and 1 MB of one repeated character.
func BenchmarkEncodeDegenerate(b *testing.B) {
	inputs := map[string]string{
		"no-spaces": strings.Repeat("abcdefghij日本語🎉", 1<<20/26),
		"repeated":  strings.Repeat("a", 1<<20),
		"spaces":    strings.Repeat(" ", 1<<20),
	}
	for _, file := range []string{"tokenizer.json", "tokenizer.model"} {
		for kind, text := range inputs {
			b.Run(file+"/"+kind, func(b *testing.B) {
				tok := bundledFile(b, file)
				b.SetBytes(int64(len(text)))
				for b.Loop() {
					tok.Encode(text, EncodeOptions{})
				}
			})
		}
	}
}

// BenchmarkDecodeStream detokenizes the ids of 1 MB of mixed text one id at a time.
func BenchmarkDecodeStream(b *testing.B) {
	tok := bundledFile(b, "tokenizer.json")
	ids, _ := tok.Encode(mixedText(1<<20), EncodeOptions{})
	b.ResetTimer()
	for b.Loop() {
		d := tok.NewDecoder(true)
		for _, id := range ids {
			d.Add(id)
		}
		d.Flush()
	}
	b.ReportMetric(float64(len(ids))*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}
