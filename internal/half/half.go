// Package half converts between float32 and the two 16-bit floating-point formats that model
// weights come in: bfloat16 (the top half of a float32) and IEEE half precision (float16). It
// is the one place for these conversions: the file reader, the CPU kernels and the CUDA
// backend's weight upload all use it.
//
// Widening is exact; narrowing rounds to nearest, ties to even. NaNs stay NaNs (quieted, as
// hardware conversion does).
package half

import (
	"encoding/binary"
	"math"
	"sync"
	"unsafe"

	"github.com/x448/float16"
)

// BF16ToF32 converts one bfloat16 value, given as its bits, to float32.
func BF16ToF32(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }

// F32ToBF16 rounds f to the nearest bfloat16, ties to even, and returns its bits.
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// F16ToF32 converts one IEEE half-precision value, given as its bits, to float32, without
// branching on its class: a normal value rebiases its exponent (15 → 127); infinities and NaNs
// get the all-ones exponent (payload kept); zeros and subnormals are their 10-bit mantissa ×
// 2⁻²⁴, computed in float32, where that is exact and normal.
func F16ToF32(h uint16) float32 {
	mag := uint32(h & 0x7fff)
	bits := mag<<13 + (127-15)<<23
	if mag >= 0x7c00 {
		bits += (128 - 16) << 23
	}
	if mag > 0x7c00 {
		bits |= 1 << 22
	}
	if mag < 0x0400 {
		bits = math.Float32bits(float32(mag) * 0x1p-24)
	}
	return math.Float32frombits(bits | uint32(h&0x8000)<<16)
}

// F32ToF16 rounds f to the nearest IEEE half-precision value, ties to even, and returns its
// bits: ±Inf beyond the format's range (65504), subnormals and zero below it.
func F32ToF16(f float32) uint16 { return float16.Fromfloat32(f).Bits() }

// IsF16Finite reports whether the half-precision value h is neither infinite nor NaN.
func IsF16Finite(h uint16) bool { return h&0x7c00 != 0x7c00 }

// littleEndian reports whether the host stores numbers little-endian, as the files do.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// DecodeBF16 converts the little-endian bfloat16 values in src to dst; len(src) must be
// 2·len(dst). Each conversion is a shift.
func DecodeBF16(dst []float32, src []byte) {
	src = src[:2*len(dst)]
	i := 0
	if littleEndian {
		// Eight values per iteration: two 8-byte loads, four 8-byte stores.
		ob := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(dst))), 4*len(dst))
		for ; len(src)-2*i >= 16; i += 8 {
			s, o := src[2*i:2*i+16], ob[4*i:4*i+32]
			x, y := binary.LittleEndian.Uint64(s), binary.LittleEndian.Uint64(s[8:])
			binary.LittleEndian.PutUint64(o, x&0xffff<<16|x&0xffff0000<<32)
			binary.LittleEndian.PutUint64(o[8:], x>>16&0xffff0000|x&0xffff000000000000)
			binary.LittleEndian.PutUint64(o[16:], y&0xffff<<16|y&0xffff0000<<32)
			binary.LittleEndian.PutUint64(o[24:], y>>16&0xffff0000|y&0xffff000000000000)
		}
	}
	for ; i < len(dst); i++ {
		dst[i] = BF16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

// f16Table maps each half-precision bit pattern to its float32 value: 256 KiB, built on the
// first DecodeF16. A lookup is several times faster than converting each value.
var f16Table = sync.OnceValue(func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for h := range t {
		t[h] = F16ToF32(uint16(h))
	}
	return &t
})

// DecodeF16 converts the little-endian half-precision values in src to dst; len(src) must be
// 2·len(dst).
func DecodeF16(dst []float32, src []byte) {
	src = src[:2*len(dst)]
	t := f16Table()
	i := 0
	for ; len(dst)-i >= 8; i += 8 {
		s, o := src[2*i:2*i+16], dst[i:i+8]
		o[0] = t[binary.LittleEndian.Uint16(s[0:])]
		o[1] = t[binary.LittleEndian.Uint16(s[2:])]
		o[2] = t[binary.LittleEndian.Uint16(s[4:])]
		o[3] = t[binary.LittleEndian.Uint16(s[6:])]
		o[4] = t[binary.LittleEndian.Uint16(s[8:])]
		o[5] = t[binary.LittleEndian.Uint16(s[10:])]
		o[6] = t[binary.LittleEndian.Uint16(s[12:])]
		o[7] = t[binary.LittleEndian.Uint16(s[14:])]
	}
	for ; i < len(dst); i++ {
		dst[i] = t[binary.LittleEndian.Uint16(src[2*i:])]
	}
}
