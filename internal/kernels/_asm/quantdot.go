package main

// Dot products of quantized weight rows with quantized activations.

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/ir"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// vpdpbusd emits VPDPBUSD signed, unsigned, acc: acc lane i += Σ_j unsigned.u8[4i+j] ·
// signed.s8[4i+j], which the assembler knows but avo does not.
func vpdpbusd(signed, unsigned, acc Op) {
	Instruction(&ir.Instruction{
		Opcode:   "VPDPBUSD",
		Operands: []Op{signed, unsigned, acc},
		Inputs:   []Op{signed, unsigned, acc},
		Outputs:  []Op{acc},
		ISA:      []string{"AVX512_VNNI"},
	})
}

// Quantized rows: groups of 32 values in super-blocks of 16 groups, the values of a
// super-block interleaved so that bytes 4l..4l+3 of its m-th 64-byte vector belong to group l.
// A q8 row is its int8 values (512 bytes per super-block) followed by a float16 scale per
// group (32 bytes per super-block). A q4 super-block is 16 float16 scales, 16 float16
// minimums and 256 bytes of 4-bit values (vector 2p in the low nibbles of the p-th 64 bytes,
// vector 2p+1 in the high ones), 320 bytes, one after the other along the row: one stream,
// every part aligned alike. Activations come as 512 int8 values per super-block, interleaved
// alike, with per group their scale d and, for q4, d·Σq as float32, for q8 128·Σq as int32.

// byteMask is the mask the VNNI dot products apply to the bytes of the weights: the low
// nibbles (q4 values), or the top bits, whose flip makes q8's signed values unsigned, q+128.
func byteMask(q4 bool) uint32 {
	if q4 {
		return 0x0f0f0f0f
	}
	return 0x80808080
}

