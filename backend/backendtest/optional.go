package backendtest

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/safetensors"
)

// The cases of the optional interfaces backend.ResidualNormer and backend.StepRecorder (quant.go
// has backend.Quantizer's). A backend that does not implement one skips its case.

// residualNorm checks AddRMSNorm against the float64 reference: the residual sum in x at
// float32 tolerance, the norm at the backend's; and that operands that do not fit change
// nothing.
func (s suite) residualNorm(t *testing.T, b backend.Backend) {
	rn, is := b.(backend.ResidualNormer)
	if !is {
		t.Skip("the backend has no fused residual norm")
	}
	r := rand.New(rand.NewPCG(1, 12))
	const eps = 1e-5
	for _, dt := range dtypes {
		for _, shape := range normShapes {
			n, d := shape[0], shape[1]
			t.Run(fmt.Sprintf("%s/%dx%d", dt, n, d), func(t *testing.T) {
				st, gain := Weight(r, "norm", dt, 1, d)
				w := must(b.Bind(st))(t)
				xv, rv := random(r, n*d, 3), random(r, n*d, 1)
				x, res := upload(t, b, n, d, xv), upload(t, b, n, d, rv)
				dst := must(b.NewTensor(n, d))(t)
				ok(t, rn.AddRMSNorm(dst, x, res, w, eps))
				sum := make([]float64, n*d)
				for i := range sum {
					sum[i] = float64(xv[i] + rv[i])
				}
				check(t, "residual sum", download(t, b, x), sum)
				s.check(t, "norm", download(t, b, dst), rmsNormRef(sum, gain, eps))

				after := download(t, b, x)
				for _, bad := range []struct {
					what      string
					dst, x, r backend.Tensor
				}{
					{what: "dst aliasing x", dst: x, x: x, r: res},
					{what: "r aliasing x", dst: dst, x: x, r: x},
					{what: "r of fewer rows", dst: dst, x: x, r: res.Head(n - 1)},
					{what: "dst of fewer rows", dst: dst.Head(n - 1), x: x, r: res},
				} {
					if err := rn.AddRMSNorm(bad.dst, bad.x, bad.r, w, eps); !errors.Is(err, backend.ErrShape) {
						t.Errorf("%s: %v, want ErrShape", bad.what, err)
					}
				}
				if !slices.Equal(download(t, b, x), after) {
					t.Error("a rejected AddRMSNorm changed x")
				}
			})
		}
	}
}

// stepShape is the model of the step case: an embedding of vocab rows of hidden values, the
// query, key and value projections, RoPE and attention over a cache of one layer.
const (
	stepVocab, stepHidden           = 50, 32
	stepHeads, stepKVHeads, stepDim = 4, 2, 8
	stepTheta                       = 10000.0
)

// step checks a backend.StepRecorder: decode steps of two sequences through Step, with the
// batch (token ids and positions) and an input written between steps changing, against the
// float64 reference; that f's error comes back; and that an operation of another goroutine
// waits while Step runs f.
func (s suite) step(t *testing.T, b backend.Backend) {
	rec, is := b.(backend.StepRecorder)
	if !is {
		t.Skip("the backend does not record steps")
	}
	t.Run("Decode", func(t *testing.T) { s.decodeSteps(t, b, rec) })
	t.Run("Error", func(t *testing.T) {
		errStep := errors.New("the step failed")
		for i := range 3 {
			if err := rec.Step("failing", func(backend.Backend) error { return errStep }); !errors.Is(err, errStep) {
				t.Errorf("call %d: %v, want the step's error", i, err)
			}
		}
	})
	t.Run("Exclusive", func(t *testing.T) {
		x := must(b.NewTensor(1, 4))(t)
		started, done := make(chan struct{}), make(chan error, 1)
		go func() {
			<-started
			done <- b.Write(x, make([]float32, 4))
		}()
		ranInside := false
		err := rec.Step("exclusive", func(backend.Backend) error {
			close(started)
			select {
			case err := <-done:
				ranInside = true
				t.Errorf("an operation of another goroutine ran while Step ran the step (error %v)", err)
			case <-time.After(100 * time.Millisecond):
			}
			return nil
		})
		ok(t, err)
		if ranInside {
			return
		}
		select {
		case err := <-done:
			ok(t, err)
		case <-time.After(time.Minute):
			t.Fatal("an operation of another goroutine still waits after Step returned")
		}
	})
}

