package kernels

import (
	"github.com/klauspost/cpuid/v2"
)

// features are the instruction set extensions the vector implementations use.
type features struct {
	avx2   bool // AVX2, FMA3 and F16C
	avx512 bool // AVX-512 F, BW, DQ and VL
	bf16   bool // AVX512_BF16 (VDPBF16PS)
	vnni   bool // AVX512_VNNI (VPDPBUSD), and BMI2
}

// detectFeatures reports what the running CPU supports.
func detectFeatures() features {
	c := cpuid.CPU
	f := features{avx2: c.Supports(cpuid.AVX2, cpuid.FMA3, cpuid.F16C)}
	f.avx512 = f.avx2 && c.Supports(cpuid.AVX512F, cpuid.AVX512BW, cpuid.AVX512DQ, cpuid.AVX512VL)
	f.bf16 = f.avx512 && c.Has(cpuid.AVX512BF16)
	f.vnni = f.avx512 && c.Has(cpuid.AVX512VNNI) && c.Has(cpuid.BMI2) // every VNNI CPU has BMI2
	return f
}

// table is one complete set of kernel implementations. Every entry is set, in every table, and
// has the full semantics of the exported function it serves: vector code for the bulk, generic
// code for tails and for what the CPU lacks (TestTablesComplete).
type table struct {
	name       string
	cvtBF16    func(dst []float32, src []uint16)
	cvtF16     func(dst []float32, src []uint16)
	roundBF16  func(dst, x []float32)
	dotF32     func(x, y []float32) float32
	dotBF16    func(w []uint16, x []float32) float32
	dotF16     func(w []uint16, x []float32) float32
	axpy       func(a float32, x, y []float32)
	matVecBF16 func(out []float32, w []uint16, x []float32, cols int)
	matVecF16  func(out []float32, w []uint16, x []float32, cols int)
	matVecF32  func(out []float32, w, x []float32, cols int)
	// matMul* are the Scratch methods MatMul*Rows, built by setProducts.
	matMulBF16, matMulF16, matMulBF16Rounded func(s *Scratch, out []float32, w []uint16, x []float32, tokens, rows, cols, lo, hi int)
	matMulF32                                func(s *Scratch, out []float32, w, x []float32, tokens, rows, cols, lo, hi int)
	roundedTiles                             func(tokens int) bool // RoundedTiles, built by setProducts
	// matMulAdd* are MatMulAdd for b of each element type, their shapes checked.
	matMulAddF32                matMulAddFunc[float32]
	matMulAddF16, matMulAddBF16 matMulAddFunc[uint16]
	prefetch                    func(p *byte, n int) // Prefetch's bytes; nothing in Go
	// siluMul and softmaxExp serve SiLUMul and Softmax (softmaxExp: x[i] = exp(x[i]-m),
	// returning the sum).
	siluMul    func(dst, g, u []float32)
	softmaxExp func(x []float32, m float32) float32
	expSum     func(dst, x []float32, shift, scale float32) float64 // ExpSum; dst nil or len(x)
	// indexAtLeast is IndexAtLeast; len(dst) = len(x).
	indexAtLeast func(dst []int32, x []float32, t float32) int
	maxF32       func(x []float32) float32 // the largest, NaN if any is NaN; len(x) > 0
	scale        func(x []float32, a float32)
	peakFMA      func(n int) int64
	peakBF16     func(n int) int64 // 0 operations, doing nothing, without AVX512_BF16
	xorWords     func(p []uint64) uint64
	qDot         qDot
	// quantizeQ8 and quantizeQ4 are QuantizeQ8 and QuantizeQ4, and quantizeActs is
	// QuantizeRows once its arguments are checked; setProducts builds them.
	quantizeQ8, quantizeQ4 func(dst []byte, src []float32, cols int) error
	quantizeActs           func(a *QuantActs, x []float32, lo, hi int)
}

// accel holds the optional vector kernels from which setProducts builds a table's matrix
// products and quantizations; each nil one leaves its part to the generic algorithm.
type accel struct {
	// canon* are the kernels of the canonical products; nil: matrix-vector products.
	canonBF16, canonF16 *canon[uint16]
	canonF32            *canon[float32]
	rounded             *tiled[uint16, uint16] // VDPBF16PS tiles; nil: rounded float32 products
	// quantActs quantizes nsb whole super-blocks of activations x to q, group scales d and
	// group sums; nil: group by group in Go.
	quantActs func(x []float32, q []int8, d []float32, sum []int32, nsb int)
	quantW    *quantWeights // the weight quantization's vector kernels; nil: Go code
}

