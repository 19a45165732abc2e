package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
)

// File names of a Hugging Face checkpoint directory.
const (
	SingleFileName = "model.safetensors"
	IndexFileName  = "model.safetensors.index.json"
)

// Checkpoint is a checkpoint directory: one model.safetensors, or the shards that
// model.safetensors.index.json names. Tensors are looked up by name across the shards.
type Checkpoint struct {
	dir   string
	files []*File          // shards, sorted by file name
	where map[string]*File // tensor name → its shard
	names []string
}

var _ Source = (*Checkpoint)(nil)

// index is the content of model.safetensors.index.json.
type index struct {
	WeightMap map[string]string `json:"weight_map"`
}

// OpenDir opens the checkpoint in dir: model.safetensors if it exists (as transformers
// prefers it), or else every shard that model.safetensors.index.json names, checking that each
// tensor lives in exactly the shard the index gives for it (errors ErrMissingShard,
// ErrMisplacedTensor, ErrDuplicateName). Only headers are read. A directory with neither file
// gives an error that wraps fs.ErrNotExist.
func OpenDir(dir string) (*Checkpoint, error) { return OpenDirWith(dir, OpenOptions{}) }

// OpenDirWith is OpenDir holding the files' data as o says.
func OpenDirWith(dir string, o OpenOptions) (*Checkpoint, error) {
	f, err := OpenWith(filepath.Join(dir, SingleFileName), o)
	if err == nil {
		return newCheckpoint(dir, []*File{f}), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	idxPath := filepath.Join(dir, IndexFileName)
	raw, err := os.ReadFile(idxPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("safetensors: %s: no %s or %s: %w", dir, SingleFileName, IndexFileName, fs.ErrNotExist)
	}
	if err != nil {
		return nil, err
	}
	var idx index
	if err := json.Unmarshal(raw, &idx); err != nil || idx.WeightMap == nil {
		detail := "no weight_map"
		if err != nil {
			detail = err.Error()
		}
		return nil, &FormatError{File: idxPath, Err: ErrInvalidJSON, Detail: detail}
	}
	shards := map[string][]string{} // shard file → tensor names the index gives it
	for name, shard := range idx.WeightMap {
		if !filepath.IsLocal(shard) {
			return nil, &FormatError{File: idxPath, Tensor: name, Err: ErrMissingShard, Detail: fmt.Sprintf("%q is not a path inside the directory", shard)}
		}
		shards[shard] = append(shards[shard], name)
	}
	c := &Checkpoint{dir: dir}
	for _, shard := range slices.Sorted(maps.Keys(shards)) {
		path := filepath.Join(dir, shard)
		f, err := OpenWith(path, o)
		if errors.Is(err, fs.ErrNotExist) {
			err = &FormatError{File: path, Tensor: shards[shard][0], Err: ErrMissingShard, Detail: "named in " + IndexFileName}
		}
		if err != nil {
			c.Close()
			return nil, err
		}
		c.files = append(c.files, f)
	}
	c.index()
	for _, f := range c.files {
		for _, name := range f.names {
			want, listed := idx.WeightMap[name]
			switch {
			case c.where[name] != f:
				err = &FormatError{File: f.path, Tensor: name, Err: ErrDuplicateName, Detail: "also in " + c.where[name].path}
			case !listed:
				err = &FormatError{File: f.path, Tensor: name, Err: ErrMisplacedTensor, Detail: "not in " + IndexFileName}
			case filepath.Join(dir, want) != f.path:
				err = &FormatError{File: f.path, Tensor: name, Err: ErrMisplacedTensor, Detail: fmt.Sprintf("%s names %s", IndexFileName, want)}
			}
			if err != nil {
				c.Close()
				return nil, err
			}
		}
	}
	for name, shard := range idx.WeightMap {
		if c.where[name] == nil {
			c.Close()
			return nil, &FormatError{File: filepath.Join(dir, shard), Tensor: name, Err: ErrMisplacedTensor, Detail: "named in " + IndexFileName + " but absent"}
		}
	}
	return c, nil
}

func newCheckpoint(dir string, files []*File) *Checkpoint {
	c := &Checkpoint{dir: dir, files: files}
	c.index()
	return c
}

// index records where each tensor lives; for a name in several files the first wins.
func (c *Checkpoint) index() {
	c.where = map[string]*File{}
	for _, f := range c.files {
		for _, name := range f.names {
			if c.where[name] == nil {
				c.where[name] = f
				c.names = append(c.names, name)
			}
		}
	}
	slices.Sort(c.names)
}

// Dir returns the checkpoint directory.
func (c *Checkpoint) Dir() string { return c.dir }

// Files returns the checkpoint's files, sorted by path; each gives its own Metadata.
func (c *Checkpoint) Files() []*File { return slices.Clone(c.files) }

// Names returns the names of all tensors, sorted.
func (c *Checkpoint) Names() []string { return slices.Clone(c.names) }

// Tensor returns the named tensor from whichever file holds it.
func (c *Checkpoint) Tensor(name string) (Tensor, error) {
	f := c.where[name]
	if f == nil {
		return Tensor{}, &FormatError{File: c.dir, Tensor: name, Err: ErrNotFound}
	}
	return f.Tensor(name)
}

// Close closes every file; closing twice is harmless.
func (c *Checkpoint) Close() error {
	var errs []error
	for _, f := range c.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}
