package sampling

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	nan := math.NaN()
	stops := func(n int) []string {
		s := make([]string, n)
		for i := range s {
			s[i] = strings.Repeat("x", i+1)
		}
		return s
	}
	for _, tc := range []struct {
		name  string
		p     Params
		field string // "" = valid
	}{
		{"zero value", Params{}, ""},
		{"defaults", DefaultParams(), ""},
		{"extremes", Params{Temperature: 2, TopP: 1, MinP: 1, TopK: 999, PresencePenalty: -2, FrequencyPenalty: 2,
			RepetitionPenalty: 5, MaxTokens: 1 << 20, Stop: stops(16), Logprobs: true, TopLogprobs: 20,
			LogitBias: map[int]float64{0: -100, 5: 1e6, 6: math.Inf(1)}, StopTokenIDs: []int{0}}, ""},
		{"low extremes", Params{TopP: 1e-9, RepetitionPenalty: 0.01, TopK: -1}, ""},
		{"temperature high", Params{Temperature: 2.0001}, "temperature"},
		{"temperature negative", Params{Temperature: -0.1}, "temperature"},
		{"temperature NaN", Params{Temperature: nan}, "temperature"},
		{"top_p high", Params{TopP: 1.1}, "top_p"},
		{"top_p negative", Params{TopP: -0.5}, "top_p"},
		{"top_p NaN", Params{TopP: nan}, "top_p"},
		{"min_p high", Params{MinP: 1.5}, "min_p"},
		{"min_p NaN", Params{MinP: nan}, "min_p"},
		{"top_k high", Params{TopK: 1000}, "top_k"},
		{"top_k -2", Params{TopK: -2}, "top_k"},
		{"presence", Params{PresencePenalty: -2.5}, "presence_penalty"},
		{"presence NaN", Params{PresencePenalty: nan}, "presence_penalty"},
		{"frequency", Params{FrequencyPenalty: 2.5}, "frequency_penalty"},
		{"repetition low", Params{RepetitionPenalty: 0.001}, "repetition_penalty"},
		{"repetition high", Params{RepetitionPenalty: 5.5}, "repetition_penalty"},
		{"repetition negative", Params{RepetitionPenalty: -1}, "repetition_penalty"},
		{"repetition NaN", Params{RepetitionPenalty: nan}, "repetition_penalty"},
		{"max_tokens", Params{MaxTokens: -1}, "max_tokens"},
		{"too many stops", Params{Stop: stops(17)}, "stop"},
		{"empty stop", Params{Stop: []string{"a", ""}}, "stop"},
		{"invalid UTF-8 stop", Params{Stop: []string{"\xff"}}, "stop"},
		{"top_logprobs high", Params{Logprobs: true, TopLogprobs: 21}, "top_logprobs"},
		{"top_logprobs negative", Params{Logprobs: true, TopLogprobs: -1}, "top_logprobs"},
		{"top_logprobs without logprobs", Params{TopLogprobs: 2}, "top_logprobs"},
		{"stop token negative", Params{StopTokenIDs: []int{-1}}, "stop_token_ids"},
		{"logit bias id negative", Params{LogitBias: map[int]float64{-1: 1}}, "logit_bias"},
		{"logit bias NaN", Params{LogitBias: map[int]float64{3: nan}}, "logit_bias"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var pe *ParamError
			if !errors.As(err, &pe) || !errors.Is(err, ErrInvalidParam) {
				t.Fatalf("Validate() = %v, want a *ParamError", err)
			}
			if pe.Field != tc.field {
				t.Errorf("field %q, want %q (%v)", pe.Field, tc.field, err)
			}
			if !strings.Contains(err.Error(), tc.field) || pe.Range == "" {
				t.Errorf("message %q does not name the field and its range", err)
			}
		})
	}
}

func TestClampBias(t *testing.T) {
	for _, tc := range [][2]float64{{5, 5}, {-100, -100}, {100.5, 100}, {-1e9, -100}, {math.Inf(1), 100}} {
		if got := ClampBias(tc[0]); got != tc[1] {
			t.Errorf("ClampBias(%v) = %v, want %v", tc[0], got, tc[1])
		}
	}
}

// TestForChoiceSeedRange: per-choice seeds of a non-negative seed stay non-negative, wrapping
// past the largest int64 to 0.
func TestForChoiceSeedRange(t *testing.T) {
	for _, tc := range []struct {
		name       string
		seed, want int64
		i          int
	}{
		{"plain", 7, 10, 3},
		{"at the top", math.MaxInt64, 0, 1},
		{"past the top", math.MaxInt64 - 1, 2, 4},
		{"choice 0", math.MaxInt64, math.MaxInt64, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seed := tc.seed
			if got := *(Params{Seed: &seed}).ForChoice(tc.i).Seed; got != tc.want {
				t.Errorf("ForChoice(%d) of seed %d: %d, want %d", tc.i, tc.seed, got, tc.want)
			}
		})
	}
}
