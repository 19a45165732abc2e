package main

// The kernels of the AVX-512 matrix products, which all compute each output in the one
// canonical order of the package (see its documentation): one 16-lane float32 accumulator
// per (row, token), for each 32-value line of k in order two fused multiply-adds into it (the
// first and the second half of the line's weights, widened, with the activations they meet),
// then the fixed reduction of reduce. Weight lines of bfloat16 are split into their even and
// odd values, which meet activations permuted alike.

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// shift returns log2 of an element size.
func (e elem) shift() uint8 {
	if e.size == 2 {
		return 1
	}
	return 2
}

// loadLine widens the 32-value line of weights at m into a and b, the operands of the line's
// first and second multiply-add: for bfloat16 the even and the odd values (mask holds
// 0xffff0000 in every lane), else values 0..15 and 16..31.
func loadLine(e elem, m Mem, a, b VecVirtual, mask VecVirtual) {
	switch e.name {
	case "BF16":
		VMOVDQU32(m, b)
		VPSLLD(U8(16), b, a)
		VPANDD(mask, b, b)
	case "F16":
		VCVTPH2PS(m, a)
		m.Disp += 32
		VCVTPH2PS(m, b)
	case "F32":
		VMOVUPS(m, a)
		m.Disp += 64
		VMOVUPS(m, b)
	}
}

// prefetchLine prefetches the cache lines of the weight line at m (two for float32) by fetch.
func prefetchLine(e elem, m Mem, fetch func(Mem)) {
	for l := 0; l < e.size/2; l++ {
		p := m
		p.Disp += 64 * l
		fetch(p)
	}
}

// strided returns the address of item i of a run with base b and byte stride s (s3 = 3·s),
// i < 4.
func strided(b, s, s3 Register, i, disp int) Mem {
	m := Mem{Base: b, Disp: disp}
	switch i {
	case 1:
		m.Index, m.Scale = s, 1
	case 2:
		m.Index, m.Scale = s, 2
	case 3:
		m.Index, m.Scale = s3, 1
	}
	return m
}

// tileName is the name of the tile kernel of rows × tokens for e.
func tileName(e elem, rows, tokens int) string {
	return fmt.Sprintf("dot%dx%d%sAVX512", rows, tokens, e.name)
}

