package constrain

import (
	"fmt"
	"math/big"
	"strings"
)

// bound is one end of a numeric range: a value, inclusive or not.
type bound struct {
	v    *big.Rat
	excl bool
}

// maxBoundDigits bounds the decimal digits of a range's ends.
const maxBoundDigits = 64

// decimal writes r >= 0 as integer digits (no leading zeros; "0" for zero) and fraction
// digits (no trailing zeros).
func decimal(r *big.Rat) (string, string, error) {
	for prec := 0; prec <= maxBoundDigits; prec++ {
		s := r.FloatString(prec)
		var back big.Rat
		back.SetString(s)
		if back.Cmp(r) != 0 {
			continue
		}
		i, f, _ := strings.Cut(s, ".")
		if len(i) > maxBoundDigits {
			break
		}
		return i, strings.TrimRight(f, "0"), nil
	}
	return "", "", fmt.Errorf("%w: a bound of %s decimal digits or more", ErrUnsupported, fmt.Sprint(maxBoundDigits))
}

// numberRange returns the grammar of the JSON numbers x with lo <= x <= hi (nil: no bound),
// written without exponent; integers only when integer is set.
func numberRange(lo, hi *bound, integer bool) (*Grammar, error) {
	zero := new(big.Rat)
	var alts []*Grammar
	// Negative numbers: "-" and a magnitude m = -x > 0.
	if lo == nil || lo.v.Sign() < 0 {
		mlo := &bound{v: zero, excl: true}
		if hi != nil && hi.v.Sign() < 0 {
			mlo = &bound{v: new(big.Rat).Neg(hi.v), excl: hi.excl}
		}
		var mhi *bound
		if lo != nil {
			mhi = &bound{v: new(big.Rat).Neg(lo.v), excl: lo.excl}
		}
		g, err := magnitude(mlo, mhi, integer)
		if err != nil {
			return nil, err
		}
		alts = append(alts, Seq(Literal("-"), g))
	}
	// Non-negative numbers.
	if hi == nil || hi.v.Sign() > 0 || hi.v.Sign() == 0 && !hi.excl {
		mlo := &bound{v: zero}
		if lo != nil && lo.v.Sign() >= 0 {
			mlo = lo
		}
		g, err := magnitude(mlo, hi, integer)
		if err != nil {
			return nil, err
		}
		alts = append(alts, g)
	}
	return Alt(alts...), nil
}

// magnitude returns the grammar of the non-negative decimals m with lo <= m <= hi (lo >= 0;
// hi nil: no bound), integer part without leading zeros, fraction optional (absent when
// integer is set).
func magnitude(lo, hi *bound, integer bool) (*Grammar, error) {
	if hi != nil {
		if c := lo.v.Cmp(hi.v); c > 0 || c == 0 && (lo.excl || hi.excl) {
			return neverGrammar, nil
		}
	}
	li, lf, err := decimal(lo.v)
	if err != nil {
		return nil, err
	}
	r := &rangeGen{li: li, lf: lf, lexcl: lo.excl, integer: integer}
	var alts []*Grammar
	maxLen := -1
	if hi != nil {
		if r.hi, r.hf, err = decimal(hi.v); err != nil {
			return nil, err
		}
		r.hexcl, r.bounded = hi.excl, true
		maxLen = len(r.hi)
	}
	for n := len(li); maxLen < 0 && n == len(li) || n <= maxLen; n++ {
		alts = append(alts, r.intDigits(n, 0, n == len(li), r.bounded && n == len(r.hi)))
	}
	if maxLen < 0 && len(li) < maxIntDigits {
		// Longer than the lower bound: anything, up to maxIntDigits digits.
		alts = append(alts, Seq(digit19, Repeat(digit, len(li), maxIntDigits-1), r.freeFraction()))
	}
	return Alt(alts...), nil
}

// rangeGen builds the digits of a magnitude range: lower bound li.lf, upper hi.hf.
type rangeGen struct {
	li, lf, hi, hf string
	lexcl, hexcl   bool
	bounded        bool
	integer        bool
}

func (r *rangeGen) freeFraction() *Grammar {
	if r.integer {
		return emptyGrammar
	}
	return Optional(fraction)
}

