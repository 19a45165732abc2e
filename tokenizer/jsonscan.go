package tokenizer

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// The vocabulary and merges make up almost all of a tokenizer.json. These scanners read the
// two shapes directly, several times faster than reflection; any surprise sends the caller
// back to encoding/json, which then reports the error.

type jsonScanner struct {
	b   []byte
	pos int
}

func (s *jsonScanner) ws() {
	for s.pos < len(s.b) {
		switch s.b[s.pos] {
		case ' ', '\t', '\r', '\n':
			s.pos++
		default:
			return
		}
	}
}

// next skips white space and consumes c, reporting whether it was there.
func (s *jsonScanner) next(c byte) bool {
	s.ws()
	if s.pos < len(s.b) && s.b[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

func (s *jsonScanner) str() (string, bool) {
	s.ws()
	if s.pos >= len(s.b) || s.b[s.pos] != '"' {
		return "", false
	}
	start := s.pos
	escaped := false
	for i := start + 1; i < len(s.b); i++ {
		switch c := s.b[i]; {
		case c == '\\':
			escaped = true
			i++
		case c < 0x20:
			return "", false
		case c == '"':
			s.pos = i + 1
			if !escaped && utf8.Valid(s.b[start+1:i]) {
				return string(s.b[start+1 : i]), true
			}
			var out string
			if json.Unmarshal(s.b[start:i+1], &out) != nil {
				return "", false
			}
			return out, true
		}
	}
	return "", false
}

func (s *jsonScanner) int32() (int32, bool) {
	s.ws()
	start := s.pos
	if s.pos < len(s.b) && s.b[s.pos] == '-' {
		s.pos++
	}
	for s.pos < len(s.b) && s.b[s.pos] >= '0' && s.b[s.pos] <= '9' {
		s.pos++
	}
	v, err := strconv.ParseInt(string(s.b[start:s.pos]), 10, 32)
	return int32(v), err == nil
}

func (s *jsonScanner) end() bool {
	s.ws()
	return s.pos == len(s.b)
}

// scanVocab reads {"token": id, ...}.
func scanVocab(raw []byte) (map[string]int32, bool) {
	s := &jsonScanner{b: raw}
	m := make(map[string]int32, len(raw)/16)
	if !s.next('{') {
		return nil, false
	}
	if s.next('}') {
		return m, s.end()
	}
	for {
		k, ok := s.str()
		if !ok || !s.next(':') {
			return nil, false
		}
		v, ok := s.int32()
		if !ok {
			return nil, false
		}
		m[k] = v
		if s.next('}') {
			return m, s.end()
		}
		if !s.next(',') {
			return nil, false
		}
	}
}

// scanMerges reads ["a b", ...] or [["a", "b"], ...].
func scanMerges(raw []byte) ([][2]string, bool) {
	s := &jsonScanner{b: raw}
	var out [][2]string
	if !s.next('[') {
		return nil, false
	}
	if s.next(']') {
		return out, s.end()
	}
	for {
		var p [2]string
		if s.next('[') {
			a, ok1 := s.str()
			ok2 := s.next(',')
			b, ok3 := s.str()
			if !ok1 || !ok2 || !ok3 || !s.next(']') {
				return nil, false
			}
			p = [2]string{a, b}
		} else {
			str, ok := s.str()
			if !ok {
				return nil, false
			}
			a, b, found := cutSpace(str)
			if !found {
				return nil, false
			}
			p = [2]string{a, b}
		}
		out = append(out, p)
		if s.next(']') {
			return out, s.end()
		}
		if !s.next(',') {
			return nil, false
		}
	}
}

// cutSpace splits an old-style merge "a b" at its one space.
func cutSpace(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			for j := i + 1; j < len(s); j++ {
				if s[j] == ' ' {
					return "", "", false
				}
			}
			return s[:i], s[i+1:], true
		}
	}
	return "", "", false
}