// tile emits dot<R>x<T><E>AVX512(w *E, wstride int, x *float32, xstride, n int, acc
// *float32, out *float32, ostride, groups int, fresh bool): for each of groups groups of R
// rows, group g the rows g·R+r, r < R, of w (w[(g·R+r)*wstride:]), and the tokens t < T of x
// (x[t*xstride:]), it continues the canonical accumulation of their product over the n values
// (a multiple of 32) from the 16 lanes at acc[((g·R+r)*T+t)*16:], or from zero if fresh, and
// stores the lanes back there, or, if out is not nil, their reduction to
// out[t*ostride+g·R+r]. bfloat16 rows meet x permuted: each 32 values as the 16 even ones,
// then the 16 odd ones. With pf, the kernel prefetches the rows it streams.
func tile(e elem, R, T int, pf bool) {
	name := tileName(e, R, T)
	text(name, fmt.Sprintf("func(w *%s, wstride int, x *float32, xstride, n int, acc *float32, out *float32, ostride, groups int, fresh bool)", e.goType),
		"%s continues, for each of groups groups of %d rows (group g the rows g*%d+r of w, stride wstride), the canonical sums of the rows times tokens t < %d of x (stride xstride) over n values, a multiple of 32, in the lanes acc[((g*%d+r)*%d+t)*16:][:16] (from zero if fresh), and stores the lanes back or, if out is not nil, their sums to out[t*ostride+g*%d+r].", name, R, R, T, R, T, R)
	Label("group")
	w := param("w")
	var ws, ws3 Register
	if R > 1 {
		ws = param("wstride")
		SHLQ(U8(e.shift()), ws)
		if R > 3 {
			ws3 = GP64()
			LEAQ(Mem{Base: ws, Index: ws, Scale: 2}, ws3)
		}
	}
	x := param("x")
	var xs, xs3 Register
	if T > 1 {
		xs = param("xstride")
		SHLQ(U8(2), xs)
		if T > 3 {
			xs3 = GP64()
			LEAQ(Mem{Base: xs, Index: xs, Scale: 2}, xs3)
		}
	}
	xbases := []Register{x}
	for len(xbases) < (T+3)/4 {
		xbases = append(xbases, GP64())
	}
	xline := tokenLines(xbases, xs, xs3)
	n := param("n")
	ap := param("acc")
	acc := make([][]VecVirtual, R)
	for r := range acc {
		acc[r] = make([]VecVirtual, T)
		for t := range acc[r] {
			acc[r][t] = ZMM()
		}
	}
	startLanes(func(i int) {
		VMOVUPS(Mem{Base: ap, Disp: 64 * i}, acc[i/T][i%T])
	}, func(i int) {
		VPXORD(acc[i/T][i%T], acc[i/T][i%T], acc[i/T][i%T])
	}, R*T)
	var mask VecVirtual
	if e.name == "BF16" {
		mask = broadcast(avx512, 0xffff0000)
	}
	Label("loop")
	CMPQ(n, U32(32))
	JL(LabelRef("done"))
	a, b := make([]VecVirtual, R), make([]VecVirtual, R)
	for r := range R {
		a[r], b[r] = ZMM(), ZMM()
		m := strided(w, ws, ws3, r, 0)
		if pf {
			prefetchLine(e, m, prefetch)
		}
		loadLine(e, m, a[r], b[r], mask)
	}
	for t := range T {
		if R == 1 {
			VFMADD231PS(xline(t, 0), a[0], acc[0][t])
			VFMADD231PS(xline(t, 64), b[0], acc[0][t])
			continue
		}
		xa, xb := ZMM(), ZMM()
		VMOVUPS(xline(t, 0), xa)
		VMOVUPS(xline(t, 64), xb)
		for r := range R {
			VFMADD231PS(xa, a[r], acc[r][t])
		}
		for r := range R {
			VFMADD231PS(xb, b[r], acc[r][t])
		}
	}
	ADDQ(U32(32*e.size), w)
	for _, b := range xbases {
		ADDQ(U32(128), b)
	}
	SUBQ(U32(32), n)
	JMP(LabelRef("loop"))
	Label("done")
	op := Load(Param("out"), ap) // acc is no longer needed once loaded
	TESTQ(op, op)
	JNZ(LabelRef("sums"))
	ap = param("acc")
	for r := range R {
		for t := range T {
			VMOVUPS(acc[r][t], Mem{Base: ap, Disp: 64 * (r*T + t)})
		}
	}
	JMP(LabelRef("next"))
	Label("sums")
	os := param("ostride")
	SHLQ(U8(2), os)
	var idx VecVirtual
	if R == 4 {
		idx = ZMM()
		VMOVDQU32(reduce4Index(), idx)
	}
	for t := range T {
		if R == 4 {
			reduce4([4]Vec{acc[0][t], acc[1][t], acc[2][t], acc[3][t]}, func() Vec { return ZMM() }, idx, Mem{Base: op})
		} else {
			for r := range R {
				VMOVSS(reduce(acc[r][t], avx512), Mem{Base: op, Disp: 4 * r})
			}
		}
		if t+1 < T {
			ADDQ(os, op)
		}
	}
	nextGroup(R, T, e.size, [3]Register{GP64(), GP64(), GP64()})
}

// startLanes starts the lanes of a tile kernel's n accumulators: with load(i) from acc, or
// with zero(i) where the parameter fresh is set.
func startLanes(load, zero func(i int), n int) {
	fresh := Load(Param("fresh"), GP8())
	TESTB(fresh, fresh)
	JNZ(LabelRef("fresh"))
	for i := range n {
		load(i)
	}
	JMP(LabelRef("lanes"))
	Label("fresh")
	for i := range n {
		zero(i)
	}
	Label("lanes")
}

