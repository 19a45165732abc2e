package sampling

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestStopMatcher(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stops   []string
		pieces  []string
		emits   []string // what each Push returns
		stopped bool     // whether the last Push stopped
		flush   string
	}{
		{"no stops", nil, []string{"a", "b"}, []string{"a", "b"}, false, ""},
		{"no match", []string{"xyz"}, []string{"hello", " world"}, []string{"hello", " world"}, false, ""},
		{"within one piece", []string{"STOP"}, []string{"abSTOPcd"}, []string{"ab"}, true, ""},
		{"first token", []string{"Hello"}, []string{"Hello", "more"}, []string{"", ""}, true, ""},
		{"split across pieces", []string{"lo W"}, []string{"Hel", "lo W", "orld"}, []string{"He", "l", ""}, true, ""},
		{"split over three pieces", []string{"<end>"}, []string{"x<", "en", "d>y"}, []string{"x", "", ""}, true, ""},
		{"held back then released", []string{"abc"}, []string{"xa", "b", "x"}, []string{"x", "", "abx"}, false, ""},
		{"held back at the end", []string{"abc"}, []string{"xa", "b"}, []string{"x", ""}, false, "ab"},
		{"overlapping occurrences", []string{"aab"}, []string{"a", "a", "a", "b"}, []string{"", "", "a", ""}, true, ""},
		{"overlapping stops, earliest wins", []string{"bcd", "abcx"}, []string{"ab", "cd"}, []string{"", "a"}, true, ""},
		{"prefix of another", []string{"end", "ending"}, []string{"the en", "ding"}, []string{"the ", ""}, true, ""},
		{"longer one first in the list", []string{"ending", "end"}, []string{"the end"}, []string{"the "}, true, ""},
		{"longest partial match held", []string{"aXb", "aX"}, []string{"za", "Xq"}, []string{"z", ""}, true, ""},
		{"nothing after the stop", []string{"\n\n"}, []string{"line\n", "\nnext", "more"}, []string{"line", "", ""}, true, ""},
		{"multibyte stop", []string{"→→"}, []string{"a→", "b→", "→c"}, []string{"a", "→b", ""}, true, ""},
		{"multibyte prefix never splits", []string{"é!"}, []string{"caf", "é", "s"}, []string{"caf", "", "és"}, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewStopMatcher(tc.stops)
			if err != nil {
				t.Fatal(err)
			}
			var stopped bool
			for i, piece := range tc.pieces {
				var emit string
				emit, stopped = m.Push(piece)
				if emit != tc.emits[i] {
					t.Errorf("Push(%q) = %q, want %q", piece, emit, tc.emits[i])
				}
				if !utf8.ValidString(emit) {
					t.Errorf("Push(%q) emitted invalid UTF-8 %q", piece, emit)
				}
			}
			if stopped != tc.stopped || m.Stopped() != tc.stopped {
				t.Errorf("stopped = %v, want %v", stopped, tc.stopped)
			}
			if got := m.Flush(); got != tc.flush {
				t.Errorf("Flush() = %q, want %q", got, tc.flush)
			}
		})
	}
}

// TestStopMatcherAnySplit checks, for every way of cutting a text into three pieces, that
// the emitted text is the text up to the first stop string, and that the held-back text is
// never more than could begin a stop string.
func TestStopMatcherAnySplit(t *testing.T) {
	stops := []string{"END", "ENDING", "ab", "NDx"}
	for _, text := range []string{"xxENDINGyy", "aENDxab", "hello world", "nEN", "zzNDxab", "ENENDab"} {
		want, found := text, false
		earliest := -1
		for _, s := range stops {
			if i := strings.Index(text, s); i >= 0 && (earliest < 0 || i < earliest) {
				earliest = i
			}
		}
		if earliest >= 0 {
			want, found = text[:earliest], true
		}
		for i := 0; i <= len(text); i++ {
			for j := i; j <= len(text); j++ {
				m, _ := NewStopMatcher(stops)
				var out strings.Builder
				stopped := false
				for _, piece := range []string{text[:i], text[i:j], text[j:]} {
					emit, s := m.Push(piece)
					out.WriteString(emit)
					stopped = s
					if held := len(m.pending); held >= len("ENDING") {
						t.Fatalf("%q cut at %d,%d: holding back %d bytes", text, i, j, held)
					}
				}
				out.WriteString(m.Flush())
				if out.String() != want || stopped != found {
					t.Fatalf("%q cut at %d,%d: got %q (stopped %v), want %q (%v)", text, i, j, out.String(), stopped, want, found)
				}
			}
		}
	}
}

