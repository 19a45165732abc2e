package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Error types of the API's error envelope.
const (
	typeInvalidRequest = "invalid_request_error"
	typeServer         = "server_error"
)

// apiError is an error answered to the client: an HTTP status and the API's error envelope.
type apiError struct {
	Status  int
	Message string
	Type    string
	Param   string // empty: null
	Code    string // empty: null
}

func (e *apiError) Error() string { return e.Message }

// envelope is the JSON form of an apiError: {"error": {...}}.
func (e *apiError) envelope() any {
	type body struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	}
	b := body{Message: e.Message, Type: e.Type}
	if e.Param != "" {
		b.Param = &e.Param
	}
	if e.Code != "" {
		b.Code = &e.Code
	}
	return struct {
		Error body `json:"error"`
	}{b}
}

// writeError answers e as a JSON error response.
func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.Status, e.envelope())
}

// marshal encodes v as JSON without escaping <, > and & (generated code is full of them).
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// writeJSON answers v as JSON with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = marshal(errInternal().envelope())
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// invalid returns a 400 for a parameter with an invalid value.
func invalid(param, format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Param: param,
		Code: "invalid_value", Message: fmt.Sprintf(format, args...)}
}

// unsupported returns a 400 for a parameter the server does not implement.
func unsupported(param, format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Param: param,
		Code: "unsupported_parameter", Message: fmt.Sprintf(format, args...)}
}

func errModelNotFound(name string) *apiError {
	return &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Param: "model",
		Code: "model_not_found", Message: fmt.Sprintf("The model `%s` does not exist.", name)}
}

func errBodyTooLarge(limit int64) *apiError {
	return &apiError{Status: http.StatusRequestEntityTooLarge, Type: typeInvalidRequest,
		Message: fmt.Sprintf("The request body is larger than the limit of %d bytes.", limit)}
}

func errInternal() *apiError {
	return &apiError{Status: http.StatusInternalServerError, Type: typeServer,
		Message: "The server had an error while processing your request."}
}

// errCanceled answers a request whose context ended (the client went away or the server is
// shutting down); the client rarely sees it.
func errCanceled(err error) *apiError {
	return &apiError{Status: 499, Type: typeInvalidRequest, Message: "Request cancelled: " + err.Error()}
}

// fieldError is a JSON decoding error tied to one parameter.
type fieldError struct {
	param string
	msg   string
}

func (e *fieldError) Error() string { return e.msg }

// decodeJSON reads the request body into v, mapping failures to 400 (malformed JSON, a value
// of the wrong type) or 413 (body over the limit).
func decodeJSON(r *http.Request, v any) *apiError {
	dec := json.NewDecoder(r.Body)
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("unexpected data after the JSON object")
		}
	}
	if err == nil {
		return nil
	}
	var (
		maxErr  *http.MaxBytesError
		typeErr *json.UnmarshalTypeError
		fErr    *fieldError
	)
	switch {
	case errors.As(err, &maxErr):
		return errBodyTooLarge(maxErr.Limit)
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

// jsonTypeName names a Go kind as a JSON type.
func jsonTypeName(kind string) string {
	switch {
	case strings.HasPrefix(kind, "int"), strings.HasPrefix(kind, "uint"):
		return "an integer"
	case strings.HasPrefix(kind, "float"):
		return "a number"
	case kind == "bool":
		return "a boolean"
	case kind == "string":
		return "a string"
	case kind == "slice":
		return "an array"
	default:
		return "an object"
	}
}
