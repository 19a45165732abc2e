package mixtral

import (
	"errors"
	"math"

	"github.com/fathom-llm/fathom/backend"
)

// scratch holds the activations of one forward step, allocated once for the largest batch.
type scratch struct {
	x      backend.Tensor // the residual stream [batch, hidden]
	xb     backend.Tensor // normalised input of a sublayer [batch, hidden]
	q      backend.Tensor // queries [batch, heads·headDim]
	k, v   backend.Tensor // keys and values [batch, kvHeads·headDim]
	att    backend.Tensor // attention output [batch, heads·headDim]
	out    backend.Tensor // a sublayer's output [batch, hidden]
	router backend.Tensor // router logits [batch, experts]
	last   backend.Tensor // rows whose logits are wanted [logitRows, hidden]
	norm   backend.Tensor // their final norm [logitRows, hidden]
	logits backend.Tensor // their logits [logitRows, vocab]

	maxBatch int

	// step is the step in progress; layers (m.layers, bound once) and keys (the stepKeys of
	// the batch sizes that are recorded) let a step be recorded without allocating.
	step   stepState
	layers func(be backend.Backend) error
	keys   [recordTokens + 1]any
}

func (s *scratch) init(be backend.Backend, c Config, maxBatch int) error {
	H, Q, KV := c.HiddenSize, c.NumAttentionHeads*c.HeadDim, c.NumKeyValueHeads*c.HeadDim
	s.maxBatch = maxBatch
	var errs [10]error
	s.x, errs[0] = be.NewTensor(maxBatch, H)
	s.xb, errs[1] = be.NewTensor(maxBatch, H)
	s.q, errs[2] = be.NewTensor(maxBatch, Q)
	s.k, errs[3] = be.NewTensor(maxBatch, KV)
	s.v, errs[4] = be.NewTensor(maxBatch, KV)
	s.att, errs[5] = be.NewTensor(maxBatch, Q)
	s.out, errs[6] = be.NewTensor(maxBatch, H)
	s.router, errs[7] = be.NewTensor(maxBatch, c.NumLocalExperts)
	s.last, errs[8] = be.NewTensor(logitRows, H)
	s.norm, errs[9] = be.NewTensor(logitRows, H)
	var err error
	s.logits, err = be.NewTensor(logitRows, c.VocabSize)
	return errors.Join(append(errs[:], err)...)
}

// trace receives intermediate values of a forward step, for tests and analysis: hidden[L]
// and router[l] get the step's rows appended ([tokens, hidden] and [tokens, experts]).
type trace struct {
	hidden [][]float32 // L = 0: embeddings; 0 < L < layers: after layer L-1; L = layers: final norm
	router [][]float32
}

// forward runs one step of the model over tokens (each continuing its sequence in the KV
// cache) and writes the logits of the batch rows rows into out (len(rows)·vocab values).
// The caller holds m.mu.
func (m *Model) forward(tokens []backend.Token, rows []int, out []float32, tr *trace) error {
	c, be, w, s := &m.cfg, m.be, m.w, &m.s
	n := len(tokens)
	if n == 0 || n > s.maxBatch || len(out) != len(rows)*c.VocabSize {
		return backend.Shapef("forward of %d tokens (at most %d), %d logit rows into %d values", n, s.maxBatch, len(rows), len(out))
	}
	if m.steps != nil {
		m.steps.Lock()
		defer m.steps.Unlock()
	}
	batch, err := m.cache.Prepare(tokens)
	if err != nil {
		return err
	}
	// The embedding and the decoder layers: recorded and replayed as one unit for decode
	// steps on a backend that records them.
	s.step = stepState{batch: batch, n: n, tr: tr}
	if rec, ok := be.(backend.StepRecorder); ok && m.steps != nil && tr == nil && n <= recordTokens {
		err = rec.Step(s.keys[n], s.layers)
	} else {
		err = m.layers(be)
	}
	if err != nil {
		return err
	}
	x, xb := s.x.Head(n), s.xb.Head(n)
	eps := float32(c.RMSNormEps)
	if tr != nil {
		if err := be.RMSNorm(xb, x, w.norm, eps); err != nil {
			return err
		}
		if err := m.record(tr, len(w.layers), xb); err != nil {
			return err
		}
	}
	// Final norm and lm_head, for the wanted rows only, a few rows at a time.
	V := c.VocabSize
	for lo := 0; lo < len(rows); lo += logitRows {
		part := rows[lo:min(lo+logitRows, len(rows))]
		last, norm, logits := s.last.Head(len(part)), s.norm.Head(len(part)), s.logits.Head(len(part))
		err := errors.Join(
			be.Gather(last, x, part),
			be.RMSNorm(norm, last, w.norm, eps),
			be.MatMul(logits, norm, w.lmHead),
			be.Read(out[lo*V:(lo+len(part))*V], logits),
		)
		if err != nil {
			return err
		}
	}
	return nil
}

