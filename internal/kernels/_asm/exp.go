package main

// The vector exponential and the kernels built on it: SiLU, softmax, and the exact sum of
// exponentials over a vocabulary.

import (
	"math"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// expConsts holds the broadcast constants of vexp.
type expConsts struct {
	lo, hi, log2e, c1, c2, one Op
	p                          [6]Op
}

func newExpConsts(s isa) expConsts {
	// Cephes expf: exp(x) = 2^n · exp(r), r = x - n·ln2 in two parts, exp(r) a degree-7
	// polynomial: 1 + r + r²·(P0·r⁵ + … + P5). AVX2 builds 2^(n-1) in the exponent bits,
	// which needs n ≥ -125: below x = -86.6 it gives 0.
	cs := []float32{-104, 88.8, 1.44269504088896341, 0.693359375, -2.12194440e-4, 1,
		1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1}
	ops := make([]Op, len(cs))
	if s.lanes == 16 {
		for i, c := range cs {
			ops[i] = f32const(s, c)
		}
	} else {
		// Sixteen registers are too few to hold them all: read them from memory.
		cs[0] = -86.6
		if expTable == nil {
			t := GLOBL("expConstants", RODATA|NOPTR)
			for i, c := range cs {
				for l := 0; l < 8; l++ {
					DATA(32*i+4*l, U32(math.Float32bits(c)))
				}
			}
			expTable = &t
		}
		for i := range cs {
			m := *expTable
			m.Disp += 32 * i
			ops[i] = m
		}
	}
	e := expConsts{lo: ops[0], hi: ops[1], log2e: ops[2], c1: ops[3], c2: ops[4], one: ops[5]}
	copy(e.p[:], ops[6:])
	return e
}

// expTable is the AVX2 exponential's table of constants, emitted once.
var expTable *Mem

// vexp emits dst = exp(x) for the lanes of x (x is left as is), to about one unit in the
// last place; NaN stays NaN and overflow gives +Inf. Underflow gives 0 or a subnormal with
// AVX-512, 0 below 2.5e-38 (x < -86.6) with AVX2.
func vexp(s isa, e expConsts, x, dst VecVirtual) {
	c := s.vec()
	VMAXPS(e.lo, x, c)
	VMINPS(e.hi, c, c)
	n := s.vec()
	VMULPS(e.log2e, c, n)
	if s.lanes == 16 {
		VRNDSCALEPS(U8(0), n, n) // to nearest, ties to even
	} else {
		VROUNDPS(U8(0), n, n)
	}
	VFNMADD231PS(e.c1, n, c) // c -= n·C1
	VFNMADD231PS(e.c2, n, c) // c -= n·C2
	z := s.vec()
	VMULPS(c, c, z)
	y := s.vec()
	VMOVAPS(e.p[0], y)
	for _, p := range e.p[1:] {
		VFMADD213PS(p, c, y) // y = y·c + p
	}
	VFMADD213PS(c, z, y) // y = y·z + c
	VADDPS(e.one, y, y)
	if s.lanes == 16 {
		VSCALEFPS(n, y, dst)
		k := K()
		VCMPPS(U8(3), x, x, k) // unordered: NaN
		VMOVAPS(x, k, dst)
		return
	}
	// y·2^(n-1)·2, 2^(n-1) from its exponent bits n-1+127.
	ni := s.vec()
	VCVTPS2DQ(n, ni)
	VPADDD(broadcast(s, 126), ni, ni)
	VPSLLD(U8(23), ni, ni)
	VMULPS(ni, y, y)
	VADDPS(y, y, dst)
	m := s.vec()
	VCMPPS(U8(1), e.lo, x, m) // x < lo: 0
	VANDNPS(dst, m, dst)
	VCMPPS(U8(3), x, x, m) // unordered: NaN
	VBLENDVPS(m, x, dst, dst)
}

// siluMul emits siluMul<ISA>(dst, gate, u *float32, n int): dst[i] = g/(1+exp(-g))·u[i],
// g = gate[i], n a multiple of the lane count.
func siluMul(s isa) {
	name := "siluMul" + s.suffix
	text(name, "func(dst, gate, u *float32, n int)",
		"%s sets dst[i] = silu(gate[i])·u[i] for i < n; n is a multiple of %d.", name, s.lanes)
	dst := param("dst")
	g := param("gate")
	u := param("u")
	n := param("n")
	e := newExpConsts(s)
	zero := zeroed(s)
	vb := 4 * s.lanes
	Label("loop")
	CMPQ(n, U32(s.lanes))
	JL(LabelRef("done"))
	x, ng, ex := s.vec(), s.vec(), s.vec()
	VMOVUPS(Mem{Base: g}, x)
	VSUBPS(x, zero, ng)
	vexp(s, e, ng, ex)
	VADDPS(e.one, ex, ex)
	VDIVPS(ex, x, x)
	VMULPS(Mem{Base: u}, x, x)
	VMOVUPS(x, Mem{Base: dst})
	ADDQ(U32(vb), g)
	ADDQ(U32(vb), u)
	ADDQ(U32(vb), dst)
	SUBQ(U32(s.lanes), n)
	JMP(LabelRef("loop"))
	Label("done")
	ret()
}

// softmaxExp emits softmaxExp<ISA>(x *float32, n int, m float32) float32: x[i] = exp(x[i]-m)
// for i < n, n a multiple of the lane count, returning the sum of the new x.
func softmaxExp(s isa) {
	name := "softmaxExp" + s.suffix
	text(name, "func(x *float32, n int, m float32) float32",
		"%s replaces x[i] by exp(x[i]-m) for i < n, n a multiple of %d, and returns their sum.", name, s.lanes)
	x := param("x")
	n := param("n")
	mv := s.vec()
	VBROADCASTSS(NewParamAddr("m", 16), mv)
	e := newExpConsts(s)
	sum := zeroed(s)
	Label("loop")
	CMPQ(n, U32(s.lanes))
	JL(LabelRef("done"))
	v, ex := s.vec(), s.vec()
	VMOVUPS(Mem{Base: x}, v)
	VSUBPS(mv, v, v)
	vexp(s, e, v, ex)
	VMOVUPS(ex, Mem{Base: x})
	VADDPS(ex, sum, sum)
	ADDQ(U32(4*s.lanes), x)
	SUBQ(U32(s.lanes), n)
	JMP(LabelRef("loop"))
	Label("done")
	r := reduce(sum, s)
	Store(r, ReturnIndex(0))
	ret()
}

// expSum emits expSumAVX512(dst, x *float32, n int, shift, scale float32) float64: dst[i] =
// e^((x[i]-shift)·scale) for i < n unless dst is nil, returning their sum; n is a multiple of
// 16. Each lane computes the generic ExpNeg operation for operation, every one rounded on its
// own (no fused multiply-adds), so that the values are the generic ones bit for bit. The sum
// is accumulated per lane in float32 over blocks of 256 values and in float64 across them.
func expSum() {
	text("expSumAVX512", "func(dst, x *float32, n int, shift, scale float32) float64",
		"expSumAVX512 sets dst[i] = exp((x[i]-shift)*scale) for i < n unless dst is nil and returns their sum; n is a multiple of 16.")
	dst := param("dst")
	x := param("x")
	n := param("n")
	shift, scale := ZMM(), ZMM()
	VBROADCASTSS(NewParamAddr("shift", 24), shift)
	VBROADCASTSS(NewParamAddr("scale", 28), scale)
	s := avx512
	cs := func(c float32) VecVirtual { return f32const(s, c) }
	expMin, log2e, magic := cs(-87.3), cs(float32(math.Log2E)), cs(0xc00000)
	c1, c2 := cs(0.693359375), cs(2.12194440e-4)
	poly := []VecVirtual{cs(1.9875691500e-4), cs(1.3981999507e-3), cs(8.3334519073e-3), cs(4.1665795894e-2), cs(1.6666665459e-1), cs(5.0000001201e-1)}
	one := cs(1)
	bias := broadcast(avx512, 127)
	zero := zeroed(avx512)
	acc, tot0, tot1 := ZMM(), ZMM(), ZMM()
	VXORPS(acc, acc, acc)
	VXORPD(tot0, tot0, tot0)
	VXORPD(tot1, tot1, tot1)
	blk := GP64()
	Label("block")
	TESTQ(n, n)
	JZ(LabelRef("done"))
	MOVQ(U32(16), blk) // vectors in this block
	Label("loop")
	a := ZMM()
	VMOVUPS(Mem{Base: x}, a)
	VSUBPS(shift, a, a)
	VMULPS(scale, a, a)
	k := K()
	VCMPPS(U8(0x1d), expMin, a, k) // a >= ExpMin, ordered: false for NaN
	VMINPS(zero, a, a)
	r, nn, f, tmp := ZMM(), ZMM(), ZMM(), ZMM()
	VMULPS(log2e, a, r)
	VADDPS(magic, r, r)
	VSUBPS(magic, r, nn)
	VMULPS(c1, nn, tmp)
	VSUBPS(tmp, a, f)
	VMULPS(c2, nn, tmp)
	VADDPS(tmp, f, f)
	p := ZMM()
	VMULPS(f, poly[0], p)
	for _, c := range poly[1:] {
		VADDPS(c, p, p)
		VMULPS(f, p, p)
	}
	VMULPS(f, p, p)
	VADDPS(f, p, p)
	VADDPS(one, p, p)
	VPADDD(bias, r, r)
	VPSLLD(U8(23), r, r)
	e := ZMM()
	VMULPS_Z(r, p, k, e)
	TESTQ(dst, dst)
	JZ(LabelRef("nostore"))
	VMOVUPS(e, Mem{Base: dst})
	ADDQ(U32(64), dst)
	Label("nostore")
	VADDPS(e, acc, acc)
	ADDQ(U32(64), x)
	SUBQ(U32(16), n)
	JZ(LabelRef("flush"))
	DECQ(blk)
	JNZ(LabelRef("loop"))
	Label("flush")
	lo, hi := ZMM(), ZMM()
	VCVTPS2PD(acc.AsY(), lo)
	VEXTRACTF64X4(U8(1), acc, hi.AsY())
	VCVTPS2PD(hi.AsY(), hi)
	VADDPD(lo, tot0, tot0)
	VADDPD(hi, tot1, tot1)
	VXORPS(acc, acc, acc)
	JMP(LabelRef("block"))
	Label("done")
	VADDPD(tot1, tot0, tot0)
	h := YMM()
	VEXTRACTF64X4(U8(1), tot0, h)
	VADDPD(h, tot0.AsY(), h)
	hx := XMM()
	VEXTRACTF128(U8(1), h, hx)
	VADDPD(hx, h.AsX(), hx)
	t2 := XMM()
	VPERMILPD(U8(1), hx, t2)
	VADDSD(t2, hx, hx)
	Store(hx, ReturnIndex(0))
	ret()
}
