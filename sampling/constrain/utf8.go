package constrain

import (
	"slices"
	"unicode/utf8"
)

// runeRange is an inclusive range of code points.
type runeRange struct{ lo, hi rune }

// normalizeRanges sorts and merges rs, dropping the surrogates (which UTF-8 cannot encode)
// and anything beyond the last code point.
func normalizeRanges(rs []runeRange) []runeRange {
	var out []runeRange
	for _, r := range rs {
		r.lo, r.hi = max(r.lo, 0), min(r.hi, utf8.MaxRune)
		if r.lo > r.hi {
			continue
		}
		// Cut out the surrogates.
		if r.lo < 0xD800 && r.hi >= 0xD800 {
			out = append(out, runeRange{r.lo, 0xD7FF})
			r.lo = 0xE000
		}
		if r.lo >= 0xD800 && r.lo <= 0xDFFF {
			r.lo = 0xE000
		}
		if r.lo <= r.hi {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b runeRange) int { return int(a.lo - b.lo) })
	merged := out[:0]
	for _, r := range out {
		if n := len(merged); n > 0 && r.lo <= merged[n-1].hi+1 {
			merged[n-1].hi = max(merged[n-1].hi, r.hi)
			continue
		}
		merged = append(merged, r)
	}
	return merged
}

// subtractRanges returns rs without the code points of cut; both are normalized.
func subtractRanges(rs, cut []runeRange) []runeRange {
	var out []runeRange
	for _, r := range rs {
		lo := r.lo
		for _, c := range cut {
			if c.hi < lo || c.lo > r.hi {
				continue
			}
			if c.lo > lo {
				out = append(out, runeRange{lo, c.lo - 1})
			}
			lo = c.hi + 1
		}
		if lo <= r.hi {
			out = append(out, runeRange{lo, r.hi})
		}
	}
	return out
}

// utf8Grammar returns the grammar of the UTF-8 encoding of one code point of rs.
func utf8Grammar(rs []runeRange) *Grammar {
	var alts []*Grammar
	var ascii byteSet
	for _, r := range normalizeRanges(rs) {
		if r.lo < utf8.RuneSelf {
			ascii.addRange(byte(r.lo), byte(min(r.hi, utf8.RuneSelf-1)))
			if r.hi < utf8.RuneSelf {
				continue
			}
			r.lo = utf8.RuneSelf
		}
		alts = appendUTF8(alts, r.lo, r.hi)
	}
	if !ascii.empty() {
		alts = append([]*Grammar{bytesOf(ascii)}, alts...)
	}
	return Alt(alts...)
}

// appendUTF8 appends to alts byte-range sequences that encode exactly the code points from lo
// to hi (no surrogates among them, both at least 0x80).
func appendUTF8(alts []*Grammar, lo, hi rune) []*Grammar {
	// Split where the encoded length changes.
	for _, limit := range []rune{0x7FF, 0xFFFF} {
		if lo <= limit && hi > limit {
			alts = appendUTF8(alts, lo, limit)
			lo = limit + 1
		}
	}
	n := utf8.RuneLen(lo)
	// Split until lo and hi differ only in a prefix followed by full continuation ranges.
	for i := 1; i < n; i++ {
		m := rune(1)<<(6*i) - 1
		if lo&^m != hi&^m {
			if lo&m != 0 {
				alts = appendUTF8(alts, lo, lo|m)
				return appendUTF8(alts, (lo|m)+1, hi)
			}
			if hi&m != m {
				alts = appendUTF8(alts, lo, (hi&^m)-1)
				return appendUTF8(alts, hi&^m, hi)
			}
		}
	}
	var a, b [utf8.UTFMax]byte
	utf8.EncodeRune(a[:], lo)
	utf8.EncodeRune(b[:], hi)
	seq := make([]*Grammar, n)
	for i := range n {
		seq[i] = ByteRange(a[i], b[i])
	}
	return append(alts, Seq(seq...))
}
