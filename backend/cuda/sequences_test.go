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

func (c countedCache) Prepare(tokens []backend.Token) (backend.Batch, error) {
	c.c.steps.Add(1)
	c.c.tokens.Add(int64(len(tokens)))
	return c.Cache.Prepare(tokens)
}

// expertsTouched is the expected number of distinct experts that n tokens choose in one
// layer when each picks topK of experts evenly at random.
func expertsTouched(n, topK, experts int) float64 {
	return float64(experts) * (1 - math.Pow(1-float64(topK)/float64(experts), float64(n)))
}

// BenchmarkDecodeSequences decodes several sequences at once, as a server does: requests with
// 512-token prompts go through the model's scheduler (mixtral.Model.Stream) on Mixtral 8x7B
// (all 32 layers, random bf16 weights), and once every prompt has been read the timer runs
// while each request generates 16·b.N more tokens. tokens/s is the aggregate rate;
// tokens/step the mean size of the forward steps the scheduler made meanwhile; GB/s the
// weight bytes those steps read (the dense weights and, per layer, the experts their tokens
// touch, for routing spread evenly) per second.
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
			ready, finished := sync.WaitGroup{}, sync.WaitGroup{}
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
					MaxTokens: gen + 1,
					// Random weights may favour the end of text: keep generating.
					LogitBias: map[int]float64{cfg.EOSTokenIDs[0]: -sampling.MaxLogitBias},
				}}
				go func() {
					defer finished.Done()
					got := 0
					for ev, err := range m.Stream(context.Background(), req) {
						if err != nil {
							errs <- err
							break
						}
						if ev.ID < 0 {
							continue
						}
						if got++; got == 1 { // the prompt is read: wait for the others
							ready.Done()
							<-start
						}
					}
					if got == 0 {
						ready.Done()
					} else if got != gen+1 {
						errs <- fmt.Errorf("request generated %d tokens, want %d", got, gen+1)
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
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			steps, tokens := be.steps.Load()-steps0, be.tokens.Load()-tokens0
			perStep := float64(tokens) / float64(max(steps, 1))
			bytes := dense + float64(cfg.NumHiddenLayers)*expertsTouched(int(math.Round(perStep)), cfg.NumExpertsPerTok, cfg.NumLocalExperts)*expert
			b.ReportMetric(float64(seqs*gen)/sec, "tokens/s")
			b.ReportMetric(perStep, "tokens/step")
			b.ReportMetric(float64(steps)*bytes/sec/1e9, "GB/s")
		})
	}
}
