package kernels

import (
	"unsafe"

	"github.com/klauspost/cpuid/v2"
)

// The canonical products (see the package documentation): vector kernels that each continue
// the canonical sums of a tile of rows × tokens, and the loops that run them.

// tileKernel continues, for the rows r < R of w (row stride wstride) and the tokens t < T of
// x (row stride xstride), the canonical sums of their products over n values (a multiple of
// 32) in the 16 lanes at acc[(r*T+t)*16:], which it loads and stores back, or, if out is not
// nil, reduces to out[t*ostride+r].
type tileKernel[E uint16 | float32] func(w *E, wstride int, x *float32, xstride, n int, acc *float32, out *float32, ostride int)

// rowsKernel stores to out[r], r < rows, the canonical sum (its lanes reduced) of w[r*stride:][:n]
// times x[:n], x as it is (not permuted), n a multiple of 32.
type rowsKernel[E uint16 | float32] func(w *E, stride int, x *float32, n int, out *float32, rows int)

// canon holds the kernels of the canonical products for one weight type.
type canon[E uint16 | float32] struct {
	// tiles[i][j] takes tileRows[i] rows and tileTokens[j] tokens.
	tiles [3][2]tileKernel[E]
	rows  rowsKernel[E]
	// permute, if not nil, splits each 32 values of x into the even and the odd ones, as
	// the tiles take them: dst[c+i] = src[c+2i], dst[c+16+i] = src[c+2i+1].
	permute func(dst, src []float32)
	tail    func([]E, []float32) float32 // the columns past the last whole line
}

var (
	tileRows   = [3]int{4, 2, 1}
	tileTokens = [2]int{4, 1}
)

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

// canonBlocking holds the blocking of the canonical products with many tokens: blocks of mc
// rows (their weights stay in L2 while every token passes) and kc columns (a tile's tokens'
// activations stay in L1 while the block's rows pass).
type canonBlocking struct{ mc, kc int }

// canonMany is the blocking for many tokens; few tokens take two rows at a time over the
// whole row, which streams the weights from memory once.
func canonMany(l2, cols, size int) canonBlocking {
	if l2 <= 0 {
		l2 = 512 << 10
	}
	mc := max(4, min(128, l2/2/max(1, cols*size))) &^ 3
	return canonBlocking{mc: mc, kc: 1024}
}

// matMul is the canonical product of rows [lo, hi) of w with tokens > 1 tokens of x (see
// matMul): out[t*rows+r] for t < tokens, r in [lo, hi).
func (k *canon[E]) matMul(s *Scratch, out []float32, w []E, x []float32, tokens, rows, cols, lo, hi int) {
	n := cols &^ 31
	xk := x
	if k.permute != nil && n > 0 {
		xk = s.floats(scratchX, tokens*cols)
		for t := range tokens {
			k.permute(xk[t*cols:t*cols+n], x[t*cols:t*cols+n])
		}
	}
	var e E
	b := canonBlocking{mc: 2, kc: max(n, 32)}
	if tokens > fewTokens {
		b = canonMany(cpuid.CPU.Cache.L2, cols, int(unsafe.Sizeof(e)))
	}
	acc := s.floats(scratchW, b.mc*4*16)
	for rb := lo; rb < hi; rb += b.mc {
		re := min(rb+b.mc, hi)
		for tg := 0; tg < tokens; {
			ti := 0
			if tokens-tg < 4 {
				ti = 1
			}
			T := tileTokens[ti]
			a := acc[:(re-rb)*T*16]
			clear(a)
			for kb := 0; kb < n; kb += b.kc {
				kn := min(b.kc, n-kb)
				for r := rb; r < re; {
					ri := 0
					for tileRows[ri] > re-r {
						ri++
					}
					var o *float32 // the sums, after the last block
					if kb+kn == n {
						o = &out[tg*rows+r]
					}
					k.tiles[ri][ti](&w[r*cols+kb], cols, &xk[tg*cols+kb], cols, kn, &a[(r-rb)*T*16], o, rows)
					r += tileRows[ri]
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
