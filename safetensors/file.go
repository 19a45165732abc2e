package safetensors

import (
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"sync"
)

// File is one open safetensors file. Its tensors are views of the file's read-only memory
// mapping (or, where memory mapping is unavailable, of the file read into memory). A File is
// safe for concurrent use; Close must not race with the use of tensors obtained from it.
type File struct {
	path    string
	meta    map[string]string
	tensors map[string]Tensor
	names   []string
	release func() error // unmaps; nil for Parse
	data    []byte       // the whole file: the mapping, or Parse's data

	mu     sync.RWMutex
	closed bool
}

var _ Source = (*File)(nil)

// Open maps the safetensors file at path read-only, in transparent huge pages where the
// kernel gives them to the file's page cache, and validates its header and layout. Only the
// header is read; tensor data is paged in when used. The error is a *FormatError for an
// invalid file, or an *fs.PathError for one that cannot be opened.
func Open(path string) (*File, error) { return OpenWith(path, OpenOptions{}) }

// OpenOptions choose how OpenWith and OpenDirWith hold a file's data.
type OpenOptions struct {
	// InMemory reads the whole file into memory of its own at open instead of mapping it:
	// anonymous memory (in 2 MB pages where the kernel has transparent huge pages on
	// request) with the data section on a 64-byte boundary, so that tensors whose offsets
	// are multiples of 64 start on a cache line whatever the header's length. The file's
	// pages are dropped from the page cache as they are read, so that its data is not held
	// twice. Opening then takes as long as reading the file.
	InMemory bool
}

// OpenWith is Open holding the data as o says.
func OpenWith(path string, o OpenOptions) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > math.MaxInt {
		return nil, &FormatError{File: path, Err: ErrOverflow, Detail: fmt.Sprintf("file of %d bytes", st.Size())}
	}
	load, op := mapFile, "mmap"
	if o.InMemory {
		load, op = readFile, "read"
	}
	buf, release, err := load(f, int(st.Size()))
	if err != nil {
		return nil, &os.PathError{Op: op, Path: path, Err: err}
	}
	h, err := parse(path, buf)
	if err != nil {
		release()
		return nil, err
	}
	sf := newFile(path, h, release)
	sf.data = buf
	return sf, nil
}

// Parse validates data, the complete contents of a safetensors file, and returns it as a File
// whose tensors alias data. Close on it releases nothing.
func Parse(data []byte) (*File, error) {
	h, err := parse("", data)
	if err != nil {
		return nil, err
	}
	f := newFile("", h, nil)
	f.data = data
	return f, nil
}

func newFile(path string, h *header, release func() error) *File {
	f := &File{path: path, meta: h.meta, release: release,
		tensors: make(map[string]Tensor, len(h.tensors))}
	for _, t := range h.tensors {
		f.tensors[t.Name] = t
		f.names = append(f.names, t.Name)
	}
	slices.Sort(f.names)
	return f
}

// Path returns the path the file was opened from ("" for Parse).
func (f *File) Path() string { return f.path }

// Names returns the names of the file's tensors, sorted.
func (f *File) Names() []string { return slices.Clone(f.names) }

// Metadata returns a copy of the header's __metadata__ map (nil when it has none).
func (f *File) Metadata() map[string]string { return maps.Clone(f.meta) }

// Tensor returns the named tensor. Its Data is a view of the file valid until Close; its
// Shape is the caller's own.
func (f *File) Tensor(name string) (Tensor, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return Tensor{}, &FormatError{File: f.path, Tensor: name, Err: ErrClosed}
	}
	t, ok := f.tensors[name]
	if !ok {
		return Tensor{}, &FormatError{File: f.path, Tensor: name, Err: ErrNotFound}
	}
	t.Shape = slices.Clone(t.Shape)
	return t, nil
}

// Close releases the mapping. Tensors obtained from f must not be used afterwards. Closing
// twice is harmless.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	if f.release == nil {
		return nil
	}
	if err := f.release(); err != nil {
		return &os.PathError{Op: "munmap", Path: f.path, Err: err}
	}
	return nil
}
