package safetensors

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// MaxHeaderSize is the largest header the format allows, in bytes.
const MaxHeaderSize = 100_000_000

const metadataKey = "__metadata__"

// header is a parsed and validated file header.
type header struct {
	meta    map[string]string
	tensors []Tensor // in the order of their data offsets, Data set by parse
}

// entry is one tensor of a header before validation.
type entry struct {
	name       string
	dtype      DType
	shape      []int
	begin, end uint64
}

// parse validates the whole contents of a safetensors file, buf, and returns its header with
// each tensor's Data a subslice of buf. file names the file in errors.
func parse(file string, buf []byte) (*header, error) {
	fail := func(tensor string, err error, format string, args ...any) error {
		return &FormatError{File: file, Tensor: tensor, Err: err, Detail: fmt.Sprintf(format, args...)}
	}
	if len(buf) < 8 {
		return nil, fail("", ErrHeaderTooSmall, "%d bytes", len(buf))
	}
	n := binary.LittleEndian.Uint64(buf)
	if n > MaxHeaderSize {
		return nil, fail("", ErrHeaderTooLarge, "%d bytes", n)
	}
	if n > uint64(len(buf)-8) {
		return nil, fail("", ErrHeaderLength, "header of %d bytes in a file of %d", n, len(buf))
	}
	raw := buf[8 : 8+n]
	data := buf[8+n:]
	if !utf8.Valid(raw) {
		return nil, fail("", ErrInvalidUTF8, "")
	}
	h, entries, err := decodeHeader(raw)
	if err != nil {
		var fe *FormatError
		if errors.As(err, &fe) {
			fe.File = file
			return nil, fe
		}
		return nil, fail("", ErrInvalidJSON, "%v", err)
	}

	for _, e := range entries {
		if e.end < e.begin {
			return nil, fail(e.name, ErrInvalidOffsets, "[%d, %d) runs backwards", e.begin, e.end)
		}
	}
	slices.SortStableFunc(entries, func(a, b entry) int {
		return cmp.Or(cmp.Compare(a.begin, b.begin), cmp.Compare(a.end, b.end))
	})
	var pos uint64
	h.tensors = make([]Tensor, len(entries))
	for i, e := range entries {
		switch {
		case e.begin < pos:
			return nil, fail(e.name, ErrInvalidOffsets, "[%d, %d) overlaps the tensor before, which ends at %d", e.begin, e.end, pos)
		case e.begin > pos:
			return nil, fail(e.name, ErrInvalidOffsets, "gap of %d bytes before [%d, %d)", e.begin-pos, e.begin, e.end)
		}
		size, err := byteLen(e.dtype, e.shape)
		if err != nil {
			return nil, fail(e.name, err, "%s %v", e.dtype, e.shape)
		}
		if e.end-e.begin != uint64(size) {
			return nil, fail(e.name, ErrShapeMismatch, "%s %v takes %d bytes, offsets [%d, %d) give %d", e.dtype, e.shape, size, e.begin, e.end, e.end-e.begin)
		}
		if e.end > uint64(len(data)) {
			return nil, fail(e.name, ErrInvalidOffsets, "[%d, %d) runs past the %d bytes of data", e.begin, e.end, len(data))
		}
		pos = e.end
		h.tensors[i] = Tensor{Name: e.name, DType: e.dtype, Shape: e.shape, Data: data[e.begin:e.end:e.end]}
	}
	if pos != uint64(len(data)) {
		return nil, fail("", ErrTrailingBytes, "%d bytes after the last tensor", uint64(len(data))-pos)
	}
	return h, nil
}

