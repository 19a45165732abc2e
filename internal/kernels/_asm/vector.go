package main

// Element-wise kernels and reductions over float32 vectors.

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
)

// axpy emits axpy<ISA>(a float32, x, y *float32, n int): y[:n] += a*x[:n].
func axpy(s isa) {
	name := "axpy" + s.suffix
	text(name, "func(a float32, x, y *float32, n int)",
		"%s adds a*x[:n] to y[:n]; n is a multiple of %d.", name, s.lanes)
	av := s.vec()
	VBROADCASTSS(NewParamAddr("a", 0), av)
	x, y, n := stream{param("x"), 4}, stream{param("y"), 4}, param("n")
	vectorLoop(s, n, 4, []stream{x, y}, func(i int) {
		t := s.vec()
		VMOVUPS(y.vec(s, i), t)
		VFMADD231PS(x.vec(s, i), av, t)
		VMOVUPS(t, y.vec(s, i))
	})
	ret()
}

// convert emits cvt<E><ISA>(dst *float32, src *E, n int): dst[:n] = float32(src[:n]).
func convert(e elem, s isa) {
	name := fmt.Sprintf("cvt%s%s", e.name, s.suffix)
	text(name, fmt.Sprintf("func(dst *float32, src *%s, n int)", e.goType),
		"%s widens src[:n] to float32 in dst[:n]; n is a multiple of %d.", name, s.lanes)
	dst, src, n := stream{param("dst"), 4}, stream{param("src"), e.size}, param("n")
	vectorLoop(s, n, 4, []stream{src, dst}, func(i int) {
		t := s.vec()
		e.load(src.vec(s, i), t, s)
		VMOVUPS(t, dst.vec(s, i))
	})
	ret()
}

// maxF32 emits maxAVX512(x *float32, n int) float32: the largest of x[:n], n a positive
// multiple of 16, or NaN if any is NaN.
func maxF32() {
	text("maxAVX512", "func(x *float32, n int) float32",
		"maxAVX512 returns the largest of x[:n], or NaN if any is NaN; n is a positive multiple of 16.")
	x := param("x")
	n := param("n")
	m := ZMM()
	VMOVUPS(Mem{Base: x}, m)
	nan := K()
	VCMPPS(U8(3), m, m, nan)
	ADDQ(U32(64), x)
	SUBQ(U32(16), n)
	countdown(n, 16, func() {
		v := ZMM()
		VMOVUPS(Mem{Base: x}, v)
		VMAXPS(v, m, m)
		k := K()
		VCMPPS(U8(3), v, v, k)
		KORW(k, nan, nan)
		ADDQ(U32(64), x)
	})
	hy := YMM()
	VEXTRACTF64X4(U8(1), m, hy)
	VMAXPS(hy, m.AsY(), hy)
	hx := XMM()
	VEXTRACTF128(U8(1), hy, hx)
	VMAXPS(hx, hy.AsX(), hx)
	t := XMM()
	VMOVHLPS(hx, hx, t)
	VMAXPS(t, hx, hx)
	VMOVSHDUP(hx, t)
	VMAXSS(t, hx, hx)
	KORTESTW(nan, nan)
	JZ(LabelRef("ret"))
	// A NaN: return it.
	tmp := GP32()
	MOVL(U32(0x7fc00000), tmp)
	VMOVD(tmp, hx)
	Label("ret")
	Store(hx, ReturnIndex(0))
	ret()
}

// scaleF32 emits scaleAVX512(x *float32, n int, a float32): x[:n] *= a, n a multiple of 16.
func scaleF32() {
	text("scaleAVX512", "func(x *float32, n int, a float32)",
		"scaleAVX512 multiplies x[:n] by a; n is a multiple of 16.")
	x := param("x")
	n := param("n")
	av := ZMM()
	VBROADCASTSS(NewParamAddr("a", 16), av)
	Label("loop")
	CMPQ(n, U32(64))
	JL(LabelRef("one"))
	for i := 0; i < 4; i++ {
		v := ZMM()
		VMULPS(Mem{Base: x, Disp: 64 * i}, av, v)
		VMOVUPS(v, Mem{Base: x, Disp: 64 * i})
	}
	ADDQ(U32(256), x)
	SUBQ(U32(64), n)
	JMP(LabelRef("loop"))
	Label("one")
	TESTQ(n, n)
	JZ(LabelRef("done"))
	v := ZMM()
	VMULPS(Mem{Base: x}, av, v)
	VMOVUPS(v, Mem{Base: x})
	ADDQ(U32(64), x)
	SUBQ(U32(16), n)
	JMP(LabelRef("one"))
	Label("done")
	ret()
}

