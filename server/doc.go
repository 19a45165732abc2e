// Package server is an OpenAI-compatible HTTP API (an http.Handler) over a loaded model.
package server