// decodeHeader decodes the JSON header strictly: an object whose first byte is '{', no
// duplicate keys, no trailing text but whitespace. Errors that are not *FormatError are JSON
// syntax errors.
func decodeHeader(raw []byte) (*header, []entry, error) {
	if len(raw) == 0 || raw[0] != '{' {
		return nil, nil, fmt.Errorf("header does not start with '{'")
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := expectDelim(d, '{'); err != nil {
		return nil, nil, err
	}
	h := &header{}
	var entries []entry
	seen := map[string]bool{}
	for d.More() {
		name, err := stringToken(d)
		if err != nil {
			return nil, nil, err
		}
		if seen[name] {
			return nil, nil, &FormatError{Tensor: name, Err: ErrDuplicateName}
		}
		seen[name] = true
		if name == metadataKey {
			if h.meta, err = decodeMetadata(d); err != nil {
				return nil, nil, err
			}
			continue
		}
		e, err := decodeEntry(d, name)
		if err != nil {
			return nil, nil, err
		}
		entries = append(entries, e)
	}
	if err := expectDelim(d, '}'); err != nil {
		return nil, nil, err
	}
	if rest := bytes.Trim(raw[d.InputOffset():], " \t\r\n"); len(rest) != 0 {
		return nil, nil, fmt.Errorf("text after the header object: %.20q", rest)
	}
	return h, entries, nil
}

// decodeMetadata decodes the value of __metadata__: null or an object of strings.
func decodeMetadata(d *json.Decoder) (map[string]string, error) {
	tok, err := d.Token()
	if err != nil {
		return nil, err
	}
	if tok == nil {
		return nil, nil
	}
	if tok != json.Delim('{') {
		return nil, &FormatError{Err: ErrInvalidMetadata, Detail: fmt.Sprintf("got %v", tok)}
	}
	meta := map[string]string{}
	for d.More() {
		k, err := stringToken(d)
		if err != nil {
			return nil, err
		}
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		v, ok := tok.(string)
		if !ok {
			return nil, &FormatError{Err: ErrInvalidMetadata, Detail: fmt.Sprintf("value of %q is %v", k, tok)}
		}
		if _, dup := meta[k]; dup {
			return nil, &FormatError{Err: ErrInvalidMetadata, Detail: fmt.Sprintf("duplicate key %q", k)}
		}
		meta[k] = v
	}
	return meta, expectDelim(d, '}')
}

// decodeEntry decodes one tensor's {"dtype", "shape", "data_offsets"} object. Other keys are
// ignored, as the reference does.
func decodeEntry(d *json.Decoder, name string) (entry, error) {
	e := entry{name: name}
	bad := func(err error, format string, args ...any) (entry, error) {
		return e, &FormatError{Tensor: name, Err: err, Detail: fmt.Sprintf(format, args...)}
	}
	if err := expectDelim(d, '{'); err != nil {
		return bad(ErrInvalidJSON, "%v", err)
	}
	var have [3]bool
	for d.More() {
		key, err := stringToken(d)
		if err != nil {
			return bad(ErrInvalidJSON, "%v", err)
		}
		var field int
		switch key {
		case "dtype":
			tok, err := d.Token()
			if err != nil {
				return bad(ErrInvalidJSON, "%v", err)
			}
			s, ok := tok.(string)
			if !ok {
				return bad(ErrInvalidJSON, "dtype is %v", tok)
			}
			if e.dtype = DType(s); !e.dtype.Valid() {
				return bad(ErrUnknownDType, "%q", s)
			}
			field = 0
		case "shape":
			dims, err := uintArray(d, name, -1)
			if err != nil {
				return e, err
			}
			e.shape = make([]int, len(dims))
			for i, v := range dims {
				if v > math.MaxInt {
					return bad(ErrOverflow, "dimension %d", v)
				}
				e.shape[i] = int(v)
			}
			field = 1
		case "data_offsets":
			offs, err := uintArray(d, name, 2)
			if err != nil {
				return e, err
			}
			e.begin, e.end = offs[0], offs[1]
			field = 2
		default:
			var skip json.RawMessage
			if err := d.Decode(&skip); err != nil {
				return bad(ErrInvalidJSON, "%v", err)
			}
			continue
		}
		if have[field] {
			return bad(ErrInvalidJSON, "duplicate field %q", key)
		}
		have[field] = true
	}
	if err := expectDelim(d, '}'); err != nil {
		return bad(ErrInvalidJSON, "%v", err)
	}
	for i, f := range []string{"dtype", "shape", "data_offsets"} {
		if !have[i] {
			return bad(ErrInvalidJSON, "missing field %q", f)
		}
	}
	return e, nil
}

// uintArray decodes a JSON array of non-negative integers, of length n unless n < 0.
func uintArray(d *json.Decoder, name string, n int) ([]uint64, error) {
	bad := func(format string, args ...any) ([]uint64, error) {
		return nil, &FormatError{Tensor: name, Err: ErrInvalidJSON, Detail: fmt.Sprintf(format, args...)}
	}
	if err := expectDelim(d, '['); err != nil {
		return bad("%v", err)
	}
	var out []uint64
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return bad("%v", err)
		}
		num, ok := tok.(json.Number)
		if !ok {
			return bad("%v is not a number", tok)
		}
		v, err := strconv.ParseUint(string(num), 10, 64)
		if err != nil {
			return bad("%s is not an unsigned 64-bit integer", num)
		}
		out = append(out, v)
	}
	if err := expectDelim(d, ']'); err != nil {
		return bad("%v", err)
	}
	if n >= 0 && len(out) != n {
		return bad("%d numbers, want %d", len(out), n)
	}
	if out == nil {
		out = []uint64{}
	}
	return out, nil
}

func expectDelim(d *json.Decoder, want json.Delim) error {
	tok, err := d.Token()
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	if err != nil {
		return err
	}
	if tok != want {
		return fmt.Errorf("got %v, want %v", tok, want)
	}
	return nil
}

func stringToken(d *json.Decoder) (string, error) {
	tok, err := d.Token()
	if err == io.EOF {
		return "", io.ErrUnexpectedEOF
	}
	if err != nil {
		return "", err
	}
	s, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("got %v, want a string", tok)
	}
	return s, nil
}