// setProducts sets the matrix products and the quantizations of t, from t's own kernels and
// the optional ones in a.
func (t *table) setProducts(a accel) {
	matVecBF16, matVecF16, matVecF32 := t.matVecBF16, t.matVecF16, t.matVecF32
	t.matMulBF16 = func(s *Scratch, out []float32, w []uint16, x []float32, tokens, rows, cols, lo, hi int) {
		matMul(s, out, w, x, tokens, rows, cols, lo, hi, matVecBF16, a.canonBF16)
	}
	t.matMulF16 = func(s *Scratch, out []float32, w []uint16, x []float32, tokens, rows, cols, lo, hi int) {
		matMul(s, out, w, x, tokens, rows, cols, lo, hi, matVecF16, a.canonF16)
	}
	t.matMulF32 = func(s *Scratch, out []float32, w, x []float32, tokens, rows, cols, lo, hi int) {
		matMul(s, out, w, x, tokens, rows, cols, lo, hi, matVecF32, a.canonF32)
	}
	matMulBF16, roundBF16 := t.matMulBF16, t.roundBF16
	t.roundedTiles = func(tokens int) bool { return a.rounded != nil && tokens > roundedFewTokens }
	roundedTiles := t.roundedTiles
	t.matMulBF16Rounded = func(s *Scratch, out []float32, w []uint16, x []float32, tokens, rows, cols, lo, hi int) {
		// Few tokens go the float32 way: rounded activations make the same exact products.
		if cols > 0 && roundedTiles(tokens) {
			a.rounded.matMul(s, out, w, x, tokens, rows, cols, lo, hi)
			return
		}
		xr := s.floats(scratchRound, len(x))
		roundBF16(xr, x)
		matMulBF16(s, out, w, xr, tokens, rows, cols, lo, hi)
	}
	t.quantizeQ8 = func(dst []byte, src []float32, cols int) error {
		return quantize(a.quantW, dst, src, cols, Q8RowBytes(cols), quantizeQ8Super, (*quantScratch).q8)
	}
	t.quantizeQ4 = func(dst []byte, src []float32, cols int) error {
		return quantize(a.quantW, dst, src, cols, Q4RowBytes(cols), quantizeQ4Super, (*quantScratch).q4)
	}
	t.quantizeActs = func(q *QuantActs, x []float32, lo, hi int) { q.quantizeRows(x, lo, hi, a.quantActs) }
}

// genericTable is the table of generic implementations.
func genericTable() table {
	t := table{
		name:          "generic",
		cvtBF16:       cvtBF16Generic,
		cvtF16:        cvtF16Generic,
		roundBF16:     roundBF16Generic,
		dotF32:        dotF32Generic,
		dotBF16:       dotBF16Generic,
		dotF16:        dotF16Generic,
		axpy:          axpyGeneric,
		matVecBF16:    func(out []float32, w []uint16, x []float32, cols int) { matVecGeneric(dotBF16Generic, out, w, x, cols) },
		matVecF16:     func(out []float32, w []uint16, x []float32, cols int) { matVecGeneric(dotF16Generic, out, w, x, cols) },
		matVecF32:     func(out []float32, w, x []float32, cols int) { matVecGeneric(dotF32Generic, out, w, x, cols) },
		peakFMA:       peakFMAGeneric,
		maxF32:        maxGeneric,
		scale:         scaleGeneric,
		xorWords:      xorWordsGeneric,
		qDot:          qDotGeneric,
		expSum:        expSumGeneric,
		indexAtLeast:  indexAtLeastGeneric,
		siluMul:       siluMulGeneric,
		softmaxExp:    softmaxExpGeneric,
		peakBF16:      func(int) int64 { return 0 },
		matMulAddF32:  whole(matMulAddF32Generic),
		matMulAddF16:  whole(matMulAddF16Generic),
		matMulAddBF16: whole(matMulAddBF16Generic),
		prefetch:      func(*byte, int) {},
	}
	t.setProducts(accel{})
	return t
}

// newTable returns the fastest implementations that the features f allow.
func newTable(f features) table {
	t := genericTable()
	if haveAsm {
		var a accel
		vectorTable(f, &t, &a)
		t.setProducts(a)
	}
	return t
}

// The implementations in use, chosen once at start from the running CPU. Tests switch them
// with useFeatures.
var (
	detected = detectFeatures()
	impl     = newTable(detected)
)

// useFeatures switches the kernels to the implementations that f allows, for tests, and
// returns a function that restores the previous ones.
func useFeatures(f features) (restore func()) {
	old := impl
	impl = newTable(f)
	return func() { impl = old }
}

// supportedFeatureSets lists the feature sets to test on this CPU: none (the generic code) and
// each level up to what the CPU supports, so that every implementation it can run is exercised.
func supportedFeatureSets() []features {
	sets := []features{{}}
	d := detected
	if !haveAsm {
		return sets
	}
	if d.avx2 {
		sets = append(sets, features{avx2: true})
	}
	if d.avx512 {
		sets = append(sets, features{avx2: true, avx512: true})
	}
	if d.bf16 || d.vnni {
		sets = append(sets, d)
	}
	return sets
}

// Implementation reports which implementation set the kernels use on this CPU, such as
// "avx512+bf16+vnni" or "generic".
func Implementation() string { return impl.name }
