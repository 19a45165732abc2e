//go:build cuda && cgo

package cuda

import (
	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/safetensors"
)

// The backend's methods: each takes the lock, then runs the method of the same name of the
// unlocked view (device.go, memory.go, bind.go, ops.go, cache.go), which documents it.

func (g *gpu) Bind(t safetensors.Tensor) (backend.Weight, error) {
	u, err := g.lock()
	if err != nil {
		return nil, err
	}
	defer g.mu.Unlock()
	return u.Bind(t)
}

func (g *gpu) BindExperts(t backend.ExpertTensors) (backend.Experts, error) {
	u, err := g.lock()
	if err != nil {
		return nil, err
	}
	defer g.mu.Unlock()
	return u.BindExperts(t)
}

func (g *gpu) BindQuantized(t safetensors.Tensor, q backend.Quantization) (backend.Weight, error) {
	u, err := g.lock()
	if err != nil {
		return nil, err
	}
	defer g.mu.Unlock()
	return u.BindQuantized(t, q)
}

func (g *gpu) BindExpertsQuantized(t backend.ExpertTensors, q backend.Quantization) (backend.Experts, error) {
	u, err := g.lock()
	if err != nil {
		return nil, err
	}
	defer g.mu.Unlock()
	return u.BindExpertsQuantized(t, q)
}

func (g *gpu) NewTensor(rows, cols int) (backend.Tensor, error) {
	u, err := g.lock()
	if err != nil {
		return backend.Tensor{}, err
	}
	defer g.mu.Unlock()
	return u.NewTensor(rows, cols)
}

func (g *gpu) NewCache(c backend.CacheConfig) (backend.Cache, error) {
	u, err := g.lock()
	if err != nil {
		return nil, err
	}
	defer g.mu.Unlock()
	return u.NewCache(c)
}

func (g *gpu) Write(t backend.Tensor, src []float32) error {
	u, err := g.lock()
	if err != nil {
		return err
	}
	defer g.mu.Unlock()
	return u.Write(t, src)
}

func (g *gpu) Read(dst []float32, t backend.Tensor) error {
	u, err := g.lock()
	if err != nil {
		return err
	}
	defer g.mu.Unlock()
	return u.Read(dst, t)
}

func (g *gpu) Embed(dst backend.Tensor, table backend.Weight, b backend.Batch) error {
	u, err := g.lock()
	if err != nil {
		return err
	}
	defer g.mu.Unlock()
	return u.Embed(dst, table, b)
}

func (g *gpu) RMSNorm(dst, x backend.Tensor, w backend.Weight, eps float32) error {
	u, err := g.lock()
	if err != nil {
		return err
	}
	defer g.mu.Unlock()
	return u.RMSNorm(dst, x, w, eps)
}

func (g *gpu) AddRMSNorm(dst, x, r backend.Tensor, w backend.Weight, eps float32) error {
	u, err := g.lock()
	if err != nil {
		return err
	}
	defer g.mu.Unlock()
	return u.AddRMSNorm(dst, x, r, w, eps)
}

func (g *gpu) MatMul(dst, x backend.Tensor, w backend.Weight) error {
	u, err := g.lock()
	if err != nil {
		return err
	}
	defer g.mu.Unlock()
	return u.MatMul(dst, x, w)
}

func (g *gpu) Add(dst, x backend.Tensor) error {
	u, err := g.lock()
	if err != nil {
		return err
	}
	defer g.mu.Unlock()
	return u.Add(dst, x)
}

func (g *gpu) Gather(dst, src backend.Tensor, rows []int) error {
	u, err := g.lock()
	if err != nil {
		return err
	}
	defer g.mu.Unlock()
	return u.Gather(dst, src, rows)
}

func (g *gpu) RoPE(x backend.Tensor, b backend.Batch, headDim int, theta float64) error {
	u, err := g.lock()
	if err != nil {
		return err
	}
	defer g.mu.Unlock()
	return u.RoPE(x, b, headDim, theta)
}

func (g *gpu) Attention(dst, q, k, v backend.Tensor, b backend.Batch, p backend.AttentionParams) error {
	u, err := g.lock()
	if err != nil {
		return err
	}
	defer g.mu.Unlock()
	return u.Attention(dst, q, k, v, b, p)
}

func (g *gpu) MoE(dst, x backend.Tensor, e backend.Experts, topK int, router backend.Tensor) error {
	u, err := g.lock()
	if err != nil {
		return err
	}
	defer g.mu.Unlock()
	return u.MoE(dst, x, e, topK, router)
}