// nextGroup ends a tile kernel's group of R rows of size-byte values by T tokens (label
// "next"): it advances the parameters w, acc and out (if not nil) to the next group and
// starts it from label "group", or returns after the last. r are three free registers.
func nextGroup(R, T, size int, r [3]Register) {
	Label("next")
	g, p, q := r[0], r[1], r[2]
	Load(Param("groups"), g)
	DECQ(g)
	JZ(LabelRef("end"))
	Store(g, Param("groups"))
	Load(Param("w"), p)
	Load(Param("wstride"), q)
	IMUL3Q(U32(R*size), q, q)
	ADDQ(q, p)
	Store(p, Param("w"))
	Load(Param("acc"), p)
	ADDQ(U32(64*R*T), p)
	Store(p, Param("acc"))
	Load(Param("out"), p)
	TESTQ(p, p)
	JZ(LabelRef("group"))
	ADDQ(U32(4*R), p)
	Store(p, Param("out"))
	JMP(LabelRef("group"))
	Label("end")
	ret()
}

// reduce4Data is the permutation index of reduce4, once defined.
var reduce4Data *Mem

// reduce4Index returns the address of the index that gathers lanes 0, 4, 8 and 12.
func reduce4Index() Mem {
	if reduce4Data == nil {
		m := GLOBL("reduce4Index", RODATA|NOPTR)
		for k := range 16 {
			DATA(4*k, U32(4*(k%4)))
		}
		reduce4Data = &m
	}
	return *reduce4Data
}

// reduce4 stores to m the four sums of the lanes of acc[0..3], each added in the fixed order
// of reduce (halves of 8, 4, 2 and 1 lanes), by reducing the four registers together. idx
// holds reduce4Index; z returns working registers.
func reduce4(acc [4]Vec, z func() Vec, idx Register, m Mem) {
	var pair [2]Vec // lanes 0-7: acc[2i]'s halves of 8 added; 8-15: acc[2i+1]'s
	for i := range pair {
		lo, hi, s := z(), z(), z()
		VSHUFF64X2(U8(0x44), acc[2*i+1].AsZ(), acc[2*i].AsZ(), lo.AsZ())
		VSHUFF64X2(U8(0xEE), acc[2*i+1].AsZ(), acc[2*i].AsZ(), hi.AsZ())
		VADDPS(hi.AsZ(), lo.AsZ(), s.AsZ())
		pair[i] = s
	}
	// 128-bit lane k: acc[k]'s halves of 4 added.
	lo, hi, s := z(), z(), z()
	VSHUFF64X2(U8(0x88), pair[1].AsZ(), pair[0].AsZ(), lo.AsZ())
	VSHUFF64X2(U8(0xDD), pair[1].AsZ(), pair[0].AsZ(), hi.AsZ())
	VADDPS(hi.AsZ(), lo.AsZ(), s.AsZ())
	// Within each 128-bit lane, values 2 apart, then 1 apart: the sum lands in its first.
	for _, imm := range []uint8{0x4E, 0xB1} {
		p, u := z(), z()
		VPERMILPS(U8(imm), s.AsZ(), p.AsZ())
		VADDPS(p.AsZ(), s.AsZ(), u.AsZ())
		s = u
	}
	r := z()
	VPERMPS(s.AsZ(), idx, r.AsZ())
	VMOVUPS(r.AsX(), m)
}

// rowsAhead is how far past the same line of the next group's row the rows kernels
// prefetch, in bytes.
const rowsAhead = 2048

