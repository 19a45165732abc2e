package tokenizer

// trie is a byte trie over a set of strings, answering "which of the strings is the longest
// prefix of s". It is used for added tokens and SentencePiece user-defined symbols.
type trie struct {
	next  map[uint64]int32 // (node << 8 | byte) -> child node
	value []int32          // per node: value of the string ending there, or -1
	first [256]bool        // bytes that start some string: a fast rejection test
}

func newTrie() *trie {
	return &trie{next: map[uint64]int32{}, value: []int32{-1}}
}

// add inserts s with value v (v >= 0). Empty strings are ignored.
func (t *trie) add(s string, v int32) {
	if s == "" {
		return
	}
	t.first[s[0]] = true
	node := int32(0)
	for i := 0; i < len(s); i++ {
		k := uint64(node)<<8 | uint64(s[i])
		child, ok := t.next[k]
		if !ok {
			child = int32(len(t.value))
			t.value = append(t.value, -1)
			t.next[k] = child
		}
		node = child
	}
	t.value[node] = v
}

// longest returns the length and value of the longest string in t that is a prefix of s, or
// (0, -1) when there is none. accept, when non-nil, filters the candidates by value and length.
func (t *trie) longest(s string, accept func(v int32, n int) bool) (n int, v int32) {
	v = -1
	if t == nil || len(s) == 0 || !t.first[s[0]] {
		return 0, -1
	}
	node := int32(0)
	for i := 0; i < len(s); i++ {
		child, ok := t.next[uint64(node)<<8|uint64(s[i])]
		if !ok {
			break
		}
		node = child
		if val := t.value[node]; val >= 0 && (accept == nil || accept(val, i+1)) {
			n, v = i+1, val
		}
	}
	return n, v
}

// empty reports whether t holds no strings.
func (t *trie) empty() bool { return t == nil || len(t.value) == 1 }
