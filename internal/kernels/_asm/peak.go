package main

// Probes of the machine's limits: arithmetic peaks and memory read rate.

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// peakFMA emits peakFMA<ISA>(n int): n iterations of acc independent register-only FMA
// chains, the machine's float32 arithmetic peak.
func peakFMA(s isa, acc int) {
	name := "peakFMA" + s.suffix
	text(name, "func(n int)",
		"%s runs n iterations of %d independent vector FMAs on registers.", name, acc)
	n := param("n")
	a, b := zeroed(s), zeroed(s)
	accs := make([]VecVirtual, acc)
	for i := range accs {
		accs[i] = zeroed(s)
	}
	countdown(n, 1, func() {
		for i := range accs {
			VFMADD231PS(a, b, accs[i])
		}
	})
	ret()
}

// vdpbf16ps emits VDPBF16PS zdst, zsrc1, zsrc2 (register form).
func vdpbf16ps(dst, src1, src2 int) {
	Comment(fmt.Sprintf("VDPBF16PS Z%d, Z%d, Z%d", src2, src1, dst))
	evex512(0b10, 0x52, dst, src1, src2)
}

// vcvtne2ps2bf16 emits VCVTNE2PS2BF16 Zsrc2, Zsrc1, Zdst: dst's 32 bfloat16 values are
// src2's 16 float32 values (the low half), then src1's, rounded to nearest even.
func vcvtne2ps2bf16(dst, src1, src2 int) {
	Comment(fmt.Sprintf("VCVTNE2PS2BF16 Z%d, Z%d, Z%d", src2, src1, dst))
	evex512(0b11, 0x72, dst, src1, src2)
}

// evex512 emits the AVX-512 instruction of map 0F38, prefix pp (0b10: F3, 0b11: F2) and
// opcode op on three registers, zdst, zsrc1 and zsrc2, which the assembler does not know.
func evex512(pp, op byte, dst, src1, src2 int) {
	not := func(b int) byte { return byte(^b & 1) }
	p0 := not(dst>>3)<<7 | not(src2>>4)<<6 | not(src2>>3)<<5 | not(dst>>4)<<4 | 0b10
	p1 := byte(^src1&0xf)<<3 | 1<<2 | pp
	p2 := byte(0b10)<<5 | not(src1>>4)<<3
	modrm := byte(0b11)<<6 | byte(dst&7)<<3 | byte(src2&7)
	bytes(0x62, p0, p1, p2, op, modrm)
}

// peakBF16 emits peakBF16AVX512(n int): n iterations of 24 independent VDPBF16PS chains.
func peakBF16() {
	text("peakBF16AVX512", "func(n int)",
		"peakBF16AVX512 runs n iterations of 24 independent VDPBF16PS on registers.")
	Load(Param("n"), RCX)
	for i := 0; i < 26; i++ {
		VPXORD(zmm(i), zmm(i), zmm(i))
	}
	countdown(RCX, 1, func() {
		for i := 0; i < 24; i++ {
			vdpbf16ps(i, 24, 25)
		}
	})
	ret()
}

// xorWords emits xorWords<ISA>(p *uint64, n int) uint64: the XOR of p[:n], n a multiple of
// four vectors, reading memory as fast as the core can.
func xorWords(s isa) {
	name := "xorWords" + s.suffix
	words := s.lanes / 2
	text(name, "func(p *uint64, n int) uint64",
		"%s returns the XOR of p[:n]; n is a multiple of %d.", name, 4*words)
	p := param("p")
	n := param("n")
	var acc [4]VecVirtual
	for i := range acc {
		acc[i] = s.vec()
		VPXOR(acc[i].AsY(), acc[i].AsY(), acc[i].AsY())
	}
	countdown(n, 4*words, func() {
		for i := range acc {
			m := Mem{Base: p, Disp: i * s.lanes * 4}
			if s.lanes == 16 {
				VPXORQ(m, acc[i], acc[i])
			} else {
				VPXOR(m, acc[i], acc[i])
			}
		}
		ADDQ(U32(4*s.lanes*4), p)
	})
	if s.lanes == 16 {
		VPXORQ(acc[1], acc[0], acc[0])
		VPXORQ(acc[3], acc[2], acc[2])
		VPXORQ(acc[2], acc[0], acc[0])
		y := YMM()
		VEXTRACTI64X4(U8(1), acc[0], y)
		VPXOR(y, acc[0].AsY(), y)
		acc[0] = y.(VecVirtual)
	} else {
		VPXOR(acc[1], acc[0], acc[0])
		VPXOR(acc[3], acc[2], acc[2])
		VPXOR(acc[2], acc[0], acc[0])
	}
	x := XMM()
	VEXTRACTI128(U8(1), acc[0].AsY(), x)
	VPXOR(x, acc[0].AsX(), x)
	t := XMM()
	VPSHUFD(U8(0x4e), x, t)
	VPXOR(t, x, x)
	r := GP64()
	MOVQ(x, r)
	Store(r, ReturnIndex(0))
	ret()
}
