// Package safetensors reads and writes the safetensors weight format, memory-mapped.
//
// A safetensors file is an 8-byte little-endian header length N, N bytes of JSON header that
// maps each tensor name to its dtype, shape and [begin, end) byte offsets into the data that
// follows, and the data itself. Open maps a file read-only; OpenDir opens a checkpoint
// directory (a single model.safetensors, or the shards that model.safetensors.index.json
// names). Tensors are views into the mapping: opening a checkpoint reads only its headers.
package safetensors

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
)

// Tensor is a view of one tensor: its name, element type, shape and raw little-endian bytes.
// Data aliases the file mapping: it is valid until the File or Checkpoint is closed and must
// not be written.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
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