// stepState is what the layers of the step in progress work on.
type stepState struct {
	batch backend.Batch
	n     int
	tr    *trace
}

// stepKey identifies a recorded step: the model's scratch tensors, weights and cache, and the
// batch size.
type stepKey struct {
	m *Model
	n int
}

// layers runs the embedding and the decoder layers of the step in m.s.step, leaving the
// residual stream in m.s.x, issuing the operations on be.
func (m *Model) layers(be backend.Backend) error {
	c, w, s := &m.cfg, m.w, &m.s
	batch, n, tr := s.step.batch, s.step.n, s.step.tr
	x, xb, q, k, v := s.x.Head(n), s.xb.Head(n), s.q.Head(n), s.k.Head(n), s.v.Head(n)
	att, y := s.att.Head(n), s.out.Head(n) // y: a sublayer's output
	var router backend.Tensor
	if tr != nil {
		router = s.router.Head(n)
	}
	eps := float32(c.RMSNormEps)
	attn := backend.AttentionParams{
		Heads: c.NumAttentionHeads, KVHeads: c.NumKeyValueHeads, HeadDim: c.HeadDim,
		Scale: float32(1 / math.Sqrt(float64(c.HeadDim))), SlidingWindow: c.SlidingWindow,
	}
	if err := be.Embed(x, w.embed, batch); err != nil {
		return err
	}
	if err := m.record(tr, 0, x); err != nil {
		return err
	}
	// y holds a sublayer's output until the next norm adds it to x (in one pass where the
	// backend is a backend.ResidualNormer); pending says whether it is still to be added.
	pending := false
	rn, fused := be.(backend.ResidualNormer)
	norm := func(w backend.Weight) error {
		if !pending {
			return be.RMSNorm(xb, x, w, eps)
		}
		pending = false
		if fused {
			return rn.AddRMSNorm(xb, x, y, w, eps)
		}
		if err := be.Add(x, y); err != nil {
			return err
		}
		return be.RMSNorm(xb, x, w, eps)
	}
	for l, ly := range w.layers {
		attn.Layer = l
		// Attention: x += wo · attention(rope(wq·norm(x)), rope(wk·norm(x)), wv·norm(x)).
		// MoE: x += experts(norm(x)).
		if err := norm(ly.attnNorm); err != nil {
			return err
		}
		err := errors.Join(
			be.MatMul(q, xb, ly.wq),
			be.MatMul(k, xb, ly.wk),
			be.MatMul(v, xb, ly.wv),
			be.RoPE(q, batch, c.HeadDim, c.RopeTheta),
			be.RoPE(k, batch, c.HeadDim, c.RopeTheta),
			be.Attention(att, q, k, v, batch, attn),
			be.MatMul(y, att, ly.wo),
		)
		if err != nil {
			return err
		}
		pending = true
		if err := norm(ly.mlpNorm); err != nil {
			return err
		}
		if err := be.MoE(y, xb, ly.experts, c.NumExpertsPerTok, router); err != nil {
			return err
		}
		if tr == nil {
			pending = true
			continue
		}
		// The trace records the residual stream after each layer.
		if err := be.Add(x, y); err != nil {
			return err
		}
		if err := m.readRows(&tr.router[l], router); err != nil {
			return err
		}
		if l+1 < len(w.layers) {
			if err := m.record(tr, l+1, x); err != nil {
				return err
			}
		}
	}
	if pending {
		return be.Add(x, y)
	}
	return nil
}

// record appends t's rows to the trace's hidden state L.
func (m *Model) record(tr *trace, L int, t backend.Tensor) error {
	if tr == nil {
		return nil
	}
	return m.readRows(&tr.hidden[L], t)
}

func (m *Model) readRows(dst *[]float32, t backend.Tensor) error {
	n := len(*dst)
	*dst = append(*dst, make([]float32, t.Rows*t.Cols)...)
	return m.be.Read((*dst)[n:], t)
}
