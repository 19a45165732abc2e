package mixtral

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
)

// Config is a Mixtral model's configuration, read from a checkpoint's config.json with the
// reference implementation's defaults for absent fields.
type Config struct {
	VocabSize             int     `json:"vocab_size"`              // default 32000
	HiddenSize            int     `json:"hidden_size"`             // default 4096
	IntermediateSize      int     `json:"intermediate_size"`       // each expert's width, default 14336
	NumHiddenLayers       int     `json:"num_hidden_layers"`       // default 32
	NumAttentionHeads     int     `json:"num_attention_heads"`     // default 32
	NumKeyValueHeads      int     `json:"num_key_value_heads"`     // default 8; null: NumAttentionHeads
	HeadDim               int     `json:"head_dim"`                // default HiddenSize / NumAttentionHeads
	MaxPositionEmbeddings int     `json:"max_position_embeddings"` // default 131072
	RMSNormEps            float64 `json:"rms_norm_eps"`            // default 1e-5
	RopeTheta             float64 `json:"rope_theta"`              // default 1e6
	// SlidingWindow limits attention to the last SlidingWindow positions, the token's own
	// included; 0 (null in the file, the default) means no limit.
	SlidingWindow     int    `json:"sliding_window"`
	NumLocalExperts   int    `json:"num_local_experts"`   // default 8
	NumExpertsPerTok  int    `json:"num_experts_per_tok"` // default 2
	TieWordEmbeddings bool   `json:"tie_word_embeddings"` // default false
	HiddenAct         string `json:"hidden_act"`          // only "silu"
	BOSTokenID        int    `json:"bos_token_id"`        // default 1; -1 when null
	// EOSTokenIDs are the end-of-sequence ids of config.json (default [2]), replaced by
	// generation_config.json's when LoadConfig finds that file.
	EOSTokenIDs []int `json:"eos_token_id"`
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("mixtral: invalid config")

// ConfigError reports an invalid or unsupported configuration field.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("mixtral: config %s: %s", e.Field, e.Reason)
}

// Is makes a ConfigError match ErrConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrConfig }

// rawConfig is config.json as written; pointers tell absent and null fields from values.
type rawConfig struct {
	VocabSize             *int            `json:"vocab_size"`
	HiddenSize            *int            `json:"hidden_size"`
	IntermediateSize      *int            `json:"intermediate_size"`
	NumHiddenLayers       *int            `json:"num_hidden_layers"`
	NumAttentionHeads     *int            `json:"num_attention_heads"`
	NumKeyValueHeads      json.RawMessage `json:"num_key_value_heads"`
	HeadDim               *int            `json:"head_dim"`
	MaxPositionEmbeddings *int            `json:"max_position_embeddings"`
	RMSNormEps            *float64        `json:"rms_norm_eps"`
	RopeTheta             *float64        `json:"rope_theta"`
	RopeScaling           json.RawMessage `json:"rope_scaling"`
	RopeParameters        json.RawMessage `json:"rope_parameters"`
	SlidingWindow         *int            `json:"sliding_window"`
	NumLocalExperts       *int            `json:"num_local_experts"`
	NumExpertsPerTok      *int            `json:"num_experts_per_tok"`
	TieWordEmbeddings     *bool           `json:"tie_word_embeddings"`
	HiddenAct             *string         `json:"hidden_act"`
	BOSTokenID            json.RawMessage `json:"bos_token_id"`
	EOSTokenID            json.RawMessage `json:"eos_token_id"`
}

