package mixtral

import "context"

// Preload reads the checkpoint that Load mapped into memory (see safetensors.Checkpoint.
// Preload), so that the first requests run as fast as later ones instead of waiting for
// weights to page in from disk as the forward pass first touches them. progress, when not
// nil, is called with the bytes read so far and the total. A model made by New reads nothing:
// its source is the caller's to preload. Preloading a checkpoint larger than the free memory
// only makes the kernel evict pages it read earlier.
func (m *Model) Preload(ctx context.Context, progress func(done, total int64)) error {
	if m.ckpt == nil {
		return nil
	}
	return m.ckpt.Preload(ctx, progress)
}
