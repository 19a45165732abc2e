package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// matMulAddRows are the numbers of rows of A that the matMulAdd tiles take, by lanes: the
// most as many as leave room in the vector registers for an accumulator per row, the row of
// B and (AVX2, which has no broadcast operand) a broadcast; the others for the rows left.
var matMulAddRows = map[int][]int{8: {12, 4, 2, 1}, 16: {16, 4, 2, 1}}

// matMulAddTiles emits the tiles of kernels.MatMulAdd, for B of every element type and the
// row counts of matMulAddRows, for AVX2 and AVX-512.
func matMulAddTiles() {
	for _, s := range []isa{avx2, avx512} {
		for _, e := range []elem{f32, f16, bf16} {
			for _, rows := range matMulAddRows[s.lanes] {
				matMulAdd(s, e, rows)
			}
		}
	}
}

// matMulAdd emits matMulAdd<R><E><ISA>(c *float32, ldc int, a *float32, lda int, b *E, ldb
// int, k int, add bool): c[r*ldc+j] = Σ_{l<k} a[r*lda+l]·b[l*ldb+j] for r < R and j < lanes,
// or c[r*ldc+j] plus that sum if add: the product of R rows of a row-major A with a panel of
// a row-major B one vector wide, each sum accumulated in float32 from zero in the order of l.
// Neither operand is packed: the elements of A are broadcast, B's rows widened to float32 as
// they are loaded.
func matMulAdd(s isa, e elem, rows int) {
	name := fmt.Sprintf("matMulAdd%d%s%s", rows, e.name, s.suffix)
	text(name, fmt.Sprintf("func(c *float32, ldc int, a *float32, lda int, b *%s, ldb int, k int, add bool)", e.goType),
		"%s sets c[r*ldc+j], or adds to it if add, the sum over l < k of a[r*lda+l]·b[l*ldb+j] (b %s) for r < %d and j < %d, accumulated from zero in the order of l.",
		name, e.name, rows, s.lanes)
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
	SHLQ(U8(e.shift()), ldb)
	k := param("k")
	acc := make([]VecVirtual, rows)
	for r := range acc {
		acc[r] = zeroed(s)
	}
	countdown(k, 1, func() {
		bv := s.vec()
		e.load(Mem{Base: b}, bv, s)
		for r := range rows {
			if s.lanes == 16 {
				VFMADD231PS_BCST(row(r), bv, acc[r])
			} else {
				av := s.vec()
				VBROADCASTSS(row(r), av)
				VFMADD231PS(av, bv, acc[r])
			}
		}
		for _, p := range base {
			ADDQ(U8(4), p)
		}
		ADDQ(ldb, b)
	})
	c := param("c")
	ldc := param("ldc")
	SHLQ(U8(2), ldc)
	add := Load(Param("add"), GP8())
	TESTB(add, add)
	JZ(LabelRef("store"))
	p := GP64()
	MOVQ(c, p)
	for r := range rows {
		VADDPS(Mem{Base: p}, acc[r], acc[r])
		if r+1 < rows {
			ADDQ(ldc, p)
		}
	}
	Label("store")
	for r := range rows {
		VMOVUPS(acc[r], Mem{Base: c})
		if r+1 < rows {
			ADDQ(ldc, c)
		}
	}
	ret()
}

// prefetchRange emits prefetchRange(p *byte, n int): PREFETCHT0 of each cache line that
// holds one of the n bytes at p.
func prefetchRange() {
	text("prefetchRange", "func(p *byte, n int)",
		"prefetchRange fetches the cache lines of the n bytes at p into L1 (PREFETCHT0).")
	p := param("p")
	end := param("n")
	ADDQ(p, end)
	ANDQ(I32(-64), p)
	Label("loop")
	CMPQ(p, end)
	JAE(LabelRef("done"))
	PREFETCHT0(Mem{Base: p})
	ADDQ(U8(64), p)
	JMP(LabelRef("loop"))
	Label("done")
	RET()
}
