// Command _asm generates the amd64 assembly of package kernels with avo.
//
// Run it through go generate in the parent directory; it writes kernels_amd64.s and the Go
// declarations in kernels_amd64.go. Every function it emits has a generic Go twin in the
// parent package that the tests hold it to.
package main

import (
	"fmt"
	"math"

	"github.com/mmcloughlin/avo/attr"
	. "github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/ir"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// isa describes one vector instruction set level.
type isa struct {
	suffix string            // name suffix of the generated functions
	lanes  int               // float32 lanes per vector
	vec    func() VecVirtual // allocates a vector register of the level's width
}

var (
	avx2   = isa{"AVX2", 8, YMM}
	avx512 = isa{"AVX512", 16, ZMM}
)

// elem describes a weight element type and how to widen it to float32 lanes.
type elem struct {
	name   string // F32, BF16, F16
	goType string
	size   int // bytes per element
}

var (
	f32  = elem{"F32", "float32", 4}
	bf16 = elem{"BF16", "uint16", 2}
	f16  = elem{"F16", "uint16", 2}
)

// load widens lanes elements at m into float32 lanes of v.
func (e elem) load(m Mem, v VecVirtual, s isa) {
	switch e.name {
	case "F32":
		VMOVUPS(m, v)
	case "BF16":
		VPMOVZXWD(m, v)
		VPSLLD(U8(16), v, v)
	case "F16":
		VCVTPH2PS(m, v)
	}
}

func main() {
	ConstraintExpr("!purego")
	for _, s := range []isa{avx2, avx512} {
		elems := []elem{f32, bf16, f16}
		if s.lanes == 16 {
			// AVX-512 streams bfloat16 and float16 rows a cache line at a time instead.
			elems = elems[:1]
			dotBF16Deinterleave()
			dotF16Lines()
			for _, rows := range []int{1, 2} {
				dotTokens(bf16, rows)
				dotTokens(f16, rows)
			}
		}
		for _, e := range elems {
			dot(e, s)
			dot4(e, s)
		}
		axpy(s)
		convert(bf16, s)
		convert(f16, s)
	}
	for _, e := range []elem{f32, bf16, f16} {
		packPanel(e)
	}
	for _, s := range []isa{avx2, avx512} {
		siluMul(s)
		softmaxExp(s)
	}
	maxF32()
	scaleF32()
	expSum()
	indexAtLeast()
	gemmF32(avx2, 2, 6)
	gemmF32(avx512, 2, 12)
	gemmBF16DP()
	matMulAddTiles()
	peakFMA(avx2, 12)
	peakFMA(avx512, 24)
	peakBF16()
	xorWords(avx2)
	xorWords(avx512)
	for _, rows := range []int{1, 4} {
		quantDot(false, rows)
		quantDot(true, rows)
	}
	quantDotPart(false)
	quantDotPart(true)
	quantActs()
	quantRange()
	quantValues(false)
	quantValues(true)
	quantScales(false)
	quantScales(true)
	quantDotAVX2(false)
	quantDotAVX2(true)
	Generate()
}

// streamAhead is how far ahead, in bytes, the kernels that stream weight rows from memory
// prefetch them into L2: each cache line they load is prefetched twice, streamAhead and
// 2·streamAhead bytes ahead. The hardware prefetchers alone keep too few lines in flight for
// a core to read memory at its rate while the kernel computes. On Zen 4, with both cores
// streaming bfloat16 rows, the kernel reads about 20 GB/s without prefetches, 24 with one
// prefetch per line (4 to 16 KB ahead) and 30 with two, as fast as the read probe of the same
// moment; prefetches into L1 do less.
const streamAhead = 8192

// prefetch emits the prefetches of the line at m.
func prefetch(m Mem) {
	for range 2 {
		m.Disp += streamAhead
		PREFETCHT1(m)
	}
}

// text starts a function. No kernel keeps a pointer it is given, so the Go declarations say
// so (go:noescape) and callers' buffers can stay on their stacks.
func text(name string, a attr.Attribute, sig string) {
	TEXT(name, a, sig)
	Pragma("noescape")
}

// reduce adds the lanes of v and returns an XMM register holding the sum in its low lane.
func reduce(v VecVirtual, s isa) Register {
	y := v.AsY()
	if s.lanes == 16 {
		hi := YMM()
		VEXTRACTF64X4(U8(1), v.AsZ(), hi)
		VADDPS(hi, v.AsY(), hi)
		y = hi
	}
	x := XMM()
	VEXTRACTF128(U8(1), y, x)
	VADDPS(x, y.(VecVirtual).AsX(), x)
	t := XMM()
	VMOVHLPS(x, x, t)
	VADDPS(t, x, x)
	VMOVSHDUP(x, t)
	VADDSS(t, x, x)
	return x
}

// dot emits dot<E><ISA>(w *E, x *float32, n int) float32 over the first n elements, n a
// multiple of the lane count.
func dot(e elem, s isa) {
	name := fmt.Sprintf("dot%s%s", e.name, s.suffix)
	text(name, NOSPLIT, fmt.Sprintf("func(w *%s, x *float32, n int) float32", e.goType))
	Doc(fmt.Sprintf("%s returns the dot product of w[:n] and x[:n]; n is a multiple of %d.", name, s.lanes))
	w := Load(Param("w"), GP64())
	x := Load(Param("x"), GP64())
	n := Load(Param("n"), GP64())
	const u = 4
	var acc [u]VecVirtual
	for i := range acc {
		acc[i] = s.vec()
		VXORPS(acc[i], acc[i], acc[i])
	}
	Label("loop4")
	CMPQ(n, U32(u*s.lanes))
	JL(LabelRef("loop1"))
	for i := 0; i < u; i++ {
		t := s.vec()
		e.load(Mem{Base: w, Disp: i * s.lanes * e.size}, t, s)
		VFMADD231PS(Mem{Base: x, Disp: i * s.lanes * 4}, t, acc[i])
	}
	ADDQ(U32(u*s.lanes*e.size), w)
	ADDQ(U32(u*s.lanes*4), x)
	SUBQ(U32(u*s.lanes), n)
	JMP(LabelRef("loop4"))
	Label("loop1")
	CMPQ(n, U32(s.lanes))
	JL(LabelRef("done"))
	t := s.vec()
	e.load(Mem{Base: w}, t, s)
	VFMADD231PS(Mem{Base: x}, t, acc[0])
	ADDQ(U32(s.lanes*e.size), w)
	ADDQ(U32(s.lanes*4), x)
	SUBQ(U32(s.lanes), n)
	JMP(LabelRef("loop1"))
	Label("done")
	VADDPS(acc[1], acc[0], acc[0])
	VADDPS(acc[3], acc[2], acc[2])
	VADDPS(acc[2], acc[0], acc[0])
	r := reduce(acc[0], s)
	Store(r, ReturnIndex(0))
	VZEROUPPER()
	RET()
}

// dot4 emits dot4<E><ISA>(w *E, stride int, x *float32, n int, out *float32): the dot
// products of four rows w[r*stride:][:n], r < 4, with x[:n], stored to out[0:4]. Each load of
// x serves four rows.
func dot4(e elem, s isa) {
	name := fmt.Sprintf("dot4%s%s", e.name, s.suffix)
	text(name, NOSPLIT, fmt.Sprintf("func(w *%s, stride int, x *float32, n int, out *float32)", e.goType))
	Doc(fmt.Sprintf("%s stores to out[r] the dot product of w[r*stride:][:n] and x[:n] for r < 4; n is a multiple of %d.", name, s.lanes))
	var rows [4]Register
	rows[0] = Load(Param("w"), GP64())
	stride := Load(Param("stride"), GP64())
	if e.size == 2 {
		SHLQ(U8(1), stride)
	} else {
		SHLQ(U8(2), stride)
	}
	for r := 1; r < 4; r++ {
		rows[r] = GP64()
		LEAQ(Mem{Base: rows[r-1], Index: stride, Scale: 1}, rows[r])
	}
	x := Load(Param("x"), GP64())
	n := Load(Param("n"), GP64())
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
			acc[r][j] = s.vec()
			VXORPS(acc[r][j], acc[r][j], acc[r][j])
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
	out := Load(Param("out"), GP64())
	for r := 0; r < 4; r++ {
		VADDPS(acc[r][1], acc[r][0], acc[r][0])
		sum := reduce(acc[r][0], s)
		MOVSS(sum, Mem{Base: out, Disp: 4 * r})
	}
	VZEROUPPER()
	RET()
}

// axpy emits axpy<ISA>(a float32, x, y *float32, n int): y[:n] += a*x[:n].
func axpy(s isa) {
	name := "axpy" + s.suffix
	text(name, NOSPLIT, "func(a float32, x, y *float32, n int)")
	Doc(fmt.Sprintf("%s adds a*x[:n] to y[:n]; n is a multiple of %d.", name, s.lanes))
	av := s.vec()
	VBROADCASTSS(NewParamAddr("a", 0), av)
	x := Load(Param("x"), GP64())
	y := Load(Param("y"), GP64())
	n := Load(Param("n"), GP64())
	const u = 4
	Label("loop4")
	CMPQ(n, U32(u*s.lanes))
	JL(LabelRef("loop1"))
	for i := 0; i < u; i++ {
		t := s.vec()
		VMOVUPS(Mem{Base: y, Disp: i * s.lanes * 4}, t)
		VFMADD231PS(Mem{Base: x, Disp: i * s.lanes * 4}, av, t)
		VMOVUPS(t, Mem{Base: y, Disp: i * s.lanes * 4})
	}
	ADDQ(U32(u*s.lanes*4), x)
	ADDQ(U32(u*s.lanes*4), y)
	SUBQ(U32(u*s.lanes), n)
	JMP(LabelRef("loop4"))
	Label("loop1")
	CMPQ(n, U32(s.lanes))
	JL(LabelRef("done"))
	t := s.vec()
	VMOVUPS(Mem{Base: y}, t)
	VFMADD231PS(Mem{Base: x}, av, t)
	VMOVUPS(t, Mem{Base: y})
	ADDQ(U32(s.lanes*4), x)
	ADDQ(U32(s.lanes*4), y)
	SUBQ(U32(s.lanes), n)
	JMP(LabelRef("loop1"))
	Label("done")
	VZEROUPPER()
	RET()
}

// convert emits cvt<E><ISA>(dst *float32, src *E, n int): dst[:n] = float32(src[:n]).
func convert(e elem, s isa) {
	name := fmt.Sprintf("cvt%s%s", e.name, s.suffix)
	text(name, NOSPLIT, fmt.Sprintf("func(dst *float32, src *%s, n int)", e.goType))
	Doc(fmt.Sprintf("%s widens src[:n] to float32 in dst[:n]; n is a multiple of %d.", name, s.lanes))
	dst := Load(Param("dst"), GP64())
	src := Load(Param("src"), GP64())
	n := Load(Param("n"), GP64())
	const u = 4
	Label("loop4")
	CMPQ(n, U32(u*s.lanes))
	JL(LabelRef("loop1"))
	for i := 0; i < u; i++ {
		t := s.vec()
		e.load(Mem{Base: src, Disp: i * s.lanes * e.size}, t, s)
		VMOVUPS(t, Mem{Base: dst, Disp: i * s.lanes * 4})
	}
	ADDQ(U32(u*s.lanes*e.size), src)
	ADDQ(U32(u*s.lanes*4), dst)
	SUBQ(U32(u*s.lanes), n)
	JMP(LabelRef("loop4"))
	Label("loop1")
	CMPQ(n, U32(s.lanes))
	JL(LabelRef("done"))
	t := s.vec()
	e.load(Mem{Base: src}, t, s)
	VMOVUPS(t, Mem{Base: dst})
	ADDQ(U32(s.lanes*e.size), src)
	ADDQ(U32(s.lanes*4), dst)
	SUBQ(U32(s.lanes), n)
	JMP(LabelRef("loop1"))
	Label("done")
	VZEROUPPER()
	RET()
}

// gemmF32 emits the float32 GEMM micro-kernel gemmF32<ISA>(a, b *float32, kc int, c *float32,
// ldc int): for a packed panel a of kc×(mv·lanes) and b of kc×nr, c[j*ldc+i] += Σ_k
// a[k*mr+i]·b[k*nr+j] for i < mr = mv·lanes, j < nr.
func gemmF32(s isa, mv, nr int) {
	mr := mv * s.lanes
	name := "gemmF32" + s.suffix
	text(name, NOSPLIT, "func(a, b *float32, kc int, c *float32, ldc int)")
	Doc(fmt.Sprintf("%s adds the %d×%d product of packed panels a (kc×%d) and b (kc×%d) to c (row stride ldc).", name, nr, mr, mr, nr))
	a := Load(Param("a"), GP64())
	b := Load(Param("b"), GP64())
	kc := Load(Param("kc"), GP64())
	acc := make([][]VecVirtual, nr)
	for j := range acc {
		acc[j] = make([]VecVirtual, mv)
		for v := range acc[j] {
			acc[j][v] = s.vec()
			VXORPS(acc[j][v], acc[j][v], acc[j][v])
		}
	}
	Label("loop")
	TESTQ(kc, kc)
	JZ(LabelRef("done"))
	av := make([]VecVirtual, mv)
	for v := range av {
		av[v] = s.vec()
		VMOVUPS(Mem{Base: a, Disp: v * s.lanes * 4}, av[v])
	}
	for j := 0; j < nr; j++ {
		if s.lanes == 16 {
			for v := 0; v < mv; v++ {
				VFMADD231PS_BCST(Mem{Base: b, Disp: 4 * j}, av[v], acc[j][v])
			}
		} else {
			bv := s.vec()
			VBROADCASTSS(Mem{Base: b, Disp: 4 * j}, bv)
			for v := 0; v < mv; v++ {
				VFMADD231PS(bv, av[v], acc[j][v])
			}
		}
	}
	ADDQ(U32(mr*4), a)
	ADDQ(U32(nr*4), b)
	DECQ(kc)
	JMP(LabelRef("loop"))
	Label("done")
	c := Load(Param("c"), GP64())
	ldc := Load(Param("ldc"), GP64())
	SHLQ(U8(2), ldc)
	for j := 0; j < nr; j++ {
		for v := 0; v < mv; v++ {
			m := Mem{Base: c, Disp: v * s.lanes * 4}
			VADDPS(m, acc[j][v], acc[j][v])
			VMOVUPS(acc[j][v], m)
		}
		if j+1 < nr {
			ADDQ(ldc, c)
		}
	}
	VZEROUPPER()
	RET()
}

// bytes emits raw instruction bytes, for instructions the assembler does not know.
func bytes(bs ...byte) {
	for _, b := range bs {
		Instruction(&ir.Instruction{Opcode: "BYTE", Operands: []Op{U8(b)}})
	}
}

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
	text(name, NOSPLIT, "func(a, b *uint16, kp int, c *float32, ldc int)")
	Doc(fmt.Sprintf("%s adds the %d×%d product of bfloat16-pair panels a (kp×%d×2) and b (kp×%d×2) to c (row stride ldc), by VDPBF16PS.", name, nr, mv*16, mv*16, nr))
	// Physical registers: the raw encoding names them. Z0..Z23 accumulate, Z24/Z25 hold a.
	Load(Param("a"), RSI)
	Load(Param("b"), RDI)
	Load(Param("kp"), RCX)
	zr := func(i int) VecPhysical {
		return []VecPhysical{Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15, Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23, Z24, Z25}[i]
	}
	for i := 0; i < nr*mv; i++ {
		VPXORD(zr(i), zr(i), zr(i))
	}
	Label("loop")
	TESTQ(RCX, RCX)
	JZ(LabelRef("done"))
	for v := 0; v < mv; v++ {
		VMOVUPS(Mem{Base: RSI, Disp: v * 64}, zr(24+v))
	}
	const rdi = 7
	for j := 0; j < nr; j++ {
		for v := 0; v < mv; v++ {
			vdpbf16psBcst(j*mv+v, 24+v, rdi, j)
		}
	}
	ADDQ(U32(mv*64), RSI)
	ADDQ(U32(nr*4), RDI)
	DECQ(RCX)
	JMP(LabelRef("loop"))
	Label("done")
	Load(Param("c"), RDX)
	Load(Param("ldc"), RBX)
	SHLQ(U8(2), RBX)
	for j := 0; j < nr; j++ {
		for v := 0; v < mv; v++ {
			m := Mem{Base: RDX, Disp: v * 64}
			VADDPS(m, zr(j*mv+v), zr(j*mv+v))
			VMOVUPS(zr(j*mv+v), m)
		}
		if j+1 < nr {
			ADDQ(RBX, RDX)
		}
	}
	VZEROUPPER()
	RET()
}

