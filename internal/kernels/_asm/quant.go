package main

// Quantization of weights and activations to the q8 and q4 formats.

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// quantActs emits quantActsAVX512(x *float32, q *int8, d *float32, sum *int32, nsb int): for
// nsb super-blocks of 16 groups of 32 values of x, the int8 values q = x·(127/max|x|) rounded
// to nearest even, interleaved as the quantized weights are, and per group d = max|x|/127 and
// sum = Σq. Groups whose maximum is tiny, zero or not finite get garbage for the caller to fix.
func quantActs() {
	text("quantActsAVX512", "func(x *float32, q *int8, d *float32, sum *int32, nsb int)",
		"quantActsAVX512 quantizes nsb super-blocks of x to int8 q (interleaved), group scales d = max|x|/127 and group sums Σq.")
	idx := GLOBL("scatterIndex", RODATA|NOPTR)
	for m := 0; m < 8; m++ {
		DATA(4*m, U32(64*m))
	}
	x := param("x")
	q := param("q")
	d := param("d")
	sum := param("sum")
	n := param("nsb")
	absMask := broadcast(avx512, 0x7fffffff)
	tmp := GP32()
	c127 := XMM()
	MOVL(U32(0x42fe0000), tmp) // 127.0
	VMOVD(tmp, c127)
	index := YMM()
	VMOVDQU(idx, index)
	Label("super")
	TESTQ(n, n)
	JZ(LabelRef("done"))
	l := GP64()
	XORQ(l, l)
	Label("group")
	v0, v1 := ZMM(), ZMM()
	VMOVUPS(Mem{Base: x}, v0)
	VMOVUPS(Mem{Base: x, Disp: 64}, v1)
	a0, a1 := ZMM(), ZMM()
	// The maximum of |x| as unsigned integers: ordered like the floats, with NaN above
	// infinity above everything finite, so that a NaN or infinity shows in the maximum.
	VPANDD(absMask, v0, a0)
	VPANDD(absMask, v1, a1)
	VPMAXUD(a1, a0, a0)
	hy := YMM()
	VEXTRACTI64X4(U8(1), a0, hy)
	VPMAXUD(hy, a0.AsY(), hy)
	hx := XMM()
	VEXTRACTI128(U8(1), hy, hx)
	VPMAXUD(hx, hy.AsX(), hx)
	t := XMM()
	VPSHUFD(U8(0x4e), hx, t)
	VPMAXUD(t, hx, hx)
	VPSHUFD(U8(0xb1), hx, t)
	VPMAXUD(t, hx, hx) // amax
	dv := XMM()
	VDIVSS(c127, hx, dv) // amax/127
	MOVSS(dv, Mem{Base: d})
	inv := XMM()
	VDIVSS(hx, c127, inv) // 127/amax
	iv := ZMM()
	VBROADCASTSS(inv, iv)
	VMULPS(iv, v0, v0)
	VMULPS(iv, v1, v1)
	VCVTPS2DQ(v0, v0)
	VCVTPS2DQ(v1, v1)
	s := ZMM()
	VPADDD(v1, v0, s)
	sy := YMM()
	VEXTRACTI64X4(U8(1), s, sy)
	VPADDD(sy, s.AsY(), sy)
	sx := XMM()
	VEXTRACTI128(U8(1), sy, sx)
	VPADDD(sx, sy.AsX(), sx)
	st := XMM()
	VPSHUFD(U8(0x4e), sx, st)
	VPADDD(st, sx, sx)
	VPSHUFD(U8(0xb1), sx, st)
	VPADDD(st, sx, sx)
	VMOVD(sx, Mem{Base: sum})
	b0, b1 := XMM(), XMM()
	VPMOVSDB(v0, b0)
	VPMOVSDB(v1, b1)
	g := YMM()
	VINSERTI128(U8(1), b1, b0.AsY(), g)
	k := K()
	KXNORW(k, k, k)
	VPSCATTERDD(g, k, Mem{Base: q, Index: index, Scale: 1})
	ADDQ(U8(128), x)
	ADDQ(U8(4), q)
	ADDQ(U8(4), d)
	ADDQ(U8(4), sum)
	INCQ(l)
	CMPQ(l, U8(16))
	JL(LabelRef("group"))
	ADDQ(U32(512-64), q)
	DECQ(n)
	JMP(LabelRef("super"))
	Label("done")
	ret()
}

