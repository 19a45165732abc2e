package server

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"iter"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/fathom-llm/fathom/mixtral"
	"github.com/fathom-llm/fathom/sampling"
	"github.com/fathom-llm/fathom/sampling/constrain"
)

// fakeVocab is the fake model's vocabulary: id 0 is bos, 1 is eos, 2 and 3 are the two
// bytes of "é" (byte-fallback style), the rest are words.
var fakeVocab = []string{"", "", "\xc3", "\xa9", " alpha", " beta", " gamma", " delta", ",", ".",
	" one", " two", " three", " four", " five", " six", " seven", " eight", " nine", " ten"}

const fakeEOS = 1

// fakeExtra extends the vocabulary for constrained generation: printable ASCII, a newline
// and a few longer pieces of tool calls. Unconstrained generation never draws them.
var fakeExtra = func() []string {
	out := []string{"\n", "<tool_call>", "</tool_call>", `{"`, `": `, `", "`, `"name"`, `"arguments"`,
		"get_weather", "city", "Paris", "sunny"}
	for c := byte(0x20); c < 0x7f; c++ {
		out = append(out, string(c))
	}
	return out
}()

// fakeAll is the whole vocabulary of the fake model.
var fakeAll = append(append([]string(nil), fakeVocab...), fakeExtra...)

// fakeVocabulary is the fake model's vocabulary for constraints: bos and eos left out.
var fakeVocabulary = sync.OnceValue(func() *constrain.Vocab {
	tokens := make([][]byte, len(fakeAll))
	for id, t := range fakeAll {
		if id != 0 && id != fakeEOS {
			tokens[id] = []byte(t)
		}
	}
	return constrain.NewVocab(tokens)
})

// fakeModel is a deterministic Model for tests. Its output is a function of the prompt's
// token count, the seed and the step (or a fixed script); it honours MaxTokens, Stop and
// the context length, holds back text that could start a stop string, and records how its
// generations ended. Prompts containing these words change its behaviour:
//
//	PANIC-COUNT   CountPromptTokens panics
//	PANIC-STREAM  Stream panics before its first token
//	FAIL-EARLY    Stream fails before its first token
//	FAIL-LATE     Stream fails after two tokens
type fakeModel struct {
	ctxLen int
	delay  time.Duration // before each token
	script []int         // when set: these ids, then eos
	// panicText makes TokenText panic (it runs in the request's own goroutine).
	panicText bool

	// want, when set, is the reply the model writes, as far as a constraint allows; where it
	// does not, the model writes the first allowed of fakePreferred.
	want string

	last atomic.Pointer[mixtral.Request] // the last request streamed

	unseeded  atomic.Int64 // varies the output of requests without a seed
	started   atomic.Int64
	active    atomic.Int64
	cancelled atomic.Int64 // generations that ended because ctx was cancelled
	completed atomic.Int64
	cancelCh  chan struct{} // receives one value per cancelled generation, when not nil
}

func newFake() *fakeModel { return &fakeModel{ctxLen: 256} }

func (f *fakeModel) ContextLength() int { return f.ctxLen }

func (f *fakeModel) TokenText(id int) string {
	if f.panicText {
		panic("fake: TokenText")
	}
	if id < 0 || id >= len(fakeAll) {
		return ""
	}
	return fakeAll[id]
}

// Vocab makes the fake model support constrained decoding.
func (f *fakeModel) Vocab() *constrain.Vocab { return fakeVocabulary() }

// fakePreferred is the order in which the fake model picks tokens that its wanted reply
// does not give: whatever closes JSON values first, so that constrained replies end soon.
const fakePreferred = "\"}],:{[0a<\n "

