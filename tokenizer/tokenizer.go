package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unicode/utf8"
)

// MaxInputBytes is the largest text Encode accepts; longer input gets ErrTooLarge.
const MaxInputBytes = 1 << 30

// maxVocab bounds token ids read from files, so that a malformed file cannot make the loader
// allocate without limit.
const maxVocab = 1 << 22

// Tokenizer turns text into token ids and back. It is loaded from a Hugging Face
// tokenizer.json or a SentencePiece tokenizer.model and is safe for concurrent use.
type Tokenizer struct {
	tokens  []string       // id -> token text, "" for unused ids
	ids     map[string]int // token text -> id
	special []bool         // id -> special token (skipped by Decode with skipSpecial)

	added    []addedToken
	rawTrie  *trie // added tokens matched in the raw input
	normTrie *trie // added tokens matched in normalized text

	norm normalizer   // tokenizer.json normalizer, nil for none
	pre  preTokenizer // tokenizer.json pre-tokenizer, nil for none
	bpe  *bpeModel    // tokenizer.json model
	spm  *spmModel    // tokenizer.model (used instead of norm, pre and bpe)

	post    []int // ids the post-processor puts before the sequence
	postEnd []int // ids it puts after
	hasPost bool

	dec    decodeStep
	stream streamKind

	bos, eos int // -1 when unknown
	addBOS   bool

	chatTemplate string
	templates    sync.Map // template source -> *jinja.Template
}

// EncodeOptions control Encode.
type EncodeOptions struct {
	// AddBOS applies the tokenizer's single-sequence post-processing: for Llama and Mistral
	// files this prepends the BOS token. Use AddsBOS for the checkpoint's own default.
	AddBOS bool
	// ParseSpecial matches added tokens (special or not, e.g. "<|im_start|>" or "<s>")
	// written in the text, as Hugging Face tokenizers does by default. When false, the default,
	// the whole text is plain text: no added token is matched, so untrusted input cannot
	// produce control tokens.
	ParseSpecial bool
}

// Encode returns the token ids of text. Invalid UTF-8 bytes are read as U+FFFD, one per byte.
// The only error is ErrTooLarge.
func (t *Tokenizer) Encode(text string, opts EncodeOptions) ([]int, error) {
	if len(text) > MaxInputBytes {
		return nil, ErrTooLarge
	}
	text = validUTF8(text)
	var allow func(int, int) bool
	if opts.ParseSpecial {
		allow = allowAll
	}
	return t.encode(text, allow, opts.AddBOS), nil
}

func allowAll(int, int) bool { return true }

// encode tokenizes text (valid UTF-8). allow vetoes added-token matches by byte range; nil
// disables added-token matching.
func (t *Tokenizer) encode(text string, allow func(start, end int) bool, addBOS bool) []int {
	ids := make([]int, 0, len(text)/3+4)
	if addBOS {
		ids = t.addPrefix(ids)
	}
	var segs []segment
	if allow == nil {
		if text != "" {
			segs = []segment{{0, len(text), -1}}
		}
	} else {
		segs = t.splitAdded(text, t.rawTrie, allow, nil)
	}
	for _, s := range segs {
		if s.id >= 0 {
			ids = append(ids, s.id)
			continue
		}
		allowNorm := allow != nil && allow(s.start, s.end)
		ids = t.encodeSegment(ids, text[s.start:s.end], s.start == 0, allowNorm)
	}
	if addBOS {
		ids = append(ids, t.postEnd...)
	}
	return ids
}

func (t *Tokenizer) addPrefix(ids []int) []int {
	if t.hasPost {
		return append(ids, t.post...)
	}
	if t.bos >= 0 {
		return append(ids, t.bos)
	}
	return ids
}

// encodeSegment encodes text that holds no raw-matched added token.
func (t *Tokenizer) encodeSegment(dst []int, s string, atStart, allowNorm bool) []int {
	if t.spm != nil {
		return t.spm.encode(dst, s)
	}
	if t.norm != nil {
		s = t.norm.normalize(s)
	}
	if s == "" {
		return dst
	}
	if !allowNorm || t.normTrie.empty() {
		return t.encodePieces(dst, []piece{{text: s, atStart: atStart}})
	}
	for _, sub := range t.splitAdded(s, t.normTrie, nil, nil) {
		if sub.id >= 0 {
			dst = append(dst, sub.id)
			continue
		}
		dst = t.encodePieces(dst, []piece{{text: s[sub.start:sub.end], atStart: atStart && sub.start == 0}})
	}
	return dst
}

