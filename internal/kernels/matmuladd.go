package kernels

// MatMulAdd adds the product of a [m, k] and b [k, n] to out [m, n], all row-major:
// out[i*n+j] += Σ_l a[i*k+l]·b[l*n+j], each sum accumulated in float32 over l in order and
// then added. Unlike MatMulF32, neither operand is packed, so a product pays nothing for
// operands it uses once, as attention's tiles are: the elements of a are broadcast and the
// rows of b read as vectors as they are.
func MatMulAdd(out, a, b []float32, m, k, n int) {
	if m < 0 || k < 0 || n < 0 {
		panic("kernels: bad matrix product shape")
	}
	out, a, b = out[:m*n], a[:m*k], b[:k*n]
	if m == 0 || k == 0 || n == 0 {
		return
	}
	impl.matMulAdd(out, a, b, m, k, n)
}

// matMulAddGeneric is MatMulAdd in Go.
func matMulAddGeneric(out, a, b []float32, m, k, n int) { matMulAddColumns(out, a, b, m, k, n, 0) }

// matMulAddColumns is MatMulAdd for the columns [j0, n) of out only.
func matMulAddColumns(out, a, b []float32, m, k, n, j0 int) {
	var acc [64]float32
	for i := range m {
		ai := a[i*k : (i+1)*k]
		for c0 := j0; c0 < n; c0 += len(acc) {
			s := acc[:min(len(acc), n-c0)]
			clear(s)
			for l, v := range ai {
				br := b[l*n+c0:][:len(s)]
				for j := range s {
					s[j] += v * br[j]
				}
			}
			o := out[i*n+c0:][:len(s)]
			for j := range s {
				o[j] += s[j]
			}
		}
	}
}

// matMulAddTile is a vector tile of MatMulAdd: r rows of a (row stride lda) times a panel of
// b (row stride ldb) whose width the table gives, over k, added to c (row stride ldc).
type matMulAddTile func(a *float32, lda int, b *float32, ldb int, k int, c *float32, ldc int)

// vecMatMulAdd returns MatMulAdd by tiles, tiles[r-1] taking r rows, over panels of width
// columns; the columns past the last whole panel go the generic way.
func vecMatMulAdd(width int, tiles []matMulAddTile) func(out, a, b []float32, m, k, n int) {
	return func(out, a, b []float32, m, k, n int) {
		whole := n / width * width
		for j := 0; j < whole; j += width {
			for i := 0; i < m; i += len(tiles) {
				r := min(len(tiles), m-i)
				tiles[r-1](&a[i*k], k, &b[j], n, k, &out[i*n+j], n)
			}
		}
		if whole < n {
			matMulAddColumns(out, a, b, m, k, n, whole)
		}
	}
}