func TestNewStopMatcherErrors(t *testing.T) {
	for _, stops := range [][]string{{""}, {"ok", ""}, {"\xc3"}} {
		if _, err := NewStopMatcher(stops); !errors.Is(err, ErrInvalidParam) {
			t.Errorf("NewStopMatcher(%q) = %v, want ErrInvalidParam", stops, err)
		}
	}
}

// stopReference is the plain definition of stop matching: after each piece, if a stop
// string occurs in the text so far, the output is the text before the earliest occurrence.
func stopReference(pieces, stops []string) (string, bool) {
	acc := ""
	for _, p := range pieces {
		acc += p
		at := -1
		for _, s := range stops {
			if i := strings.Index(acc, s); i >= 0 && (at < 0 || i < at) {
				at = i
			}
		}
		if at >= 0 {
			return acc[:at], true
		}
	}
	return acc, false
}

// checkStopMatcher streams pieces through a matcher and compares with stopReference,
// checking after every piece that the text held back is a proper prefix of a stop string.
func checkStopMatcher(t *testing.T, pieces, stops []string) {
	m, err := NewStopMatcher(stops)
	if err != nil {
		return
	}
	var out strings.Builder
	stopped := false
	for _, p := range pieces {
		emit, s := m.Push(p)
		out.WriteString(emit)
		stopped = s
		if held := m.pending; held != "" && !slices.ContainsFunc(stops, func(s string) bool {
			return len(held) < len(s) && strings.HasPrefix(s, held)
		}) {
			t.Fatalf("pieces %q, stops %q: holding back %q", pieces, stops, held)
		}
		if stopped {
			break
		}
	}
	if !stopped {
		out.WriteString(m.Flush())
	}
	want, wantStopped := stopReference(pieces, stops)
	if out.String() != want || stopped != wantStopped {
		t.Fatalf("pieces %q, stops %q: got %q (stopped %v), want %q (%v)", pieces, stops, out.String(), stopped, want, wantStopped)
	}
}

func FuzzStopMatcher(f *testing.F) {
	f.Add("the end of the ending", "end|ending", uint64(12345))
	f.Add("aaab", "aab", uint64(1))
	f.Add("x<end>y<e", "<end>|d>", uint64(99))
	f.Add("café→→!", "→→|é!", uint64(7))
	f.Fuzz(func(t *testing.T, text, stopList string, cuts uint64) {
		if !utf8.ValidString(text) || len(stopList) > 64 {
			return
		}
		stops := strings.Split(stopList, "|")
		// Cut text into pieces at rune boundaries chosen by the bits of cuts.
		var pieces []string
		start := 0
		for i := range text {
			if i > start && cuts&1 == 1 {
				pieces = append(pieces, text[start:i])
				start = i
			}
			cuts = cuts>>1 | cuts<<63
		}
		pieces = append(pieces, text[start:])
		checkStopMatcher(t, pieces, stops)
	})
}

// TestStopMatcherRandom compares the matcher with its definition on random texts over a
// small alphabet, where partial and overlapping matches are frequent.
func TestStopMatcherRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	alphabet := []string{"a", "b", "c", "é", "→"}
	word := func(n int) string {
		var b strings.Builder
		for range n {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}
	for range 3000 {
		stops := make([]string, 1+rng.IntN(4))
		for i := range stops {
			stops[i] = word(1 + rng.IntN(4))
		}
		pieces := make([]string, 1+rng.IntN(8))
		for i := range pieces {
			pieces[i] = word(rng.IntN(4))
		}
		checkStopMatcher(t, pieces, stops)
	}
}