// pickAllowed returns the token the fake model writes next under a constraint (st, nil for
// none), given what it wrote so far: the longest allowed token that continues f.want, else
// eos where the constraint accepts the end, else the first allowed of fakePreferred, else the
// first allowed token.
func (f *fakeModel) pickAllowed(st sampling.ConstraintState, mask []uint64, written string) (int, error) {
	allowed := func(id int) bool { return id != 0 && id != fakeEOS }
	if st != nil {
		if err := st.Allow(mask); err != nil {
			return -1, err
		}
		allowed = func(id int) bool { return id != 0 && id != fakeEOS && mask[id/64]&(1<<(id%64)) != 0 }
	}
	rest := ""
	if strings.HasPrefix(f.want, written) {
		rest = f.want[len(written):]
	}
	best := -1
	for id, t := range fakeAll {
		if allowed(id) && t != "" && strings.HasPrefix(rest, t) && (best < 0 || len(t) > len(fakeAll[best])) {
			best = id
		}
	}
	switch {
	case best >= 0:
		return best, nil
	case st == nil || st.Accepting():
		return fakeEOS, nil
	}
	for _, c := range fakePreferred {
		for id, t := range fakeAll {
			if t == string(c) && allowed(id) {
				return id, nil
			}
		}
	}
	for id := range fakeAll {
		if allowed(id) {
			return id, nil
		}
	}
	return -1, errors.New("fake: the constraint allows no token")
}

// promptText returns the text a request's prompt is made of.
func promptText(req mixtral.Request) string {
	var b strings.Builder
	for _, m := range req.Messages {
		b.WriteString(m.Role + ": " + m.Content + "\n")
	}
	b.WriteString(req.Prompt)
	return b.String()
}

// PromptIDs counts words: each message costs its words plus 4 for the template, plus 3 for
// the generation prompt; a text prompt costs its words plus 1 for bos. The ids themselves
// are all 4.
func (f *fakeModel) PromptIDs(req mixtral.Request) ([]int, error) {
	if strings.Contains(promptText(req), "PANIC-COUNT") {
		panic("fake: PANIC-COUNT")
	}
	n := 0
	switch {
	case req.Messages != nil:
		n = 3
		for _, m := range req.Messages {
			n += len(strings.Fields(m.Content)) + 4
		}
	case req.PromptIDs != nil:
		for _, id := range req.PromptIDs {
			if id < 0 || id >= len(fakeVocab) {
				return nil, fmt.Errorf("%w: token id %d outside the vocabulary", mixtral.ErrRequest, id)
			}
		}
		return req.PromptIDs, nil
	default:
		n = len(strings.Fields(req.Prompt)) + 1
	}
	ids := make([]int, n)
	for i := range ids {
		ids[i] = 4
	}
	return ids, nil
}

// next returns the token for step k.
func (f *fakeModel) next(seed int64, prompt, k int) int {
	if f.script != nil {
		if k < len(f.script) {
			return f.script[k]
		}
		return fakeEOS
	}
	h := fnv.New64a()
	var b [24]byte
	for i, v := range []int64{seed, int64(prompt), int64(k)} {
		for j := range 8 {
			b[i*8+j] = byte(v >> (8 * j))
		}
	}
	h.Write(b[:])
	id := 2 + int(h.Sum64()%uint64(len(fakeVocab)-2))
	if id == 3 { // "\xa9" only ever follows "\xc3"
		id = 4
	}
	return id
}

