package server

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/fathom-llm/fathom/sampling"
)

// tokenString renders a token's bytes as the API's "token" string: valid UTF-8 as is, each
// byte of an incomplete character as the escape \xNN.
func tokenString(text string) string {
	if utf8.ValidString(text) {
		return text
	}
	var b strings.Builder
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		if r == utf8.RuneError && size <= 1 {
			fmt.Fprintf(&b, `\x%02x`, text[i])
			i++
			continue
		}
		b.WriteString(text[i : i+size])
		i += size
	}
	return b.String()
}

// tokenBytes returns a token's bytes as the API's "bytes" array.
func tokenBytes(text string) []int {
	out := make([]int, len(text))
	for i := range len(text) {
		out[i] = int(text[i])
	}
	return out
}

// topLogprob is one alternative of a chat logprobs entry.
type topLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

// tokenLogprob is one position of chat logprobs.
type tokenLogprob struct {
	Token       string       `json:"token"`
	Logprob     float64      `json:"logprob"`
	Bytes       []int        `json:"bytes"`
	TopLogprobs []topLogprob `json:"top_logprobs"`
}

// chatLogprobs is a chat choice's "logprobs" object.
type chatLogprobs struct {
	Content []tokenLogprob `json:"content"`
}

// chatLogprobsOf renders logprobs in the chat form, naming tokens with m.
func chatLogprobsOf(m Model, lps []sampling.Logprobs) *chatLogprobs {
	out := &chatLogprobs{Content: make([]tokenLogprob, 0, len(lps))}
	for _, lp := range lps {
		text := m.TokenText(lp.Chosen.ID)
		e := tokenLogprob{Token: tokenString(text), Logprob: finiteLogprob(lp.Chosen.Logprob),
			Bytes: tokenBytes(text), TopLogprobs: make([]topLogprob, 0, len(lp.Top))}
		for _, t := range lp.Top {
			tt := m.TokenText(t.ID)
			e.TopLogprobs = append(e.TopLogprobs, topLogprob{Token: tokenString(tt),
				Logprob: finiteLogprob(t.Logprob), Bytes: tokenBytes(tt)})
		}
		out.Content = append(out.Content, e)
	}
	return out
}

// textLogprobs is a text completion choice's "logprobs" object.
type textLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []float64            `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

// textLogprobsOf renders logprobs in the text completion form. offset is the length, in
// characters, of the choice's text before the first of these tokens; it returns the offset
// after the last.
func textLogprobsOf(m Model, lps []sampling.Logprobs, offset int) (*textLogprobs, int) {
	out := &textLogprobs{
		Tokens:        make([]string, 0, len(lps)),
		TokenLogprobs: make([]float64, 0, len(lps)),
		TopLogprobs:   make([]map[string]float64, 0, len(lps)),
		TextOffset:    make([]int, 0, len(lps)),
	}
	for _, lp := range lps {
		raw := m.TokenText(lp.Chosen.ID)
		tok := tokenString(raw)
		out.Tokens = append(out.Tokens, tok)
		out.TokenLogprobs = append(out.TokenLogprobs, finiteLogprob(lp.Chosen.Logprob))
		top := make(map[string]float64, len(lp.Top)+1)
		for _, t := range lp.Top {
			tt := tokenString(m.TokenText(t.ID))
			if _, dup := top[tt]; !dup {
				top[tt] = finiteLogprob(t.Logprob)
			}
		}
		if _, ok := top[tok]; !ok {
			top[tok] = finiteLogprob(lp.Chosen.Logprob)
		}
		out.TopLogprobs = append(out.TopLogprobs, top)
		out.TextOffset = append(out.TextOffset, offset)
		offset += utf8.RuneCountInString(raw)
	}
	return out, offset
}