// quantDot emits dot<rows>Q8VNNI / dot<rows>Q4VNNI(w *byte, stride, soff int, xq *int8, xd,
// xs *float32|*int32, nsb int, out *float32): for r < rows, out[r] = the dot product of the
// first nsb super-blocks of row w[r*stride:], whose scales start at byte soff (q8), with the
// quantized activations.
func quantDot(q4 bool, rows int) {
	kind, qstep, sstep := "Q8", 512, 32
	if q4 {
		// Scales, minimums and values all in one 320-byte super-block at iq.
		kind, qstep, sstep = "Q4", 320, 0
	}
	name := fmt.Sprintf("dot%d%sVNNI", rows, kind)
	count, xsType, bound := "", "*int32", "4"
	if rows == 1 {
		// One row at a time, as many rows as asked: the rows stream from memory.
		name = fmt.Sprintf("dotRows%sVNNI", kind)
		count, bound = ", rows int", "rows"
	}
	if q4 {
		xsType = "*float32"
	}
	text(name, "func(w *byte, stride, soff int, xq *int8, xd *float32, xs "+xsType+", nsb int, out *float32"+count+")",
		"%s stores to out[r], r < %s, the dot product of nsb %s super-blocks of row w[r*stride:] (scales from byte soff) with activations xq (group scales xd, and xs).", name, bound, kind)
	ptrs := make([]Register, rows)
	var wrow, stride, outp, left Register
	if rows == 1 {
		wrow = param("w")
		stride = param("stride")
		outp = param("out")
		left = param("rows")
		Label("row")
		TESTQ(left, left)
		JZ(LabelRef("end"))
		ptrs[0] = GP64()
		MOVQ(wrow, ptrs[0])
	} else {
		ptrs[0] = param("w")
	}
	if rows > 1 {
		stride := param("stride")
		for r := 1; r < rows; r++ {
			ptrs[r] = GP64()
			LEAQ(Mem{Base: ptrs[r-1], Index: stride, Scale: 1}, ptrs[r])
		}
	}
	ks := param("soff") // offset of the current super-block's scales
	iq := GP64()        // offset of its values
	XORQ(iq, iq)
	xq := param("xq")
	xd := param("xd")
	xs := param("xs")
	n := param("nsb")
	mask := broadcast(avx512, byteMask(q4))
	facc := make([]VecVirtual, rows)
	for r := range facc {
		facc[r] = zeroed(avx512)
	}
	countdown(n, 1, func() {
		qx := make([]VecVirtual, 8)
		for m := range qx {
			qx[m] = ZMM()
			VMOVDQU32(Mem{Base: xq, Disp: 64 * m}, qx[m])
		}
		dx, sx := ZMM(), ZMM()
		VMOVUPS(Mem{Base: xd}, dx)
		if q4 {
			VMOVUPS(Mem{Base: xs}, sx)
		} else {
			VMOVDQU32(Mem{Base: xs}, sx)
		}
		if rows == 1 {
			// The super-block's lines: q8 values and its scales' line, or the q4 super-block.
			if q4 {
				for l := range 5 {
					prefetch(Mem{Base: ptrs[0], Index: iq, Scale: 1, Disp: 64 * l})
				}
			} else {
				for l := range 8 {
					prefetch(Mem{Base: ptrs[0], Index: iq, Scale: 1, Disp: 64 * l})
				}
				prefetch(Mem{Base: ptrs[0], Index: ks, Scale: 1})
			}
		}
		for r := 0; r < rows; r++ {
			// Two integer accumulators halve the dependency chains.
			acc := [2]VecVirtual{ZMM(), ZMM()}
			VPXORD(acc[0], acc[0], acc[0])
			VPXORD(acc[1], acc[1], acc[1])
			if q4 {
				for p := 0; p < 4; p++ {
					t, hi := ZMM(), ZMM()
					VMOVDQU32(Mem{Base: ptrs[r], Index: iq, Scale: 1, Disp: 64 + 64*p}, t)
					VPSRLW(U8(4), t, hi)
					VPANDD(mask, t, t)
					VPANDD(mask, hi, hi)
					vpdpbusd(qx[2*p], t, acc[0])
					vpdpbusd(qx[2*p+1], hi, acc[1])
				}
				VPADDD(acc[1], acc[0], acc[0])
			} else {
				for m := 0; m < 8; m++ {
					t := ZMM()
					VPXORD(Mem{Base: ptrs[r], Index: iq, Scale: 1, Disp: 64 * m}, mask, t)
					vpdpbusd(qx[m], t, acc[m%2])
				}
				VPADDD(acc[1], acc[0], acc[0])
				// The unsigned weights are q+128: take 128·Σqx back off, exactly.
				VPSUBD(sx, acc[0], acc[0])
			}
			d, f := ZMM(), ZMM()
			if q4 {
				VCVTPH2PS(Mem{Base: ptrs[r], Index: iq, Scale: 1}, d)
			} else {
				VCVTPH2PS(Mem{Base: ptrs[r], Index: ks, Scale: 1}, d)
			}
			VCVTDQ2PS(acc[0], f)
			VMULPS(dx, f, f)
			VFMADD231PS(f, d, facc[r])
			if q4 {
				mn := ZMM()
				VCVTPH2PS(Mem{Base: ptrs[r], Index: iq, Scale: 1, Disp: 32}, mn)
				VFMADD231PS(sx, mn, facc[r])
			}
		}
		ADDQ(U32(qstep), iq)
		if sstep > 0 {
			ADDQ(U32(sstep), ks)
		}
		ADDQ(U32(512), xq)
		ADDQ(U32(64), xd)
		ADDQ(U32(64), xs)
	})
	if rows == 1 {
		sum := reduce(facc[0], avx512)
		MOVSS(sum, Mem{Base: outp})
		ADDQ(stride, wrow)
		ADDQ(U32(4), outp)
		DECQ(left)
		JMP(LabelRef("row"))
		Label("end")
		ret()
		return
	}
	out := param("out")
	for r := range facc {
		sum := reduce(facc[r], avx512)
		MOVSS(sum, Mem{Base: out, Disp: 4 * r})
	}
	ret()
}

