package tokenizer

import (
	"crypto/rand"
	"encoding/json"
	"strings"
)

// The markup of a call in the ChatMLTools format.
const (
	ToolCallOpen  = "<tool_call>"
	ToolCallClose = "</tool_call>"
)

// ParseToolCalls splits a reply written in the ChatMLTools format into its text and its
// calls: the text is what precedes the first <tool_call> (trailing white space removed), each
// call is read from {"name": ..., "arguments": {...}} inside <tool_call></tool_call>. Calls
// get fresh IDs ("call_" and random letters). A reply without calls is all text. It is the
// concatenation of what a ToolCallParser reports for the same reply.
func ParseToolCalls(reply string) (text string, calls []ToolCall) {
	var p ToolCallParser
	var b strings.Builder
	add := func(d ToolDelta) {
		b.WriteString(d.Text)
		for _, c := range d.Calls {
			if c.Index == len(calls) {
				calls = append(calls, ToolCall{ID: c.ID, Name: c.Name})
			}
			calls[c.Index].Arguments += c.Arguments
		}
	}
	add(p.Push(reply))
	add(p.Flush())
	return b.String(), calls
}

// ToolDelta is what one piece of a streamed reply adds: text outside calls, and pieces of
// calls.
type ToolDelta struct {
	Text  string
	Calls []ToolCallDelta
}

// ToolCallDelta is a piece of one call: its first piece carries the call's ID and Name, every
// piece the next part of its Arguments (JSON text).
type ToolCallDelta struct {
	Index     int
	ID, Name  string
	Arguments string
}

// parser states.
const (
	psText   = iota // text outside calls
	psHead          // inside <tool_call>, before the arguments
	psArgs          // inside the arguments value
	psTail          // after the arguments, until </tool_call>
	psBuffer        // a call not written name first: read whole, then parsed
)

// blanks are the white space bytes the parser skips.
const blanks = " \t\r\n"

// ToolCallParser reads a reply in the ChatMLTools format as it streams, reporting text as
// soon as it cannot begin a call and each call's arguments as they are written: a call
// written name first ({"name": ..., "arguments": ...}, as constrained decoding writes it)
// is reported from its name on; a call in another order once it is complete. Text that turns
// out not to be a call is reported as text. The zero value is ready to use.
type ToolCallParser struct {
	state int
	buf   string // text not yet reported
	calls int    // calls begun
	// The arguments value being read.
	depth          int
	inString, esc  bool
	started, ended bool
}

// Push reads the next piece of the reply.
func (p *ToolCallParser) Push(s string) ToolDelta {
	p.buf += s
	var d ToolDelta
	for p.step(&d, false) {
	}
	return d
}

// Flush ends the reply: text held back because it might have begun a call is reported, a
// call cut short before its name is dropped, and one cut short in its arguments ends where
// the reply does.
func (p *ToolCallParser) Flush() ToolDelta {
	var d ToolDelta
	for p.step(&d, true) {
	}
	switch p.state {
	case psText:
		d.Text += p.buf
	case psBuffer:
		d.Text += ToolCallOpen + p.buf // never reported as a call: it was text
	}
	// psHead: a call cut short before its name is dropped; psArgs, psTail: the call ends
	// with what was written of it.
	p.buf = ""
	return d
}

// step makes one move over p.buf and reports whether another may follow.
func (p *ToolCallParser) step(d *ToolDelta, final bool) bool {
	switch p.state {
	case psText:
		i := strings.Index(p.buf, ToolCallOpen)
		if i < 0 {
			// Report all but what could still precede or begin a call.
			keep := 0
			if !final {
				keep = partialSuffix(p.buf, ToolCallOpen)
				keep = len(p.buf) - len(strings.TrimRight(p.buf[:len(p.buf)-keep], blanks))
			}
			d.Text += p.buf[:len(p.buf)-keep]
			p.buf = p.buf[len(p.buf)-keep:]
			return false
		}
		d.Text += strings.TrimRight(p.buf[:i], blanks) // white space before a call is dropped
		p.buf = p.buf[i+len(ToolCallOpen):]
		p.state = psHead
		return true
	case psHead:
		name, n, status := readHead(p.buf)
		switch status {
		case headPartial:
			return false
		case headDone:
			d.Calls = append(d.Calls, ToolCallDelta{Index: p.calls, ID: NewToolCallID(), Name: name})
			p.calls++
			p.buf = p.buf[n:]
			p.state, p.depth, p.inString, p.esc, p.started, p.ended = psArgs, 0, false, false, false, false
		default:
			p.state = psBuffer
		}
		return true
	case psArgs:
		if !p.started {
			p.buf = strings.TrimLeft(p.buf, blanks)
		}
		n := p.scanArgs(p.buf)
		if n > 0 {
			d.Calls = appendArgs(d.Calls, p.calls-1, p.buf[:n])
			p.buf = p.buf[n:]
		}
		if p.ended {
			p.state = psTail
			return true
		}
		return false
	case psTail:
		i := strings.Index(p.buf, ToolCallClose)
		if i < 0 {
			return false
		}
		p.buf = p.buf[i+len(ToolCallClose):]
		p.state = psText
		return true
	case psBuffer:
		i := strings.Index(p.buf, ToolCallClose)
		if i < 0 {
			return false
		}
		var call struct {
			Name      *string         `json:"name"`
			Arguments json.RawMessage `json:"arguments"`
		}
		body := p.buf[:i]
		if json.Unmarshal([]byte(body), &call) != nil || call.Name == nil || len(call.Arguments) == 0 {
			call.Name = nil
		}
		var quoted string
		if call.Name != nil && json.Unmarshal(call.Arguments, &quoted) == nil {
			call.Arguments = json.RawMessage(quoted) // arguments written as a JSON string
		}
		if call.Name == nil {
			d.Text += ToolCallOpen + body + ToolCallClose // not a call after all
			p.state = psText
		} else {
			d.Calls = append(d.Calls, ToolCallDelta{Index: p.calls, ID: NewToolCallID(), Name: *call.Name,
				Arguments: string(call.Arguments)})
			p.calls++
			p.state = psText
		}
		p.buf = p.buf[i+len(ToolCallClose):]
		return true
	}
	return false
}

