package tokenizer

import (
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// config is what a checkpoint's tokenizer_config.json, special_tokens_map.json,
// added_tokens.json and chat_template.jinja say about its tokenizer.
type config struct {
	bos, eos, unk, pad string
	addBOS             *bool
	chatTemplate       string
	special            map[string]bool   // token contents declared special
	decoderTokens      map[int]tokenJSON // added_tokens_decoder
	addedTokens        map[string]int    // added_tokens.json
}

// tokenName reads a special-token entry: a string or an object with "content".
func tokenName(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var o struct {
		Content string `json:"content"`
	}
	if json.Unmarshal(raw, &o) == nil {
		return o.Content
	}
	return ""
}

func readJSONFile(path string, v any) (bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, formatErr("%s: %v", path, err)
	}
	return true, nil
}

func readConfig(dir string) (*config, error) {
	cfg := &config{special: map[string]bool{}}
	var special map[string]json.RawMessage
	if _, err := readJSONFile(filepath.Join(dir, "special_tokens_map.json"), &special); err != nil {
		return nil, err
	}
	var tc map[string]json.RawMessage
	if _, err := readJSONFile(filepath.Join(dir, "tokenizer_config.json"), &tc); err != nil {
		return nil, err
	}
	for _, m := range []map[string]json.RawMessage{special, tc} { // the latter wins
		for _, key := range []string{"bos_token", "eos_token", "unk_token", "pad_token"} {
			raw, ok := m[key]
			if !ok {
				continue
			}
			name := tokenName(raw)
			if name == "" {
				continue
			}
			cfg.special[name] = true
			switch key {
			case "bos_token":
				cfg.bos = name
			case "eos_token":
				cfg.eos = name
			case "unk_token":
				cfg.unk = name
			case "pad_token":
				cfg.pad = name
			}
		}
		for _, key := range []string{"additional_special_tokens", "extra_special_tokens"} {
			var list []json.RawMessage
			if json.Unmarshal(m[key], &list) == nil {
				for _, raw := range list {
					if name := tokenName(raw); name != "" {
						cfg.special[name] = true
					}
				}
			}
		}
	}
	if raw, ok := tc["add_bos_token"]; ok {
		var b bool
		if json.Unmarshal(raw, &b) == nil {
			cfg.addBOS = &b
		}
	}
	if raw, ok := tc["added_tokens_decoder"]; ok {
		var m map[string]tokenJSON
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, formatErr("tokenizer_config.json added_tokens_decoder: %v", err)
		}
		cfg.decoderTokens = map[int]tokenJSON{}
		for k, v := range m {
			id, err := strconv.Atoi(k)
			if err != nil || id < 0 || id >= maxVocab || v.Content == "" {
				return nil, formatErr("tokenizer_config.json added_tokens_decoder: bad entry %q", k)
			}
			cfg.decoderTokens[id] = v
		}
	}
	if raw, ok := tc["chat_template"]; ok {
		cfg.chatTemplate = chatTemplateField(raw)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "chat_template.jinja")); err == nil {
		cfg.chatTemplate = string(data)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if _, err := readJSONFile(filepath.Join(dir, "added_tokens.json"), &cfg.addedTokens); err != nil {
		return nil, err
	}
	return cfg, nil
}

// chatTemplateField reads tokenizer_config.json's chat_template: a string, or a list of
// named templates of which "default" is used.
func chatTemplateField(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var named []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if json.Unmarshal(raw, &named) == nil {
		for _, n := range named {
			if n.Name == "default" {
				return n.Template
			}
		}
	}
	return ""
}

// addConfigTokens adds to a SentencePiece tokenizer the tokens that transformers adds on top
// of the model: added_tokens_decoder, added_tokens.json and the named special tokens. All are
// matched in the raw text.
func (t *Tokenizer) addConfigTokens(cfg *config) error {
	for _, id := range slices.Sorted(maps.Keys(cfg.decoderTokens)) {
		v := cfg.decoderTokens[id]
		t.addAdded(addedToken{id: id, content: v.Content, special: v.Special || cfg.special[v.Content],
			lstrip: v.Lstrip, rstrip: v.Rstrip, singleWord: v.SingleWord}, v.Content)
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.addedTokens)) {
		id := cfg.addedTokens[name]
		if id < 0 || id >= maxVocab || name == "" {
			return formatErr("added_tokens.json: bad entry %q: %d", name, id)
		}
		if _, done := cfg.decoderTokens[id]; done {
			continue
		}
		t.addAdded(addedToken{id: id, content: name, special: cfg.special[name]}, name)
	}
	for _, name := range []string{cfg.unk, cfg.bos, cfg.eos, cfg.pad} {
		if name == "" {
			continue
		}
		if id, ok := t.ids[name]; ok && !t.isAdded(name) {
			t.addAdded(addedToken{id: id, content: name, special: true}, name)
		}
	}
	return nil
}

func (t *Tokenizer) isAdded(content string) bool {
	return slices.ContainsFunc(t.added, func(a addedToken) bool { return a.content == content })
}

// applyConfig sets BOS, EOS, add_bos_token and the chat template from the configuration.
func (t *Tokenizer) applyConfig(cfg *config) {
	if id, ok := t.ids[cfg.bos]; ok && cfg.bos != "" {
		t.bos = id
	}
	if id, ok := t.ids[cfg.eos]; ok && cfg.eos != "" {
		t.eos = id
	}
	if cfg.addBOS != nil {
		t.addBOS = *cfg.addBOS
	}
	t.chatTemplate = cfg.chatTemplate
}
