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

// renderChat renders the conversation and locates each message content in the result.
func (t *Tokenizer) renderChat(msgs []Message, opts ChatOptions) (string, []span, error) {
	src := opts.Template
	if src == "" {
		src = t.chatTemplate
	}
	if src == "" {
		src = ChatML
	}
	tmpl, err := t.compileTemplate(src)
	if err != nil {
		if opts.Template != "" {
			return "", nil, err
		}
		if tmpl, err = t.compileTemplate(ChatML); err != nil {
			return "", nil, err
		}
	}
	clean := make([]Message, len(msgs))
	marked := make([]Message, len(msgs))
	for i, m := range msgs {
		clean[i] = Message{Role: validUTF8(m.Role), Content: validUTF8(m.Content)}
		marked[i] = Message{Role: clean[i].Role, Content: markOpen + clean[i].Content + markClose}
	}
	text, err := t.renderWith(tmpl, clean, opts.AddGenerationPrompt)
	if err != nil {
		return "", nil, err
	}
	if spans, ok := contentFromMarkers(t, tmpl, marked, opts.AddGenerationPrompt, text); ok {
		return text, spans, nil
	}
	// The template transforms contents; find each one in order instead.
	var spans []span
	from := 0
	for _, m := range clean {
		c := m.Content
		i := strings.Index(text[from:], c)
		if i < 0 {
			c = strings.TrimSpace(c)
			i = strings.Index(text[from:], c)
		}
		if i < 0 {
			if t.hasAddedMatch(m.Content) {
				return "", nil, fmt.Errorf("%w: cannot locate a message content in the rendered prompt", ErrTemplate)
			}
			continue
		}
		spans = append(spans, span{start: from + i, end: from + i + len(c)})
		from += i + len(c)
	}
	return text, spans, nil
}

// contentFromMarkers renders with marked contents and returns the content spans when the
// marked rendering is the plain one with markers added.
func contentFromMarkers(t *Tokenizer, tmpl *jinja.Template, marked []Message, gen bool, want string) ([]span, bool) {
	got, err := t.renderWith(tmpl, marked, gen)
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

func (t *Tokenizer) renderWith(tmpl *jinja.Template, msgs []Message, gen bool) (out string, err error) {
	list := make([]any, len(msgs))
	for i, m := range msgs {
		list[i] = map[string]any{"role": m.Role, "content": m.Content}
	}
	data := map[string]any{
		"messages":              list,
		"add_generation_prompt": gen,
		"bos_token":             t.tokenOrEmpty(t.bos),
		"eos_token":             t.tokenOrEmpty(t.eos),
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: render: %v", ErrTemplate, r)
		}
	}()
	out, err = tmpl.Render(data)
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
