// Package safetensors reads and writes the safetensors weight format, memory-mapped.
//
// A safetensors file is an 8-byte little-endian header length N, N bytes of JSON header that
// maps each tensor name to its dtype, shape and [begin, end) byte offsets into the data that
// follows, and the data itself. Open maps a file read-only; OpenDir opens a checkpoint
// directory (a single model.safetensors, or the shards that model.safetensors.index.json
// names). Tensors are views into the mapping: opening a checkpoint reads only its headers.
package safetensors

import (
	"math"
	"math/bits"
)

// DType is a tensor element type, spelled as in the file header ("BF16", "F32", ...).
type DType string

// The element types of the format.
const (
	Bool       DType = "BOOL"
	U8         DType = "U8"
	I8         DType = "I8"
	I16        DType = "I16"
	U16        DType = "U16"
	F16        DType = "F16"
	BF16       DType = "BF16"
	I32        DType = "I32"
	U32        DType = "U32"
	F32        DType = "F32"
	F64        DType = "F64"
	I64        DType = "I64"
	U64        DType = "U64"
	F8E4M3     DType = "F8_E4M3"
	F8E5M2     DType = "F8_E5M2"
	F8E8M0     DType = "F8_E8M0"
	F8E4M3FNUZ DType = "F8_E4M3FNUZ"
	F8E5M2FNUZ DType = "F8_E5M2FNUZ"
	C64        DType = "C64"     // complex: two float32 parts
	F4         DType = "F4"      // MXFP4, 4 bits
	F6E2M3     DType = "F6_E2M3" // MXFP6, 6 bits
	F6E3M2     DType = "F6_E3M2" // MXFP6, 6 bits
)

// dtypeInfo holds an element type's width in bits and its rank in the reference writer's
// ordering (larger ranks are written first, which keeps every tensor aligned).
type dtypeInfo struct{ bits, rank int }

var dtypes = map[DType]dtypeInfo{
	Bool: {8, 0}, F4: {4, 1}, F6E2M3: {6, 2}, F6E3M2: {6, 3}, U8: {8, 4}, I8: {8, 5},
	F8E5M2: {8, 6}, F8E4M3: {8, 7}, F8E8M0: {8, 8}, F8E4M3FNUZ: {8, 9}, F8E5M2FNUZ: {8, 10},
	I16: {16, 11}, U16: {16, 12}, F16: {16, 13}, BF16: {16, 14}, I32: {32, 15}, U32: {32, 16},
	F32: {32, 17}, C64: {64, 18}, F64: {64, 19}, I64: {64, 20}, U64: {64, 21},
}

// Valid reports whether d is an element type of the format.
func (d DType) Valid() bool { _, ok := dtypes[d]; return ok }

// Bits returns the width of one element in bits (4 for F4, 6 for the F6 types), or 0 for an
// unknown type.
func (d DType) Bits() int { return dtypes[d].bits }

// Size returns the width of one element in bytes: 0 for an unknown type and for the sub-byte
// types F4, F6_E2M3 and F6_E3M2 (use Bits for those).
func (d DType) Size() int {
	if b := d.Bits(); b%8 == 0 {
		return b / 8
	}
	return 0
}

// Tensor is a view of one tensor: its name, element type, shape and raw little-endian bytes.
// Data aliases the file mapping: it is valid until the File or Checkpoint is closed and must
// not be written.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// NumElements returns the number of elements: the product of Shape, 1 for a scalar (shape []).
// It returns -1 when a dimension is negative or the product overflows int.
func (t Tensor) NumElements() int {
	n, ok := numElements(t.Shape)
	if !ok {
		return -1
	}
	return n
}

// ByteLen returns the number of bytes that Shape and DType call for, or -1 when the type is
// unknown, the shape invalid, the size overflows int or does not end on a byte boundary.
func (t Tensor) ByteLen() int {
	n, err := byteLen(t.DType, t.Shape)
	if err != nil {
		return -1
	}
	return n
}

// numElements returns the product of shape; ok is false for a negative dimension or overflow.
func numElements(shape []int) (n int, ok bool) {
	n = 1
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		hi, lo := bits.Mul64(uint64(n), uint64(d))
		if hi != 0 || lo > math.MaxInt {
			return 0, false
		}
		n = int(lo)
	}
	return n, true
}

// byteLen returns the size in bytes of a tensor of type d and the given shape. The error is
// ErrUnknownDType, ErrOverflow, or ErrShapeMismatch for a size that is not a whole number of
// bytes.
func byteLen(d DType, shape []int) (int, error) {
	b := d.Bits()
	if b == 0 {
		return 0, ErrUnknownDType
	}
	count, ok := numElements(shape)
	if !ok {
		return 0, ErrOverflow
	}
	hi, lo := bits.Mul64(uint64(count), uint64(b))
	if hi != 0 || lo/8 > math.MaxInt {
		return 0, ErrOverflow
	}
	if lo%8 != 0 {
		return 0, ErrShapeMismatch
	}
	return int(lo / 8), nil
}

// Source is what both a single File and a sharded Checkpoint offer: tensors by name.
type Source interface {
	// Tensor returns the named tensor; the error wraps ErrNotFound when there is none.
	Tensor(name string) (Tensor, error)
	// Names returns every tensor name, sorted.
	Names() []string
	// Close releases the mappings; tensors obtained earlier become invalid.
	Close() error
}