// quantDotPart emits dotPartQ8VNNI / dotPartQ4VNNI(w *byte, stride, soff int, xq *int8, xd
// *float32, xs *int32|*float32, n int, out *float32, rows int): for r < rows, out[r] += the
// dot product of a partial super-block of n < 16 groups, at w[r*stride:] (q8: its scales at
// byte soff from there), with the quantized activations. In a super-block of n groups the
// m-th run of 4n bytes holds four values of each group, group l in dword l: one masked vector
// of n lanes per run, a lane per group, as a full super-block's 64-byte vectors are.
func quantDotPart(q4 bool) {
	kind, xsType := "Q8", "*int32"
	if q4 {
		kind, xsType = "Q4", "*float32"
	}
	name := "dotPart" + kind + "VNNI"
	text(name, "func(w *byte, stride, soff int, xq *int8, xd *float32, xs "+xsType+", n int, out *float32, rows int)",
		"%s adds to out[r], r < rows, the dot product of the partial %s super-block of n < 16 groups at w[r*stride:] (scales at byte soff from there) with activations xq (group scales xd, and xs).", name, kind)
	wrow := param("w")
	stride := param("stride")
	soff := param("soff")
	xq := param("xq")
	xd := param("xd")
	xs := param("xs")
	n := param("n")
	outp := param("out")
	left := param("rows")
	// k: the low n lanes.
	t := GP32()
	MOVL(U32(1), t)
	SHLXL(n.(GPVirtual).As32(), t, t)
	DECL(t)
	k := K()
	KMOVW(t, k)
	run := GP64() // 4n, the bytes of one run
	MOVQ(n, run)
	SHLQ(U8(2), run)
	mask := ZMM()
	MOVL(U32(byteMask(q4)), t)
	VPBROADCASTD(t, mask)
	// The activations, the same for every row: eight runs, group scales and sums.
	qx := make([]VecVirtual, 8)
	p := GP64()
	MOVQ(xq, p)
	for m := range qx {
		qx[m] = ZMM()
		VMOVDQU32_Z(Mem{Base: p}, k, qx[m])
		if m < 7 {
			ADDQ(run, p)
		}
	}
	dx, sx := ZMM(), ZMM()
	VMOVUPS_Z(Mem{Base: xd}, k, dx)
	VMOVDQU32_Z(Mem{Base: xs}, k, sx)
	Label("row")
	TESTQ(left, left)
	JZ(LabelRef("end"))
	acc := [2]VecVirtual{ZMM(), ZMM()}
	VPXORD(acc[0], acc[0], acc[0])
	VPXORD(acc[1], acc[1], acc[1])
	MOVQ(wrow, p)
	d, f := ZMM(), ZMM()
	if q4 {
		// n scales, n minimums, then four runs of nibbles: run 2j low, 2j+1 high.
		mn := ZMM()
		VCVTPH2PS_Z(Mem{Base: p}, k, d)
		VCVTPH2PS_Z(Mem{Base: p, Index: n, Scale: 2}, k, mn)
		ADDQ(run, p)
		for j := 0; j < 4; j++ {
			lo, hi := ZMM(), ZMM()
			VMOVDQU32_Z(Mem{Base: p}, k, lo)
			VPSRLW(U8(4), lo, hi)
			VPANDD(mask, lo, lo)
			VPANDD(mask, hi, hi)
			vpdpbusd(qx[2*j], lo, acc[0])
			vpdpbusd(qx[2*j+1], hi, acc[1])
			if j < 3 {
				ADDQ(run, p)
			}
		}
		VPADDD(acc[1], acc[0], acc[0])
		VCVTDQ2PS(acc[0], f)
		VMULPS(dx, f, f)
		VMULPS(d, f, f)
		VFMADD231PS(sx, mn, f)
	} else {
		VCVTPH2PS_Z(Mem{Base: wrow, Index: soff, Scale: 1}, k, d)
		for m := 0; m < 8; m++ {
			v := ZMM()
			VMOVDQU32_Z(Mem{Base: p}, k, v)
			VPXORD(mask, v, v) // q+128, unsigned; masked-off lanes multiply zeros
			vpdpbusd(qx[m], v, acc[m%2])
			if m < 7 {
				ADDQ(run, p)
			}
		}
		VPADDD(acc[1], acc[0], acc[0])
		VPSUBD(sx, acc[0], acc[0])
		VCVTDQ2PS(acc[0], f)
		VMULPS(dx, f, f)
		VMULPS(d, f, f)
	}
	sum := reduce(f, avx512)
	ADDSS(Mem{Base: outp}, sum)
	MOVSS(sum, Mem{Base: outp})
	ADDQ(stride, wrow)
	ADDQ(U32(4), outp)
	DECQ(left)
	JMP(LabelRef("row"))
	Label("end")
	ret()
}

