// Command _asm generates the amd64 assembly of package kernels with avo.
//
// Run it through go generate in the parent directory; it writes kernels_amd64.s and the Go
// declarations in kernels_amd64.go. Every function it emits has a generic Go twin in the
// parent package that the tests hold it to.
package main

import (
	"fmt"
	"math"

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
		if s.lanes == 16 {
			// The AVX-512 products go the canonical way; the float32 dot product stays.
			dot(f32, s)
			for _, e := range []elem{bf16, f16, f32} {
				rows(e)
				if e == bf16 {
					permute()
				}
				for _, r := range []int{4, 2, 1} {
					for _, t := range []int{5, 4, 1} {
						tile(e, r, t, r < 4)
					}
				}
			}
		} else {
			for _, e := range []elem{f32, bf16, f16} {
				dot(e, s)
				dot4(e, s)
			}
		}
		axpy(s)
		convert(bf16, s)
		convert(f16, s)
	}
	for _, s := range []isa{avx2, avx512} {
		siluMul(s)
		softmaxExp(s)
	}
	maxF32()
	scaleF32()
	expSum()
	indexAtLeast()
	for _, r := range []int{4, 2, 1} {
		for _, t := range []int{6, 4, 1} {
			dpTile(r, t)
		}
	}
	roundWords()
	roundF32()
	matMulAddTiles()
	prefetchRange()
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

// streamAhead is how far ahead, in bytes, the few-token and quantized kernels that stream
// weight rows from memory prefetch them into L2: each cache line they load is prefetched
// twice, streamAhead and 2·streamAhead bytes ahead (the one-token kernels of the 16-bit types
// prefetch otherwise: see rows). The hardware prefetchers alone keep too few lines in flight for
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
func text(name, sig, doc string, args ...any) {
	TEXT(name, NOSPLIT, sig)
	Pragma("noescape")
	Doc(fmt.Sprintf(doc, args...))
}

// param loads the pointer or integer argument name into a new general-purpose register.
func param(name string) Register { return Load(Param(name), GP64()) }

// ret ends a function: it clears the upper halves of the vector registers, which spares the
// SSE code that follows a transition penalty, and returns.
func ret() {
	VZEROUPPER()
	RET()
}

// zeroed returns a new vector register of s, set to zero.
func zeroed(s isa) VecVirtual {
	v := s.vec()
	VXORPS(v, v, v)
	return v
}

// countdown emits a loop that runs body while n is not zero, taking by from n after each run.
func countdown(n Register, by int, body func()) {
	Label("loop")
	TESTQ(n, n)
	JZ(LabelRef("done"))
	body()
	if by == 1 {
		DECQ(n)
	} else {
		SUBQ(U32(by), n)
	}
	JMP(LabelRef("loop"))
	Label("done")
}

// stream is a pointer that a vector loop walks, over elements of size bytes.
type stream struct {
	reg  Register
	size int
}

// vec returns the address of the i-th vector of s's lanes from p.
func (p stream) vec(s isa, i int) Mem { return Mem{Base: p.reg, Disp: i * s.lanes * p.size} }

// vectorLoop emits the loop of the kernels that walk n values, a multiple of the lane count of
// s, a vector at a time: u vectors an iteration while as many remain, then one. body(i)
// handles vector i of the iteration; then every pointer of ptrs moves past the vectors done.
func vectorLoop(s isa, n Register, u int, ptrs []stream, body func(i int)) {
	for _, k := range []int{u, 1} {
		top, next := fmt.Sprintf("loop%d", k), "done"
		if k == u {
			next = "loop1"
		}
		Label(top)
		CMPQ(n, U32(k*s.lanes))
		JL(LabelRef(next))
		for i := range k {
			body(i)
		}
		for _, p := range ptrs {
			ADDQ(U32(k*s.lanes*p.size), p.reg)
		}
		SUBQ(U32(k*s.lanes), n)
		JMP(LabelRef(top))
	}
	Label("done")
}

// reduce adds the lanes of v and returns an XMM register holding the sum in its low lane.
func reduce(v VecVirtual, s isa) Register {
	return reduceIn(v, s, func() Vec { return YMM() })
}

// reduceIn is reduce with the working registers that z returns, for the kernels whose
// registers are named.
func reduceIn(v Vec, s isa, z func() Vec) Register {
	y := v.AsY()
	if s.lanes == 16 {
		hi := z().AsY()
		VEXTRACTF64X4(U8(1), v.AsZ(), hi)
		VADDPS(hi, v.AsY(), hi)
		y = hi
	}
	x := z().AsX()
	if s.lanes == 16 {
		VEXTRACTF32X4(U8(1), y, x) // the EVEX form, which reaches registers 16-31
	} else {
		VEXTRACTF128(U8(1), y, x)
	}
	VADDPS(x, y.(Vec).AsX(), x)
	t := z().AsX()
	VMOVHLPS(x, x, t)
	VADDPS(t, x, x)
	VMOVSHDUP(x, t)
	VADDSS(t, x, x)
	return x
}

// zmm returns the physical register Zi, for the kernels whose instructions avo does not know
// and which name their registers in hand-made encodings.
func zmm(i int) VecPhysical {
	return []VecPhysical{Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15,
		Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23, Z24, Z25, Z26, Z27, Z28, Z29, Z30, Z31}[i]
}

// bytes emits raw instruction bytes, for instructions the assembler does not know.
func bytes(bs ...byte) {
	for _, b := range bs {
		Instruction(&ir.Instruction{Opcode: "BYTE", Operands: []Op{U8(b)}})
	}
}

// broadcast returns a new vector register of s with the 32 bits in every lane.
func broadcast(s isa, bits uint32) VecVirtual {
	t := GP32()
	MOVL(U32(bits), t)
	v := s.vec()
	if s.lanes == 16 {
		VPBROADCASTD(t, v)
	} else {
		VMOVD(t, v.AsX())
		VPBROADCASTD(v.AsX(), v)
	}
	return v
}

// f32const broadcasts the float32 c to a new vector register of s.
func f32const(s isa, c float32) VecVirtual { return broadcast(s, math.Float32bits(c)) }
