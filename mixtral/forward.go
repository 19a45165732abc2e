package mixtral

import (
	"math"

	"github.com/fathom-llm/fathom/backend"
)

// forward runs one step of the model: tokens, each at a position of the sequence whose
// block table is tables[Seq], go through the layers, and the logits of the batch rows listed
// in rows are written to out (len(rows)·vocab values). tr, when not nil, collects the step's
// hidden states and router logits. The serving engine runs the steps, one at a time.
func (m *Model) forward(tokens []backend.Token, tables [][]int, rows []int, out []float32, tr *trace) error {
	n := len(tokens)
	if n == 0 || n > m.maxBatch || len(out) != len(rows)*m.cfg.VocabSize {
		return backend.Shapef("forward of %d tokens (at most %d), %d logit rows into %d values", n, m.maxBatch, len(rows), len(out))
	}
	batch, err := m.cache.Prepare(tokens, tables)
	if err != nil {
		return err
	}
	if rec, ok := m.be.(backend.StepRecorder); ok && tr == nil && n <= recordTokens {
		err = m.recorded.run(rec, batch, n)
	} else {
		err = m.layers(m.be, batch, n, tr)
	}
	if err != nil {
		return err
	}
	return m.logits(out, rows, n)
}

// layers runs the embedding and the decoder layers over a batch of n tokens on be, leaving
// the final norm of the residual stream in m.act.xb.
func (m *Model) layers(be backend.Backend, batch backend.Batch, n int, tr *trace) error {
	c, w, a := &m.cfg, m.w, &m.act
	x, xb, q, k, v, att, y := a.x.Head(n), a.xb.Head(n), a.q.Head(n), a.k.Head(n), a.v.Head(n), a.att.Head(n), a.y.Head(n)
	var router backend.Tensor // MoE fills it only when it is a valid tensor: when traced
	if tr != nil {
		router = a.router.Head(n)
	}
	eps := float32(c.RMSNormEps)
	attn := backend.AttentionParams{
		Heads: c.NumAttentionHeads, KVHeads: c.NumKeyValueHeads, HeadDim: c.HeadDim,
		Scale: float32(1 / math.Sqrt(float64(c.HeadDim))), SlidingWindow: c.SlidingWindow,
	}
	op := newOps(be)

	op.Embed(x, w.embed, batch)
	tr.hiddenState(&op, 0, x)
	op.RMSNorm(xb, x, w.layers[0].attnNorm, eps)
	for l, ly := range w.layers {
		// Attention over each token's sequence in the KV cache.
		attn.Layer = l
		op.MatMul(q, xb, ly.wq)
		op.MatMul(k, xb, ly.wk)
		op.MatMul(v, xb, ly.wv)
		op.RoPE(q, batch, c.HeadDim, c.RopeTheta)
		op.RoPE(k, batch, c.HeadDim, c.RopeTheta)
		op.Attention(att, q, k, v, batch, attn)
		op.MatMul(y, att, ly.wo)
		// The residual: x += y, and xb = rmsnorm(x), the input of the mixture of experts.
		op.AddRMSNorm(xb, x, y, ly.mlpNorm, eps)

		// The mixture of experts.
		op.MoE(y, xb, ly.experts, c.NumExpertsPerTok, router)
		tr.routerLogits(&op, l, router)
		// The residual: x += y, and xb = rmsnorm(x), the input of the next layer or, after
		// the last, the model's final norm.
		if l+1 < len(w.layers) {
			op.AddRMSNorm(xb, x, y, w.layers[l+1].attnNorm, eps)
			tr.hiddenState(&op, l+1, x)
		} else {
			op.AddRMSNorm(xb, x, y, w.norm, eps)
			tr.hiddenState(&op, l+1, xb)
		}
	}
	return op.err
}