// rows emits dotRows<E>AVX512(w *E, stride int, x *float32, n int, out *float32, rows int):
// out[r] = the canonical sum of row r of w (w[r*stride:][:n]) times x[:n], r < rows, n a
// multiple of 32, for the product with one token. It streams eight rows at a time (then the
// last ones one by one) and reads x as it is: bfloat16 rows split each 32 values of x into
// even and odd ones by two permutes. With each line it loads, it prefetches (PREFETCHNTA) the
// line rowsAhead bytes past the same place in the row eight rows on, which the next group
// reads: every line is prefetched once, well ahead, where prefetches a fixed distance ahead in
// the same row land on lines the group is already reading. On Zen 5 with both cores streaming
// bfloat16 rows, this reads a quarter to a third faster than four rows at a time with two
// prefetches per line 8 and 16 KB ahead (BenchmarkExpert). Each line is loaded once and
// widened in registers: widening straight from memory, two loads of the line, is as fast on
// rows that start on a cache line but a fifth slower on rows that do not (a checkpoint's
// tensors start wherever its header ends), each load then touching two lines.
func rows(e elem) {
	const R = 8
	name := fmt.Sprintf("dotRows%sAVX512", e.name)
	text(name, fmt.Sprintf("func(w *%s, stride int, x *float32, n int, out *float32, rows int)", e.goType),
		"%s stores to out[r], r < rows, the canonical sum of w[r*stride:][:n] times x[:n]; n is a multiple of 32.", name)
	w := param("w")
	stride := param("stride")
	SHLQ(U8(e.shift()), stride)
	s3 := GP64()
	LEAQ(Mem{Base: stride, Index: stride, Scale: 2}, s3)
	out := param("out")
	nrows := param("rows")
	var mask, ie, io VecVirtual
	if e.name == "BF16" {
		mask = broadcast(avx512, 0xffff0000)
		ie, io = permIndex()
	}
	for _, g := range []int{R, 1} {
		next := "group1"
		if g == 1 {
			next = "done"
		}
		Label(fmt.Sprintf("group%d", g))
		CMPQ(nrows, U32(g))
		JL(LabelRef(next))
		wr, xr, nr := GP64(), GP64(), GP64()
		MOVQ(w, wr)
		Load(Param("x"), xr)
		Load(Param("n"), nr)
		var pr Register // the same place R rows on, in the next group
		if g > 1 {
			pr = GP64()
			LEAQ(Mem{Base: wr, Index: stride, Scale: 8}, pr)
		}
		acc := make([]VecVirtual, g)
		for r := range acc {
			acc[r] = zeroed(avx512)
		}
		line, sum := fmt.Sprintf("line%d", g), fmt.Sprintf("sum%d", g)
		Label(line)
		CMPQ(nr, U32(32))
		JL(LabelRef(sum))
		xa, xb := ZMM(), ZMM()
		VMOVUPS(Mem{Base: xr}, xa)
		if e.name == "BF16" {
			VMOVAPS(xa, xb)
			VPERMT2PS(Mem{Base: xr, Disp: 64}, ie, xa)
			VPERMT2PS(Mem{Base: xr, Disp: 64}, io, xb)
		} else {
			VMOVUPS(Mem{Base: xr, Disp: 64}, xb)
		}
		wb, pb := wr, pr
		for r := range g {
			if r == 4 {
				wb, pb = GP64(), GP64()
				LEAQ(Mem{Base: wr, Index: stride, Scale: 4}, wb)
				LEAQ(Mem{Base: pr, Index: stride, Scale: 4}, pb)
			}
			if g > 1 {
				prefetchLine(e, strided(pb, stride, s3, r%4, rowsAhead), func(m Mem) { PREFETCHNTA(m) })
			}
			a, b := ZMM(), ZMM()
			loadLine(e, strided(wb, stride, s3, r%4, 0), a, b, mask)
			VFMADD231PS(xa, a, acc[r])
			VFMADD231PS(xb, b, acc[r])
		}
		ADDQ(U32(32*e.size), wr)
		if g > 1 {
			ADDQ(U32(32*e.size), pr)
		}
		ADDQ(U32(128), xr)
		SUBQ(U32(32), nr)
		JMP(LabelRef(line))
		Label(sum)
		for r := range g {
			s := reduce(acc[r], avx512)
			VMOVSS(s, Mem{Base: out, Disp: 4 * r})
		}
		if g > 1 {
			LEAQ(Mem{Base: w, Index: stride, Scale: 8}, w)
		} else {
			ADDQ(stride, w)
		}
		ADDQ(U32(4*g), out)
		SUBQ(U32(g), nrows)
		JMP(LabelRef(fmt.Sprintf("group%d", g)))
	}
	Label("done")
	ret()
}

