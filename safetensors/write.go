package safetensors

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Write writes tensors and metadata (which may be nil) to w as a safetensors file laid out as
// the reference writer lays it out: the header is compact JSON padded with spaces to a
// multiple of 8 bytes, and the data follows contiguously, ordered by decreasing element width
// and then by name, so that every tensor is aligned to its element size. Each tensor's Data
// must hold exactly ByteLen bytes; names must be unique and not "__metadata__".
func Write(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	return WriteWith(w, tensors, metadata, WriteOptions{})
}

// WriteOptions change how WriteWith lays out and fills a file. The zero value is Write's
// layout.
type WriteOptions struct {
	// Align, a multiple of 8, pads the header with spaces so that the data starts at a
	// multiple of Align bytes from the start of the file; 0 means 8.
	Align int
	// InOrder lays the data out in the order of the tensors given instead of by decreasing
	// element width and name. Each tensor is then aligned as far as the sizes of those before
	// it allow: the caller orders them as its readers need.
	InOrder bool
	// Data, when set, returns each tensor's bytes as the file is written, in the order of the
	// data, instead of its Data field, which may then be nil: a file can be produced tensor by
	// tensor without all of it in memory. It must return ByteLen bytes; an error stops the
	// writing and is returned.
	Data func(t Tensor) ([]byte, error)
}

// WriteWith is Write with the layout and the source of the data that o gives.
func WriteWith(w io.Writer, tensors []Tensor, metadata map[string]string, o WriteOptions) error {
	hdr, order, err := encodeHeader(tensors, metadata, o)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(hdr)))
	bw.Write(n[:])
	bw.Write(hdr)
	for _, t := range order {
		data := t.Data
		if o.Data != nil {
			if data, err = o.Data(t); err != nil {
				return err
			}
			if size, _ := byteLen(t.DType, t.Shape); size != len(data) {
				return &FormatError{Tensor: t.Name, Err: ErrShapeMismatch, Detail: fmt.Sprintf("%s %v takes %d bytes, %d given", t.DType, t.Shape, size, len(data))}
			}
		}
		if _, err := bw.Write(data); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// encodeHeader checks tensors and returns the padded header and the tensors in data order.
func encodeHeader(tensors []Tensor, metadata map[string]string, o WriteOptions) ([]byte, []Tensor, error) {
	align := o.Align
	if align == 0 {
		align = 8
	}
	if align < 0 || align%8 != 0 {
		return nil, nil, fmt.Errorf("safetensors: alignment %d is not a positive multiple of 8", o.Align)
	}
	order := slices.Clone(tensors)
	if !o.InOrder {
		slices.SortFunc(order, func(a, b Tensor) int {
			return cmp.Or(cmp.Compare(dtypes[b.DType].rank, dtypes[a.DType].rank), strings.Compare(a.Name, b.Name))
		})
	}
	var buf bytes.Buffer
	buf.WriteByte('{')
	if metadata != nil {
		buf.WriteString(`"__metadata__":{`)
		for i, k := range slices.Sorted(maps.Keys(metadata)) {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeJSONString(&buf, k)
			buf.WriteByte(':')
			writeJSONString(&buf, metadata[k])
		}
		buf.WriteByte('}')
	}
	var offset int
	seen := make(map[string]bool, len(order))
	for i, t := range order {
		fail := func(err error, detail string) ([]byte, []Tensor, error) {
			return nil, nil, &FormatError{Tensor: t.Name, Err: err, Detail: detail}
		}
		if t.Name == metadataKey || seen[t.Name] {
			return fail(ErrDuplicateName, "")
		}
		seen[t.Name] = true
		size, err := byteLen(t.DType, t.Shape)
		if err != nil {
			return fail(err, fmt.Sprintf("%s %v", t.DType, t.Shape))
		}
		if o.Data == nil && size != len(t.Data) {
			return fail(ErrShapeMismatch, fmt.Sprintf("%s %v takes %d bytes, Data has %d", t.DType, t.Shape, size, len(t.Data)))
		}
		if metadata != nil || i > 0 {
			buf.WriteByte(',')
		}
		writeJSONString(&buf, t.Name)
		fmt.Fprintf(&buf, `:{"dtype":%q,"shape":[`, t.DType)
		for j, d := range t.Shape {
			if j > 0 {
				buf.WriteByte(',')
			}
			fmt.Fprint(&buf, d)
		}
		fmt.Fprintf(&buf, `],"data_offsets":[%d,%d]}`, offset, offset+size)
		offset += size
	}
	buf.WriteByte('}')
	for (8+buf.Len())%align != 0 {
		buf.WriteByte(' ')
	}
	if buf.Len() > MaxHeaderSize {
		return nil, nil, &FormatError{Err: ErrHeaderTooLarge, Detail: fmt.Sprintf("%d bytes", buf.Len())}
	}
	return buf.Bytes(), order, nil
}

// writeJSONString writes s as a JSON string, escaping only what JSON requires (and HTML
// characters not at all).
func writeJSONString(buf *bytes.Buffer, s string) {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	enc.Encode(s)
	buf.Truncate(buf.Len() - 1) // the newline Encode adds
}

// WriteFile writes tensors and metadata to the file at path as Write does. It writes a
// temporary file in the same directory and renames it, so path is never left half-written.
func WriteFile(path string, tensors []Tensor, metadata map[string]string) error {
	return WriteFileWith(path, tensors, metadata, WriteOptions{})
}

// WriteFileWith is WriteFile with the options of WriteWith.
func WriteFileWith(path string, tensors []Tensor, metadata map[string]string, o WriteOptions) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := WriteWith(f, tensors, metadata, o); err != nil {
		return withFile(err, path)
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// WriteDir writes a checkpoint directory that OpenDir reads: for one shard, model.safetensors;
// for several, model-0000i-of-0000n.safetensors files and model.safetensors.index.json mapping
// each tensor to its shard. metadata goes into every file. dir must exist.
func WriteDir(dir string, shards [][]Tensor, metadata map[string]string) error {
	return WriteDirWith(dir, shards, metadata, WriteOptions{})
}

// WriteDirWith is WriteDir writing each shard with the options of WriteWith.
func WriteDirWith(dir string, shards [][]Tensor, metadata map[string]string, o WriteOptions) error {
	if len(shards) == 1 {
		return WriteFileWith(filepath.Join(dir, SingleFileName), shards[0], metadata, o)
	}
	idx := struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}{map[string]int64{"total_size": 0}, map[string]string{}}
	for i, shard := range shards {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(shards))
		for _, t := range shard {
			if _, dup := idx.WeightMap[t.Name]; dup {
				return &FormatError{File: filepath.Join(dir, name), Tensor: t.Name, Err: ErrDuplicateName}
			}
			idx.WeightMap[t.Name] = name
			idx.Metadata["total_size"] += int64(max(0, t.ByteLen()))
		}
		if err := WriteFileWith(filepath.Join(dir, name), shard, metadata, o); err != nil {
			return err
		}
	}
	raw, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, IndexFileName), append(raw, '\n'), 0o644)
}

// withFile sets the file name of a *FormatError.
func withFile(err error, path string) error {
	if fe, ok := err.(*FormatError); ok && fe.File == "" {
		fe.File = path
	}
	return err
}
