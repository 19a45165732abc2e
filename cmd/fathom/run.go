package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/fathom-llm/fathom/mixtral"
	"github.com/fathom-llm/fathom/sampling"
)

func init() {
	register(&command{
		name:    "run",
		summary: "generate a continuation of a prompt, streamed as it decodes",
		run:     runRun,
	})
}

// samplingFlags sets p to the API's defaults and registers a flag for every sampling
// parameter, named after its API field.
func samplingFlags(fs *flag.FlagSet, p *sampling.Params) {
	*p = sampling.DefaultParams()
	fs.Float64Var(&p.Temperature, "temperature", p.Temperature, "sampling temperature, 0-2 (0 is greedy)")
	fs.Float64Var(&p.TopP, "top-p", p.TopP, "nucleus sampling mass, 0 < p <= 1")
	fs.Float64Var(&p.MinP, "min-p", p.MinP, "drop tokens below min-p times the top probability, 0-1")
	fs.IntVar(&p.TopK, "top-k", p.TopK, "keep the k most likely tokens, 0-999 (0 is off)")
	fs.Float64Var(&p.PresencePenalty, "presence-penalty", p.PresencePenalty, "penalty for tokens already generated, -2..2")
	fs.Float64Var(&p.FrequencyPenalty, "frequency-penalty", p.FrequencyPenalty, "penalty per occurrence in the output, -2..2")
	fs.Float64Var(&p.RepetitionPenalty, "repetition-penalty", p.RepetitionPenalty, "multiplicative penalty for prompt and output tokens, 0.01-5")
	fs.Func("seed", "random `SEED` (an integer), for reproducible sampling", func(s string) error {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return errors.New("not an integer")
		}
		p.Seed = &v
		return nil
	})
	fs.IntVar(&p.MaxTokens, "max-tokens", 256, "most tokens to generate (0: up to the context length)")
	fs.Func("stop", "stop `STRING` (repeatable, up to 16)", func(s string) error {
		p.Stop = append(p.Stop, s)
		return nil
	})
}

// parseIDs reads a comma-separated list of token ids.
func parseIDs(s string) ([]int, error) {
	var ids []int
	for _, f := range strings.Split(s, ",") {
		id, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("%w: --prompt-ids: %q is not a token id", errUsage, f)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// runResult is what run --json prints.
type runResult struct {
	IDs          []int                 `json:"ids"`
	Text         string                `json:"text"`
	FinishReason sampling.FinishReason `json:"finish_reason"`
	Usage        mixtral.Usage         `json:"usage"`
	Timings      struct {
		PrefillTokensPerSecond float64 `json:"prefill_tokens_per_second"`
		DecodeTokensPerSecond  float64 `json:"decode_tokens_per_second"`
		PrefillSeconds         float64 `json:"prefill_seconds"`
		DecodeSeconds          float64 `json:"decode_seconds"`
	} `json:"timings"`
}

func runRun(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "run")
	model := modelFlag(fs)
	promptIDs := fs.String("prompt-ids", "", "comma-separated prompt token `IDS`, used as given (no BOS added)")
	asJSON := fs.Bool("json", false, "print one JSON object with ids, text, finish_reason, usage and timings")
	var req mixtral.Request
	samplingFlags(fs, &req.Params)
	setUsage(fs, "usage: fathom run [--model DIR] [flags] [PROMPT | --prompt-ids 1,2,3]")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *promptIDs != "" && fs.NArg() > 0:
		return fmt.Errorf("%w: give a PROMPT or --prompt-ids, not both", errUsage)
	case *promptIDs != "":
		ids, err := parseIDs(*promptIDs)
		if err != nil {
			return err
		}
		req.PromptIDs = ids
	case fs.NArg() > 0:
		req.Prompt = strings.Join(fs.Args(), " ")
	default:
		return fmt.Errorf("%w: give a PROMPT or --prompt-ids", errUsage)
	}
	if err := validSampling(req.Params); err != nil {
		return err
	}

	m, done, err := loadModel(ctx, e, model)
	if err != nil {
		return err
	}
	defer done()

	var res runResult
	for ev, err := range m.Stream(ctx, req) {
		if err != nil {
			return err
		}
		if ev.ID >= 0 && !ev.Done {
			res.IDs = append(res.IDs, ev.ID)
		}
		res.Text += ev.Text
		if !*asJSON && ev.Text != "" {
			fmt.Fprint(e.stdout, ev.Text)
		}
		if ev.Done {
			res.FinishReason, res.Usage = ev.FinishReason, ev.Usage
			t := ev.Timings
			res.Timings.PrefillTokensPerSecond, res.Timings.DecodeTokensPerSecond = t.PrefillTokensPerSecond, t.DecodeTokensPerSecond
			res.Timings.PrefillSeconds, res.Timings.DecodeSeconds = t.Prefill.Seconds(), t.Decode.Seconds()
		}
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Fprintln(e.stdout)
	fmt.Fprintf(e.stderr, "[%s: %d prompt + %d generated tokens; prefill %.1f tok/s, decode %.1f tok/s]\n",
		res.FinishReason, res.Usage.PromptTokens, res.Usage.CompletionTokens,
		res.Timings.PrefillTokensPerSecond, res.Timings.DecodeTokensPerSecond)
	return nil
}