func (t *Tokenizer) encodePieces(dst []int, ps []piece) []int {
	if t.pre != nil {
		ps = t.pre.preTokenize(ps)
	}
	for _, p := range ps {
		dst = t.bpe.encode(dst, p.text)
	}
	return dst
}

// validUTF8 replaces each byte of an invalid UTF-8 sequence with U+FFFD.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteString("\uFFFD")
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// Decode returns the text of ids as the tokenizer's decoder produces it. With skipSpecial,
// special tokens (BOS, EOS, ChatML markers, ...) are left out. Ids outside the vocabulary are
// ignored.
func (t *Tokenizer) Decode(ids []int, skipSpecial bool) string {
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		if s, ok := t.decodable(id, skipSpecial); ok {
			toks = append(toks, s)
		}
	}
	return t.decodeTokens(toks)
}

// decodable returns the token text of id unless Decode leaves id out.
func (t *Tokenizer) decodable(id int, skipSpecial bool) (string, bool) {
	if id < 0 || id >= len(t.tokens) || t.tokens[id] == "" {
		return "", false
	}
	if skipSpecial && t.special[id] {
		return "", false
	}
	return t.tokens[id], true
}

func (t *Tokenizer) decodeTokens(toks []string) string {
	if t.dec == nil {
		return strings.Join(toks, " ")
	}
	return strings.Join(t.dec.decodeChain(toks), "")
}

// VocabSize is the number of token ids, added tokens included (one more than the largest id).
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// TokenText returns the vocabulary entry of id (for example "▁Hello" or "<0x0A>"), and false
// when id is not a token.
func (t *Tokenizer) TokenText(id int) (string, bool) {
	if id < 0 || id >= len(t.tokens) || t.tokens[id] == "" {
		return "", false
	}
	return t.tokens[id], true
}

// ID returns the id of a vocabulary entry (for example "<|im_end|>" or "▁Hello").
func (t *Tokenizer) ID(token string) (int, bool) {
	id, ok := t.ids[token]
	return id, ok
}

// IsSpecial reports whether id is a special token.
func (t *Tokenizer) IsSpecial(id int) bool { return id >= 0 && id < len(t.special) && t.special[id] }

// BOS returns the beginning-of-sequence id, or -1 when the tokenizer has none.
func (t *Tokenizer) BOS() int { return t.bos }

// EOS returns the end-of-sequence id, or -1 when the tokenizer has none. For chat checkpoints
// such as Dolphin this is the end-of-turn token "<|im_end|>".
func (t *Tokenizer) EOS() int { return t.eos }

// AddsBOS reports whether the checkpoint expects BOS on encoded prompts (add_bos_token).
func (t *Tokenizer) AddsBOS() bool { return t.addBOS }

// ChatTemplate returns the checkpoint's Jinja chat template, or "" when it has none.
func (t *Tokenizer) ChatTemplate() string { return t.chatTemplate }

// Load reads the tokenizer of a Hugging Face checkpoint directory: tokenizer.json when
// present, otherwise tokenizer.model with added_tokens.json; tokenizer_config.json (and
// special_tokens_map.json, chat_template.jinja) give BOS, EOS, add_bos_token and the chat
// template.
func Load(dir string) (*Tokenizer, error) {
	cfg, err := readConfig(dir)
	if err != nil {
		return nil, err
	}
	var t *Tokenizer
	if data, err := os.ReadFile(filepath.Join(dir, "tokenizer.json")); err == nil {
		if t, err = ParseJSON(data); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "tokenizer.json"), err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	} else if data, err := os.ReadFile(filepath.Join(dir, "tokenizer.model")); err == nil {
		if t, err = ParseSentencePiece(data); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "tokenizer.model"), err)
		}
		if err := t.addConfigTokens(cfg); err != nil {
			return nil, err
		}
	} else if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNotFound, dir)
	} else {
		return nil, err
	}
	t.applyConfig(cfg)
	return t, nil
}

