package main

// GEMM micro-kernels and the packing of their weight panels.

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// vdpbf16psBcst emits VDPBF16PS zdst, zsrc, [base+4*j]{1to16}: for every lane i, zdst[i] +=
// zsrc.bf16[2i+1]·m.bf16[1] + zsrc.bf16[2i]·m.bf16[0], m the broadcast 32-bit pair.
func vdpbf16psBcst(dst, src int, base int, j int) {
	not := func(b int) byte { return byte(^b & 1) }
	p0 := not(dst>>3)<<7 | 1<<6 | not(base>>3)<<5 | not(dst>>4)<<4 | 0b10
	p1 := byte(^src&0xf)<<3 | 1<<2 | 0b10
	p2 := byte(0b10)<<5 | 1<<4 | not(src>>4)<<3
	modrm := byte(0b01)<<6 | byte(dst&7)<<3 | byte(base&7)
	Comment(fmt.Sprintf("VDPBF16PS.BCST %d(base%d), Z%d, Z%d", 4*j, base, src, dst))
	bytes(0x62, p0, p1, p2, 0x52, modrm, byte(j))
}

// gemmBF16DP emits gemmBF16DPAVX512(a, b *uint16, kp int, c *float32, ldc int), the 12×32
// micro-kernel over bfloat16 pairs: a is packed kp×32×2, b kp×12×2, and c[j*ldc+i] +=
// Σ_p a[(p*32+i)*2+h]·b[(p*12+j)*2+h] over pairs p and halves h, by VDPBF16PS.
func gemmBF16DP() {
	const mv, nr = 2, 12
	name := "gemmBF16DPAVX512"
	text(name, "func(a, b *uint16, kp int, c *float32, ldc int)",
		"%s adds the %d×%d product of bfloat16-pair panels a (kp×%d×2) and b (kp×%d×2) to c (row stride ldc), by VDPBF16PS.", name, nr, mv*16, mv*16, nr)
	// Physical registers: the raw encoding names them. Z0..Z23 accumulate, Z24/Z25 hold a.
	Load(Param("a"), RSI)
	Load(Param("b"), RDI)
	Load(Param("kp"), RCX)
	for i := 0; i < nr*mv; i++ {
		VPXORD(zmm(i), zmm(i), zmm(i))
	}
	countdown(RCX, 1, func() {
		for v := 0; v < mv; v++ {
			VMOVUPS(Mem{Base: RSI, Disp: v * 64}, zmm(24+v))
		}
		const rdi = 7
		for j := 0; j < nr; j++ {
			for v := 0; v < mv; v++ {
				vdpbf16psBcst(j*mv+v, 24+v, rdi, j)
			}
		}
		ADDQ(U32(mv*64), RSI)
		ADDQ(U32(nr*4), RDI)
	})
	Load(Param("c"), RDX)
	Load(Param("ldc"), RBX)
	SHLQ(U8(2), RBX)
	for j := 0; j < nr; j++ {
		for v := 0; v < mv; v++ {
			m := Mem{Base: RDX, Disp: v * 64}
			VADDPS(m, zmm(j*mv+v), zmm(j*mv+v))
			VMOVUPS(zmm(j*mv+v), m)
		}
		if j+1 < nr {
			ADDQ(RBX, RDX)
		}
	}
	ret()
}