// intDigits returns the grammar of the integer digits from position pos of an integer part
// of n digits, then the fraction; tl (th) says the digits so far equal the lower (upper)
// bound's.
func (r *rangeGen) intDigits(n, pos int, tl, th bool) *Grammar {
	if pos == n {
		return r.fracDigits(0, tl, th)
	}
	first := byte('0')
	if pos == 0 && n > 1 {
		first = '1'
	}
	lo, hi := first, byte('9')
	if tl {
		lo = max(lo, r.li[pos])
	}
	if th {
		hi = r.hi[pos]
	}
	if lo > hi {
		return neverGrammar
	}
	free := func(a, b byte) *Grammar {
		if a > b {
			return neverGrammar
		}
		return Seq(ByteRange(a, b), Repeat(digit, n-pos-1, n-pos-1), r.freeFraction())
	}
	switch {
	case tl && th && lo == hi:
		return Seq(ByteRange(lo, lo), r.intDigits(n, pos+1, true, true))
	case tl && th:
		return Alt(Seq(ByteRange(lo, lo), r.intDigits(n, pos+1, true, false)), free(lo+1, hi-1),
			Seq(ByteRange(hi, hi), r.intDigits(n, pos+1, false, true)))
	case tl:
		return Alt(Seq(ByteRange(lo, lo), r.intDigits(n, pos+1, true, false)), free(lo+1, hi))
	case th:
		return Alt(free(lo, hi-1), Seq(ByteRange(hi, hi), r.intDigits(n, pos+1, false, true)))
	}
	return free(lo, hi)
}

// digitAt returns digit i of a fraction, zeros past its end.
func digitAt(f string, i int) byte {
	if i < len(f) {
		return f[i]
	}
	return '0'
}

// fracDigits returns the grammar of the fraction from digit pos on ("." included at pos 0),
// where tl (th) says the number so far equals the lower (upper) bound's digits.
func (r *rangeGen) fracDigits(pos int, tl, th bool) *Grammar {
	// Ending here leaves zeros: equal to a tight bound when its remaining digits are all
	// zeros, below (above) it otherwise.
	canEnd := true
	if tl && (pos < len(r.lf) || r.lexcl) {
		canEnd = false
	}
	if th && pos >= len(r.hf) && r.hexcl {
		canEnd = false
	}
	end := emptyGrammar
	if !canEnd {
		end = neverGrammar
	}
	if r.integer {
		return end
	}
	if !tl && !th {
		if pos == 0 {
			return Optional(fraction)
		}
		return Star(digit)
	}
	var more *Grammar
	if pos >= len(r.lf) && pos >= len(r.hf) {
		// Past both bounds' digits, which are zeros from here: zeros keep the number equal
		// to the tight bounds; a nonzero digit leaves the upper one, and frees the lower.
		after := neverGrammar
		if tl && !th {
			after = Seq(ByteRange('1', '9'), Star(digit))
		}
		more = Alt(Seq(Literal("0"), Star(Literal("0")), Alt(end, after)), after)
	} else {
		lo, hi := byte('0'), byte('9')
		if tl {
			lo = digitAt(r.lf, pos)
		}
		if th {
			hi = digitAt(r.hf, pos)
		}
		if lo > hi {
			more = neverGrammar
		} else {
			var alts []*Grammar
			if tl && th && lo == hi {
				alts = append(alts, Seq(ByteRange(lo, lo), r.fracDigits(pos+1, true, true)))
			} else {
				if tl {
					alts = append(alts, Seq(ByteRange(lo, lo), r.fracDigits(pos+1, true, false)))
				}
				a, b := lo, hi
				if tl {
					a++
				}
				if th {
					b--
				}
				if a <= b {
					alts = append(alts, Seq(ByteRange(a, b), Star(digit)))
				}
				if th {
					alts = append(alts, Seq(ByteRange(hi, hi), r.fracDigits(pos+1, false, true)))
				}
			}
			more = Alt(alts...)
		}
	}
	if pos == 0 {
		return Alt(end, Seq(Literal("."), more))
	}
	return Alt(end, more)
}