// ParseConfig reads a config.json document, fills in the defaults and validates the result.
func ParseConfig(data []byte) (Config, error) {
	var r rawConfig
	if err := json.Unmarshal(data, &r); err != nil {
		return Config{}, &ConfigError{Field: "config.json", Reason: err.Error()}
	}
	c := Config{
		VocabSize: or(r.VocabSize, 32000), HiddenSize: or(r.HiddenSize, 4096),
		IntermediateSize: or(r.IntermediateSize, 14336), NumHiddenLayers: or(r.NumHiddenLayers, 32),
		NumAttentionHeads: or(r.NumAttentionHeads, 32), MaxPositionEmbeddings: or(r.MaxPositionEmbeddings, 131072),
		RMSNormEps: or(r.RMSNormEps, 1e-5), RopeTheta: or(r.RopeTheta, 1e6), SlidingWindow: or(r.SlidingWindow, 0),
		NumLocalExperts: or(r.NumLocalExperts, 8), NumExpertsPerTok: or(r.NumExpertsPerTok, 2),
		TieWordEmbeddings: or(r.TieWordEmbeddings, false), HiddenAct: or(r.HiddenAct, "silu"),
	}
	var err error
	if c.NumKeyValueHeads, err = nullableInt(r.NumKeyValueHeads, "num_key_value_heads", 8, c.NumAttentionHeads); err != nil {
		return Config{}, err
	}
	c.HeadDim = or(r.HeadDim, 0)
	if r.HeadDim == nil && c.NumAttentionHeads > 0 {
		c.HeadDim = c.HiddenSize / c.NumAttentionHeads
	}
	if c.BOSTokenID, err = nullableInt(r.BOSTokenID, "bos_token_id", 1, -1); err != nil {
		return Config{}, err
	}
	if c.EOSTokenIDs, err = tokenIDs(r.EOSTokenID, "eos_token_id", []int{2}); err != nil {
		return Config{}, err
	}
	if err := ropeType(r.RopeScaling, "rope_scaling", nil); err != nil {
		return Config{}, err
	}
	if err := ropeType(r.RopeParameters, "rope_parameters", &c.RopeTheta); err != nil {
		return Config{}, err
	}
	return c, c.Validate()
}

// LoadConfig reads dir/config.json and, when present, the eos ids of
// dir/generation_config.json.
func LoadConfig(dir string) (Config, error) {
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return Config{}, err
	}
	c, err := ParseConfig(data)
	if err != nil {
		return Config{}, err
	}
	gen, err := os.ReadFile(filepath.Join(dir, "generation_config.json"))
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return Config{}, err
	}
	var g struct {
		EOS json.RawMessage `json:"eos_token_id"`
	}
	if err := json.Unmarshal(gen, &g); err != nil {
		return Config{}, &ConfigError{Field: "generation_config.json", Reason: err.Error()}
	}
	if c.EOSTokenIDs, err = tokenIDs(g.EOS, "generation_config.json eos_token_id", c.EOSTokenIDs); err != nil {
		return Config{}, err
	}
	return c, c.Validate()
}

