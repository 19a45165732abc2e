package safetensors

import (
	"errors"
	"strconv"
)

// The errors of the package. Each is returned wrapped in a *FormatError that names the file
// and, where there is one, the tensor; test for them with errors.Is.
var (
	// ErrHeaderTooSmall: the file is shorter than the 8-byte header length.
	ErrHeaderTooSmall = errors.New("file shorter than the 8-byte header length")
	// ErrHeaderTooLarge: the header length exceeds 100,000,000 bytes.
	ErrHeaderTooLarge = errors.New("header larger than 100000000 bytes")
	// ErrHeaderLength: the header runs past the end of the file.
	ErrHeaderLength = errors.New("header runs past the end of the file")
	// ErrInvalidUTF8: the header is not valid UTF-8.
	ErrInvalidUTF8 = errors.New("header is not valid UTF-8")
	// ErrInvalidJSON: the header (or an index file) is not JSON of the expected form.
	ErrInvalidJSON = errors.New("malformed JSON")
	// ErrInvalidMetadata: __metadata__ is not a map of strings to strings.
	ErrInvalidMetadata = errors.New("__metadata__ is not a map of strings to strings")
	// ErrUnknownDType: an element type the format does not define.
	ErrUnknownDType = errors.New("unknown dtype")
	// ErrInvalidOffsets: data offsets that leave a gap, overlap, run backwards or past the data.
	ErrInvalidOffsets = errors.New("invalid data offsets")
	// ErrShapeMismatch: a byte length that is not shape × dtype size.
	ErrShapeMismatch = errors.New("byte length does not match shape and dtype")
	// ErrOverflow: a shape whose element count or byte size overflows.
	ErrOverflow = errors.New("shape too large")
	// ErrTrailingBytes: data after the end of the last tensor.
	ErrTrailingBytes = errors.New("bytes after the last tensor")
	// ErrDuplicateName: a tensor name that occurs twice in a file or in two shards.
	ErrDuplicateName = errors.New("duplicate tensor name")
	// ErrMissingShard: a shard that the index names does not exist or is not a local path.
	ErrMissingShard = errors.New("missing shard")
	// ErrMisplacedTensor: a tensor absent from the shard the index names, or present in a
	// shard the index does not name for it.
	ErrMisplacedTensor = errors.New("tensor not where the index says")
	// ErrNotFound: no tensor of that name.
	ErrNotFound = errors.New("tensor not found")
	// ErrClosed: the file or checkpoint is closed.
	ErrClosed = errors.New("file closed")
	// ErrUnsupportedDType: a conversion or view that the tensor's dtype does not allow.
	ErrUnsupportedDType = errors.New("unsupported dtype for this operation")
	// ErrMisaligned: tensor data not aligned for a zero-copy view of its element type.
	ErrMisaligned = errors.New("tensor data not aligned for its element type")
)

// FormatError describes a failure in a file or one of its tensors. Err is one of the
// package's sentinel errors; Detail, when set, says more.
type FormatError struct {
	File   string // path of the file, or "" for data without one
	Tensor string // name of the tensor, or "" when the error concerns the file
	Err    error
	Detail string
}

// Error formats the error as "safetensors: FILE: tensor \"NAME\": what: detail".
func (e *FormatError) Error() string {
	s := "safetensors: "
	if e.File != "" {
		s += e.File + ": "
	}
	if e.Tensor != "" {
		s += "tensor " + strconv.Quote(e.Tensor) + ": "
	}
	s += e.Err.Error()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Unwrap returns Err.
func (e *FormatError) Unwrap() error { return e.Err }