// peakFMA emits peakFMA<ISA>(n int): n iterations of acc independent register-only FMA
// chains, the machine's float32 arithmetic peak.
func peakFMA(s isa, acc int) {
	name := "peakFMA" + s.suffix
	text(name, NOSPLIT, "func(n int)")
	Doc(fmt.Sprintf("%s runs n iterations of %d independent vector FMAs on registers.", name, acc))
	n := Load(Param("n"), GP64())
	a, b := s.vec(), s.vec()
	VXORPS(a, a, a)
	VXORPS(b, b, b)
	accs := make([]VecVirtual, acc)
	for i := range accs {
		accs[i] = s.vec()
		VXORPS(accs[i], accs[i], accs[i])
	}
	Label("loop")
	TESTQ(n, n)
	JZ(LabelRef("done"))
	for i := range accs {
		VFMADD231PS(a, b, accs[i])
	}
	DECQ(n)
	JMP(LabelRef("loop"))
	Label("done")
	VZEROUPPER()
	RET()
}

// vdpbf16ps emits VDPBF16PS zdst, zsrc1, zsrc2 (register form).
func vdpbf16ps(dst, src1, src2 int) {
	not := func(b int) byte { return byte(^b & 1) }
	p0 := not(dst>>3)<<7 | not(src2>>4)<<6 | not(src2>>3)<<5 | not(dst>>4)<<4 | 0b10
	p1 := byte(^src1&0xf)<<3 | 1<<2 | 0b10
	p2 := byte(0b10)<<5 | not(src1>>4)<<3
	modrm := byte(0b11)<<6 | byte(dst&7)<<3 | byte(src2&7)
	Comment(fmt.Sprintf("VDPBF16PS Z%d, Z%d, Z%d", src2, src1, dst))
	bytes(0x62, p0, p1, p2, 0x52, modrm)
}

