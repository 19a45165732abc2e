package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"unsafe"

	"github.com/fathom-llm/fathom/internal/half"
)

// littleEndian reports whether the host stores numbers little-endian, as the format does.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// Float32s appends the tensor's elements, converted to float32, to dst and returns the
// extended slice; it allocates only when dst lacks the capacity. BF16, F16 and F32 convert
// exactly; F64 rounds to nearest. Other types give ErrUnsupportedDType, and Data whose length
// does not match Shape gives ErrShapeMismatch.
func (t Tensor) Float32s(dst []float32) ([]float32, error) {
	switch t.DType {
	case BF16, F16, F32, F64:
	default:
		return dst, t.errorf(ErrUnsupportedDType, "cannot convert %s to float32", t.DType)
	}
	n := t.NumElements()
	if n < 0 || n*t.DType.Size() != len(t.Data) {
		return dst, t.errorf(ErrShapeMismatch, "%s %v with %d bytes", t.DType, t.Shape, len(t.Data))
	}
	dst = slices.Grow(dst, n)
	out := dst[len(dst) : len(dst)+n]
	switch t.DType {
	case BF16:
		half.DecodeBF16(out, t.Data)
	case F16:
		half.DecodeF16(out, t.Data)
	case F32:
		f32ToF32(out, t.Data)
	case F64:
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*i:])))
		}
	}
	return dst[:len(dst)+n], nil
}

func (t Tensor) errorf(err error, format string, args ...any) error {
	return &FormatError{Tensor: t.Name, Err: err, Detail: fmt.Sprintf(format, args...)}
}

// bytesOf returns the memory of s as bytes.
func bytesOf(s []float32) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), 4*len(s))
}

// f32ToF32 copies the little-endian float32 values in src to out; len(src) = 4*len(out).
func f32ToF32(out []float32, src []byte) {
	if littleEndian {
		copy(bytesOf(out), src)
		return
	}
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
}

// Element is an element type that View can return.
type Element interface {
	uint8 | int8 | uint16 | int16 | uint32 | int32 | float32 | uint64 | int64 | float64
}

// View returns the tensor's data as a []E that aliases Data, without copying. An unsigned
// integer E views the raw bits of any dtype of its size (uint16 for BF16 or F16, say); int8,
// int16, int32, int64, float32 and float64 require I8, I16, I32, I64, F32 and F64. The error
// wraps ErrUnsupportedDType for another dtype (or a big-endian host), ErrShapeMismatch when
// Data does not hold whole elements, and ErrMisaligned when Data does not start at a multiple
// of E's size: tensors written by Write, and by the reference writer, are aligned in the
// file, so this happens only for files with unusual layouts; Float32s works for them.
func View[E Element](t Tensor) ([]E, error) {
	var zero E
	size := int(unsafe.Sizeof(zero))
	var want DType
	switch any(zero).(type) {
	case int8:
		want = I8
	case int16:
		want = I16
	case int32:
		want = I32
	case int64:
		want = I64
	case float32:
		want = F32
	case float64:
		want = F64
	}
	if t.DType.Size() != size || want != "" && t.DType != want {
		return nil, t.errorf(ErrUnsupportedDType, "cannot view %s as %T", t.DType, zero)
	}
	if !littleEndian {
		return nil, t.errorf(ErrUnsupportedDType, "no little-endian view on a big-endian host")
	}
	if len(t.Data)%size != 0 {
		return nil, t.errorf(ErrShapeMismatch, "%d bytes of %s", len(t.Data), t.DType)
	}
	if len(t.Data) == 0 {
		return []E{}, nil
	}
	p := unsafe.Pointer(unsafe.SliceData(t.Data))
	if uintptr(p)%uintptr(size) != 0 {
		return nil, t.errorf(ErrMisaligned, "data at %#x is not %d-byte aligned", uintptr(p), size)
	}
	return unsafe.Slice((*E)(p), len(t.Data)/size), nil
}

// Uint16s returns the raw bits of a 2-byte tensor (BF16, F16, I16, U16) without copying; it is
// View[uint16](t).
func (t Tensor) Uint16s() ([]uint16, error) { return View[uint16](t) }