// appendArgs adds a piece of arguments of call index to the deltas.
func appendArgs(ds []ToolCallDelta, index int, args string) []ToolCallDelta {
	if n := len(ds); n > 0 && ds[n-1].Index == index {
		ds[n-1].Arguments += args
		return ds
	}
	return append(ds, ToolCallDelta{Index: index, Arguments: args})
}

// scanArgs reads the arguments value in s (its white space before it skipped) and returns
// how many bytes of s belong to the value; p.ended is set once the value is complete.
func (p *ToolCallParser) scanArgs(s string) int {
	i := 0
	for ; i < len(s) && !p.ended; i++ {
		c := s[i]
		if !p.started {
			p.started = true
			switch c {
			case '{', '[':
				p.depth = 1
			case '"':
				p.inString = true
			default: // a scalar: up to the next delimiter
			}
			continue
		}
		switch {
		case p.inString:
			switch {
			case p.esc:
				p.esc = false
			case c == '\\':
				p.esc = true
			case c == '"':
				p.inString = false
				if p.depth == 0 {
					p.ended = true
				}
			}
		case c == '"':
			p.inString = true
		case p.depth == 0: // a scalar ends before a delimiter
			if strings.IndexByte(blanks+",}", c) >= 0 {
				p.ended = true
				return i
			}
		case c == '{' || c == '[':
			p.depth++
		case c == '}' || c == ']':
			p.depth--
			if p.depth == 0 {
				p.ended = true
			}
		}
	}
	return i
}

// head statuses.
const (
	headPartial = iota // s may still become a head
	headDone           // s begins with a head
	headFail           // s cannot begin with a head
)

// readHead reads `{"name": "<name>", "arguments":` (white space allowed between the parts)
// from the start of s: the name, and the bytes the head takes.
func readHead(s string) (name string, n int, status int) {
	i := 0
	ws := func() {
		for i < len(s) && strings.IndexByte(blanks, s[i]) >= 0 {
			i++
		}
	}
	lit := func(l string) int {
		m := min(len(l), len(s)-i)
		if s[i:i+m] != l[:m] {
			return headFail
		}
		if m < len(l) {
			return headPartial
		}
		i += m
		return headDone
	}
	for _, part := range []string{"{", `"name"`, ":"} {
		ws()
		if st := lit(part); st != headDone {
			return "", 0, st
		}
	}
	ws()
	if i == len(s) {
		return "", 0, headPartial
	}
	if s[i] != '"' {
		return "", 0, headFail
	}
	j := i + 1
	for ; j < len(s); j++ {
		if s[j] == '\\' {
			j++
			continue
		}
		if s[j] == '"' {
			break
		}
	}
	if j >= len(s) {
		return "", 0, headPartial
	}
	if json.Unmarshal([]byte(s[i:j+1]), &name) != nil {
		return "", 0, headFail
	}
	i = j + 1
	for _, part := range []string{",", `"arguments"`, ":"} {
		ws()
		if st := lit(part); st != headDone {
			return "", 0, st
		}
	}
	return name, i, headDone
}

// partialSuffix returns the length of the longest suffix of s that is a proper prefix of m.
func partialSuffix(s, m string) int {
	for k := min(len(s), len(m)-1); k > 0; k-- {
		if strings.HasSuffix(s, m[:k]) {
			return k
		}
	}
	return 0
}

// NewToolCallID returns a fresh call ID: "call_" and 24 random letters and digits.
func NewToolCallID() string { return "call_" + rand.Text()[:24] }
