package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// matMulAddRows is the most rows of A that one matMulAdd tile takes: as many as leave room
// in the vector registers for two accumulators per row, the two vectors of a row of B and a
// broadcast.
var matMulAddRows = map[int]int{8: 6, 16: 12}

// matMulAddTiles emits the tiles of kernels.MatMulAdd for every row count up to
// matMulAddRows, for AVX2 and AVX-512.
func matMulAddTiles() {
	for _, s := range []isa{avx2, avx512} {
		for rows := 1; rows <= matMulAddRows[s.lanes]; rows++ {
			matMulAdd(s, rows)
		}
	}
}

// matMulAdd emits matMulAdd<R><ISA>(a *float32, lda int, b *float32, ldb int, k int, c
// *float32, ldc int): c[r*ldc+j] += Σ_{l<k} a[r*lda+l]·b[l*ldb+j] for r < R and j < 2·lanes,
// the product of R rows of a row-major A with a panel of a row-major B two vectors wide, each
// sum accumulated in float32 from zero and then added to C. Neither operand is packed: each
// element of A is broadcast to a register once for both vectors of B's row, B's rows are
// loaded as they are. (A broadcast operand of each FMA instead loads every element twice,
// which measured slower on Zen 5.)
func matMulAdd(s isa, rows int) {
	const nv = 2 // vectors of B per row
	name := fmt.Sprintf("matMulAdd%d%s", rows, s.suffix)
	text(name, "func(a *float32, lda int, b *float32, ldb int, k int, c *float32, ldc int)",
		"%s adds the product of %d rows of a (row stride lda) and a panel of b (row stride ldb) %d columns wide, over k, to c (row stride ldc).", name, rows, nv*s.lanes)
	lda := param("lda")
	SHLQ(U8(2), lda)
	lda3 := GP64()
	LEAQ(Mem{Base: lda, Index: lda, Scale: 2}, lda3)
	// One base pointer per four rows of A; rows 4i+1, 4i+2 and 4i+3 are addressed from it.
	a := GP64()
	Load(Param("a"), a)
	base := []GPVirtual{a}
	for r := 4; r < rows; r += 4 {
		p := GP64()
		LEAQ(Mem{Base: base[len(base)-1], Index: lda, Scale: 4}, p)
		base = append(base, p)
	}
	row := func(r int) Mem {
		m := Mem{Base: base[r/4]}
		switch r % 4 {
		case 1:
			m.Index, m.Scale = lda, 1
		case 2:
			m.Index, m.Scale = lda, 2
		case 3:
			m.Index, m.Scale = lda3, 1
		}
		return m
	}
	b := param("b")
	ldb := param("ldb")
	SHLQ(U8(2), ldb)
	k := param("k")
	acc := make([][nv]VecVirtual, rows)
	for r := range acc {
		for v := range nv {
			acc[r][v] = s.vec()
			VXORPS(acc[r][v], acc[r][v], acc[r][v])
		}
	}
	Label("loop")
	TESTQ(k, k)
	JZ(LabelRef("done"))
	var bv [nv]VecVirtual
	for v := range nv {
		bv[v] = s.vec()
		VMOVUPS(Mem{Base: b, Disp: v * s.lanes * 4}, bv[v])
	}
	for r := range rows {
		av := s.vec()
		VBROADCASTSS(row(r), av)
		for v := range nv {
			VFMADD231PS(av, bv[v], acc[r][v])
		}
	}
	for _, p := range base {
		ADDQ(U8(4), p)
	}
	ADDQ(ldb, b)
	DECQ(k)
	JMP(LabelRef("loop"))
	Label("done")
	c := param("c")
	ldc := param("ldc")
	SHLQ(U8(2), ldc)
	for r := range rows {
		for v := range nv {
			m := Mem{Base: c, Disp: v * s.lanes * 4}
			VADDPS(m, acc[r][v], acc[r][v])
			VMOVUPS(acc[r][v], m)
		}
		if r+1 < rows {
			ADDQ(ldc, c)
		}
	}
	ret()
}
