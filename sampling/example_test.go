package sampling_test

import (
	"errors"
	"fmt"

	"github.com/fathom-llm/fathom/sampling"
)

// A generation loop: sample each token, report its logprobs, stop on a stop token, a stop
// string or the length limit.
func Example() {
	seed := int64(7)
	p := sampling.Params{Temperature: 0.8, TopP: 0.95, Seed: &seed, Stop: []string{"."},
		MaxTokens: 10, Logprobs: true, TopLogprobs: 2}
	vocab := []string{"<eos>", "Go", " is", " fun", ".", "!"}
	const eos = 0
	// A stand-in for the model: it prefers the token after the previous one.
	model := func(prev int) []float32 {
		logits := make([]float32, len(vocab))
		logits[(prev+1)%len(vocab)] = 8
		return logits
	}

	s, err := sampling.NewSampler(p, len(vocab), []int{eos})
	if err != nil {
		fmt.Println(err)
		return
	}
	stop, _ := sampling.NewStopMatcher(p.Stop)
	text, prev, reason := "", eos, sampling.FinishLength
	for range p.MaxNewTokens(1, 4096) {
		logits := model(prev)
		id, err := s.Sample(logits)
		if err != nil {
			fmt.Println(err)
			return
		}
		lp, _ := s.Logprobs(logits, id)
		fmt.Printf("%q %.3f, best %q\n", vocab[id], lp.Chosen.Logprob, vocab[lp.Top[0].ID])
		if p.IsStopToken(id, eos) {
			reason = sampling.FinishStop
			break
		}
		emit, stopped := stop.Push(vocab[id])
		text += emit
		if stopped {
			reason = sampling.FinishStop
			break
		}
		prev = id
	}
	text += stop.Flush()
	fmt.Printf("%q, finish reason %q\n", text, reason)
	// Output:
	// "Go" -0.002, best "Go"
	// " is" -0.002, best " is"
	// " fun" -0.002, best " fun"
	// "." -0.002, best "."
	// "Go is fun", finish reason "stop"
}

func ExampleParams_Validate() {
	p := sampling.DefaultParams()
	p.TopP = 1.5
	err := p.Validate()
	var pe *sampling.ParamError
	fmt.Println(errors.Is(err, sampling.ErrInvalidParam), errors.As(err, &pe) && pe.Field == "top_p")
	fmt.Println(err)
	// Output:
	// true true
	// sampling: invalid top_p 1.5: must be in (0, 1] (0 means unset)
}

func ExampleParams_ForChoice() {
	seed := int64(100)
	p := sampling.Params{Temperature: 1, Seed: &seed}
	for i := range 3 {
		fmt.Println(*p.ForChoice(i).Seed)
	}
	// Output:
	// 100
	// 101
	// 102
}

func ExampleStopMatcher() {
	m, _ := sampling.NewStopMatcher([]string{"\n\n", "END"})
	for _, piece := range []string{"one", "\n", "two E", "N", "D", "three"} {
		emit, stopped := m.Push(piece)
		fmt.Printf("%q %v\n", emit, stopped)
	}
	// Output:
	// "one" false
	// "" false
	// "\ntwo " false
	// "" false
	// "" true
	// "" true
}

func ExampleApplyTopP() {
	logits := []float32{2, 1, 0, -1}
	sampling.ApplyTopP(logits, 0.8)
	fmt.Println(logits)
	// Output:
	// [2 1 -Inf -Inf]
}

func ExampleApplyTopK() {
	logits := []float32{0.5, 3, 1, 3, 1}
	sampling.ApplyTopK(logits, 3) // ties at the third value stay
	fmt.Println(logits)
	// Output:
	// [-Inf 3 1 3 1]
}

func ExampleApplyMinP() {
	logits := []float32{0, -1, -2, -3} // probabilities relative to the top: 1, 0.37, 0.14, 0.05
	sampling.ApplyMinP(logits, 0.1)
	fmt.Println(logits)
	// Output:
	// [0 -1 -2 -Inf]
}

func ExampleApplyRepetitionPenalty() {
	logits := []float32{2, -2, 2, -2}
	sampling.ApplyRepetitionPenalty(logits, []int{0, 1, 1}, 2)
	fmt.Println(logits)
	// Output:
	// [1 -4 2 -2]
}

func ExampleSampler_Logprobs() {
	s, _ := sampling.NewSampler(sampling.Params{Logprobs: true, TopLogprobs: 2}, 3, nil)
	logits := []float32{1, 3, 2}
	id, _ := s.Sample(logits) // greedy: the zero Params
	lp, _ := s.Logprobs(logits, id)
	fmt.Printf("%d %.4f %v\n", lp.Chosen.ID, lp.Chosen.Logprob, len(lp.Top))
	fmt.Printf("%d %.4f, %d %.4f\n", lp.Top[0].ID, lp.Top[0].Logprob, lp.Top[1].ID, lp.Top[1].Logprob)
	// Output:
	// 1 -0.4076 2
	// 1 -0.4076, 2 -1.4076
}