// peakBF16 emits peakBF16AVX512(n int): n iterations of 24 independent VDPBF16PS chains.
func peakBF16() {
	text("peakBF16AVX512", NOSPLIT, "func(n int)")
	Doc("peakBF16AVX512 runs n iterations of 24 independent VDPBF16PS on registers.")
	Load(Param("n"), RCX)
	for i := 0; i < 26; i++ {
		z := []VecPhysical{Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15, Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23, Z24, Z25}[i]
		VPXORD(z, z, z)
	}
	Label("loop")
	TESTQ(RCX, RCX)
	JZ(LabelRef("done"))
	for i := 0; i < 24; i++ {
		vdpbf16ps(i, 24, 25)
	}
	DECQ(RCX)
	JMP(LabelRef("loop"))
	Label("done")
	VZEROUPPER()
	RET()
}

// xorWords emits xorWords<ISA>(p *uint64, n int) uint64: the XOR of p[:n], n a multiple of
// four vectors, reading memory as fast as the core can.
func xorWords(s isa) {
	name := "xorWords" + s.suffix
	words := s.lanes / 2
	text(name, NOSPLIT, "func(p *uint64, n int) uint64")
	Doc(fmt.Sprintf("%s returns the XOR of p[:n]; n is a multiple of %d.", name, 4*words))
	p := Load(Param("p"), GP64())
	n := Load(Param("n"), GP64())
	var acc [4]VecVirtual
	for i := range acc {
		acc[i] = s.vec()
		VPXOR(acc[i].AsY(), acc[i].AsY(), acc[i].AsY())
	}
	Label("loop")
	TESTQ(n, n)
	JZ(LabelRef("done"))
	for i := range acc {
		m := Mem{Base: p, Disp: i * s.lanes * 4}
		if s.lanes == 16 {
			VPXORQ(m, acc[i], acc[i])
		} else {
			VPXOR(m, acc[i], acc[i])
		}
	}
	ADDQ(U32(4*s.lanes*4), p)
	SUBQ(U32(4*words), n)
	JMP(LabelRef("loop"))
	Label("done")
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
	VZEROUPPER()
	RET()
}

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
	count, xsType := "", "*int32"
	if rows == 1 {
		// One row at a time, as many rows as asked: the rows stream from memory.
		name = fmt.Sprintf("dotRows%sVNNI", kind)
		count = ", rows int"
	}
	if q4 {
		xsType = "*float32"
	}
	text(name, NOSPLIT, "func(w *byte, stride, soff int, xq *int8, xd *float32, xs "+xsType+", nsb int, out *float32"+count+")")
	if rows == 1 {
		Doc(fmt.Sprintf("%s stores to out[r], r < rows, the dot product of nsb %s super-blocks of row w[r*stride:] (scales from byte soff) with activations xq (group scales xd, and xs).", name, kind))
	} else {
		Doc(fmt.Sprintf("%s stores to out[r], r < 4, the dot product of nsb %s super-blocks of row w[r*stride:] (scales from byte soff) with activations xq (group scales xd, and xs).", name, kind))
	}
	ptrs := make([]Register, rows)
	var wrow, stride, outp, left Register
	if rows == 1 {
		wrow = Load(Param("w"), GP64())
		stride = Load(Param("stride"), GP64())
		outp = Load(Param("out"), GP64())
		left = Load(Param("rows"), GP64())
		Label("row")
		TESTQ(left, left)
		JZ(LabelRef("end"))
		ptrs[0] = GP64()
		MOVQ(wrow, ptrs[0])
	} else {
		ptrs[0] = Load(Param("w"), GP64())
	}
	if rows > 1 {
		stride := Load(Param("stride"), GP64())
		for r := 1; r < rows; r++ {
			ptrs[r] = GP64()
			LEAQ(Mem{Base: ptrs[r-1], Index: stride, Scale: 1}, ptrs[r])
		}
	}
	ks := Load(Param("soff"), GP64()) // offset of the current super-block's scales
	iq := GP64()                      // offset of its values
	XORQ(iq, iq)
	xq := Load(Param("xq"), GP64())
	xd := Load(Param("xd"), GP64())
	xs := Load(Param("xs"), GP64())
	n := Load(Param("nsb"), GP64())
	tmp := GP32()
	mask := ZMM()
	if q4 {
		MOVL(U32(0x0f0f0f0f), tmp)
	} else {
		MOVL(U32(0x80808080), tmp)
	}
	VPBROADCASTD(tmp, mask)
	facc := make([]VecVirtual, rows)
	for r := range facc {
		facc[r] = ZMM()
		VXORPS(facc[r], facc[r], facc[r])
	}
	Label("loop")
	TESTQ(n, n)
	JZ(LabelRef("done"))
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
	DECQ(n)
	JMP(LabelRef("loop"))
	Label("done")
	if rows == 1 {
		sum := reduce(facc[0], avx512)
		MOVSS(sum, Mem{Base: outp})
		ADDQ(stride, wrow)
		ADDQ(U32(4), outp)
		DECQ(left)
		JMP(LabelRef("row"))
		Label("end")
		VZEROUPPER()
		RET()
		return
	}
	out := Load(Param("out"), GP64())
	for r := range facc {
		sum := reduce(facc[r], avx512)
		MOVSS(sum, Mem{Base: out, Disp: 4 * r})
	}
	VZEROUPPER()
	RET()
}

