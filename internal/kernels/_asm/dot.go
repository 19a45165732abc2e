package main

// Dot products of weight rows with activations: one row, four rows, rows streamed one at a
// time a cache line a load, and register tiles of rows by four tokens.

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// dot emits dot<E><ISA>(w *E, x *float32, n int) float32 over the first n elements, n a
// multiple of the lane count.
func dot(e elem, s isa) {
	name := fmt.Sprintf("dot%s%s", e.name, s.suffix)
	text(name, fmt.Sprintf("func(w *%s, x *float32, n int) float32", e.goType),
		"%s returns the dot product of w[:n] and x[:n]; n is a multiple of %d.", name, s.lanes)
	w, x, n := stream{param("w"), e.size}, stream{param("x"), 4}, param("n")
	const u = 4
	var acc [u]VecVirtual
	for i := range acc {
		acc[i] = zeroed(s)
	}
	vectorLoop(s, n, u, []stream{w, x}, func(i int) {
		t := s.vec()
		e.load(w.vec(s, i), t, s)
		VFMADD231PS(x.vec(s, i), t, acc[i])
	})
	VADDPS(acc[1], acc[0], acc[0])
	VADDPS(acc[3], acc[2], acc[2])
	VADDPS(acc[2], acc[0], acc[0])
	r := reduce(acc[0], s)
	Store(r, ReturnIndex(0))
	ret()
}

// dot4 emits dot4<E><ISA>(w *E, stride int, x *float32, n int, out *float32): the dot
// products of four rows w[r*stride:][:n], r < 4, with x[:n], stored to out[0:4]. Each load of
// x serves four rows.
func dot4(e elem, s isa) {
	name := fmt.Sprintf("dot4%s%s", e.name, s.suffix)
	text(name, fmt.Sprintf("func(w *%s, stride int, x *float32, n int, out *float32)", e.goType),
		"%s stores to out[r] the dot product of w[r*stride:][:n] and x[:n] for r < 4; n is a multiple of %d.", name, s.lanes)
	var rows [4]Register
	rows[0] = param("w")
	stride := param("stride")
	if e.size == 2 {
		SHLQ(U8(1), stride)
	} else {
		SHLQ(U8(2), stride)
	}
	for r := 1; r < 4; r++ {
		rows[r] = GP64()
		LEAQ(Mem{Base: rows[r-1], Index: stride, Scale: 1}, rows[r])
	}
	x := param("x")
	n := param("n")
	// i walks w in bytes; x is addressed at i*(4/size).
	i := GP64()
	XORQ(i, i)
	end := GP64()
	MOVQ(n, end)
	if e.size == 2 {
		SHLQ(U8(1), end)
	} else {
		SHLQ(U8(2), end)
	}
	xs := uint8(4 / e.size)
	const u = 2
	var acc [4][u]VecVirtual
	for r := range acc {
		for j := range acc[r] {
			acc[r][j] = zeroed(s)
		}
	}
	step := s.lanes * e.size
	Label("loop2")
	t := GP64()
	LEAQ(Mem{Base: i, Disp: u * step}, t)
	CMPQ(t, end)
	JG(LabelRef("loop1"))
	var xv [u]VecVirtual
	for j := 0; j < u; j++ {
		xv[j] = s.vec()
		VMOVUPS(Mem{Base: x, Index: i, Scale: xs, Disp: j * s.lanes * 4}, xv[j])
	}
	for r := 0; r < 4; r++ {
		for j := 0; j < u; j++ {
			v := s.vec()
			e.load(Mem{Base: rows[r], Index: i, Scale: 1, Disp: j * step}, v, s)
			VFMADD231PS(xv[j], v, acc[r][j])
		}
	}
	ADDQ(U32(u*step), i)
	JMP(LabelRef("loop2"))
	Label("loop1")
	CMPQ(i, end)
	JGE(LabelRef("done"))
	x0 := s.vec()
	VMOVUPS(Mem{Base: x, Index: i, Scale: xs}, x0)
	for r := 0; r < 4; r++ {
		v := s.vec()
		e.load(Mem{Base: rows[r], Index: i, Scale: 1}, v, s)
		VFMADD231PS(x0, v, acc[r][0])
	}
	ADDQ(U32(step), i)
	JMP(LabelRef("loop1"))
	Label("done")
	out := param("out")
	for r := 0; r < 4; r++ {
		VADDPS(acc[r][1], acc[r][0], acc[r][0])
		sum := reduce(acc[r][0], s)
		MOVSS(sum, Mem{Base: out, Disp: 4 * r})
	}
	ret()
}