// permute emits permuteEvenOddAVX512(dst, src *float32, n int): dst[c+i] = src[c+2i] and
// dst[c+16+i] = src[c+2i+1] for every 32 values c of n, a multiple of 32: the activations as
// the bfloat16 tiles take them.
func permute() {
	text("permuteEvenOddAVX512", "func(dst, src *float32, n int)",
		"permuteEvenOddAVX512 stores each 32 values of src[:n] to dst as the 16 even-indexed ones, then the 16 odd ones; n is a multiple of 32.")
	dst, src, n := param("dst"), param("src"), param("n")
	ie, io := permIndex()
	countdown(n, 32, func() {
		a, b := ZMM(), ZMM()
		VMOVUPS(Mem{Base: src}, a)
		VMOVAPS(a, b)
		VPERMT2PS(Mem{Base: src, Disp: 64}, ie, a)
		VPERMT2PS(Mem{Base: src, Disp: 64}, io, b)
		VMOVUPS(a, Mem{Base: dst})
		VMOVUPS(b, Mem{Base: dst, Disp: 64})
		ADDQ(U32(128), src)
		ADDQ(U32(128), dst)
	})
	ret()
}

// permIndices holds the permutation indices of permIndex once defined.
var permIndices []Mem

// permIndex loads into two new registers the indices of VPERMT2PS that take the even and the
// odd values of two vectors.
func permIndex() (even, odd VecVirtual) {
	if permIndices == nil {
		for h := range 2 {
			m := GLOBL([]string{"evenIndex", "oddIndex"}[h], RODATA|NOPTR)
			for k := range 16 {
				DATA(4*k, U32(2*k+h))
			}
			permIndices = append(permIndices, m)
		}
	}
	even, odd = ZMM(), ZMM()
	VMOVDQU32(permIndices[0], even)
	VMOVDQU32(permIndices[1], odd)
	return even, odd
}