// quantActs emits quantActsAVX512(x *float32, q *int8, d *float32, sum *int32, nsb int): for
// nsb super-blocks of 16 groups of 32 values of x, the int8 values q = x·(127/max|x|) rounded
// to nearest even, interleaved as the quantized weights are, and per group d = max|x|/127 and
// sum = Σq. Groups whose maximum is tiny, zero or not finite get garbage for the caller to fix.
func quantActs() {
	text("quantActsAVX512", NOSPLIT, "func(x *float32, q *int8, d *float32, sum *int32, nsb int)")
	Doc("quantActsAVX512 quantizes nsb super-blocks of x to int8 q (interleaved), group scales d = max|x|/127 and group sums Σq.")
	idx := GLOBL("scatterIndex", RODATA|NOPTR)
	for m := 0; m < 8; m++ {
		DATA(4*m, U32(64*m))
	}
	x := Load(Param("x"), GP64())
	q := Load(Param("q"), GP64())
	d := Load(Param("d"), GP64())
	sum := Load(Param("sum"), GP64())
	n := Load(Param("nsb"), GP64())
	tmp := GP32()
	absMask := ZMM()
	MOVL(U32(0x7fffffff), tmp)
	VPBROADCASTD(tmp, absMask)
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
	VZEROUPPER()
	RET()
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
	text(name, NOSPLIT, "func(w *byte, soff int, xq *int8, xd, xs *float32, nsb int) float32")
	Doc(fmt.Sprintf("%s returns the dot product of nsb %s super-blocks of w (scales from byte soff) with activations xq (group scales xd, xd·Σxq in xs).", name, kind))
	w := Load(Param("w"), GP64())
	var sc Register = w // q4: scales and minimums head each super-block
	if !q4 {
		sc = Load(Param("soff"), GP64())
		ADDQ(w, sc)
	}
	xq := Load(Param("xq"), GP64())
	xd := Load(Param("xd"), GP64())
	xs := Load(Param("xs"), GP64())
	n := Load(Param("nsb"), GP64())
	tmp := GP32()
	ones := YMM()
	MOVL(U32(0x00010001), tmp)
	VMOVD(tmp, ones.AsX())
	VPBROADCASTD(ones.AsX(), ones)
	var mask VecVirtual
	if q4 {
		mask = YMM()
		MOVL(U32(0x0f0f0f0f), tmp)
		VMOVD(tmp, mask.AsX())
		VPBROADCASTD(mask.AsX(), mask)
	}
	facc := YMM()
	VXORPS(facc, facc, facc)
	Label("loop")
	TESTQ(n, n)
	JZ(LabelRef("done"))
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
	DECQ(n)
	JMP(LabelRef("loop"))
	Label("done")
	r := reduce(facc, avx2)
	Store(r, ReturnIndex(0))
	VZEROUPPER()
	RET()
}

