package tokenizer

import (
	"encoding/json"
	"strings"
	"sync"
	"unicode/utf8"
)

// bpeMerge is the result of merging a pair of ids: its rank (lower merges first) and new id.
type bpeMerge struct {
	rank  int32
	newID int32
}

// bpeModel is the BPE model of tokenizer.json: merges applied in rank order, leftmost first.
type bpeModel struct {
	vocab        map[string]int32
	merges       map[uint64]bpeMerge // (left id << 32 | right id) -> merge
	unkID        int32               // -1 without an unknown token
	byteFallback bool
	fuseUnk      bool
	ignoreMerges bool
	prefix       string // continuing_subword_prefix
	suffix       string // end_of_word_suffix
	byteIDs      [256]int32
	// barrier marks ASCII characters that no merge ever involves: a word splits around them
	// without changing its encoding, which keeps the merge queue small on long inputs.
	barrier [128]bool

	cache sync.Map // short word -> []int32, bounded by cacheLen
	cacheLen
}

// cacheLen counts cache entries so that the cache stays bounded.
type cacheLen struct {
	mu sync.Mutex
	n  int
}

const (
	bpeCacheMaxWord    = 256
	bpeCacheMaxEntries = 1 << 16
)

func parseBPE(raw json.RawMessage) (*bpeModel, error) {
	var h struct {
		Type         string          `json:"type"`
		Vocab        json.RawMessage `json:"vocab"`
		Merges       json.RawMessage `json:"merges"`
		UnkToken     *string         `json:"unk_token"`
		ByteFallback bool            `json:"byte_fallback"`
		FuseUnk      bool            `json:"fuse_unk"`
		IgnoreMerges bool            `json:"ignore_merges"`
		Prefix       *string         `json:"continuing_subword_prefix"`
		Suffix       *string         `json:"end_of_word_suffix"`
		Dropout      *float64        `json:"dropout"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, formatErr("model: %v", err)
	}
	if h.Type != "BPE" && h.Type != "" {
		return nil, unsupported("model %q", h.Type)
	}
	if h.Dropout != nil && *h.Dropout > 0 {
		return nil, unsupported("model BPE with dropout %v", *h.Dropout)
	}
	m := &bpeModel{unkID: -1, byteFallback: h.ByteFallback, fuseUnk: h.FuseUnk, ignoreMerges: h.IgnoreMerges}
	if !isNull(h.Vocab) {
		var ok bool
		if m.vocab, ok = scanVocab(h.Vocab); !ok {
			if err := json.Unmarshal(h.Vocab, &m.vocab); err != nil {
				return nil, formatErr("model: vocab: %v", err)
			}
		}
	}
	if m.vocab == nil {
		m.vocab = map[string]int32{}
	}
	for tok, id := range m.vocab {
		if id < 0 {
			return nil, formatErr("model: token %q has negative id %d", tok, id)
		}
	}
	if h.Prefix != nil {
		m.prefix = *h.Prefix
	}
	if h.Suffix != nil {
		m.suffix = *h.Suffix
	}
	if h.UnkToken != nil {
		id, ok := m.vocab[*h.UnkToken]
		if !ok {
			return nil, formatErr("model: unk_token %q is not in the vocabulary", *h.UnkToken)
		}
		m.unkID = id
	}
	for b := range m.byteIDs {
		m.byteIDs[b] = -1
		if id, ok := m.vocab[byteToken(byte(b))]; ok {
			m.byteIDs[b] = id
		}
	}
	// Merges are either ["a b", ...] (older files) or [["a", "b"], ...].
	var pairs [][2]string
	if !isNull(h.Merges) {
		var ok bool
		if pairs, ok = scanMerges(h.Merges); !ok {
			return nil, formatErr("model: merges must be an array of \"a b\" strings or of [\"a\", \"b\"] pairs")
		}
	}
	m.merges = make(map[uint64]bpeMerge, len(pairs))
	for rank, p := range pairs {
		a, ok1 := m.vocab[p[0]]
		b, ok2 := m.vocab[p[1]]
		if !ok1 || !ok2 {
			return nil, formatErr("model: merge %d (%q, %q) uses a token outside the vocabulary", rank, p[0], p[1])
		}
		right := p[1]
		if m.prefix != "" {
			right = strings.TrimPrefix(right, m.prefix)
		}
		id, ok := m.vocab[p[0]+right]
		if !ok {
			return nil, formatErr("model: merge %d result %q is not in the vocabulary", rank, p[0]+right)
		}
		key := uint64(a)<<32 | uint64(b)
		if _, dup := m.merges[key]; !dup {
			m.merges[key] = bpeMerge{rank: int32(rank), newID: id}
		}
	}
	m.setBarriers()
	return m, nil
}

// setBarriers finds the ASCII characters whose symbols take part in no merge. Splitting there
// is exact only when no unknown token can be pending (it would fuse or reorder across the
// split), so characters without their own token need complete byte fallback.
func (m *bpeModel) setBarriers() {
	if m.prefix != "" || m.suffix != "" {
		return
	}
	inMerge := map[int32]bool{}
	for k := range m.merges {
		inMerge[int32(k>>32)] = true
		inMerge[int32(uint32(k))] = true
	}
	allBytes := m.byteFallback && m.hasBytes(string(func() []byte {
		b := make([]byte, 256)
		for i := range b {
			b[i] = byte(i)
		}
		return b
	}()))
	for c := 0; c < 128; c++ {
		if id, ok := m.vocab[string(rune(c))]; ok {
			m.barrier[c] = !inMerge[id] && (allBytes || m.unkID < 0)
		} else if allBytes {
			m.barrier[c] = !inMerge[m.byteIDs[c]]
		}
	}
}

// byteToken is the byte-fallback token of b, "<0xNN>".
func byteToken(b byte) string {
	const hex = "0123456789ABCDEF"
	return string([]byte{'<', '0', 'x', hex[b>>4], hex[b&15], '>'})
}

// encode appends the ids of one pre-tokenized word to dst.
func (m *bpeModel) encode(dst []int, word string) []int {
	if word == "" {
		return dst
	}
	if m.ignoreMerges {
		if id, ok := m.vocab[word]; ok {
			return append(dst, int(id))
		}
	}
	if len(word) >= bpeCacheMaxWord {
		for i := m.barrierIndex(word); i >= 0; i = m.barrierIndex(word) {
			dst = m.encodeWord(dst, word[:i])
			dst = m.encodeWord(dst, word[i:i+1])
			word = word[i+1:]
		}
	}
	return m.encodeWord(dst, word)
}

// encodeWord encodes a word (or a part of one between barriers) through the cache.
func (m *bpeModel) encodeWord(dst []int, word string) []int {
	if word == "" {
		return dst
	}
	short := len(word) < bpeCacheMaxWord
	if short {
		if v, ok := m.cache.Load(word); ok {
			for _, id := range v.([]int32) {
				dst = append(dst, int(id))
			}
			return dst
		}
	}
	ids := m.merge(m.symbols(word))
	if short {
		m.cacheLen.mu.Lock()
		if m.cacheLen.n < bpeCacheMaxEntries {
			if _, loaded := m.cache.LoadOrStore(word, ids); !loaded {
				m.cacheLen.n++
			}
		}
		m.cacheLen.mu.Unlock()
	}
	for _, id := range ids {
		dst = append(dst, int(id))
	}
	return dst
}

// barrierIndex returns the index of the first barrier character in word, or -1.
func (m *bpeModel) barrierIndex(word string) int {
	for i := 0; i < len(word); i++ {
		if c := word[i]; c < 128 && m.barrier[c] {
			return i
		}
	}
	return -1
}

// symbols splits a word into initial ids: one per character, with byte fallback, unknown
// tokens (fused when fuse_unk is set) and the subword prefix and suffix.
func (m *bpeModel) symbols(word string) []int32 {
	syms := make([]int32, 0, len(word))
	// An unknown token is held back until a known character follows (so that unknown
	// characters can fuse), exactly as Hugging Face tokenizers does; byte-fallback tokens do
	// not release it.
	pendingUnk := false
	var sb strings.Builder
	for i, r := range word {
		n := utf8.RuneLen(r)
		if r == utf8.RuneError {
			_, n = utf8.DecodeRuneInString(word[i:])
		}
		s := word[i : i+n]
		if (i > 0 && m.prefix != "") || (i+n == len(word) && m.suffix != "") {
			sb.Reset()
			if i > 0 {
				sb.WriteString(m.prefix)
			}
			sb.WriteString(s)
			if i+n == len(word) {
				sb.WriteString(m.suffix)
			}
			s = sb.String()
		}
		if id, ok := m.vocab[s]; ok {
			if pendingUnk {
				syms = append(syms, m.unkID)
				pendingUnk = false
			}
			syms = append(syms, id)
			continue
		}
		if m.byteFallback && m.hasBytes(s) {
			for j := 0; j < len(s); j++ {
				syms = append(syms, m.byteIDs[s[j]])
			}
			continue
		}
		if m.unkID >= 0 {
			if pendingUnk && !m.fuseUnk {
				syms = append(syms, m.unkID)
			}
			pendingUnk = true
		}
	}
	if pendingUnk {
		syms = append(syms, m.unkID)
	}
	return syms
}

func (m *bpeModel) hasBytes(s string) bool {
	for i := 0; i < len(s); i++ {
		if m.byteIDs[s[i]] < 0 {
			return false
		}
	}
	return true
}

// merge applies the merges to the symbols, lowest rank first and leftmost among equals,
// in O(n log n) with a heap over a doubly linked list of symbols.
func (m *bpeModel) merge(ids []int32) []int32 {
	if len(ids) < 2 || len(m.merges) == 0 {
		return ids
	}
	n := len(ids)
	prev := make([]int32, n)
	next := make([]int32, n)
	alive := make([]bool, n)
	q := make(mergeQueue, 0, n)
	item := func(pos int32, mg bpeMerge) queueItem {
		return queueItem{key: uint64(mg.rank)<<32 | uint64(pos), right: mg.newID}
	}
	for i := range ids {
		prev[i], next[i], alive[i] = int32(i-1), int32(i+1), true
		if i+1 < n {
			if mg, ok := m.merges[uint64(ids[i])<<32|uint64(ids[i+1])]; ok {
				q = append(q, item(int32(i), mg))
			}
		}
	}
	next[n-1] = -1
	q.init()
	for len(q) > 0 {
		top := q.pop()
		p := int32(uint32(top.key))
		if !alive[p] || next[p] < 0 {
			continue
		}
		nx := next[p]
		if mg, ok := m.merges[uint64(ids[p])<<32|uint64(ids[nx])]; !ok || mg.newID != top.right {
			continue // stale entry
		}
		ids[p] = top.right
		alive[nx] = false
		next[p] = next[nx]
		if next[nx] >= 0 {
			prev[next[nx]] = p
		}
		if pp := prev[p]; pp >= 0 {
			if mg, ok := m.merges[uint64(ids[pp])<<32|uint64(ids[p])]; ok {
				q.push(item(pp, mg))
			}
		}
		if nn := next[p]; nn >= 0 {
			if mg, ok := m.merges[uint64(ids[p])<<32|uint64(ids[nn])]; ok {
				q.push(item(p, mg))
			}
		}
	}
	out := ids[:0]
	for i := 0; i >= 0; i = int(next[i]) {
		out = append(out, ids[i])
	}
	return out
}