// quantDotAVX2 emits dotQ8AVX2 / dotQ4AVX2(w *byte, soff int, xq *int8, xd, xs *float32, nsb
// int) float32: the dot product of the first nsb super-blocks of one quantized row (scales
// from byte soff) with the activations, for CPUs without VNNI. A 32-byte half of each 64-byte
// vector holds 8 groups; VPMADDUBSW and VPMADDWD sum four products per group lane. q8
// multiplies |x| by w with the sign of x so that the unsigned operand is |x| ≤ 127 and no pair
// sum saturates.
func quantDotAVX2(q4 bool) {
	kind, qstep, sstep := "Q8", 512, 32
	if q4 {
		kind, qstep, sstep = "Q4", 320, 0
	}
	name := "dot" + kind + "AVX2"
	text(name, "func(w *byte, soff int, xq *int8, xd, xs *float32, nsb int) float32",
		"%s returns the dot product of nsb %s super-blocks of w (scales from byte soff) with activations xq (group scales xd, xd·Σxq in xs).", name, kind)
	w := param("w")
	var sc Register = w // q4: scales and minimums head each super-block
	if !q4 {
		sc = param("soff")
		ADDQ(w, sc)
	}
	xq := param("xq")
	xd := param("xd")
	xs := param("xs")
	n := param("nsb")
	ones := broadcast(avx2, 0x00010001)
	var mask VecVirtual
	if q4 {
		mask = broadcast(avx2, byteMask(q4))
	}
	facc := zeroed(avx2)
	countdown(n, 1, func() {
		for h := 0; h < 2; h++ {
			acc := YMM()
			VPXOR(acc, acc, acc)
			for m := 0; m < 8; m++ {
				x := YMM()
				VMOVDQU(Mem{Base: xq, Disp: 64*m + 32*h}, x)
				p := YMM()
				if q4 {
					t := YMM()
					VMOVDQU(Mem{Base: w, Disp: 64 + 64*(m/2) + 32*h}, t)
					if m%2 == 1 {
						VPSRLW(U8(4), t, t)
					}
					VPAND(mask, t, t)
					VPMADDUBSW(x, t, p) // t unsigned, x signed
				} else {
					t := YMM()
					VMOVDQU(Mem{Base: w, Disp: 64*m + 32*h}, t)
					VPSIGNB(x, t, t) // w with the sign of x
					VPABSB(x, x)
					VPMADDUBSW(t, x, p) // |x| unsigned, signed w
				}
				VPMADDWD(ones, p, p)
				VPADDD(p, acc, acc)
			}
			d, f, e := YMM(), YMM(), YMM()
			VCVTPH2PS(Mem{Base: sc, Disp: 16 * h}, d)
			VCVTDQ2PS(acc, f)
			VMULPS(Mem{Base: xd, Disp: 32 * h}, d, e)
			VFMADD231PS(f, e, facc)
			if q4 {
				mn := YMM()
				VCVTPH2PS(Mem{Base: sc, Disp: 32 + 16*h}, mn)
				VFMADD231PS(Mem{Base: xs, Disp: 32 * h}, mn, facc)
			}
		}
		ADDQ(U32(qstep), w)
		if sstep > 0 {
			ADDQ(U32(sstep), sc)
		}
		ADDQ(U32(512), xq)
		ADDQ(U32(64), xd)
		ADDQ(U32(64), xs)
	})
	r := reduce(facc, avx2)
	Store(r, ReturnIndex(0))
	ret()
}
