package tokenizer

import (
	"encoding/binary"
	"math"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// SentencePiece piece types (sentencepiece_model.proto).
const (
	spmNormal      = 1
	spmUnknown     = 2
	spmControl     = 3
	spmUserDefined = 4
	spmUnused      = 5
	spmByte        = 6
)

// spmModel is a SentencePiece BPE model read from a ModelProto (tokenizer.model). It encodes
// a text segment as SentencePiece does: normalize by the model's normalizer spec, then merge
// adjacent symbols by piece score.
type spmModel struct {
	pieces   []string
	scores   []float32
	types    []int8
	normal   map[string]int32 // NORMAL, USER_DEFINED and UNUSED pieces
	reserved map[string]int32 // CONTROL, UNKNOWN and BYTE pieces
	user     *trie            // user-defined symbols: never split, never normalized
	unkID    int32
	byteIDs  [256]int32 // byte pieces <0xNN>, -1 when absent
	bosID    int32
	eosID    int32
	hasUnuse bool

	// barrier marks ASCII characters that occur in no piece longer than themselves: no merge
	// crosses them, so the text splits there without changing its encoding.
	barrier [128]bool

	byteFallback     bool
	addDummyPrefix   bool
	removeExtraSpace bool
	escapeSpace      bool
	spaceAsSuffix    bool
	charsmap         *charsmap
}

// parseSPM decodes a serialized SentencePiece ModelProto.
func parseSPM(data []byte) (*spmModel, error) {
	m := &spmModel{
		normal: map[string]int32{}, reserved: map[string]int32{}, user: newTrie(),
		unkID: -1, bosID: 1, eosID: 2,
		addDummyPrefix: true, removeExtraSpace: true, escapeSpace: true,
	}
	for i := range m.byteIDs {
		m.byteIDs[i] = -1
	}
	modelType := int64(1) // UNIGRAM is the proto default
	var normSpec []byte
	err := walkProto(data, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
		switch {
		case num == 1 && typ == protowire.BytesType:
			return m.addPiece(b)
		case num == 2 && typ == protowire.BytesType:
			return walkProto(b, func(num protowire.Number, typ protowire.Type, v uint64, _ []byte) error {
				if typ != protowire.VarintType {
					return nil
				}
				switch num {
				case 3:
					modelType = int64(v)
				case 24:
					m.spaceAsSuffix = v != 0
				case 35:
					m.byteFallback = v != 0
				case 41:
					m.bosID = int32(v)
				case 42:
					m.eosID = int32(v)
				}
				return nil
			})
		case num == 3 && typ == protowire.BytesType:
			normSpec = b
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if modelType != 2 {
		return nil, unsupported("SentencePiece model_type %d (only BPE, 2, is implemented)", modelType)
	}
	if len(m.pieces) == 0 {
		return nil, formatErr("SentencePiece model has no pieces")
	}
	if m.unkID < 0 {
		return nil, formatErr("SentencePiece model defines no unknown piece")
	}
	if m.byteFallback {
		for b, id := range m.byteIDs {
			if id < 0 {
				return nil, formatErr("byte_fallback is set but piece <0x%02X> is missing", b)
			}
		}
	}
	for c := range m.barrier {
		m.barrier[c] = true
	}
	for p := range m.normal {
		if len(p) > 1 {
			for i := 0; i < len(p); i++ {
				if p[i] < 128 {
					m.barrier[p[i]] = false
				}
			}
		}
	}
	if int(m.bosID) >= len(m.pieces) {
		m.bosID = -1
	}
	if int(m.eosID) >= len(m.pieces) {
		m.eosID = -1
	}
	err = walkProto(normSpec, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
		switch {
		case num == 2 && typ == protowire.BytesType && len(b) > 0:
			cm, err := parseCharsmap(b)
			if err != nil {
				return err
			}
			m.charsmap = cm
		case num == 3 && typ == protowire.VarintType:
			m.addDummyPrefix = v != 0
		case num == 4 && typ == protowire.VarintType:
			m.removeExtraSpace = v != 0
		case num == 5 && typ == protowire.VarintType:
			m.escapeSpace = v != 0
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

func (m *spmModel) addPiece(b []byte) error {
	var piece string
	score := float32(0)
	typ := int8(spmNormal)
	err := walkProto(b, func(num protowire.Number, wt protowire.Type, v uint64, b []byte) error {
		switch {
		case num == 1 && wt == protowire.BytesType:
			piece = string(b)
		case num == 2 && wt == protowire.Fixed32Type:
			score = math.Float32frombits(uint32(v))
		case num == 3 && wt == protowire.VarintType:
			typ = int8(v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	id := int32(len(m.pieces))
	if piece == "" {
		return formatErr("SentencePiece piece %d is empty", id)
	}
	if typ < spmNormal || typ > spmByte {
		return formatErr("SentencePiece piece %d has unknown type %d", id, typ)
	}
	set := m.reserved
	if typ == spmNormal || typ == spmUserDefined || typ == spmUnused {
		set = m.normal
	}
	if _, dup := set[piece]; dup {
		return formatErr("SentencePiece piece %q is defined twice", piece)
	}
	set[piece] = id
	switch typ {
	case spmUserDefined:
		m.user.add(piece, id)
	case spmUnused:
		m.hasUnuse = true
	case spmUnknown:
		if m.unkID >= 0 {
			return formatErr("SentencePiece model defines two unknown pieces")
		}
		m.unkID = id
	case spmByte:
		bv, ok := parseByteToken(piece)
		if !ok {
			return formatErr("invalid byte piece %q", piece)
		}
		m.byteIDs[bv] = id
	}
	m.pieces = append(m.pieces, piece)
	m.scores = append(m.scores, score)
	m.types = append(m.types, typ)
	return nil
}

// walkProto calls fn for each field of a protobuf message; v holds varint and fixed values,
// b the contents of length-delimited fields.
func walkProto(data []byte, fn func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error) error {
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return formatErr("protobuf: %v", protowire.ParseError(n))
		}
		data = data[n:]
		var v uint64
		var b []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(data)
		case protowire.Fixed32Type:
			var x uint32
			x, n = protowire.ConsumeFixed32(data)
			v = uint64(x)
		case protowire.Fixed64Type:
			v, n = protowire.ConsumeFixed64(data)
		case protowire.BytesType:
			b, n = protowire.ConsumeBytes(data)
		default:
			n = protowire.ConsumeFieldValue(num, typ, data)
		}
		if n < 0 {
			return formatErr("protobuf: %v", protowire.ParseError(n))
		}
		data = data[n:]
		if err := fn(num, typ, v, b); err != nil {
			return err
		}
	}
	return nil
}

// parseByteToken parses a byte-fallback token "<0xNN>" (exactly six bytes, hex digits of
// either case, as Hugging Face tokenizers and SentencePiece accept).
func parseByteToken(s string) (byte, bool) {
	if len(s) != 6 || s[:3] != "<0x" || s[5] != '>' {
		return 0, false
	}
	hi, ok1 := unhex(s[3])
	lo, ok2 := unhex(s[4])
	return hi<<4 | lo, ok1 && ok2
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

const spaceSymbol = "\u2581"

// normalize applies the SentencePiece normalizer (normalizer.cc) to a text segment.
func (m *spmModel) normalize(in string) string {
	if in == "" {
		return ""
	}
	var out strings.Builder
	out.Grow(len(in) + len(in)/2 + 3)
	if m.removeExtraSpace {
		for in != "" {
			s, n := m.normalizePrefix(in)
			if s != " " {
				break
			}
			in = in[n:]
		}
		if in == "" {
			return ""
		}
	}
	addSpace := func() {
		if m.escapeSpace {
			out.WriteString(spaceSymbol)
		} else {
			out.WriteByte(' ')
		}
	}
	if !m.spaceAsSuffix && m.addDummyPrefix {
		addSpace()
	}
	prevSpace := m.removeExtraSpace
	for in != "" {
		s, n := m.normalizePrefix(in)
		in = in[n:]
		for prevSpace && strings.HasPrefix(s, " ") {
			s = s[1:]
		}
		if s != "" {
			if m.escapeSpace {
				for i := 0; i < len(s); i++ {
					if s[i] == ' ' {
						out.WriteString(spaceSymbol)
					} else {
						out.WriteByte(s[i])
					}
				}
			} else {
				out.WriteString(s)
			}
			prevSpace = strings.HasSuffix(s, " ")
		}
		if !m.removeExtraSpace {
			prevSpace = false
		}
	}
	res := out.String()
	if m.removeExtraSpace {
		sp := " "
		if m.escapeSpace {
			sp = spaceSymbol
		}
		for strings.HasSuffix(res, sp) {
			res = res[:len(res)-len(sp)]
		}
	}
	if m.spaceAsSuffix && m.addDummyPrefix {
		if m.escapeSpace {
			res += spaceSymbol
		} else {
			res += " "
		}
	}
	return res
}

// normalizePrefix returns the normalized form of the longest rule matching a prefix of in, and
// the number of input bytes it consumes. Invalid UTF-8 becomes U+FFFD, one byte at a time.
func (m *spmModel) normalizePrefix(in string) (string, int) {
	if n, _ := m.user.longest(in, nil); n > 0 {
		return in[:n], n
	}
	if m.charsmap != nil {
		if out, n := m.charsmap.longest(in); n > 0 {
			return out, n
		}
	}
	r, n := utf8.DecodeRuneInString(in)
	if r == utf8.RuneError && n <= 1 {
		return "\uFFFD", 1
	}
	return in[:n], n
}

type spmSymbol struct {
	start, end int32 // byte range in the normalized text
	prev, next int32
	frozen     bool
}

// encode appends the ids of a text segment (not yet normalized) to dst.
func (m *spmModel) encode(dst []int, text string) []int {
	norm := m.normalize(text)
	var pieces []string
	for start := 0; start < len(norm); {
		end := start
		for end < len(norm) && !(norm[end] < 128 && m.barrier[norm[end]]) {
			end++
		}
		if end == start {
			end++ // the barrier character on its own
		}
		pieces = m.merge(pieces, norm[start:end])
		start = end
	}
	prevUnk := false
	for _, p := range pieces {
		id, ok := m.reserved[p]
		if !ok {
			id, ok = m.normal[p]
		}
		if !ok {
			id = m.unkID
		}
		isUnk := m.types[id] == spmUnknown
		switch {
		case isUnk && m.byteFallback:
			for i := 0; i < len(p); i++ {
				dst = append(dst, int(m.byteIDs[p[i]]))
			}
		case isUnk && prevUnk:
			// A run of unknown pieces becomes one unknown id.
		default:
			dst = append(dst, int(id))
		}
		prevUnk = isUnk
	}
	return dst
}

// merge appends to dst the pieces of normalized text: symbols (characters, or user-defined
// pieces, which never merge) merged pairwise, highest piece score first and leftmost among
// equals, with unused pieces split back into the pieces they were made of.
func (m *spmModel) merge(dst []string, norm string) []string {
	symbols := make([]spmSymbol, 0, len(norm)/2+1)
	for i := 0; i < len(norm); {
		n, _ := m.user.longest(norm[i:], nil)
		frozen := n > 0
		if !frozen {
			_, n = utf8.DecodeRuneInString(norm[i:])
		}
		k := int32(len(symbols))
		symbols = append(symbols, spmSymbol{start: int32(i), end: int32(i + n), prev: k - 1, next: k + 1, frozen: frozen})
		i += n
	}
	if len(symbols) == 0 {
		return dst
	}
	symbols[len(symbols)-1].next = -1

	var revMerge map[string][2]string
	agenda := make(mergeQueue, 0, len(symbols))
	try := func(l, r int32) {
		if l < 0 || r < 0 || symbols[l].frozen || symbols[r].frozen {
			return
		}
		piece := norm[symbols[l].start:symbols[r].end]
		id, ok := m.normal[piece]
		if !ok {
			return
		}
		agenda.push(queueItem{key: uint64(scoreKey(m.scores[id]))<<32 | uint64(l), right: r, size: int32(len(piece))})
		if m.types[id] == spmUnused {
			if revMerge == nil {
				revMerge = map[string][2]string{}
			}
			revMerge[piece] = [2]string{norm[symbols[l].start:symbols[l].end], norm[symbols[r].start:symbols[r].end]}
		}
	}
	for i := int32(1); i < int32(len(symbols)); i++ {
		try(i-1, i)
	}
	for len(agenda) > 0 {
		top := agenda.pop()
		left := int32(uint32(top.key))
		l, r := &symbols[left], &symbols[top.right]
		if l.end == l.start || r.end == r.start || (l.end-l.start)+(r.end-r.start) != top.size {
			continue
		}
		l.end = r.end
		l.next = r.next
		if r.next >= 0 {
			symbols[r.next].prev = left
		}
		r.start, r.end = 0, 0
		try(l.prev, left)
		try(left, l.next)
	}

	var resegment func(p string)
	resegment = func(p string) {
		if id, ok := m.normal[p]; ok && m.types[id] == spmUnused {
			if parts, found := revMerge[p]; found {
				resegment(parts[0])
				resegment(parts[1])
				return
			}
		}
		dst = append(dst, p)
	}
	for i := int32(0); i >= 0; i = symbols[i].next {
		resegment(norm[symbols[i].start:symbols[i].end])
	}
	return dst
}

// charsmap is a SentencePiece precompiled character map: a Darts double-array trie over UTF-8
// input prefixes whose values index NUL-terminated replacement strings.
type charsmap struct {
	units  []uint32
	normed []byte
}

func parseCharsmap(b []byte) (*charsmap, error) {
	if len(b) < 4 {
		return nil, formatErr("precompiled_charsmap too short")
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) || n%4 != 0 {
		return nil, formatErr("precompiled_charsmap trie size %d out of range", n)
	}
	cm := &charsmap{units: make([]uint32, n/4), normed: b[4+n:]}
	for i := range cm.units {
		cm.units[i] = binary.LittleEndian.Uint32(b[4+4*i:])
	}
	if len(cm.units) == 0 {
		return nil, formatErr("precompiled_charsmap has an empty trie")
	}
	return cm, nil
}

// longest returns the replacement for the longest prefix of s the map holds, and the prefix
// length; n is 0 when no rule matches. Malformed tables never panic: they simply stop the walk.
func (c *charsmap) longest(s string) (string, int) {
	offset := func(u uint32) uint32 { return (u >> 10) << ((u & (1 << 9)) >> 6) }
	pos := offset(c.units[0])
	bestLen, bestVal := 0, uint32(0)
	for i := 0; i < len(s); i++ {
		pos ^= uint32(s[i])
		if uint64(pos) >= uint64(len(c.units)) {
			break
		}
		u := c.units[pos]
		if u&(1<<31|0xFF) != uint32(s[i]) {
			break
		}
		pos ^= offset(u)
		if (u>>8)&1 == 1 {
			if uint64(pos) >= uint64(len(c.units)) {
				break
			}
			bestLen, bestVal = i+1, c.units[pos]&(1<<31-1)
		}
	}
	if bestLen == 0 || uint64(bestVal) >= uint64(len(c.normed)) {
		return "", 0
	}
	rest := c.normed[bestVal:]
	end := 0
	for end < len(rest) && rest[end] != 0 {
		end++
	}
	return string(rest[:end]), bestLen
}