func (s suite) decodeSteps(t *testing.T, b backend.Backend, rec backend.StepRecorder) {
	r := rand.New(rand.NewPCG(1, 13))
	qDim, kvDim := stepHeads*stepDim, stepKVHeads*stepDim
	stTable, table := Weight(r, "embed", safetensors.BF16, 1, stepVocab, stepHidden)
	stQ, wq := Weight(r, "wq", safetensors.BF16, 0.3, qDim, stepHidden)
	stK, wk := Weight(r, "wk", safetensors.BF16, 0.3, kvDim, stepHidden)
	stV, wv := Weight(r, "wv", safetensors.BF16, 0.3, kvDim, stepHidden)
	embed, mq, mk, mv := must(b.Bind(stTable))(t), must(b.Bind(stQ))(t), must(b.Bind(stK))(t), must(b.Bind(stV))(t)
	c := must(b.NewCache(backend.CacheConfig{Layers: 1, KVHeads: stepKVHeads, HeadDim: stepDim, BlockSize: 4, Blocks: 16}))(t)
	defer c.Close()
	pages := NewPages(c)
	seqs := []int{pages.NewSequence(), pages.NewSequence()}
	const most = 6 // the largest batch: a prompt of three tokens per sequence
	x, extra := must(b.NewTensor(most, stepHidden))(t), must(b.NewTensor(most, stepHidden))(t)
	q, k, v := must(b.NewTensor(most, qDim))(t), must(b.NewTensor(most, kvDim))(t), must(b.NewTensor(most, kvDim))(t)
	att := must(b.NewTensor(most, qDim))(t)
	p := backend.AttentionParams{Heads: stepHeads, KVHeads: stepKVHeads, HeadDim: stepDim, Scale: float32(1 / math.Sqrt(stepDim))}

	// The step of n tokens, which the key n determines: x = embed(ids) + extra, then
	// attention of the projections of x.
	var batch backend.Batch
	step := func(n int) func(be backend.Backend) error {
		return func(be backend.Backend) error {
			xs, qs, ks, vs := x.Head(n), q.Head(n), k.Head(n), v.Head(n)
			return errors.Join(
				be.Embed(xs, embed, batch),
				be.Add(xs, extra.Head(n)),
				be.MatMul(qs, xs, mq),
				be.MatMul(ks, xs, mk),
				be.MatMul(vs, xs, mv),
				be.RoPE(qs, batch, stepDim, stepTheta),
				be.RoPE(ks, batch, stepDim, stepTheta),
				be.Attention(att.Head(n), qs, ks, vs, batch, p),
			)
		}
	}
	ref := refCache{}
	lens := make([]int, len(seqs))
	for si, per := range []int{3, 1, 1, 1, 1, 1} {
		var toks []backend.Token
		for range per {
			for i, seq := range seqs {
				toks = append(toks, backend.Token{Seq: seq, Pos: lens[i], ID: r.IntN(stepVocab)})
				lens[i]++
			}
		}
		n := len(toks)
		batch = must(pages.Prepare(toks))(t)
		ev := random(r, n*stepHidden, 1)
		ok(t, b.Write(extra.Head(n), ev))
		ok(t, rec.Step(n, step(n)))

		var want []float64
		for i, tok := range toks {
			xi := slices.Clone(table[tok.ID*stepHidden : (tok.ID+1)*stepHidden])
			for j := range xi {
				xi[j] += float64(ev[i*stepHidden+j])
			}
			qi, ki, vi := matmulRef(xi, 1, wq, qDim), matmulRef(xi, 1, wk, kvDim), matmulRef(xi, 1, wv, kvDim)
			for h := range stepHeads {
				ropeRef(qi[h*stepDim:(h+1)*stepDim], tok.Pos, stepTheta)
			}
			for h := range stepKVHeads {
				ropeRef(ki[h*stepDim:(h+1)*stepDim], tok.Pos, stepTheta)
			}
			key := [2]int{0, tok.Seq}
			ref[key] = append(ref[key], [2][]float64{ki, vi})
			want = append(want, attentionRef(qi, ref[key], tok.Pos, p)...)
		}
		s.check(t, fmt.Sprintf("step %d", si), download(t, b, att.Head(n)), want)
	}
}
