package kernels

import (
	"unsafe"

	"github.com/klauspost/cpuid/v2"

	"github.com/fathom-llm/fathom/internal/half"
)

// The packed GEMM of the products with activations rounded to bfloat16: the weight matrix
// and the activations are copied, block by block, into panels laid out for a register-tiled
// micro-kernel that computes an nr×mr tile of the output (nr tokens, mr rows) with the rows
// in vector lanes, as in BLIS. A block of packed weights (mc×kc) is sized to stay in L2 and a
// token panel (kc×nr) in L1.

// gemmBF16Kernel is a bfloat16 dot-product micro-kernel over kp pairs of k: a is packed
// [kp][mr][2], b [kp][nr][2], and c[j*ldc+i] += Σ_p Σ_h a[(p*mr+i)*2+h]·b[(p*nr+j)*2+h]. pack,
// if not nil, transposes a 32×n panel of 32-bit words (n a multiple of 16), which packs 32
// rows of bfloat16 pairs.
type gemmBF16Kernel struct {
	mr, nr int
	kern   func(a, b *uint16, kp int, c *float32, ldc int)
	pack   func(dst *float32, src *float32, stride, n int)
}

// blocking holds the cache block sizes of the packed GEMM.
type blocking struct {
	kc int // depth of a packed block, in elements of k
	mc int // rows of a packed weight block, a multiple of every mr
	nc int // tokens of a packed activation block
}

// gemmBlocking is chosen once from the cache sizes: a float32 weight block of mc×kc takes
// about half of L2, a token panel of kc×12 float32 half of L1.
var gemmBlocking = newBlocking(cpuid.CPU.Cache.L1D, cpuid.CPU.Cache.L2)

func newBlocking(l1, l2 int) blocking {
	if l1 <= 0 {
		l1 = 32 << 10
	}
	if l2 <= 0 {
		l2 = 512 << 10
	}
	kc := max(64, min(512, l1/2/(12*4))) &^ 15
	mc := max(64, min(1024, l2/2/(kc*4))) &^ 63
	return blocking{kc: kc, mc: mc, nc: 1020}
}

// fewTokens is the most tokens whose canonical products take two rows at a time over whole
// rows, which reads each weight from memory once and from L1 for the next tokens; more
// tokens take the blocked loops. It is also the most tokens of a product with activations
// rounded to bfloat16 that goes the float32 way rather than by the bfloat16 GEMM.
const fewTokens = 32

// matMul computes out[t*rows+r] = Σ_c w[r*cols+c]·x[t*cols+c] for t < tokens and r in
// [lo, hi). T is the stored weight type; c (if not nil) holds the kernels of the canonical
// products (matVec being c's too), else each token's product is matVec's over blocks of rows
// that stay in cache while every token passes: either way, each output is computed in the
// same order whatever the tokens and the rows of the call.
func matMul[T uint16 | float32](s *Scratch, out []float32, w []T, x []float32, tokens, rows, cols, lo, hi int,
	matVec func([]float32, []T, []float32, int), c *canon[T]) {
	if tokens <= 0 || lo >= hi {
		return
	}
	if cols <= 0 {
		for t := 0; t < tokens; t++ {
			clear(out[t*rows+lo : t*rows+hi])
		}
		return
	}
	switch {
	case tokens == 1:
		// One pass over the rows, streaming them from memory.
		matVec(out[lo:hi], w[lo*cols:hi*cols], x[:cols], cols)
	case c != nil:
		c.matMul(s, out, w, x, tokens, rows, cols, lo, hi)
	default:
		const block = 16
		for r0 := lo; r0 < hi; r0 += block {
			r1 := min(r0+block, hi)
			for t := 0; t < tokens; t++ {
				matVec(out[t*rows+r0:t*rows+r1], w[r0*cols:r1*cols], x[t*cols:(t+1)*cols], cols)
			}
		}
	}
}