// Validate checks that the configuration describes a model this package can run.
func (c Config) Validate() error {
	positive := []struct {
		name string
		v    int
	}{
		{"vocab_size", c.VocabSize}, {"hidden_size", c.HiddenSize}, {"intermediate_size", c.IntermediateSize},
		{"num_hidden_layers", c.NumHiddenLayers}, {"num_attention_heads", c.NumAttentionHeads},
		{"num_key_value_heads", c.NumKeyValueHeads}, {"head_dim", c.HeadDim},
		{"max_position_embeddings", c.MaxPositionEmbeddings}, {"num_local_experts", c.NumLocalExperts},
		{"num_experts_per_tok", c.NumExpertsPerTok},
	}
	for _, f := range positive {
		if f.v <= 0 {
			return &ConfigError{Field: f.name, Reason: fmt.Sprintf("%d is not positive", f.v)}
		}
	}
	switch {
	case c.NumAttentionHeads%c.NumKeyValueHeads != 0:
		return &ConfigError{Field: "num_key_value_heads", Reason: fmt.Sprintf("%d does not divide num_attention_heads %d", c.NumKeyValueHeads, c.NumAttentionHeads)}
	case c.HeadDim%2 != 0:
		return &ConfigError{Field: "head_dim", Reason: fmt.Sprintf("%d is odd, RoPE needs pairs", c.HeadDim)}
	case c.NumExpertsPerTok > c.NumLocalExperts:
		return &ConfigError{Field: "num_experts_per_tok", Reason: fmt.Sprintf("%d exceeds num_local_experts %d", c.NumExpertsPerTok, c.NumLocalExperts)}
	case !(c.RMSNormEps > 0) || math.IsInf(c.RMSNormEps, 0):
		return &ConfigError{Field: "rms_norm_eps", Reason: fmt.Sprint(c.RMSNormEps, " is not positive")}
	case !(c.RopeTheta > 0) || math.IsInf(c.RopeTheta, 0):
		return &ConfigError{Field: "rope_theta", Reason: fmt.Sprint(c.RopeTheta, " is not positive")}
	case c.SlidingWindow < 0:
		return &ConfigError{Field: "sliding_window", Reason: fmt.Sprint(c.SlidingWindow, " is negative")}
	case c.HiddenAct != "silu":
		return &ConfigError{Field: "hidden_act", Reason: fmt.Sprintf("%q is not supported (only silu)", c.HiddenAct)}
	case c.BOSTokenID < -1 || c.BOSTokenID >= c.VocabSize:
		return &ConfigError{Field: "bos_token_id", Reason: fmt.Sprintf("%d is outside the vocabulary of %d", c.BOSTokenID, c.VocabSize)}
	}
	// Keep every size product comfortably inside int on 32-bit machines too.
	if float64(c.NumLocalExperts)*float64(c.IntermediateSize)*float64(c.HiddenSize) > math.MaxInt32*64 ||
		float64(c.VocabSize)*float64(c.HiddenSize) > math.MaxInt32*64 || c.NumHiddenLayers > 1<<16 {
		return &ConfigError{Field: "sizes", Reason: "too large"}
	}
	for _, id := range c.EOSTokenIDs {
		if id < 0 || id >= c.VocabSize {
			return &ConfigError{Field: "eos_token_id", Reason: fmt.Sprintf("%d is outside the vocabulary of %d", id, c.VocabSize)}
		}
	}
	return nil
}

func or[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// nullableInt decodes an optional integer: absent gives def, null gives null.
func nullableInt(raw json.RawMessage, field string, def, null int) (int, error) {
	if len(raw) == 0 {
		return def, nil
	}
	var p *int
	if err := json.Unmarshal(raw, &p); err != nil {
		return 0, &ConfigError{Field: field, Reason: "not an integer: " + string(raw)}
	}
	if p == nil {
		return null, nil
	}
	return *p, nil
}

// tokenIDs decodes an id or a list of ids; absent gives def, null none.
func tokenIDs(raw json.RawMessage, field string, def []int) ([]int, error) {
	if len(raw) == 0 {
		return def, nil
	}
	var one *int
	if err := json.Unmarshal(raw, &one); err == nil {
		if one == nil {
			return nil, nil
		}
		return []int{*one}, nil
	}
	var list []int
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, &ConfigError{Field: field, Reason: "not an id or a list of ids: " + string(raw)}
	}
	return list, nil
}

// ropeType accepts only the default RoPE (no scaling); a rope_parameters object may carry
// rope_theta, stored into theta.
func ropeType(raw json.RawMessage, field string, theta *float64) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var p struct {
		RopeType  *string  `json:"rope_type"`
		Type      *string  `json:"type"`
		RopeTheta *float64 `json:"rope_theta"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return &ConfigError{Field: field, Reason: "not an object: " + string(raw)}
	}
	kind := or(p.RopeType, or(p.Type, "default"))
	if kind != "default" {
		return &ConfigError{Field: field, Reason: fmt.Sprintf("RoPE type %q is not supported", kind)}
	}
	if p.RopeTheta != nil && theta != nil {
		*theta = *p.RopeTheta
	}
	return nil
}