// quantRange emits quantRangeAVX512(x *float32, groups int, lo, hi *float32) bool: lo[l] and
// hi[l] are the least and the largest of group l, x[32l:32l+32], for l < groups; it reports
// whether every value is finite (the bounds are meaningless otherwise).
func quantRange() {
	text("quantRangeAVX512", "func(x *float32, groups int, lo, hi *float32) bool",
		"quantRangeAVX512 sets lo[l] and hi[l] to the least and the largest value of each group of 32 of x[:32*groups] and reports whether all are finite; groups > 0.")
	x := param("x")
	n := param("groups")
	lo := param("lo")
	hi := param("hi")
	bad := K()
	KXORW(bad, bad, bad)
	reduce := func(v VecVirtual, op func(...Op), dst Register) {
		y := YMM()
		VEXTRACTF64X4(U8(1), v, y)
		op(y, v.AsY(), y)
		xx := XMM()
		VEXTRACTF128(U8(1), y, xx)
		op(xx, y.AsX(), xx)
		t := XMM()
		VMOVHLPS(xx, xx, t)
		op(t, xx, xx)
		VMOVSHDUP(xx, t)
		op(t, xx, xx)
		VMOVSS(xx, Mem{Base: dst})
	}
	Label("loop")
	a, b := ZMM(), ZMM()
	VMOVUPS(Mem{Base: x}, a)
	VMOVUPS(Mem{Base: x, Disp: 64}, b)
	ka, kb := K(), K()
	VFPCLASSPSZ(U8(0x99), a, ka) // NaN or ±Inf
	VFPCLASSPSZ(U8(0x99), b, kb)
	KORW(ka, bad, bad)
	KORW(kb, bad, bad)
	mn, mx := ZMM(), ZMM()
	VMINPS(b, a, mn)
	VMAXPS(b, a, mx)
	reduce(mn, VMINPS, lo)
	reduce(mx, VMAXPS, hi)
	ADDQ(U32(128), x)
	ADDQ(U32(4), lo)
	ADDQ(U32(4), hi)
	DECQ(n)
	JNZ(LabelRef("loop"))
	ok := GP8()
	KORTESTW(bad, bad)
	SETEQ(ok)
	Store(ok, ReturnIndex(0))
	ret()
}

// roundAway emits t = y rounded to an integer, halfway cases away from zero (math.Round),
// then clamped to [lo, hi]; y is left as is.
func roundAway(y, t VecVirtual, c quantConsts, lo, hi VecVirtual) {
	VRNDSCALEPS(U8(0x0b), y, t) // toward zero, no precision exception
	d := ZMM()
	VSUBPS(t, y, d) // exact
	VANDPS(c.abs, d, d)
	k := K()
	VCMPPS(U8(0x1d), c.half, d, k) // |y - t| >= 0.5
	s := ZMM()
	VANDPS(c.sign, y, s)
	VORPS(c.one, s, s) // ±1 with y's sign
	VADDPS(s, t, k, t)
	VMAXPS(lo, t, t)
	VMINPS(hi, t, t)
}

type quantConsts struct{ abs, sign, half, one VecVirtual }

func newQuantConsts() quantConsts {
	return quantConsts{
		abs:  broadcast(avx512, 0x7fffffff),
		sign: broadcast(avx512, 0x80000000),
		half: f32const(avx512, 0.5),
		one:  f32const(avx512, 1),
	}
}

