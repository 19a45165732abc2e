package safetensors

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
)

// preloadChunk is the span of a file that one goroutine of Preload reads in at a time.
const preloadChunk = 8 << 20

// preloadPage is the stride at which Preload touches a mapping: the smallest page size.
const preloadPage = 4096

// Preload reads the whole file into memory ahead of use, so that the first reads of its
// tensors find their pages resident instead of faulting them in from disk one by one: it asks
// the kernel to read the mapping ahead (madvise WILLNEED) and touches every page, chunk by
// chunk, from several goroutines at once (reading a disk is faster with many requests in
// flight). progress, when not nil, is called with the bytes read in so far and the total, from
// one goroutine at a time. It stops between chunks once ctx is done, returning ctx.Err(). A
// file that is read into memory rather than mapped is resident already.
func (f *File) Preload(ctx context.Context, progress func(done, total int64)) error {
	return preload(ctx, []*File{f}, progress)
}

// Preload is File.Preload for every file of the checkpoint, the progress counted over them
// all.
func (c *Checkpoint) Preload(ctx context.Context, progress func(done, total int64)) error {
	return preload(ctx, c.files, progress)
}

// preload reads in the files in chunks claimed by a few goroutines.
func preload(ctx context.Context, files []*File, progress func(done, total int64)) error {
	type chunk struct {
		f      *File
		lo, hi int
	}
	var chunks []chunk
	var total int64
	for _, f := range files {
		f.mu.RLock()
		if f.closed {
			f.mu.RUnlock()
			return &FormatError{File: f.path, Err: ErrClosed}
		}
		n := len(f.data)
		f.mu.RUnlock()
		if f.release != nil {
			adviseWillNeed(f.data)
		}
		for lo := 0; lo < n; lo += preloadChunk {
			chunks = append(chunks, chunk{f, lo, min(n, lo+preloadChunk)})
		}
		total += int64(n)
	}
	var next, done atomic.Int64
	var mu sync.Mutex // serialises progress
	var wg sync.WaitGroup
	var sink atomic.Uint32
	for range min(len(chunks), max(8, runtime.GOMAXPROCS(0))) {
		wg.Go(func() {
			var sum byte
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(chunks) {
					break
				}
				c := chunks[i]
				c.f.mu.RLock()
				if !c.f.closed {
					data := c.f.data[c.lo:c.hi]
					for j := 0; j < len(data); j += preloadPage {
						sum += data[j]
					}
				}
				c.f.mu.RUnlock()
				d := done.Add(int64(c.hi - c.lo))
				if progress != nil {
					mu.Lock()
					progress(d, total)
					mu.Unlock()
				}
			}
			sink.Add(uint32(sum)) // keeps the reads
		})
	}
	wg.Wait()
	return ctx.Err()
}