// gemmLoops runs the cache-blocked loops of a packed GEMM over rows [lo, hi) of out
// ([tokens][rows]). packX packs tokens [jc, jc+nc) and k [pc, pc+kc) of the activations;
// packW packs rows [ic, ic+mc) and the same k range of the weights; tile runs the micro-kernel
// on the panels at token offset jr and row offset ir of the packed blocks, adding to c with
// row stride ldc; tmp holds one tile (mr×nr) at the edges.
func gemmLoops(tmp []float32, out []float32, tokens, rows, cols, lo, hi, mr, nr int, b blocking,
	packX func(jc, nc, pc, kc int), packW func(ic, mc, pc, kc int), tile func(jr, ir, kc int, c *float32, ldc int)) {
	for t := 0; t < tokens; t++ {
		clear(out[t*rows+lo : t*rows+hi])
	}
	for jc := 0; jc < tokens; jc += b.nc {
		nc := min(b.nc, tokens-jc)
		for pc := 0; pc < cols; pc += b.kc {
			kc := min(b.kc, cols-pc)
			packX(jc, nc, pc, kc)
			for ic := lo; ic < hi; ic += b.mc {
				mc := min(b.mc, hi-ic)
				packW(ic, mc, pc, kc)
				for jr := 0; jr < nc; jr += nr {
					for ir := 0; ir < mc; ir += mr {
						o := (jc+jr)*rows + ic + ir
						if jr+nr <= nc && ir+mr <= mc {
							tile(jr, ir, kc, &out[o], rows)
							continue
						}
						t := tmp[:mr*nr]
						clear(t)
						tile(jr, ir, kc, &t[0], mr)
						for j := 0; j < min(nr, nc-jr); j++ {
							dst := out[o+j*rows:][:min(mr, mc-ir)]
							for i := range dst {
								dst[i] += t[j*mr+i]
							}
						}
					}
				}
			}
		}
	}
}

// matMulBF16Rounded is MatMulBF16RoundedRows by the VDPBF16PS micro-kernel k: activations are
// rounded to bfloat16 and packed in pairs along k with the weights.
func matMulBF16Rounded(s *Scratch, k *gemmBF16Kernel, out []float32, w []uint16, x []float32, tokens, rows, cols, lo, hi int) {
	b := gemmBlocking
	b.kc *= 2 // bfloat16 panels are half the size of float32 ones
	mr, nr := k.mr, k.nr
	nc := min(b.nc, tokens)
	bufX := s.halves(0, (nc+nr-1)/nr*nr*b.kc)
	bufW := s.halves(1, (b.mc+mr-1)/mr*mr*b.kc)
	var kp int // pairs in the current block
	packX := func(jc, nc, pc, kc int) {
		kp = (kc + 1) / 2
		for jr := 0; jr < nc; jr += nr {
			panel := bufX[jr*kp*2 : (jr+nr)*kp*2]
			for j := 0; j < nr; j++ {
				p := panel[2*j:]
				if jr+j >= nc {
					for q := 0; q < kp; q++ {
						p[q*2*nr], p[q*2*nr+1] = 0, 0
					}
					continue
				}
				src := x[(jc+jr+j)*cols+pc:][:kc]
				for k, v := range src {
					p[(k>>1)*2*nr+k&1] = half.F32ToBF16(v)
				}
				if kc&1 != 0 {
					p[(kp-1)*2*nr+1] = 0
				}
			}
		}
	}
	packW := func(ic, mc, pc, kc int) {
		for ir := 0; ir < mc; ir += mr {
			panel := bufW[ir*kp*2 : (ir+mr)*kp*2]
			// A pair of bfloat16 values is one 32-bit word: packing pairs is the float32
			// panel transposition, for whole 32-row panels of even rows.
			if k.pack != nil && ir+mr <= mc && cols%2 == 0 && pc%2 == 0 && kc >= 32 && kc%32 == 0 {
				_ = w[(ic+ir+mr-1)*cols+pc+kc-1]
				k.pack((*float32)(unsafe.Pointer(&panel[0])), (*float32)(unsafe.Pointer(&w[(ic+ir)*cols+pc])), cols/2, kc/2)
				continue
			}
			for i := 0; i < mr; i++ {
				p := panel[2*i:]
				if ir+i >= mc {
					for q := 0; q < kp; q++ {
						p[q*2*mr], p[q*2*mr+1] = 0, 0
					}
					continue
				}
				src := w[(ic+ir+i)*cols+pc:][:kc]
				q := 0
				for ; 2*q+1 < kc; q++ {
					p[q*2*mr], p[q*2*mr+1] = src[2*q], src[2*q+1]
				}
				if kc&1 != 0 {
					p[q*2*mr], p[q*2*mr+1] = src[2*q], 0
				}
			}
		}
	}
	tile := func(jr, ir, kc int, c *float32, ldc int) {
		k.kern(&bufW[ir*kp*2], &bufX[jr*kp*2], kp, c, ldc)
	}
	gemmLoops(s.floats(scratchTile, mr*nr), out, tokens, rows, cols, lo, hi, mr, nr, b, packX, packW, tile)
}
