package tokenizer

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ardanlabs/jinja"
)

// ChatOptions control chat rendering.
type ChatOptions struct {
	// AddGenerationPrompt ends the prompt with the opening of an assistant turn.
	AddGenerationPrompt bool
	// ParseSpecial matches added and special tokens inside message contents too. By default
	// contents are plain text: only the template's own markup yields control tokens, so a
	// user who writes "<|im_start|>system" cannot open a system turn.
	ParseSpecial bool
	// Template, when set, replaces the checkpoint's chat template.
	Template string
	// Tools are the functions the model may call. They are given to the template as
	// `tools`, the transformers convention; when the template takes no tools (it never
	// names them) a conversation with tools, tool calls or tool turns is rendered with
	// ChatMLTools instead.
	Tools []Tool
}

// Content markers wrap each message content during rendering so that the spans of content in
// the rendered prompt are known. They are noncharacters, which text does not carry.
const (
	markOpen  = "\U000FFFFE"
	markClose = "\U000FFFFF"
)

// ChatML renders messages in the ChatML format of Dolphin and other models, the format used
// when a checkpoint has no chat template or its template cannot be compiled.
const ChatML = `{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}`

// RenderChat renders messages with the chat template (see EncodeChat) and returns the prompt
// text.
func (t *Tokenizer) RenderChat(msgs []Message, opts ChatOptions) (string, error) {
	text, _, err := t.renderChat(msgs, opts)
	return text, err
}

// EncodeChat renders messages with the checkpoint's chat template (ChatML when it has none or
// the template engine cannot compile it) and tokenizes the result without adding BOS (a
// template that wants BOS writes bos_token itself). Special tokens are matched only in the
// template's own text unless opts.ParseSpecial is set. It returns the ids and the rendered
// text; errors wrap ErrTemplate.
func (t *Tokenizer) EncodeChat(msgs []Message, opts ChatOptions) (ids []int, text string, err error) {
	text, content, err := t.renderChat(msgs, opts)
	if err != nil {
		return nil, "", err
	}
	if len(text) > MaxInputBytes {
		return nil, "", ErrTooLarge
	}
	allow := allowAll
	if !opts.ParseSpecial {
		allow = func(start, end int) bool {
			for _, c := range content {
				if start < c.end && c.start < end {
					return false
				}
			}
			return true
		}
	}
	return t.encode(text, allow, false), text, nil
}

// renderChat renders the conversation and locates each message content (and every other
// string the caller supplied: tool descriptions, arguments, results) in the result.
func (t *Tokenizer) renderChat(msgs []Message, opts ChatOptions) (string, []span, error) {
	src := opts.Template
	if src == "" {
		src = t.chatTemplate
		if src != "" && usesTools(msgs, opts.Tools) && !takesTools(src) {
			src = ChatMLTools
		}
	}
	if src == "" {
		src = ChatML
		if usesTools(msgs, opts.Tools) {
			src = ChatMLTools
		}
	}
	tmpl, err := t.compileTemplate(src)
	if err != nil {
		if opts.Template != "" {
			return "", nil, err
		}
		fallback := ChatML
		if usesTools(msgs, opts.Tools) {
			fallback = ChatMLTools
		}
		if tmpl, err = t.compileTemplate(fallback); err != nil {
			return "", nil, err
		}
	}
	plain := chatContext{tok: t, mark: func(s string) string { return validUTF8(s) }}
	data, err := plain.data(msgs, opts)
	if err != nil {
		return "", nil, err
	}
	text, err := renderWith(tmpl, data)
	if err != nil {
		return "", nil, err
	}
	marked := chatContext{tok: t, mark: func(s string) string { return markOpen + validUTF8(s) + markClose }}
	if mdata, err := marked.data(msgs, opts); err == nil {
		if spans, ok := contentFromMarkers(tmpl, mdata, text); ok {
			return text, spans, nil
		}
	}
	// The template transforms the strings; find each message content in order instead.
	// Other strings cannot be found reliably: they must hold no special token.
	if plain.risky {
		return "", nil, fmt.Errorf("%w: the template transforms tool definitions or calls that contain special tokens", ErrTemplate)
	}
	var spans []span
	from := 0
	for _, m := range msgs {
		c := validUTF8(m.Content)
		full := c
		i := strings.Index(text[from:], c)
		if i < 0 {
			c = strings.TrimSpace(c)
			i = strings.Index(text[from:], c)
		}
		if i < 0 {
			if t.hasAddedMatch(full) {
				return "", nil, fmt.Errorf("%w: cannot locate a message content in the rendered prompt", ErrTemplate)
			}
			continue
		}
		spans = append(spans, span{start: from + i, end: from + i + len(c)})
		from += i + len(c)
	}
	return text, spans, nil
}

// contentFromMarkers renders with marked strings and returns their spans when the marked
// rendering is the plain one, want, with markers added.
func contentFromMarkers(tmpl *jinja.Template, marked map[string]jinja.Value, want string) ([]span, bool) {
	got, err := renderWith(tmpl, marked)
	if err != nil {
		return nil, false
	}
	var spans []span
	var b strings.Builder
	for got != "" {
		i := strings.Index(got, markOpen)
		if i < 0 {
			if strings.Contains(got, markClose) {
				return nil, false
			}
			b.WriteString(got)
			break
		}
		if strings.Contains(got[:i], markClose) {
			return nil, false
		}
		b.WriteString(got[:i])
		got = got[i+len(markOpen):]
		j := strings.Index(got, markClose)
		if j < 0 || strings.Contains(got[:j], markOpen) {
			return nil, false
		}
		start := b.Len()
		b.WriteString(got[:j])
		spans = append(spans, span{start: start, end: b.Len()})
		got = got[j+len(markClose):]
	}
	return spans, b.String() == want
}

func (t *Tokenizer) hasAddedMatch(s string) bool {
	return slices.ContainsFunc(t.splitAdded(s, t.rawTrie, allowAll, nil), func(seg segment) bool { return seg.id >= 0 })
}

// renderWith renders tmpl with data, turning a panic of the template engine into an error.
func renderWith(tmpl *jinja.Template, data map[string]jinja.Value) (out string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: render: %v", ErrTemplate, r)
		}
	}()
	out, err = tmpl.RenderValues(data)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrTemplate, err)
	}
	return out, nil
}

func (t *Tokenizer) tokenOrEmpty(id int) string {
	s, _ := t.TokenText(id)
	return s
}

// compileTemplate compiles a template source once per tokenizer.
func (t *Tokenizer) compileTemplate(src string) (*jinja.Template, error) {
	if v, ok := t.templates.Load(src); ok {
		return v.(*jinja.Template), nil
	}
	tmpl, err := compileJinja(src)
	if err == nil {
		t.templates.Store(src, tmpl)
	}
	return tmpl, err
}

func compileJinja(src string) (tmpl *jinja.Template, err error) {
	defer func() {
		if r := recover(); r != nil {
			tmpl, err = nil, fmt.Errorf("%w: compile: %v", ErrTemplate, r)
		}
	}()
	tmpl, err = jinja.Compile(src)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTemplate, err)
	}
	return tmpl, nil
}
