package mixtral

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/fathom-llm/fathom/internal/fixtures"
)

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig([]byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		VocabSize: 32000, HiddenSize: 4096, IntermediateSize: 14336, NumHiddenLayers: 32,
		NumAttentionHeads: 32, NumKeyValueHeads: 8, HeadDim: 128, MaxPositionEmbeddings: 131072,
		RMSNormEps: 1e-5, RopeTheta: 1e6, NumLocalExperts: 8, NumExpertsPerTok: 2, HiddenAct: "silu",
		BOSTokenID: 1, EOSTokenIDs: []int{2},
	}
	if !configEqual(c, want) {
		t.Errorf("defaults %+v, want %+v", c, want)
	}
	c, err = ParseConfig([]byte(`{"num_key_value_heads": null, "num_attention_heads": 16, "hidden_size": 1024, "vocab_size": 32002,
		"sliding_window": 4096, "eos_token_id": [2, 32000], "bos_token_id": null, "head_dim": 32,
		"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.NumKeyValueHeads != 16 || c.HeadDim != 32 || c.SlidingWindow != 4096 || !slices.Equal(c.EOSTokenIDs, []int{2, 32000}) ||
		c.BOSTokenID != -1 || c.RopeTheta != 10000 {
		t.Errorf("parsed %+v", c)
	}
}

func configEqual(a, b Config) bool {
	return reflect.DeepEqual(a, b)
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct{ name, doc string }{
		{"kv heads not dividing heads", `{"num_attention_heads": 6, "num_key_value_heads": 4}`},
		{"more experts per token than experts", `{"num_experts_per_tok": 9}`},
		{"zero hidden size", `{"hidden_size": 0}`},
		{"negative eps", `{"rms_norm_eps": -1}`},
		{"gelu", `{"hidden_act": "gelu"}`},
		{"rope scaling", `{"rope_scaling": {"type": "yarn", "factor": 4}}`},
		{"negative sliding window", `{"sliding_window": -3}`},
		{"eos outside the vocabulary", `{"eos_token_id": [2, 99999]}`},
		{"eos a string", `{"eos_token_id": "x"}`},
		{"odd head dim", `{"head_dim": 7}`},
		{"vocab size a string", `{"vocab_size": "big"}`},
		{"not an object", `[1, 2]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.doc))
			var ce *ConfigError
			if !errors.Is(err, ErrConfig) || !errors.As(err, &ce) {
				t.Errorf("ParseConfig(%s): %v, want a *ConfigError", tc.doc, err)
			}
		})
	}
}

func TestLoadConfigFixtures(t *testing.T) {
	c, err := LoadConfig(fixtures.Model(t, "tiny-mixtral-swa-f16"))
	if err != nil {
		t.Fatal(err)
	}
	if c.SlidingWindow != 8 || c.HeadDim != 8 || c.NumKeyValueHeads != 2 || c.NumLocalExperts != 4 || !slices.Equal(c.EOSTokenIDs, []int{32000}) {
		t.Errorf("swa config %+v", c)
	}
	// generation_config.json's eos ids replace config.json's.
	dir := t.TempDir()
	cfg, err := os.ReadFile(filepath.Join(modelDir(t, "tiny-code-mixtral"), "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644)
	os.WriteFile(filepath.Join(dir, "generation_config.json"), []byte(`{"eos_token_id": [2, 32000]}`), 0o644)
	if c, err = LoadConfig(dir); err != nil || !slices.Equal(c.EOSTokenIDs, []int{2, 32000}) {
		t.Errorf("eos from generation_config.json: %v, %v", c.EOSTokenIDs, err)
	}
}

func TestAttentionCost(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		// FLOPs (multiply-adds) of one layer: attending to one position, and a token's
		// projections (q, k, v, o), router and two experts' three products.
		perPosition, other float64
	}{
		{"Mixtral 8x7B", `{}`, 32 * 128 * 2,
			4096*4096 + 2*4096*1024 + 4096*4096 + 4096*8 + 2*3*4096*14336},
		{"tiny-code-mixtral", `{"hidden_size": 128, "intermediate_size": 320, "num_attention_heads": 4,
			"num_key_value_heads": 2, "num_hidden_layers": 4}`, 4 * 32 * 2,
			128*128 + 2*128*64 + 128*128 + 128*8 + 2*3*128*320},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := attentionCost(c), tc.perPosition/tc.other; math.Abs(got-want) > 1e-12*want {
				t.Errorf("attention cost %g, want %g", got, want)
			}
		})
	}
	m := loadFixture(t, "tiny-code-mixtral", Options{})
	if got := (*engineModel)(m).Layout().AttentionCost; got != attentionCost(m.cfg) || got <= 0 {
		t.Errorf("the engine's layout has attention cost %g, want %g", got, attentionCost(m.cfg))
	}
}
