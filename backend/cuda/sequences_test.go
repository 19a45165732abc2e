//go:build cuda && cgo

package cuda

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/bench"
	"github.com/fathom-llm/fathom/mixtral"
	"github.com/fathom-llm/fathom/sampling"
)

// stepCounter is the random-weight backend with a cache that counts the forward steps and
// their tokens.
type stepCounter struct {
	*randomBinder
	steps, tokens atomic.Int64
}

type countedCache struct {
	backend.Cache
	c *stepCounter
}

func (s *stepCounter) NewCache(cfg backend.CacheConfig) (backend.Cache, error) {
	c, err := s.randomBinder.NewCache(cfg)
	if err != nil {
		return nil, err
	}
	return countedCache{c, s}, nil
}

func (c countedCache) Prepare(tokens []backend.Token, tables [][]int) (backend.Batch, error) {
	c.c.steps.Add(1)
	c.c.tokens.Add(int64(len(tokens)))
	return c.Cache.Prepare(tokens, tables)
}

// expertsTouched is the expected number of distinct experts that n tokens choose in one
// layer when each picks topK of experts evenly at random.
func expertsTouched(n, topK, experts int) float64 {
	return float64(experts) * (1 - math.Pow(1-float64(topK)/float64(experts), float64(n)))
}

// BenchmarkDecodeSequences decodes several sequences at once, as a server does: requests with
// 512-token prompts go through the model's serving engine (mixtral.Model.Stream) on Mixtral
// 8x7B (all 32 layers, random bf16 weights). The timer starts once every request has its first
// token, so that every later step decodes all of them, and stops once each has 16·b.N tokens
// more. tokens/s is the aggregate rate of the tokens the forward steps computed in that window,
// tokens/step the mean size of those steps, GB/s the weight bytes they read (the dense weights
// and, per layer, the experts their tokens touch, for routing spread evenly) per second.
func BenchmarkDecodeSequences(b *testing.B) {
	cfg := bench.Mixtral8x7B(32)
	const prompt, maxSeqs, perOp = 512, 64, 16
	g := open(b, Options{})
	defer g.Close()
	weights := float64(cfg.NumHiddenLayers*cfg.NumLocalExperts*3*cfg.HiddenSize*cfg.IntermediateSize) * 2
	if weights > 0.8*float64(g.totalMem) {
		b.Skipf("%.0f GB of expert weights leave too little of %s", weights/1e9, g)
	}
	be := &stepCounter{randomBinder: &randomBinder{gpu: g}}
	m, err := mixtral.New(cfg, shapeSource(bench.TensorShapes(cfg)), mixtral.Options{
		Backend: be, ContextLength: 2048, CacheTokens: maxSeqs * 1024, MaxBatch: 512,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	// Dense weight bytes of a step: one token's, less its experts.
	expert := float64(3*cfg.HiddenSize*cfg.IntermediateSize) * 2
	dense := float64(bench.DecodeWeightBytes(cfg)) - float64(cfg.NumHiddenLayers*cfg.NumExpertsPerTok)*expert
	for _, seqs := range []int{1, 8, 32, maxSeqs} {
		b.Run(fmt.Sprintf("seqs=%d", seqs), func(b *testing.B) {
			b.StopTimer()
			gen := perOp * b.N
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var ready, finished sync.WaitGroup
			start := make(chan struct{})
			errs := make(chan error, seqs)
			ready.Add(seqs)
			finished.Add(seqs)
			for s := range seqs {
				ids := make([]int, prompt)
				for i := range ids {
					ids[i] = (i*7919 + s*104729 + 13) % cfg.VocabSize
				}
				req := mixtral.Request{PromptIDs: ids, Params: sampling.Params{
					// Room to decode on while the other prompts are read; the window
					// ends long before.
					MaxTokens: 2048 - prompt,
					// Random weights may favour the end of text: keep generating.
					LogitBias: map[int]float64{cfg.EOSTokenIDs[0]: -sampling.MaxLogitBias},
				}}
				go func() {
					defer finished.Done()
					// Tokens are read as they come, never held back: the window
					// counts those that arrive after start.
					got, after := 0, -1
					for ev, err := range m.Stream(ctx, req) {
						if err != nil {
							if ctx.Err() == nil {
								errs <- err
							}
							break
						}
						if ev.ID < 0 {
							continue
						}
						if got++; got == 1 {
							ready.Done()
						}
						if after < 0 {
							select {
							case <-start:
								after = 0
							default:
							}
						}
						if after >= 0 {
							if after++; after == gen {
								return
							}
						}
					}
					if got == 0 {
						ready.Done()
					}
					if ctx.Err() == nil && after < gen {
						errs <- fmt.Errorf("request ended after %d tokens", got)
					}
				}()
			}
			ready.Wait()
			steps0, tokens0 := be.steps.Load(), be.tokens.Load()
			t0 := time.Now()
			b.StartTimer()
			close(start)
			finished.Wait()
			sec := time.Since(t0).Seconds()
			b.StopTimer()
			cancel()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			steps, tokens := be.steps.Load()-steps0, be.tokens.Load()-tokens0
			perStep := float64(tokens) / float64(max(steps, 1))
			bytes := dense + float64(cfg.NumHiddenLayers)*expertsTouched(int(math.Round(perStep)), cfg.NumExpertsPerTok, cfg.NumLocalExperts)*expert
			b.ReportMetric(float64(tokens)/sec, "tokens/s")
			b.ReportMetric(perStep, "tokens/step")
			b.ReportMetric(float64(steps)*bytes/sec/1e9, "GB/s")
		})
	}
}