// dotBF16Deinterleave emits dotRowsBF16XAVX512(w *uint16, stride int, x *float32, n int, out
// *float32, rows int): out[r] = the dot product of w[r*stride:][:n] and x[:n], n a multiple of
// 32, loading 32 bfloat16 values (a cache line) at a time: a shift widens the even ones and a
// mask the odd ones, and two permutes split x alike. One row at a time streams memory best.
func dotBF16Deinterleave() {
	text("dotRowsBF16XAVX512", NOSPLIT, "func(w *uint16, stride int, x *float32, n int, out *float32, rows int)")
	Doc("dotRowsBF16XAVX512 stores to out[r], r < rows, the dot product of w[r*stride:][:n] and x[:n]; n is a multiple of 32.")
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
	tmp := GP32()
	hiMask := ZMM()
	MOVL(U32(0xffff0000), tmp)
	VPBROADCASTD(tmp, hiMask)
	rowLoop(2, func(w, x, n Register) VecVirtual {
		const u = 4
		acc := make([][2]VecVirtual, u)
		for k := range acc {
			for j := range acc[k] {
				acc[k][j] = ZMM()
				VXORPS(acc[k][j], acc[k][j], acc[k][j])
			}
		}
		Label("loop")
		CMPQ(n, U32(32*u))
		JL(LabelRef("one"))
		for k := 0; k < u; k++ {
			prefetch(Mem{Base: w, Disp: 64 * k})
			step(w, x, k, ie, io, hiMask, acc[k])
		}
		ADDQ(U32(64*u), w)
		ADDQ(U32(128*u), x)
		SUBQ(U32(32*u), n)
		JMP(LabelRef("loop"))
		Label("one")
		CMPQ(n, U32(32))
		JL(LabelRef("sum"))
		step(w, x, 0, ie, io, hiMask, acc[0])
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
	})
}

