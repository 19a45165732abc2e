// Package server is an OpenAI-compatible HTTP API over a loaded model: an http.Handler that
// serves the hosted chat API's endpoints with its request and response shapes, so that the
// official client libraries and the curl examples of its documentation work unchanged.
//
// Endpoints:
//
//	POST /v1/chat/completions   chat completions, plain or streamed as server-sent events
//	POST /v1/completions        text completions, plain or streamed
//	GET  /v1/models             the served model names
//	GET  /v1/models/{model}     one of them
//	GET  /health                200 while the server runs
//
// Client mistakes are answered with a 4xx status and the API's error envelope,
// {"error": {"message", "type", "param", "code"}}; server faults with 500 and the same
// envelope. A panic while serving one request is recovered and answered with 500.
//
// At most Options.MaxConcurrent requests generate at once; up to Options.QueueLength more wait
// for a turn, and past that a request is refused with 429 and a Retry-After header. A client
// that disconnects cancels its generation at once. To drain in-flight requests on shutdown,
// serve the handler with an http.Server and call its Shutdown method.
package server
