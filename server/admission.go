package server

import (
	"fmt"
	"net/http"

	"github.com/fathom-llm/fathom/mixtral"
)

// tokenBounded is a Model whose tokenizer proves how many bytes of text one token stands for
// at most (a *mixtral.Model does; 0 means no bound), so that a prompt's byte length alone can
// prove it too long for the context.
type tokenBounded interface {
	MaxTokenBytes() int
}

// prepare readies a request's prompts for generation, inside the concurrency limit. It
// enforces the bounds on choices (n times the prompts) and on the tokens they generate
// together, refuses a prompt whose byte length alone proves it too long, tokenizes each prompt
// once (the requests carry the ids on) and checks that prompt and completion fit the context.
// It returns each prompt's tokens. empty says that nothing is to be generated (max_tokens 0);
// param names the prompt parameter ("messages" or "prompt").
func (s *Server) prepare(reqs []mixtral.Request, n int, param string, empty bool) ([]int, *apiError) {
	choices := len(reqs) * n
	if choices > s.opts.MaxChoices {
		return nil, invalid("n", "Too many choices: %d prompts times n = %d is over the %d this server generates for one request.",
			len(reqs), choices, s.opts.MaxChoices)
	}
	ctxLen := s.model.ContextLength()
	counts := make([]int, len(reqs))
	for i := range reqs {
		req := &reqs[i]
		if e := s.byteBound(*req, param, ctxLen, empty); e != nil {
			return nil, e
		}
		ids, err := s.model.PromptIDs(*req)
		if err != nil {
			return nil, invalid(param, "Invalid '%s': %v", param, err)
		}
		if e := contextFits(len(ids), req.Params.MaxTokens, ctxLen, param, empty); e != nil {
			return nil, e
		}
		req.PromptIDs = ids // beside the text they came from: tokenized once
		counts[i] = len(ids)
	}
	if empty {
		return counts, nil
	}
	most := s.opts.MaxRequestTokens
	if most == 0 {
		most = 4 * ctxLen
	}
	for i := range reqs {
		p := &reqs[i].Params
		switch {
		case p.MaxTokens > 0 && choices*p.MaxTokens > most:
			return nil, invalid("max_tokens", "Too many tokens: %d choices of up to %d tokens are over the %d tokens this server generates for one request.",
				choices, p.MaxTokens, most)
		case p.MaxTokens == 0 && choices > 1:
			p.MaxTokens = max(1, most/choices) // an equal share each
		}
	}
	return counts, nil
}

// byteBound refuses a text or chat prompt whose bytes prove that its tokens leave no room in
// the context for a generated token (or, when nothing is to be generated, exceed it).
func (s *Server) byteBound(req mixtral.Request, param string, ctxLen int, empty bool) *apiError {
	tb, ok := s.model.(tokenBounded)
	if !ok {
		return nil
	}
	most := tb.MaxTokenBytes()
	if most <= 0 {
		return nil
	}
	bytes := len(req.Prompt)
	for _, m := range req.Messages {
		bytes += len(m.Content)
	}
	room := 1
	if empty {
		room = 0
	}
	if least := (bytes + most - 1) / most; least+room > ctxLen {
		return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Param: param, Code: "context_length_exceeded",
			Message: fmt.Sprintf("This model's maximum context length is %d tokens. However, your %s has %d bytes, which is at least %d tokens, "+
				"leaving no room for the completion. Please reduce the length of the %s.", ctxLen, param, bytes, least, param)}
	}
	return nil
}

// contextFits checks that a prompt of n tokens and a completion of up to maxTokens (0: at
// least one) fit a context of ctxLen tokens; empty says that nothing is to be generated.
func contextFits(n, maxTokens, ctxLen int, param string, empty bool) *apiError {
	e := &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Param: param, Code: "context_length_exceeded"}
	switch {
	case empty && n > ctxLen:
		e.Message = fmt.Sprintf("This model's maximum context length is %d tokens. However, your %s resulted in %d tokens. "+
			"Please reduce the length of the %s.", ctxLen, param, n, param)
		return e
	case empty:
	case maxTokens == 0 && n+1 > ctxLen: // no room for a single generated token
		e.Message = fmt.Sprintf("This model's maximum context length is %d tokens. However, your %s resulted in %d tokens, "+
			"leaving no room for the completion. Please reduce the length of the %s.", ctxLen, param, n, param)
		return e
	case n+maxTokens > ctxLen:
		e.Message = fmt.Sprintf("This model's maximum context length is %d tokens. However, you requested %d tokens "+
			"(%d in the %s, %d in the completion). Please reduce the length of the %s or completion.",
			ctxLen, n+maxTokens, n, param, maxTokens, param)
		return e
	}
	return nil
}
