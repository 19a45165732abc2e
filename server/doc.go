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
// The same endpoints answer under the hosted API's prefix too: /v1/openai/chat/completions,
// /v1/openai/completions, /v1/openai/models.
//
// Chat requests may give functions ("tools", or the deprecated "functions") and say whether
// the reply calls them ("tool_choice": "none", the default without tools; "auto", the default
// with them; "required"; or one named function). The conversation carries the assistant's
// calls ("tool_calls", content null) and their results (role "tool" with the "tool_call_id"
// of an earlier call). The prompt describes the functions with the checkpoint's chat template
// when it takes tools, otherwise in tokenizer.ChatMLTools, where the model writes each call as
// <tool_call>{"name": ..., "arguments": {...}}</tool_call>. Replies are decoded under a
// constraint (package sampling/constrain): with "required" or a named function the reply is
// one or more calls whose arguments satisfy the function's parameters schema
// ("parallel_tool_calls": false allows one); with "auto" the model writes text, or calls from
// <tool_call> on; with "none" nothing is read as a call. Calls are answered as the hosted API
// does: message.tool_calls [{id "call_...", type "function", function {name, arguments}}],
// content null without text, finish_reason "tool_calls"; streamed, a call's first delta
// carries its index, id and name and the next ones its arguments in pieces.
//
// "response_format" {"type": "json_object"} or {"type": "json_schema", "json_schema": {name,
// schema, strict}} constrains chat and text completion replies to JSON (of the schema). A
// schema the constraints cannot enforce is refused with 400 naming the keyword. Constrained
// decoding needs a model with a tokenizer (a *mixtral.Model has one, through its Tokenizer
// method; another Model may provide Vocab() *constrain.Vocab).
//
// Usage carries estimated_cost, in US dollars, from Options.PriceInput and PriceOutput.
//
// Requests are validated as the hosted API does: parameter names match exactly (not up to
// case), explicit values outside the ranges are refused (seed below 0, top_p 0,
// repetition_penalty 0, top_k below 0), and max_tokens 0 generates nothing and answers the
// prompt's usage with finish_reason "length". A request body must arrive within
// Options.BodyTimeout.
//
// Client mistakes are answered with a 4xx status and the API's error envelope,
// {"error": {"message", "type", "param", "code"}}; server faults with 500 and the same
// envelope. A panic while serving one request is recovered and answered with 500.
//
// At most Options.MaxConcurrent requests generate at once; up to Options.QueueLength more wait
// for a turn, and past that a request is refused with 429 and a Retry-After header. A client
// that disconnects cancels its generation at once. To drain in-flight requests on shutdown,
// serve the handler with an http.Server and call its Shutdown method; when its wait runs out,
// Server.Stop ends the requests still running, streams with an error event rather than a
// silent cut.
package server