// LoadFile reads one tokenizer file: a tokenizer.json or a SentencePiece tokenizer.model,
// told apart by content.
func LoadFile(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var t *Tokenizer
	if s := strings.TrimLeft(string(data[:min(len(data), 64)]), " \t\r\n"); strings.HasPrefix(s, "{") {
		t, err = ParseJSON(data)
	} else {
		t, err = ParseSentencePiece(data)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// newTokenizer returns an empty tokenizer with n ids.
func newTokenizer(n int) *Tokenizer {
	return &Tokenizer{
		tokens: make([]string, n), special: make([]bool, n), ids: make(map[string]int, n),
		rawTrie: newTrie(), normTrie: newTrie(), bos: -1, eos: -1, addBOS: true,
	}
}

// setToken records id's text, growing the tables as needed.
func (t *Tokenizer) setToken(id int, text string, special bool) {
	for id >= len(t.tokens) {
		t.tokens = append(t.tokens, "")
		t.special = append(t.special, false)
	}
	t.tokens[id] = text
	t.special[id] = t.special[id] || special
	t.ids[text] = id
}

// addAdded registers an added token for matching in text.
func (t *Tokenizer) addAdded(a addedToken, normContent string) {
	for i, old := range t.added {
		if old.content == a.content {
			t.added[i] = a
			t.rebuildTries()
			t.setToken(a.id, a.content, a.special)
			return
		}
	}
	t.added = append(t.added, a)
	t.setToken(a.id, a.content, a.special)
	if a.normalized {
		t.normTrie.add(normContent, int32(len(t.added)-1))
	} else {
		t.rawTrie.add(a.content, int32(len(t.added)-1))
	}
}

func (t *Tokenizer) rebuildTries() {
	t.rawTrie, t.normTrie = newTrie(), newTrie()
	for i, a := range t.added {
		if a.normalized {
			c := a.content
			if t.norm != nil {
				c = t.norm.normalize(c)
			}
			t.normTrie.add(c, int32(i))
		} else {
			t.rawTrie.add(a.content, int32(i))
		}
	}
}

// tokenJSON is an entry of added_tokens in tokenizer.json or of added_tokens_decoder.
type tokenJSON struct {
	ID         *int   `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	Lstrip     bool   `json:"lstrip"`
	Rstrip     bool   `json:"rstrip"`
	Normalized *bool  `json:"normalized"`
	Special    bool   `json:"special"`
}

// ParseJSON reads a Hugging Face tokenizer.json. Components outside the set this package
// implements are reported with an *UnsupportedError.
func ParseJSON(data []byte) (*Tokenizer, error) {
	var f struct {
		AddedTokens   []tokenJSON     `json:"added_tokens"`
		Normalizer    json.RawMessage `json:"normalizer"`
		PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
		Model         json.RawMessage `json:"model"`
		PostProcessor json.RawMessage `json:"post_processor"`
		Decoder       json.RawMessage `json:"decoder"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, formatErr("tokenizer.json: %v", err)
	}
	if isNull(f.Model) {
		return nil, formatErr("tokenizer.json has no model")
	}
	bpe, err := parseBPE(f.Model)
	if err != nil {
		return nil, err
	}
	norm, err := parseNormalizer(f.Normalizer)
	if err != nil {
		return nil, err
	}
	pre, err := parsePreTokenizer(f.PreTokenizer)
	if err != nil {
		return nil, err
	}
	dec, kind, err := parseDecoder(f.Decoder)
	if err != nil {
		return nil, err
	}
	size := 0
	for _, id := range bpe.vocab {
		size = max(size, int(id)+1)
	}
	if size > maxVocab {
		return nil, formatErr("token id %d out of range", size-1)
	}
	t := newTokenizer(size)
	t.bpe, t.norm, t.pre, t.dec, t.stream = bpe, norm, pre, dec, kind
	for tok, id := range bpe.vocab {
		t.setToken(int(id), tok, false)
	}
	// As Hugging Face tokenizers does, the ids written beside added tokens are not trusted: a
	// token keeps the id it already has (as an added or model token), and a new one gets the
	// next id after the model's vocabulary.
	next := len(bpe.vocab)
	for _, a := range f.AddedTokens {
		if a.Content == "" {
			continue
		}
		id := -1
		for _, old := range t.added {
			if old.content == a.Content {
				id = old.id
			}
		}
		if v, ok := bpe.vocab[a.Content]; id < 0 && ok {
			id = int(v)
		}
		if id < 0 {
			id = next
			next++
		}
		if id >= maxVocab {
			return nil, formatErr("added token %q: id %d out of range", a.Content, id)
		}
		normalized := a.Normalized == nil || *a.Normalized
		nc := a.Content
		if normalized && norm != nil {
			nc = norm.normalize(nc)
		}
		t.addAdded(addedToken{id: id, content: a.Content, special: a.Special, lstrip: a.Lstrip,
			rstrip: a.Rstrip, singleWord: a.SingleWord, normalized: normalized}, nc)
	}
	if err := t.parsePost(f.PostProcessor); err != nil {
		return nil, err
	}
	if id, ok := t.ids["<s>"]; ok {
		t.bos = id
	}
	if id, ok := t.ids["</s>"]; ok {
		t.eos = id
	}
	if t.hasPost {
		if len(t.post) > 0 {
			t.bos = t.post[0]
		}
		t.addBOS = len(t.post) > 0
	}
	return t, nil
}

// parsePost reads a TemplateProcessing post-processor (possibly in a Sequence, beside the
// offsets-only ByteLevel processor).
func (t *Tokenizer) parsePost(raw json.RawMessage) error {
	if isNull(raw) {
		return nil
	}
	var h struct {
		Type       string            `json:"type"`
		Processors []json.RawMessage `json:"processors"`
		Single     []struct {
			SpecialToken *struct {
				ID string `json:"id"`
			} `json:"SpecialToken"`
			Sequence *struct {
				ID string `json:"id"`
			} `json:"Sequence"`
		} `json:"single"`
		SpecialTokens map[string]struct {
			IDs []int `json:"ids"`
		} `json:"special_tokens"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return formatErr("post_processor: %v", err)
	}
	switch h.Type {
	case "Sequence":
		for _, p := range h.Processors {
			if err := t.parsePost(p); err != nil {
				return err
			}
		}
		return nil
	case "ByteLevel":
		return nil // only adjusts offsets
	case "TemplateProcessing":
	default:
		return unsupported("post_processor %q", h.Type)
	}
	t.hasPost = true
	t.post, t.postEnd = nil, nil
	seen := false
	for _, item := range h.Single {
		switch {
		case item.Sequence != nil:
			if seen {
				return unsupported("post_processor TemplateProcessing with two sequences in single")
			}
			seen = true
		case item.SpecialToken != nil:
			st, ok := h.SpecialTokens[item.SpecialToken.ID]
			if !ok {
				return formatErr("post_processor: special token %q is not defined", item.SpecialToken.ID)
			}
			for _, id := range st.IDs {
				if id < 0 || id >= len(t.tokens) {
					return formatErr("post_processor: id %d out of range", id)
				}
			}
			if seen {
				t.postEnd = append(t.postEnd, st.IDs...)
			} else {
				t.post = append(t.post, st.IDs...)
			}
		default:
			return formatErr("post_processor: template item is neither SpecialToken nor Sequence")
		}
	}
	if !seen {
		return formatErr("post_processor: single template has no sequence")
	}
	return nil
}

// ParseSentencePiece reads a SentencePiece BPE model (tokenizer.model). It knows no added
// tokens; Load adds those of added_tokens.json. Decoding follows the Hugging Face conversion of
// such models: "▁" becomes a space, byte pieces join into UTF-8, and the leading space the
// encoder adds is removed.
func ParseSentencePiece(data []byte) (*Tokenizer, error) {
	m, err := parseSPM(data)
	if err != nil {
		return nil, err
	}
	t := newTokenizer(len(m.pieces))
	t.spm = m
	for id, p := range m.pieces {
		typ := m.types[id]
		t.setToken(id, p, typ == spmControl || typ == spmUnknown)
	}
	// The pieces map is authoritative for duplicates across piece kinds.
	for p, id := range m.normal {
		t.ids[p] = int(id)
	}
	t.bos, t.eos = max(int(m.bosID), -1), max(int(m.eosID), -1)
	seq := decSeq{&decReplace{lit: spaceSymbol, content: " "}, decByteFallback{}, decFuse{}}
	if m.addDummyPrefix && !m.spaceAsSuffix {
		seq = append(seq, decStrip{content: ' ', start: 1})
	}
	t.dec, t.stream = seq, streamByteRuns
	return t, nil
}
