package kernels

import (
	"unsafe"

	"github.com/klauspost/cpuid/v2"
)

// The canonical products (see the package documentation): vector kernels that each continue
// the canonical sums of a tile of rows × tokens, and the loops that run them.

// tileKernel continues, for each of groups groups of R rows of w (group g the rows g·R+r,
// r < R; row stride wstride) and the tokens t < T of x (row stride xstride), the canonical
// sums of their products over n values (a multiple of 32) in the 16 lanes at
// acc[((g·R+r)*T+t)*16:], which it loads (or, if fresh, starts from zero) and stores back, or,
// if out is not nil, reduces to out[t*ostride+g·R+r]. X is float32 for the exact products and
// uint16 (bfloat16) for those with rounded activations.
type tileKernel[E, X uint16 | float32] func(w *E, wstride int, x *X, xstride, n int, acc *float32, out *float32, ostride, groups int, fresh bool)

// rowsKernel stores to out[r], r < rows, the canonical sum (its lanes reduced) of w[r*stride:][:n]
// times x[:n], x as it is (not permuted), n a multiple of 32.
type rowsKernel[E uint16 | float32] func(w *E, stride int, x *float32, n int, out *float32, rows int)

// tiled holds the tile kernels of the products with many tokens for one weight type E and
// one type X of the activations as the tiles read them.
type tiled[E, X uint16 | float32] struct {
	// tiles[i][j] takes tileRows[i] rows and tileTokens[j] tokens; each list runs from the
	// largest down to 1. A product takes the most rows that fit what is left of its rows,
	// and the tokens that tokenTile picks.
	tiles      [][]tileKernel[E, X]
	tileRows   []int
	tileTokens []int
	// prepare, if not nil, stores each token's whole lines of activations as the tiles take
	// them (nil: x as it is, X being float32): for bfloat16 weights in the exact products each
	// 32 values split into the even and the odd ones (dst[c+i] = src[c+2i], dst[c+16+i] =
	// src[c+2i+1]), for the rounded products the values rounded to bfloat16.
	prepare func(dst []X, src []float32)
	tail    func([]E, []float32) float32 // the columns past the last whole line
}

// canon holds the kernels of the canonical products for one weight type.
type canon[E uint16 | float32] struct {
	tiled[E, float32]
	rows rowsKernel[E]
}

// dot is the canonical dot product of w and x[:len(w)].
func (k *canon[E]) dot(w []E, x []float32) float32 {
	x = x[:len(w)]
	n := len(w) &^ 31
	var s float32
	if n > 0 {
		k.rows(&w[0], 0, &x[0], n, &s, 1)
	}
	if n < len(w) {
		s += k.tail(w[n:], x[n:])
	}
	return s
}

// matVec sets out[r] to the canonical product of row r of w, [len(out), cols], with x[:cols].
func (k *canon[E]) matVec(out []float32, w []E, x []float32, cols int) {
	rows := len(out)
	w, x = w[:rows*cols], x[:cols]
	if rows == 0 {
		return
	}
	n := cols &^ 31
	if n == 0 {
		clear(out)
	} else {
		k.rows(&w[0], cols, &x[0], n, &out[0], rows)
	}
	if n < cols {
		for r := range out {
			out[r] += k.tail(w[r*cols+n:(r+1)*cols], x[n:])
		}
	}
}

// tokenTile returns the index in tileTokens of the tiles that take the next of the left
// tokens: those of the second size where some of them leave fewer tokens to tiles of one
// than tiles of the largest size alone (a tile of one token costs most of a large tile's
// time), else the largest that fits.
func (k *tiled[E, X]) tokenTile(left int) int {
	t := k.tileTokens
	if len(t) > 2 {
		best, rest := 0, left%t[0]
		for b := 1; b < t[0] && b*t[1] <= left; b++ {
			if r := (left - b*t[1]) % t[0]; r < rest {
				best, rest = b, r
			}
		}
		if best > 0 {
			return 1
		}
	}
	i := 0
	for t[i] > left {
		i++
	}
	return i
}

// canonBlocking holds the blocking of the products with many tokens: blocks of mc rows
// (their weights stay in L2 while every token passes) and kc columns (a tile's tokens'
// activations stay in L1 while the block's rows pass).
type canonBlocking struct{ mc, kc int }