// packPanel emits pack<E>AVX512(dst *float32, src *E, stride, kc int): the 32×kc panel of rows
// src[i*stride:][:kc], i < 32, widened to float32 and transposed into dst[k*32+i], kc a
// multiple of 16: the weight panel of the AVX-512 GEMM micro-kernel, 16×16 blocks at a time.
func packPanel(e elem) {
	name := fmt.Sprintf("pack%sAVX512", e.name)
	text(name, fmt.Sprintf("func(dst *float32, src *%s, stride, kc int)", e.goType),
		"%s stores float32(src[i*stride+k]) to dst[k*32+i] for i < 32, k < kc; kc is a multiple of 16.", name)
	dst := param("dst")
	src := param("src")
	s1 := param("stride")
	if e.size == 2 {
		SHLQ(U8(1), s1)
	} else {
		SHLQ(U8(2), s1)
	}
	s3 := GP64()
	LEAQ(Mem{Base: s1, Index: s1, Scale: 2}, s3)
	kc := param("kc")
	// Rows 4q..4q+3 of the current half start at base[q] + {0, s1, 2·s1, 3·s1}.
	var base [4]Register
	for q := range base {
		base[q] = GP64()
	}
	for h := 0; h < 2; h++ {
		MOVQ(src, base[0])
		if h == 1 {
			// Rows 16..31: src + 16·s1.
			t := GP64()
			MOVQ(s1, t)
			SHLQ(U8(4), t)
			ADDQ(t, base[0])
		}
		for q := 1; q < 4; q++ {
			LEAQ(Mem{Base: base[q-1], Index: s1, Scale: 4}, base[q])
		}
		out := GP64()
		LEAQ(Mem{Base: dst, Disp: 64 * h}, out)
		k := GP64()
		MOVQ(kc, k)
		lbl := fmt.Sprintf("half%d", h)
		Label(lbl)
		r := make([]VecVirtual, 16)
		for i := range r {
			r[i] = ZMM()
			m := Mem{Base: base[i/4]}
			switch i % 4 {
			case 1:
				m.Index, m.Scale = s1, 1
			case 2:
				m.Index, m.Scale = s1, 2
			case 3:
				m.Index, m.Scale = s3, 1
			}
			e.load(m, r[i], avx512)
		}
		cols := transpose16(r)
		for c, v := range cols {
			VMOVUPS(v, Mem{Base: out, Disp: 128 * c})
		}
		for q := range base {
			ADDQ(U32(16*e.size), base[q])
		}
		ADDQ(U32(16*128), out)
		SUBQ(U32(16), k)
		JNZ(LabelRef(lbl))
	}
	ret()
}

// transpose16 returns the columns of the 16×16 matrix whose rows are r.
func transpose16(r []VecVirtual) []VecVirtual {
	t := make([]VecVirtual, 16)
	for i := 0; i < 8; i++ {
		t[2*i], t[2*i+1] = ZMM(), ZMM()
		VUNPCKLPS(r[2*i+1], r[2*i], t[2*i])
		VUNPCKHPS(r[2*i+1], r[2*i], t[2*i+1])
	}
	// u[4i+j], lane L: column 4L+j of rows 4i..4i+3.
	u := make([]VecVirtual, 16)
	for i := 0; i < 4; i++ {
		for j := range 4 {
			u[4*i+j] = ZMM()
		}
		VSHUFPS(U8(0x44), t[4*i+2], t[4*i], u[4*i])
		VSHUFPS(U8(0xee), t[4*i+2], t[4*i], u[4*i+1])
		VSHUFPS(U8(0x44), t[4*i+3], t[4*i+1], u[4*i+2])
		VSHUFPS(U8(0xee), t[4*i+3], t[4*i+1], u[4*i+3])
	}
	out := make([]VecVirtual, 16)
	for j := 0; j < 4; j++ {
		v := [4]VecVirtual{ZMM(), ZMM(), ZMM(), ZMM()}
		VSHUFF32X4(U8(0x88), u[4+j], u[j], v[0])
		VSHUFF32X4(U8(0xdd), u[4+j], u[j], v[1])
		VSHUFF32X4(U8(0x88), u[12+j], u[8+j], v[2])
		VSHUFF32X4(U8(0xdd), u[12+j], u[8+j], v[3])
		for _, c := range []int{j, 4 + j, 8 + j, 12 + j} {
			out[c] = ZMM()
		}
		VSHUFF32X4(U8(0x88), v[2], v[0], out[j])
		VSHUFF32X4(U8(0xdd), v[2], v[0], out[8+j])
		VSHUFF32X4(U8(0x88), v[3], v[1], out[4+j])
		VSHUFF32X4(U8(0xdd), v[3], v[1], out[12+j])
	}
	return out
}
