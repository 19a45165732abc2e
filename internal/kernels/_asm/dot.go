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
