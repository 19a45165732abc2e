package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync"
	"unicode"
)

// fieldError is a JSON decoding error tied to one parameter.
type fieldError struct {
	param string
	msg   string
}

func (e *fieldError) Error() string { return e.msg }

// keyError reports an object key that names a parameter only when case is ignored:
// encoding/json would take "Max_Tokens" for max_tokens, the API does not.
type keyError struct {
	path string // where the key is, as the API names parameters ("messages[0].Role")
	want string // the parameter it resembles
}

func (e *keyError) Error() string {
	return fmt.Sprintf("Unrecognized request argument supplied: '%s'. Parameter names are case-sensitive; did you mean '%s'?", e.path, e.want)
}

// readBody reads the whole request body, answering 413 past the size limit and 408 when
// it does not arrive before the read deadline.
func readBody(body io.Reader) ([]byte, *apiError) {
	b, err := io.ReadAll(body)
	var maxErr *http.MaxBytesError
	switch {
	case err == nil:
		return b, nil
	case errors.As(err, &maxErr):
		return nil, errBodyTooLarge(maxErr.Limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, &apiError{Status: http.StatusRequestTimeout, Type: typeInvalidRequest,
			Message: "The request body took too long to arrive."}
	}
	return nil, &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest,
		Message: "Could not read the request body: " + err.Error()}
}

// decodeJSON reads the request body into v, mapping failures to 400 (malformed JSON, a value
// of the wrong type, a parameter name in the wrong case) or 413 (body over the limit).
func decodeJSON(r *http.Request, v any) *apiError {
	body, e := readBody(r.Body)
	if e != nil {
		return e
	}
	return jsonError(unmarshalStrict(body, v, ""))
}

// unmarshalStrict decodes one JSON value from data into v as json.Unmarshal does, but object
// keys must name fields exactly (not up to case) and nothing may follow the value. path names
// the value's place in the request, for errors.
func unmarshalStrict(data []byte, v any, path string) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("unexpected data after the JSON object")
		}
	}
	if err != nil {
		return err
	}
	return checkKeys(data, reflect.TypeOf(v), path)
}

// jsonError maps a decoding error to the answer for the client (nil for nil).
func jsonError(err error) *apiError {
	if err == nil {
		return nil
	}
	var (
		typeErr *json.UnmarshalTypeError
		fErr    *fieldError
		kErr    *keyError
	)
	switch {
	case errors.As(err, &kErr):
		return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Param: kErr.path,
			Code: "unknown_parameter", Message: kErr.Error()}
	case errors.As(err, &fErr):
		return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Param: fErr.param,
			Code: "invalid_type", Message: fErr.msg}
	case errors.As(err, &typeErr) && typeErr.Field != "":
		// Fields of the embedded commonRequest carry its name in the path.
		typeErr.Field = strings.ReplaceAll(typeErr.Field, "commonRequest.", "")
		return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Param: typeErr.Field,
			Code: "invalid_type", Message: fmt.Sprintf("Invalid type for '%s': expected %s, got a JSON %s.",
				typeErr.Field, jsonTypeName(typeErr.Type.Kind().String()), typeErr.Value)}
	case errors.Is(err, io.EOF):
		err = errors.New("the body is empty")
	}
	return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest,
		Message: "We could not parse the JSON body of your request: " + err.Error() +
			". The API expects a JSON object."}
}

// unmarshalerType is the interface of types that decode themselves; checkKeys leaves their
// values (json.RawMessage among them) to them.
var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// foldKey folds a key as encoding/json does when it matches keys to fields, so that every key
// it would take for a field is found ("ſtop" is "stop" to it, as is "STOP").
func foldKey(k string) string {
	return strings.Map(func(r rune) rune { return unicode.ToUpper(unicode.ToLower(r)) }, k)
}

// fieldNames maps each struct type to its JSON field names, keyed by foldKey.
var fieldNames sync.Map // reflect.Type -> map[string]string

// jsonFields returns t's JSON field names (embedded structs' included), keyed by foldKey.
func jsonFields(t reflect.Type) map[string]string {
	if m, ok := fieldNames.Load(t); ok {
		return m.(map[string]string)
	}
	m := map[string]string{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			for k, v := range jsonFields(f.Type) {
				m[k] = v
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[foldKey(name)] = name
	}
	fieldNames.Store(t, m)
	return m
}

// fieldType returns the type of t's field with the given JSON name (embedded included).
func fieldType(t reflect.Type, name string) (reflect.Type, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && tag == "" && f.Type.Kind() == reflect.Struct {
			if ft, ok := fieldType(f.Type, name); ok {
				return ft, true
			}
			continue
		}
		if tag == name || (tag == "" && f.Name == name) {
			return f.Type, true
		}
	}
	return nil, false
}

// checkKeys walks the JSON value data (already known to decode into t) and returns a
// *keyError for the first object key that matches a field of the Go type only up to case.
func checkKeys(data []byte, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		if reflect.PointerTo(t).Implements(unmarshalerType) {
			return nil
		}
		t = t.Elem()
	}
	if t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] == 'n' { // null
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		var obj map[string]json.RawMessage
		if json.Unmarshal(data, &obj) != nil {
			return nil
		}
		names := jsonFields(t)
		for k, v := range obj {
			exact, ok := names[foldKey(k)]
			switch {
			case !ok:
				continue // unknown parameters are ignored, as the API does
			case exact != k:
				return &keyError{path: joinPath(path, k), want: joinPath(path, exact)}
			}
			ft, _ := fieldType(t, exact)
			if err := checkKeys(v, ft, joinPath(path, k)); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		var items []json.RawMessage
		if json.Unmarshal(data, &items) != nil {
			return nil
		}
		for i, it := range items {
			if err := checkKeys(it, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		var obj map[string]json.RawMessage
		if json.Unmarshal(data, &obj) != nil {
			return nil
		}
		for k, v := range obj {
			if err := checkKeys(v, t.Elem(), joinPath(path, k)); err != nil {
				return err
			}
		}
	}
	return nil
}

// joinPath appends a key to a parameter path.
func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