// canonMany is the blocking for many tokens of activations of xsize bytes each; few tokens
// take two rows at a time over the whole row, which streams the weights from memory once.
func canonMany(l2, cols, size, xsize int) canonBlocking {
	if l2 <= 0 {
		l2 = 512 << 10
	}
	mc := max(4, min(128, l2/2/max(1, cols*size))) &^ 3
	return canonBlocking{mc: mc, kc: 4096 / xsize}
}

// prepared returns the scratch buffer of the prepared activations, n of them.
func prepared[X uint16 | float32](s *Scratch, n int) []X {
	var z X
	if _, ok := any(z).(float32); ok {
		return any(s.floats(scratchX, n)).([]X)
	}
	return any(s.halves(n)).([]X)
}

// matMul is the canonical product of rows [lo, hi) of w with tokens > 1 tokens of x (see
// matMul): out[t*rows+r] for t < tokens, r in [lo, hi). With alignTokens tokens or more,
// each block of rows that does not start on a cache line is copied onto cache lines first,
// so that the tiles' loads do not straddle two lines.
func (k *tiled[E, X]) matMul(s *Scratch, out []float32, w []E, x []float32, tokens, rows, cols, lo, hi int) {
	if s == nil {
		s = new(Scratch) // the call's own, reused by its blocks
	}
	n := cols &^ 31
	var e E
	var xe X
	// xk holds the activations as the tiles read them, xs values apart. Prepared ones are
	// stored a cache line further apart than their whole lines: rows of a power of two bytes
	// put the same line of every token of a tile in one set of L1, where they crowd out each
	// other and the weights streaming past (the bfloat16 tiles, six tokens each, run 3-4%
	// faster spread out).
	var xk []X
	xs := cols
	switch {
	case n == 0: // only the tail
	case k.prepare != nil:
		xs = n + cacheLine/int(unsafe.Sizeof(xe))
		xk = prepared[X](s, tokens*xs)
		for t := range tokens {
			k.prepare(xk[t*xs:t*xs+n], x[t*cols:t*cols+n])
		}
	default:
		xk = any(x).([]X) // X is float32
	}
	b := canonBlocking{mc: 2, kc: max(n, 32)}
	if tokens > fewTokens {
		b = canonMany(cpuid.CPU.Cache.L2, cols, int(unsafe.Sizeof(e)), int(unsafe.Sizeof(xe)))
	}
	acc := s.floats(scratchW, b.mc*k.tileTokens[0]*16)
	copyRows := n > 0 && tokens >= alignTokens && !lineAligned(w, cols)
	for rb := lo; rb < hi; rb += b.mc {
		re := min(rb+b.mc, hi)
		wb, ws := w[rb*cols:re*cols], cols // the block's rows as the tiles read them
		if copyRows {
			wb, ws = alignedRows(s, wb, cols)
		}
		for tg := 0; tg < tokens; {
			ti := k.tokenTile(tokens - tg)
			T := k.tileTokens[ti]
			a := acc[:(re-rb)*T*16]
			for kb := 0; kb < n; kb += b.kc {
				kn := min(b.kc, n-kb)
				// The block's rows in as many groups of the largest tile's rows as fit, then
				// of the next size for the rest, and so on.
				for r, ri := rb, 0; r < re; ri++ {
					R := k.tileRows[ri]
					groups := (re - r) / R
					if groups == 0 {
						continue
					}
					var o *float32 // the sums, after the last block
					if kb+kn == n {
						o = &out[tg*rows+r]
					}
					k.tiles[ri][ti](&wb[(r-rb)*ws+kb], ws, &xk[tg*xs+kb], xs, kn, &a[(r-rb)*T*16], o, rows, groups, kb == 0)
					r += groups * R
				}
			}
			if n < cols {
				for j := range T {
					o, xt := out[(tg+j)*rows:], x[(tg+j)*cols+n:(tg+j+1)*cols]
					for r := rb; r < re; r++ {
						if n == 0 {
							o[r] = 0
						}
						o[r] += k.tail(w[r*cols+n:(r+1)*cols], xt)
					}
				}
			}
			tg += T
		}
	}
}