// indexAtLeast emits indexAtLeastAVX512(dst *int32, x *float32, n int, t float32) int: it
// stores the indices i < n with x[i] >= t to dst in order and returns their number; n is a
// multiple of 16. Each step stores a whole vector at the current count, which never passes
// the index of the values read, so dst needs n entries.
func indexAtLeast() {
	text("indexAtLeastAVX512", "func(dst *int32, x *float32, n int, t float32) int",
		"indexAtLeastAVX512 stores the indices i < n with x[i] >= t to dst in order and returns their number; n is a multiple of 16 and dst has n entries.")
	dst := param("dst")
	x := param("x")
	n := param("n")
	tv := ZMM()
	VBROADCASTSS(NewParamAddr("t", 24), tv)
	iota := GLOBL("iota16", RODATA|NOPTR)
	for i := 0; i < 16; i++ {
		DATA(4*i, U32(i))
	}
	idx := ZMM()
	VMOVDQU32(iota, idx)
	step := broadcast(avx512, 16)
	cnt := GP64()
	XORQ(cnt, cnt)
	countdown(n, 16, func() {
		k := K()
		VCMPPS(U8(0x12), Mem{Base: x}, tv, k) // t <= x, false for NaN
		z := ZMM()
		VPCOMPRESSD_Z(idx, k, z)
		VMOVDQU32(z, Mem{Base: dst, Index: cnt, Scale: 4})
		c := GP32()
		KMOVW(k, c)
		POPCNTL(c, c)
		ADDQ(c.As64(), cnt)
		VPADDD(step, idx, idx)
		ADDQ(U32(64), x)
	})
	Store(cnt, ReturnIndex(0))
	ret()
}

// roundF32 emits roundBF16F32AVX512(dst, src *float32, n int): dst[i] = src[i] rounded to the
// nearest bfloat16, ties to even, as float32 (the low 16 bits cleared); a NaN keeps its upper
// bits and is made quiet, as half.F32ToBF16 does. n is a multiple of 16.
func roundF32() {
	text("roundBF16F32AVX512", "func(dst, src *float32, n int)",
		"roundBF16F32AVX512 stores src[:n] rounded to bfloat16 (ties to even, NaNs quiet) as float32 to dst[:n]; n is a multiple of 16.")
	dst, src, n := stream{param("dst"), 4}, stream{param("src"), 4}, param("n")
	one, bias, high := broadcast(avx512, 1), broadcast(avx512, 0x7fff), broadcast(avx512, 0xffff0000)
	abs, inf, quiet := broadcast(avx512, 0x7fffffff), broadcast(avx512, 0x7f800000), broadcast(avx512, 0x00400000)
	vectorLoop(avx512, n, 2, []stream{src, dst}, func(i int) {
		b, t, r := ZMM(), ZMM(), ZMM()
		VMOVDQU32(src.vec(avx512, i), b)
		VPSRLD(U8(16), b, t) // the lowest bit kept, for ties to even
		VPANDD(one, t, t)
		VPADDD(bias, t, t)
		VPADDD(b, t, r)
		VPANDD(high, r, r)
		nan := K()
		VPANDD(abs, b, t)
		VPCMPUD(U8(6), inf, t, nan) // |b| > +Inf as bits: NaN
		VPANDD(high, b, t)
		VPORD(quiet, t, t)
		VMOVDQA32(t, nan, r)
		VMOVDQU32(r, dst.vec(avx512, i))
	})
	ret()
}