// quantValues emits quantQ8AVX512(x, inv *float32, groups int, out *byte, idx *int32) or,
// for q4, quantQ4AVX512(x, m, inv *float32, groups int, out *byte, idx *int32): each group l of
// 32 values x[32l:] is quantized as the generic QuantizeQ8 or QuantizeQ4 does (q8: x·inv[l],
// q4: (x-m[l])·inv[l], rounded half away from zero and clamped) and stored interleaved: the
// four values of dword j of the group (values 4j to 4j+3; for q4 dwords 2j and 2j+1, as low and
// high nibbles) at out + 4l + idx[j], for j < 8 (q8) or 4 (q4).
func quantValues(q4 bool) {
	name, sig := "quantQ8AVX512", "func(x, inv *float32, groups int, out *byte, idx *int32)"
	if q4 {
		name, sig = "quantQ4AVX512", "func(x, m, inv *float32, groups int, out *byte, idx *int32)"
	}
	text(name, sig,
		"%s quantizes groups groups of 32 values of x and stores them interleaved at out + 4l + idx[j]; groups > 0.", name)
	x := param("x")
	var mp Register
	if q4 {
		mp = param("m")
	}
	inv := param("inv")
	n := param("groups")
	out := param("out")
	ip := param("idx")
	c := newQuantConsts()
	var lo, hi VecVirtual
	idx := YMM()
	if q4 {
		lo, hi = ZMM(), f32const(avx512, 15)
		VXORPS(lo, lo, lo)
		VMOVDQU(Mem{Base: ip}, idx.AsX())
	} else {
		lo, hi = f32const(avx512, -127), f32const(avx512, 127)
		VMOVDQU(Mem{Base: ip}, idx)
	}
	Label("loop")
	iv := ZMM()
	VBROADCASTSS(Mem{Base: inv}, iv)
	var mv VecVirtual
	if q4 {
		mv = ZMM()
		VBROADCASTSS(Mem{Base: mp}, mv)
	}
	b := YMM()
	for h := 0; h < 2; h++ {
		y, t := ZMM(), ZMM()
		VMOVUPS(Mem{Base: x, Disp: 64 * h}, y)
		if q4 {
			VSUBPS(mv, y, y)
		}
		VMULPS(iv, y, y)
		roundAway(y, t, c, lo, hi)
		VCVTTPS2DQ(t, t)
		if h == 0 {
			VPMOVSDB(t, b.AsX())
		} else {
			xh := XMM()
			VPMOVSDB(t, xh)
			VINSERTI128(U8(1), xh, b, b)
		}
	}
	k := K()
	KXNORW(k, k, k)
	if q4 {
		// Qword j holds dwords 2j and 2j+1: its low dword | high dword << 4.
		t := YMM()
		VPSRLQ(U8(28), b, t)
		VPOR(t, b, t)
		d := XMM()
		VPMOVQD(t, d)
		VPSCATTERDD(d, k, Mem{Base: out, Index: idx.AsX(), Scale: 1})
		ADDQ(U32(4), mp)
	} else {
		VPSCATTERDD(b, k, Mem{Base: out, Index: idx, Scale: 1})
	}
	ADDQ(U32(128), x)
	ADDQ(U32(4), inv)
	ADDQ(U32(4), out)
	DECQ(n)
	JNZ(LabelRef("loop"))
	ret()
}

// quantScales emits quantScalesQ8AVX512(lo, hi *float32, h *uint16, d, inv *float32) bool or
// quantScalesQ4AVX512(lo, hi *float32, h *uint16, d, inv *float32) bool for the 16 groups of a
// super-block with bounds lo and hi, computed as the generic code does. q8: h[l] = the float16
// scale max(|lo|, |hi|)/127. q4: h[l] = the float16 scale (hi-lo)/15, h[16+l] = the float16
// minimum lo. d[l] is the minimum (q4) as float32, inv[l] the inverse of the scale as float32
// (0 for a zero scale). It reports whether every float16 value is finite.
func quantScales(q4 bool) {
	name := "quantScalesQ8AVX512"
	if q4 {
		name = "quantScalesQ4AVX512"
	}
	text(name, "func(lo, hi *float32, h *uint16, d, inv *float32) bool",
		"%s computes the float16 scales of the 16 groups of a super-block from their bounds and reports whether they are finite.", name)
	lp := param("lo")
	hp := param("hi")
	h := param("h")
	dp := param("d")
	ip := param("inv")
	lo, hi := ZMM(), ZMM()
	VMOVUPS(Mem{Base: lp}, lo)
	VMOVUPS(Mem{Base: hp}, hi)
	c := newQuantConsts()
	s := ZMM()
	if q4 {
		VSUBPS(lo, hi, s)
		VDIVPS(f32const(avx512, 15), s, s)
	} else {
		VANDPS(c.abs, lo, lo)
		VANDPS(c.abs, hi, hi)
		VMAXPS(hi, lo, s)
		VDIVPS(f32const(avx512, 127), s, s)
	}
	inf, mag := broadcast(avx512, 0x7c007c00), broadcast(avx512, 0x7fff7fff)
	bad := K()
	convert := func(v VecVirtual, off int) VecVirtual {
		hv := YMM()
		VCVTPS2PH(U8(0), v, hv) // to nearest, ties to even
		VMOVDQU(hv, Mem{Base: h, Disp: off})
		e := YMM()
		VPAND(mag.AsY(), hv, e) // the magnitude of each half
		k := K()
		VPCMPEQW(inf.AsY(), e, k)
		if off == 0 {
			KMOVD(k, bad)
		} else {
			KORD(k, bad, bad)
		}
		f := ZMM()
		VCVTPH2PS(hv, f)
		return f
	}
	d := convert(s, 0)
	if q4 {
		m := convert(lo, 32)
		VMOVUPS(m, Mem{Base: dp})
	}
	nz := K()
	VCMPPS(U8(4), zeroed(avx512), d, nz) // d != 0
	r := ZMM()
	VDIVPS_Z(d, c.one, nz, r)
	VMOVUPS(r, Mem{Base: ip})
	ok := GP8()
	KORTESTD(bad, bad)
	SETEQ(ok)
	Store(ok, ReturnIndex(0))
	ret()
}
