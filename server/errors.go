package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// errStopping answers a request that Server.Stop ended or refused.
func errStopping() *apiError {
	return &apiError{Status: http.StatusServiceUnavailable, Type: typeServer,
		Message: "The server is shutting down; the request was stopped before it finished."}
}

// errCanceled answers a request whose context ended: 503 when Server.Stop ended it, else
// (the client went away) a status the client rarely sees.
func errCanceled(ctx context.Context) *apiError {
	if errors.Is(context.Cause(ctx), errStopped) {
		return errStopping()
	}
	return &apiError{Status: 499, Type: typeInvalidRequest, Message: "Request cancelled: " + context.Cause(ctx).Error()}
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