// dpTile emits dot<R>x<T>BF16DPAVX512(w *uint16, wstride int, x *uint16, xstride, n int, acc
// *float32, out *float32, ostride, groups int, fresh bool), the tile kernel of the products
// whose activations are rounded to bfloat16: as tile, with x in bfloat16 too and each 32-value
// line of a row and a token meeting in one VDPBF16PS (lane i adds the products of values 2i
// and 2i+1), so that the rows and the activations are read as they are stored. The instruction is not known to
// the assembler: its registers are named, Z0..Z(R·T-1) accumulating (R·T ≤ 24), Z24.. the
// rows' lines, Z28 and Z29 the tokens' in turn.
func dpTile(R, T int) {
	name := fmt.Sprintf("dot%dx%dBF16DPAVX512", R, T)
	text(name, "func(w *uint16, wstride int, x *uint16, xstride, n int, acc *float32, out *float32, ostride, groups int, fresh bool)",
		"%s continues, for each of groups groups of %d rows (group g the rows g*%d+r of w, stride wstride), the sums of the rows times tokens t < %d of x (stride xstride), both bfloat16, over n values, a multiple of 32, by VDPBF16PS, in the lanes acc[((g*%d+r)*%d+t)*16:][:16] (from zero if fresh), and stores the lanes back or, if out is not nil, their sums to out[t*ostride+g*%d+r].", name, R, R, T, R, T, R)
	Label("group")
	Load(Param("w"), RSI)
	Load(Param("wstride"), R8)
	SHLQ(U8(1), R8)
	LEAQ(Mem{Base: R8, Index: R8, Scale: 2}, R9)
	Load(Param("x"), RDI)
	Load(Param("xstride"), R10)
	SHLQ(U8(1), R10)
	LEAQ(Mem{Base: R10, Index: R10, Scale: 2}, R11)
	bases := tokenBases[:(T+3)/4]
	line := tokenLines(bases, R10, R11)
	Load(Param("n"), RCX)
	Load(Param("acc"), RDX)
	startLanes(func(i int) { VMOVUPS(Mem{Base: RDX, Disp: 64 * i}, zmm(i)) },
		func(i int) { VPXORD(zmm(i), zmm(i), zmm(i)) }, R*T)
	Label("loop")
	CMPQ(RCX, U32(32))
	JL(LabelRef("done"))
	for r := range R {
		VMOVDQU32(strided(RSI, R8, R9, r, 0), zmm(24+r))
	}
	for t := range T {
		xt := 28 + t%2
		VMOVDQU32(line(t, 0), zmm(xt))
		for r := range R {
			vdpbf16ps(r*T+t, 24+r, xt)
		}
	}
	ADDQ(U32(64), RSI)
	ADDQ(U32(64), RDI)
	for _, b := range bases[1:] {
		ADDQ(U32(64), b)
	}
	SUBQ(U32(32), RCX)
	JMP(LabelRef("loop"))
	Label("done")
	Load(Param("out"), RAX)
	TESTQ(RAX, RAX)
	JNZ(LabelRef("sums"))
	for i := range R * T {
		VMOVUPS(zmm(i), Mem{Base: RDX, Disp: 64 * i})
	}
	JMP(LabelRef("next"))
	Label("sums")
	Load(Param("ostride"), RBX)
	SHLQ(U8(2), RBX)
	if R == 4 {
		VMOVDQU32(reduce4Index(), zmm(31))
	}
	next := 0 // Z24..Z30 in turn as the reductions' working registers
	z := func() Vec {
		next = (next + 1) % 7
		return zmm(24 + (next+6)%7)
	}
	for t := range T {
		if R == 4 {
			reduce4([4]Vec{zmm(t), zmm(T + t), zmm(2*T + t), zmm(3*T + t)}, z, zmm(31), Mem{Base: RAX})
		} else {
			for r := range R {
				VMOVSS(reduceIn(zmm(r*T+t), avx512, z), Mem{Base: RAX, Disp: 4 * r})
			}
		}
		if t+1 < T {
			ADDQ(RBX, RAX)
		}
	}
	nextGroup(R, T, 2, [3]Register{RAX, RBX, RCX})
}

// tokenBases are the registers that hold the current line of tokens 4i of the tile kernels
// of dpTile: x is DI, its byte stride R10 and three strides R11.
var tokenBases = []Register{RDI, R12, R13}

// tokenLines sets up the addressing of the lines of a tile kernel's tokens, token t's line xs
// bytes past token t-1's (xs3 = 3·xs): tokens 4i, 4i+1, … from bases[i], bases[0] holding x
// and each other set here to the one before plus 4·xs (the bases move on together). It returns
// the address of token t's line plus disp.
func tokenLines(bases []Register, xs, xs3 Register) func(t, disp int) Mem {
	for i := 1; i < len(bases); i++ {
		LEAQ(Mem{Base: bases[i-1], Index: xs, Scale: 4}, bases[i])
	}
	return func(t, disp int) Mem { return strided(bases[t/4], xs, xs3, t%4, disp) }
}

// roundWords emits roundBF16WordsAVX512(dst *uint16, src *float32, n int): dst[i] = src[i]
// rounded to bfloat16 (nearest, ties to even; subnormals flushed to zero, as VDPBF16PS reads
// them), n a multiple of 32.
func roundWords() {
	text("roundBF16WordsAVX512", "func(dst *uint16, src *float32, n int)",
		"roundBF16WordsAVX512 stores src[:n] rounded to bfloat16 to dst; n is a multiple of 32.")
	Load(Param("dst"), RDI)
	Load(Param("src"), RSI)
	Load(Param("n"), RCX)
	countdown(RCX, 32, func() {
		VMOVUPS(Mem{Base: RSI}, zmm(0))
		VMOVUPS(Mem{Base: RSI, Disp: 64}, zmm(1))
		vcvtne2ps2bf16(2, 1, 0)
		VMOVDQU32(zmm(2), Mem{Base: RDI})
		ADDQ(U32(128), RSI)
		ADDQ(U32(64), RDI)
	})
	ret()
}