// dotBF16Deinterleave emits dotRowsBF16XAVX512(w *uint16, stride int, x *float32, n int, out
// *float32, rows int): out[r] = the dot product of w[r*stride:][:n] and x[:n], n a multiple of
// 32, loading 32 bfloat16 values (a cache line) at a time: a shift widens the even ones and a
// mask the odd ones, and two permutes split x alike. One row at a time streams memory best.
func dotBF16Deinterleave() {
	text("dotRowsBF16XAVX512", "func(w *uint16, stride int, x *float32, n int, out *float32, rows int)",
		"dotRowsBF16XAVX512 stores to out[r], r < rows, the dot product of w[r*stride:][:n] and x[:n]; n is a multiple of 32.")
	even := GLOBL("evenIndex", RODATA|NOPTR)
	for k := 0; k < 16; k++ {
		DATA(4*k, U32(2*k))
	}
	odd := GLOBL("oddIndex", RODATA|NOPTR)
	for k := 0; k < 16; k++ {
		DATA(4*k, U32(2*k+1))
	}
	ie, io := ZMM(), ZMM()
	VMOVDQU32(even, ie)
	VMOVDQU32(odd, io)
	hiMask := broadcast(avx512, 0xffff0000)
	rowLoop(2, func(w, x, n Register) VecVirtual {
		return lineLoop(w, x, n, func(k int, acc [2]VecVirtual) { bf16Step(w, x, k, ie, io, hiMask, acc) })
	})
}

// rowLoop emits the loop over rows of the one-row-at-a-time kernels with the signature
// func(w *E, stride int, x *float32, n int, out *float32, rows int): body gets fresh
// registers with the row's start, x and n, and returns the vector to sum into out[r].
func rowLoop(size int, body func(w, x, n Register) VecVirtual) {
	w := param("w")
	stride := param("stride")
	if size == 2 {
		SHLQ(U8(1), stride)
	}
	out := param("out")
	rows := param("rows")
	Label("row")
	TESTQ(rows, rows)
	JZ(LabelRef("done"))
	wr, xr, nr := GP64(), GP64(), GP64()
	MOVQ(w, wr)
	Load(Param("x"), xr)
	Load(Param("n"), nr)
	acc := body(wr, xr, nr)
	r := reduce(acc, avx512)
	MOVSS(r, Mem{Base: out})
	ADDQ(stride, w)
	ADDQ(U32(4), out)
	DECQ(rows)
	JMP(LabelRef("row"))
	Label("done")
	ret()
}

// lineLoop emits the dot product of one row of two-byte values at w with x[:n], n a multiple
// of 32, a cache line of w (32 values) a step: four lines an iteration, each prefetched, while
// as many remain, then one at a time. step(k, acc) adds line k of the iteration, and the 32
// values of x that go with it, into the pair of accumulators acc. lineLoop returns the vector
// whose lanes sum to the product.
func lineLoop(w, x, n Register, step func(k int, acc [2]VecVirtual)) VecVirtual {
	const u = 4
	acc := make([][2]VecVirtual, u)
	for k := range acc {
		for j := range acc[k] {
			acc[k][j] = zeroed(avx512)
		}
	}
	Label("loop")
	CMPQ(n, U32(32*u))
	JL(LabelRef("one"))
	for k := 0; k < u; k++ {
		prefetch(Mem{Base: w, Disp: 64 * k})
		step(k, acc[k])
	}
	ADDQ(U32(64*u), w)
	ADDQ(U32(128*u), x)
	SUBQ(U32(32*u), n)
	JMP(LabelRef("loop"))
	Label("one")
	CMPQ(n, U32(32))
	JL(LabelRef("sum"))
	step(0, acc[0])
	ADDQ(U32(64), w)
	ADDQ(U32(128), x)
	SUBQ(U32(32), n)
	JMP(LabelRef("one"))
	Label("sum")
	for k := range acc {
		VADDPS(acc[k][1], acc[k][0], acc[k][0])
	}
	for k := 1; k < u; k++ {
		VADDPS(acc[k][0], acc[0][0], acc[0][0])
	}
	return acc[0][0]
}

// bf16Step emits one 32-value step of dotRowsBF16XAVX512 at line k of w and x.
func bf16Step(w, x Register, k int, ie, io, hiMask VecVirtual, acc [2]VecVirtual) {
	v, ev := ZMM(), ZMM()
	VMOVDQU32(Mem{Base: w, Disp: 64 * k}, v)
	VPSLLD(U8(16), v, ev)
	VPANDD(hiMask, v, v)
	xe, xo := ZMM(), ZMM()
	VMOVUPS(Mem{Base: x, Disp: 128 * k}, xe)
	VMOVAPS(xe, xo)
	VPERMT2PS(Mem{Base: x, Disp: 128*k + 64}, ie, xe)
	VPERMT2PS(Mem{Base: x, Disp: 128*k + 64}, io, xo)
	VFMADD231PS(xe, ev, acc[0])
	VFMADD231PS(xo, v, acc[1])
}