// rowLoop emits the loop over rows of the one-row-at-a-time kernels with the signature
// func(w *E, stride int, x *float32, n int, out *float32, rows int): body gets fresh
// registers with the row's start, x and n, and returns the vector to sum into out[r].
func rowLoop(size int, body func(w, x, n Register) VecVirtual) {
	w := Load(Param("w"), GP64())
	stride := Load(Param("stride"), GP64())
	if size == 2 {
		SHLQ(U8(1), stride)
	}
	out := Load(Param("out"), GP64())
	rows := Load(Param("rows"), GP64())
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
	VZEROUPPER()
	RET()
}

// step emits one 32-value step of dot1BF16XAVX512 at vector k of w and x.
func step(w, x Register, k int, ie, io, hiMask VecVirtual, acc [2]VecVirtual) {
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
	text("dotRowsF16XAVX512", NOSPLIT, "func(w *uint16, stride int, x *float32, n int, out *float32, rows int)")
	Doc("dotRowsF16XAVX512 stores to out[r], r < rows, the dot product of w[r*stride:][:n] and x[:n]; n is a multiple of 32.")
	rowLoop(2, func(w, x, n Register) VecVirtual {
		const u = 4
		acc := make([][2]VecVirtual, u)
		for k := range acc {
			for j := range acc[k] {
				acc[k][j] = ZMM()
				VXORPS(acc[k][j], acc[k][j], acc[k][j])
			}
		}
		f16step := func(k int, acc [2]VecVirtual) {
			v, lo, hi := ZMM(), ZMM(), ZMM()
			hy := YMM()
			VMOVDQU32(Mem{Base: w, Disp: 64 * k}, v)
			VCVTPH2PS(v.AsY(), lo)
			VEXTRACTI64X4(U8(1), v, hy)
			VCVTPH2PS(hy, hi)
			VFMADD231PS(Mem{Base: x, Disp: 128 * k}, lo, acc[0])
			VFMADD231PS(Mem{Base: x, Disp: 128*k + 64}, hi, acc[1])
		}
		Label("loop")
		CMPQ(n, U32(32*u))
		JL(LabelRef("one"))
		for k := 0; k < u; k++ {
			prefetch(Mem{Base: w, Disp: 64 * k})
			f16step(k, acc[k])
		}
		ADDQ(U32(64*u), w)
		ADDQ(U32(128*u), x)
		SUBQ(U32(32*u), n)
		JMP(LabelRef("loop"))
		Label("one")
		CMPQ(n, U32(32))
		JL(LabelRef("sum"))
		f16step(0, acc[0])
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
	})
}