func (f *fakeModel) Stream(ctx context.Context, req mixtral.Request) iter.Seq2[mixtral.Event, error] {
	return func(yield func(mixtral.Event, error) bool) {
		f.last.Store(&req)
		f.started.Add(1)
		f.active.Add(1)
		defer f.active.Add(-1)
		text := promptText(req)
		if strings.Contains(text, "PANIC-STREAM") {
			panic("fake: PANIC-STREAM")
		}
		if strings.Contains(text, "FAIL-EARLY") {
			yield(mixtral.Event{}, errors.New("fake: failed early"))
			return
		}
		ids, err := f.PromptIDs(req)
		if err == nil {
			_, err = sampling.NewSampler(req.Params, len(fakeVocab), ids)
		}
		if err != nil {
			yield(mixtral.Event{}, err)
			return
		}
		prompt := len(ids)
		p := req.Params
		seed := int64(0)
		switch {
		case p.Temperature < 1e-5: // greedy: the seed does not matter
		case p.Seed != nil:
			seed = *p.Seed
		default:
			seed = f.unseeded.Add(1) << 32
		}
		limit := f.ctxLen - prompt
		if p.MaxTokens > 0 && p.MaxTokens < limit {
			limit = p.MaxTokens
		}
		holdBack := 0
		for _, s := range p.Stop {
			holdBack = max(holdBack, len(s)-1)
		}
		var out strings.Builder
		emitted, prev := 0, -1
		var cons sampling.ConstraintState
		var mask []uint64
		if req.Constraint != nil {
			cons, mask = req.Constraint.NewState(), make([]uint64, sampling.MaskWords(len(fakeAll)))
		}
		// cancelled counts a generation stopped by its context.
		cancelled := func() {
			f.cancelled.Add(1)
			if f.cancelCh != nil {
				f.cancelCh <- struct{}{}
			}
		}
		done := func(reason sampling.FinishReason, n int, last mixtral.Event) {
			f.completed.Add(1)
			last.Done, last.FinishReason = true, reason
			last.Usage = mixtral.Usage{PromptTokens: prompt, CompletionTokens: n, TotalTokens: prompt + n,
				PromptTokensDetails: mixtral.PromptTokensDetails{CachedTokens: prompt / 2}}
			yield(last, nil)
		}
		for k := 0; ; k++ {
			if k == 2 && strings.Contains(text, "FAIL-LATE") {
				yield(mixtral.Event{}, errors.New("fake: failed late"))
				return
			}
			if f.delay > 0 {
				t := time.NewTimer(f.delay)
				select {
				case <-t.C:
				case <-ctx.Done():
				}
				t.Stop()
			}
			if err := ctx.Err(); err != nil {
				cancelled()
				yield(mixtral.Event{ID: -1}, err)
				return
			}
			id := f.next(seed, prompt, k)
			if prev == 2 && f.script == nil {
				id = 3
			}
			if cons != nil || f.want != "" {
				var err error
				if id, err = f.pickAllowed(cons, mask, out.String()); err == nil && id != fakeEOS && cons != nil {
					err = cons.Advance(id)
				}
				if err != nil {
					yield(mixtral.Event{}, err)
					return
				}
			}
			prev = id
			ev := mixtral.Event{ID: id}
			if p.Logprobs {
				lp := &sampling.Logprobs{Chosen: sampling.TokenLogprob{ID: id, Logprob: -0.25 * float64(k%4+1)}}
				for j := range p.TopLogprobs {
					lp.Top = append(lp.Top, sampling.TokenLogprob{ID: 2 + (id+j)%(len(fakeVocab)-2), Logprob: -0.1 * float64(j+1)})
				}
				ev.Logprobs = lp
			}
			if id == fakeEOS {
				ev.Text = out.String()[emitted:]
				done(sampling.FinishStop, k+1, ev)
				return
			}
			out.WriteString(fakeAll[id])
			full := out.String()
			for _, s := range p.Stop {
				if i := strings.Index(full[emitted:], s); i >= 0 {
					ev.Text = full[emitted : emitted+i]
					done(sampling.FinishStop, k+1, ev)
					return
				}
			}
			if k+1 == limit {
				ev.Text = full[emitted:]
				done(sampling.FinishLength, k+1, ev)
				return
			}
			safe := max(len(full)-holdBack, emitted)
			for safe > emitted && !utf8.ValidString(full[emitted:safe]) {
				safe--
			}
			ev.Text = full[emitted:safe]
			emitted = safe
			if !yield(ev, nil) {
				// The consumer may stop on the cancellation before the next check here.
				if ctx.Err() != nil {
					cancelled()
				}
				return
			}
		}
	}
}