// dotF16Lines emits dotRowsF16XAVX512, dotRowsBF16XAVX512 for float16: 32 values (a cache
// line) a load, their halves widened in order.
func dotF16Lines() {
	text("dotRowsF16XAVX512", "func(w *uint16, stride int, x *float32, n int, out *float32, rows int)",
		"dotRowsF16XAVX512 stores to out[r], r < rows, the dot product of w[r*stride:][:n] and x[:n]; n is a multiple of 32.")
	rowLoop(2, func(w, x, n Register) VecVirtual {
		return lineLoop(w, x, n, func(k int, acc [2]VecVirtual) {
			v, lo, hi := ZMM(), ZMM(), ZMM()
			hy := YMM()
			VMOVDQU32(Mem{Base: w, Disp: 64 * k}, v)
			VCVTPH2PS(v.AsY(), lo)
			VEXTRACTI64X4(U8(1), v, hy)
			VCVTPH2PS(hy, hi)
			VFMADD231PS(Mem{Base: x, Disp: 128 * k}, lo, acc[0])
			VFMADD231PS(Mem{Base: x, Disp: 128*k + 64}, hi, acc[1])
		})
	})
}

// dotTokens emits dot<rows>x4<E>AVX512(w *E, wstride int, x *float32, xstride, n int, out
// *float32): out[r*4+t] = the dot product of row r of w (w[r*wstride:][:n]) with token t's
// activations x[t*xstride:][:n], r < rows, t < 4, n a multiple of 32: a register tile of rows
// × 4 tokens, so that each load of weights serves four tokens and each load of activations
// rows rows. For bfloat16, x comes permuted in chunks of 32 as 16 even-indexed values then 16
// odd ones, which a shift and a mask of one cache line of pairs meet; float16 lines widen in
// order.
func dotTokens(e elem, rows int) {
	name := fmt.Sprintf("dot%dx4%sAVX512", rows, e.name)
	text(name, fmt.Sprintf("func(w *%s, wstride int, x *float32, xstride, n int, out *float32)", e.goType),
		"%s stores to out[r*4+t], r < %d, t < 4, the dot product of w[r*wstride:][:n] with x[t*xstride:][:n]; n is a multiple of 32.", name, rows)
	w := param("w")
	var ws Register
	if rows > 1 {
		ws = param("wstride")
		SHLQ(U8(1), ws)
	}
	x := param("x")
	xs := param("xstride")
	SHLQ(U8(2), xs)
	xs3 := GP64()
	LEAQ(Mem{Base: xs, Index: xs, Scale: 2}, xs3)
	n := param("n")
	var hiMask VecVirtual
	if e.name == "BF16" {
		hiMask = broadcast(avx512, 0xffff0000)
	}
	acc := make([][4][2]VecVirtual, rows)
	for r := range acc {
		for t := range acc[r] {
			for j := range acc[r][t] {
				acc[r][t][j] = zeroed(avx512)
			}
		}
	}
	xm := func(t, disp int) Mem {
		m := Mem{Base: x, Disp: disp}
		switch t {
		case 1:
			m.Index, m.Scale = xs, 1
		case 2:
			m.Index, m.Scale = xs, 2
		case 3:
			m.Index, m.Scale = xs3, 1
		}
		return m
	}
	Label("loop")
	CMPQ(n, U32(32))
	JL(LabelRef("done"))
	a, b := make([]VecVirtual, rows), make([]VecVirtual, rows)
	for r := 0; r < rows; r++ {
		v := ZMM()
		a[r], b[r] = ZMM(), ZMM()
		m := Mem{Base: w}
		if r == 1 {
			m.Index, m.Scale = ws, 1
		}
		prefetch(m)
		VMOVDQU32(m, v)
		if e.name == "BF16" {
			VPSLLD(U8(16), v, a[r]) // even values
			VPANDD(hiMask, v, b[r]) // odd values
		} else {
			hy := YMM()
			VCVTPH2PS(v.AsY(), a[r]) // values 0..15
			VEXTRACTI64X4(U8(1), v, hy)
			VCVTPH2PS(hy, b[r]) // values 16..31
		}
	}
	for t := 0; t < 4; t++ {
		if rows == 1 {
			VFMADD231PS(xm(t, 0), a[0], acc[0][t][0])
			VFMADD231PS(xm(t, 64), b[0], acc[0][t][1])
			continue
		}
		xa, xb := ZMM(), ZMM()
		VMOVUPS(xm(t, 0), xa)
		VMOVUPS(xm(t, 64), xb)
		for r := 0; r < rows; r++ {
			VFMADD231PS(xa, a[r], acc[r][t][0])
			VFMADD231PS(xb, b[r], acc[r][t][1])
		}
	}
	ADDQ(U32(64), w)
	ADDQ(U32(128), x)
	SUBQ(U32(32), n)
	JMP(LabelRef("loop"))
	Label("done")
	out := param("out")
	for r := 0; r < rows; r++ {
		for t := 0; t < 4; t++ {
			VADDPS(acc[r][t][1], acc[r][t][0], acc[r][t][0])
			sum := reduce(acc[r][t][0], avx512)
			MOVSS(sum, Mem{Base: out, Disp: 4 * (4*r + t)})
		}
	}
	ret()
}