// packPanel emits pack<E>AVX512(dst *float32, src *E, stride, kc int): the 32×kc panel of rows
// src[i*stride:][:kc], i < 32, widened to float32 and transposed into dst[k*32+i], kc a
// multiple of 16: the weight panel of the AVX-512 GEMM micro-kernel, 16×16 blocks at a time.
func packPanel(e elem) {
	name := fmt.Sprintf("pack%sAVX512", e.name)
	text(name, NOSPLIT, fmt.Sprintf("func(dst *float32, src *%s, stride, kc int)", e.goType))
	Doc(fmt.Sprintf("%s stores float32(src[i*stride+k]) to dst[k*32+i] for i < 32, k < kc; kc is a multiple of 16.", name))
	dst := Load(Param("dst"), GP64())
	src := Load(Param("src"), GP64())
	s1 := Load(Param("stride"), GP64())
	if e.size == 2 {
		SHLQ(U8(1), s1)
	} else {
		SHLQ(U8(2), s1)
	}
	s3 := GP64()
	LEAQ(Mem{Base: s1, Index: s1, Scale: 2}, s3)
	kc := Load(Param("kc"), GP64())
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
	VZEROUPPER()
	RET()
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

// expConsts holds the broadcast constants of vexp.
type expConsts struct {
	lo, hi, log2e, c1, c2, one Op
	p                          [6]Op
}

// f32const broadcasts the float32 c to a new vector register of s.
func f32const(s isa, c float32) VecVirtual {
	t := GP32()
	MOVL(U32(math.Float32bits(c)), t)
	v := s.vec()
	if s.lanes == 16 {
		VPBROADCASTD(t, v)
	} else {
		VMOVD(t, v.AsX())
		VPBROADCASTD(v.AsX(), v)
	}
	return v
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
	t := GP32()
	b := s.vec()
	MOVL(U32(126), t)
	VMOVD(t, b.AsX())
	VPBROADCASTD(b.AsX(), b)
	VPADDD(b, ni, ni)
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
	text(name, NOSPLIT, "func(dst, gate, u *float32, n int)")
	Doc(fmt.Sprintf("%s sets dst[i] = silu(gate[i])·u[i] for i < n; n is a multiple of %d.", name, s.lanes))
	dst := Load(Param("dst"), GP64())
	g := Load(Param("gate"), GP64())
	u := Load(Param("u"), GP64())
	n := Load(Param("n"), GP64())
	e := newExpConsts(s)
	zero := s.vec()
	VXORPS(zero, zero, zero)
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
	VZEROUPPER()
	RET()
}

// softmaxExp emits softmaxExp<ISA>(x *float32, n int, m float32) float32: x[i] = exp(x[i]-m)
// for i < n, n a multiple of the lane count, returning the sum of the new x.
func softmaxExp(s isa) {
	name := "softmaxExp" + s.suffix
	text(name, NOSPLIT, "func(x *float32, n int, m float32) float32")
	Doc(fmt.Sprintf("%s replaces x[i] by exp(x[i]-m) for i < n, n a multiple of %d, and returns their sum.", name, s.lanes))
	x := Load(Param("x"), GP64())
	n := Load(Param("n"), GP64())
	mv := s.vec()
	VBROADCASTSS(NewParamAddr("m", 16), mv)
	e := newExpConsts(s)
	sum := s.vec()
	VXORPS(sum, sum, sum)
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
	VZEROUPPER()
	RET()
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
	text(name, NOSPLIT, fmt.Sprintf("func(w *%s, wstride int, x *float32, xstride, n int, out *float32)", e.goType))
	Doc(fmt.Sprintf("%s stores to out[r*4+t], r < %d, t < 4, the dot product of w[r*wstride:][:n] with x[t*xstride:][:n]; n is a multiple of 32.", name, rows))
	w := Load(Param("w"), GP64())
	var ws Register
	if rows > 1 {
		ws = Load(Param("wstride"), GP64())
		SHLQ(U8(1), ws)
	}
	x := Load(Param("x"), GP64())
	xs := Load(Param("xstride"), GP64())
	SHLQ(U8(2), xs)
	xs3 := GP64()
	LEAQ(Mem{Base: xs, Index: xs, Scale: 2}, xs3)
	n := Load(Param("n"), GP64())
	var hiMask VecVirtual
	if e.name == "BF16" {
		tmp := GP32()
		hiMask = ZMM()
		MOVL(U32(0xffff0000), tmp)
		VPBROADCASTD(tmp, hiMask)
	}
	acc := make([][4][2]VecVirtual, rows)
	for r := range acc {
		for t := range acc[r] {
			for j := range acc[r][t] {
				acc[r][t][j] = ZMM()
				VXORPS(acc[r][t][j], acc[r][t][j], acc[r][t][j])
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
	out := Load(Param("out"), GP64())
	for r := 0; r < rows; r++ {
		for t := 0; t < 4; t++ {
			VADDPS(acc[r][t][1], acc[r][t][0], acc[r][t][0])
			sum := reduce(acc[r][t][0], avx512)
			MOVSS(sum, Mem{Base: out, Disp: 4 * (4*r + t)})
		}
	}
	VZEROUPPER()
	RET()
}

// maxF32 emits maxAVX512(x *float32, n int) float32: the largest of x[:n], n a positive
// multiple of 16, or NaN if any is NaN.
func maxF32() {
	text("maxAVX512", NOSPLIT, "func(x *float32, n int) float32")
	Doc("maxAVX512 returns the largest of x[:n], or NaN if any is NaN; n is a positive multiple of 16.")
	x := Load(Param("x"), GP64())
	n := Load(Param("n"), GP64())
	m := ZMM()
	VMOVUPS(Mem{Base: x}, m)
	nan := K()
	VCMPPS(U8(3), m, m, nan)
	ADDQ(U32(64), x)
	SUBQ(U32(16), n)
	Label("loop")
	TESTQ(n, n)
	JZ(LabelRef("done"))
	v := ZMM()
	VMOVUPS(Mem{Base: x}, v)
	VMAXPS(v, m, m)
	k := K()
	VCMPPS(U8(3), v, v, k)
	KORW(k, nan, nan)
	ADDQ(U32(64), x)
	SUBQ(U32(16), n)
	JMP(LabelRef("loop"))
	Label("done")
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
	VZEROUPPER()
	RET()
}

// scaleF32 emits scaleAVX512(x *float32, n int, a float32): x[:n] *= a, n a multiple of 16.
func scaleF32() {
	text("scaleAVX512", NOSPLIT, "func(x *float32, n int, a float32)")
	Doc("scaleAVX512 multiplies x[:n] by a; n is a multiple of 16.")
	x := Load(Param("x"), GP64())
	n := Load(Param("n"), GP64())
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
	VZEROUPPER()
	RET()
}

// expSum emits expSumAVX512(dst, x *float32, n int, shift, scale float32) float64: dst[i] =
// e^((x[i]-shift)·scale) for i < n unless dst is nil, returning their sum; n is a multiple of
// 16. Each lane computes the generic ExpNeg operation for operation, every one rounded on its
// own (no fused multiply-adds), so that the values are the generic ones bit for bit. The sum
// is accumulated per lane in float32 over blocks of 256 values and in float64 across them.
func expSum() {
	text("expSumAVX512", NOSPLIT, "func(dst, x *float32, n int, shift, scale float32) float64")
	Doc("expSumAVX512 sets dst[i] = exp((x[i]-shift)*scale) for i < n unless dst is nil and returns their sum; n is a multiple of 16.")
	dst := Load(Param("dst"), GP64())
	x := Load(Param("x"), GP64())
	n := Load(Param("n"), GP64())
	shift, scale := ZMM(), ZMM()
	VBROADCASTSS(NewParamAddr("shift", 24), shift)
	VBROADCASTSS(NewParamAddr("scale", 28), scale)
	s := avx512
	cs := func(c float32) VecVirtual { return f32const(s, c) }
	expMin, log2e, magic := cs(-87.3), cs(float32(math.Log2E)), cs(0xc00000)
	c1, c2 := cs(0.693359375), cs(2.12194440e-4)
	poly := []VecVirtual{cs(1.9875691500e-4), cs(1.3981999507e-3), cs(8.3334519073e-3), cs(4.1665795894e-2), cs(1.6666665459e-1), cs(5.0000001201e-1)}
	one := cs(1)
	bias := ZMM()
	t := GP32()
	MOVL(U32(127), t)
	VPBROADCASTD(t, bias)
	zero := ZMM()
	VXORPS(zero, zero, zero)
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
	VZEROUPPER()
	RET()
}

// quantRange emits quantRangeAVX512(x *float32, groups int, lo, hi *float32) bool: lo[l] and
// hi[l] are the least and the largest of group l, x[32l:32l+32], for l < groups; it reports
// whether every value is finite (the bounds are meaningless otherwise).
func quantRange() {
	text("quantRangeAVX512", NOSPLIT, "func(x *float32, groups int, lo, hi *float32) bool")
	Doc("quantRangeAVX512 sets lo[l] and hi[l] to the least and the largest value of each group of 32 of x[:32*groups] and reports whether all are finite; groups > 0.")
	x := Load(Param("x"), GP64())
	n := Load(Param("groups"), GP64())
	lo := Load(Param("lo"), GP64())
	hi := Load(Param("hi"), GP64())
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
	VZEROUPPER()
	RET()
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
	c := quantConsts{abs: ZMM(), sign: ZMM()}
	t := GP32()
	MOVL(U32(0x7fffffff), t)
	VPBROADCASTD(t, c.abs)
	MOVL(U32(0x80000000), t)
	VPBROADCASTD(t, c.sign)
	c.half, c.one = f32const(avx512, 0.5), f32const(avx512, 1)
	return c
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
	text(name, NOSPLIT, sig)
	Doc(name + " quantizes groups groups of 32 values of x and stores them interleaved at out + 4l + idx[j]; groups > 0.")
	x := Load(Param("x"), GP64())
	var mp Register
	if q4 {
		mp = Load(Param("m"), GP64())
	}
	inv := Load(Param("inv"), GP64())
	n := Load(Param("groups"), GP64())
	out := Load(Param("out"), GP64())
	ip := Load(Param("idx"), GP64())
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
	VZEROUPPER()
	RET()
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
	text(name, NOSPLIT, "func(lo, hi *float32, h *uint16, d, inv *float32) bool")
	Doc(name + " computes the float16 scales of the 16 groups of a super-block from their bounds and reports whether they are finite.")
	lp := Load(Param("lo"), GP64())
	hp := Load(Param("hi"), GP64())
	h := Load(Param("h"), GP64())
	dp := Load(Param("d"), GP64())
	ip := Load(Param("inv"), GP64())
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
	inf, mag := ZMM(), ZMM()
	t := GP32()
	MOVL(U32(0x7c007c00), t)
	VPBROADCASTD(t, inf)
	MOVL(U32(0x7fff7fff), t)
	VPBROADCASTD(t, mag)
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
	VCMPPS(U8(4), c.zero(), d, nz) // d != 0
	r := ZMM()
	VDIVPS_Z(d, c.one, nz, r)
	VMOVUPS(r, Mem{Base: ip})
	ok := GP8()
	KORTESTD(bad, bad)
	SETEQ(ok)
	Store(ok, ReturnIndex(0))
	VZEROUPPER()
	RET()
}

// zero returns a zeroed vector.
func (quantConsts) zero() VecVirtual {
	z := ZMM()
	VXORPS(z, z, z)
	return z
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
	text(name, NOSPLIT, "func(w *byte, stride, soff int, xq *int8, xd *float32, xs "+xsType+", n int, out *float32, rows int)")
	Doc(fmt.Sprintf("%s adds to out[r], r < rows, the dot product of the partial %s super-block of n < 16 groups at w[r*stride:] (scales at byte soff from there) with activations xq (group scales xd, and xs).", name, kind))
	wrow := Load(Param("w"), GP64())
	stride := Load(Param("stride"), GP64())
	soff := Load(Param("soff"), GP64())
	xq := Load(Param("xq"), GP64())
	xd := Load(Param("xd"), GP64())
	xs := Load(Param("xs"), GP64())
	n := Load(Param("n"), GP64())
	outp := Load(Param("out"), GP64())
	left := Load(Param("rows"), GP64())
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
	if q4 {
		MOVL(U32(0x0f0f0f0f), t)
	} else {
		MOVL(U32(0x80808080), t)
	}
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
	VZEROUPPER()
	RET()
}

// indexAtLeast emits indexAtLeastAVX512(dst *int32, x *float32, n int, t float32) int: it
// stores the indices i < n with x[i] >= t to dst in order and returns their number; n is a
// multiple of 16. Each step stores a whole vector at the current count, which never passes
// the index of the values read, so dst needs n entries.
func indexAtLeast() {
	text("indexAtLeastAVX512", NOSPLIT, "func(dst *int32, x *float32, n int, t float32) int")
	Doc("indexAtLeastAVX512 stores the indices i < n with x[i] >= t to dst in order and returns their number; n is a multiple of 16 and dst has n entries.")
	dst := Load(Param("dst"), GP64())
	x := Load(Param("x"), GP64())
	n := Load(Param("n"), GP64())
	tv := ZMM()
	VBROADCASTSS(NewParamAddr("t", 24), tv)
	iota := GLOBL("iota16", RODATA|NOPTR)
	for i := 0; i < 16; i++ {
		DATA(4*i, U32(i))
	}
	idx, step := ZMM(), ZMM()
	VMOVDQU32(iota, idx)
	t := GP32()
	MOVL(U32(16), t)
	VPBROADCASTD(t, step)
	cnt := GP64()
	XORQ(cnt, cnt)
	Label("loop")
	TESTQ(n, n)
	JZ(LabelRef("done"))
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
	SUBQ(U32(16), n)
	JMP(LabelRef("loop"))
	Label("done")
	Store(cnt, ReturnIndex(0))
	VZEROUPPER()
	RET()
}
