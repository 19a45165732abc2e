package constrain

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf8"
)

// jv is a parsed JSON value that keeps the order of object members (a schema's property
// order is the order generated).
type jv struct {
	kind jkind
	b    bool
	s    string // a string, or a number's literal text
	arr  []*jv
	keys []string
	vals []*jv
}

type jkind uint8

const (
	jNull jkind = iota
	jBool
	jNum
	jStr
	jArr
	jObj
)

// maxJSONDepth bounds the nesting of a schema document.
const maxJSONDepth = 256

func parseJV(data []byte) (*jv, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	v, err := readJV(d, 0)
	if err != nil {
		return nil, err
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("data after the value")
	}
	return v, nil
}

func readJV(d *json.Decoder, depth int) (*jv, error) {
	if depth > maxJSONDepth {
		return nil, fmt.Errorf("nested deeper than %d", maxJSONDepth)
	}
	t, err := d.Token()
	if err != nil {
		return nil, err
	}
	switch t := t.(type) {
	case nil:
		return &jv{kind: jNull}, nil
	case bool:
		return &jv{kind: jBool, b: t}, nil
	case json.Number:
		return &jv{kind: jNum, s: t.String()}, nil
	case string:
		return &jv{kind: jStr, s: t}, nil
	case json.Delim:
		switch t {
		case '[':
			v := &jv{kind: jArr}
			for d.More() {
				e, err := readJV(d, depth+1)
				if err != nil {
					return nil, err
				}
				v.arr = append(v.arr, e)
			}
			_, err := d.Token()
			return v, err
		case '{':
			v := &jv{kind: jObj}
			for d.More() {
				k, err := d.Token()
				if err != nil {
					return nil, err
				}
				key, _ := k.(string)
				for _, o := range v.keys {
					if o == key {
						return nil, fmt.Errorf("duplicate key %q", key)
					}
				}
				e, err := readJV(d, depth+1)
				if err != nil {
					return nil, err
				}
				v.keys, v.vals = append(v.keys, key), append(v.vals, e)
			}
			_, err := d.Token()
			return v, err
		}
	}
	return nil, fmt.Errorf("unexpected %v", t)
}

// get returns the member key of an object, or nil.
func (v *jv) get(key string) *jv {
	if v == nil || v.kind != jObj {
		return nil
	}
	for i, k := range v.keys {
		if k == key {
			return v.vals[i]
		}
	}
	return nil
}

// with returns a copy of object v with member key set to val (removed when val is nil).
func (v *jv) with(key string, val *jv) *jv {
	out := &jv{kind: jObj}
	found := false
	for i, k := range v.keys {
		if k == key {
			found = true
			if val == nil {
				continue
			}
			out.keys, out.vals = append(out.keys, k), append(out.vals, val)
			continue
		}
		out.keys, out.vals = append(out.keys, k), append(out.vals, v.vals[i])
	}
	if !found && val != nil {
		out.keys, out.vals = append(out.keys, key), append(out.vals, val)
	}
	return out
}

// rat returns the value of a number; false for a number whose exponent is beyond ±1000,
// which would take exact arithmetic too long.
func (v *jv) rat() (*big.Rat, bool) {
	if v == nil || v.kind != jNum {
		return nil, false
	}
	if i := strings.IndexAny(v.s, "eE"); i >= 0 {
		if e, err := strconv.Atoi(strings.TrimPrefix(v.s[i+1:], "+")); err != nil || e > 1000 || e < -1000 {
			return nil, false
		}
	}
	return new(big.Rat).SetString(v.s)
}

// appendJSON appends the compact JSON text of v.
func (v *jv) appendJSON(b []byte) []byte {
	switch v.kind {
	case jNull:
		return append(b, "null"...)
	case jBool:
		return strconv.AppendBool(b, v.b)
	case jNum:
		return append(b, v.s...)
	case jStr:
		return appendJSONString(b, v.s)
	case jArr:
		b = append(b, '[')
		for i, e := range v.arr {
			if i > 0 {
				b = append(b, ',')
			}
			b = e.appendJSON(b)
		}
		return append(b, ']')
	}
	b = append(b, '{')
	for i, k := range v.keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = v.vals[i].appendJSON(b)
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string: '"', '\' and controls escaped, the rest as
// it is (invalid UTF-8 as U+FFFD).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == utf8.RuneError:
			b = utf8.AppendRune(b, r)
		case r < 0x20 || r == '"' || r == '\\':
			b = append(b, jsonEscape(r)...)
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}

func (v *jv) String() string { return string(v.appendJSON(nil)) }

// equal reports whether a and b are the same JSON value (numbers by value, objects by
// members in any order).
func (a *jv) equal(b *jv) bool {
	if a.kind != b.kind {
		return false
	}
	switch a.kind {
	case jNull:
		return true
	case jBool:
		return a.b == b.b
	case jStr:
		return a.s == b.s
	case jNum:
		x, ok1 := a.rat()
		y, ok2 := b.rat()
		return ok1 && ok2 && x.Cmp(y) == 0
	case jArr:
		if len(a.arr) != len(b.arr) {
			return false
		}
		for i := range a.arr {
			if !a.arr[i].equal(b.arr[i]) {
				return false
			}
		}
		return true
	}
	if len(a.keys) != len(b.keys) {
		return false
	}
	for i, k := range a.keys {
		o := b.get(k)
		if o == nil || !a.vals[i].equal(o) {
			return false
		}
	}
	return true
}