// logits writes to out the logits of the listed rows of the final norm (m.act.xb, n rows),
// a few rows at a time.
func (m *Model) logits(out []float32, rows []int, n int) error {
	a, V := &m.act, m.cfg.VocabSize
	op := newOps(m.be)
	for lo := 0; lo < len(rows); lo += logitRows {
		part := rows[lo:min(lo+logitRows, len(rows))]
		final, logits := a.final.Head(len(part)), a.logits.Head(len(part))
		op.Gather(final, a.xb.Head(n), part)
		op.MatMul(logits, final, m.w.lmHead)
		op.Read(out[lo*V:(lo+len(part))*V], logits)
	}
	return op.err
}

// activations are the device tensors of a forward step, allocated once for the largest
// batch; a step of n tokens uses their first n rows.
type activations struct {
	x      backend.Tensor // the residual stream [batch, hidden]
	xb     backend.Tensor // x normalised, the input of a sublayer [batch, hidden]
	q      backend.Tensor // queries [batch, heads·headDim]
	k, v   backend.Tensor // keys and values [batch, kvHeads·headDim]
	att    backend.Tensor // attention output [batch, heads·headDim]
	y      backend.Tensor // a sublayer's output, before it is added to x [batch, hidden]
	router backend.Tensor // router logits, for a trace [batch, experts]
	final  backend.Tensor // the final norm's rows whose logits are wanted [logitRows, hidden]
	logits backend.Tensor // their logits [logitRows, vocab]
}

func newActivations(be backend.Backend, c Config, maxBatch int) (activations, error) {
	var err error
	alloc := func(rows, cols int) backend.Tensor {
		t, e := be.NewTensor(rows, cols)
		if err == nil {
			err = e
		}
		return t
	}
	H, Q, KV := c.HiddenSize, c.NumAttentionHeads*c.HeadDim, c.NumKeyValueHeads*c.HeadDim
	a := activations{
		x: alloc(maxBatch, H), xb: alloc(maxBatch, H),
		q: alloc(maxBatch, Q), k: alloc(maxBatch, KV), v: alloc(maxBatch, KV), att: alloc(maxBatch, Q),
		y: alloc(maxBatch, H), router: alloc(maxBatch, c.NumLocalExperts),
		final: alloc(logitRows, H), logits: alloc(logitRows, c.VocabSize),
	}
	return a, err
}

// trace collects the intermediate values of forward steps, for tests and analysis: each
// step appends its rows to hidden[L] ([tokens, hidden]) and router[l] ([tokens, experts]).
// Its methods do nothing on a nil trace.
type trace struct {
	// hidden[0] is the embedding output, hidden[L] for 0 < L < layers the residual stream
	// after layer L-1, and hidden[layers] the final norm's output.
	hidden [][]float32
	router [][]float32 // router[l] is layer l's router logits
}

// hiddenState appends t's rows to hidden state L.
func (tr *trace) hiddenState(op *ops, L int, t backend.Tensor) {
	if tr != nil {
		op.appendRead(&tr.hidden[L], t)
	}
}

// routerLogits appends t's rows to layer l's router logits.
func (tr *trace) routerLogits(op *ops, l int, t backend.Tensor) {
	if tr != nil {
		op.appendRead(&tr.router[l], t)
	}
}

// recordedLayers hands the layers of decode steps to a backend.StepRecorder. A function
// made for each step would be allocated, so the function the recorder runs (layers) and the
// boxed keys are made once, and layers takes the step's batch and size from the fields run
// sets.
type recordedLayers struct {
	keys   [recordTokens + 1]any // keys[n] is the stepKey of an n-token step
	layers func(be backend.Backend) error
	batch  backend.Batch
	n      int
}

// stepKey identifies a recorded step: the model (its activations, weights and cache) and
// the batch size.
type stepKey struct {
	m *Model
	n int
}

func (r *recordedLayers) init(m *Model) {
	for n := range r.keys {
		r.keys[n] = stepKey{m, n}
	}
	r.layers = func(be backend.Backend) error { return m.layers(be, r.batch, r.n, nil) }
}

// run runs the layers of a step of n tokens through rec.
func (r *recordedLayers) run(rec backend.StepRecorder, batch backend.Batch, n int) error {
	r.batch, r.n = batch, n
	return rec.Step(r.keys[n], r.layers)
}
