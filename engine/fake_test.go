package engine

import (
	"errors"
	"fmt"
	"sync"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/sampling"
)

// fakeModel is a model whose logits are a hash of the token history that it reads back from
// its own paged KV cache through the step's block tables, so that a wrong table entry, a
// block shared that should not be, or a block reused while still needed changes the tokens
// (or fails the step): every engine test compares the tokens with reference, which computes
// the same logits from the true history.
type fakeModel struct {
	lay Layout

	mu    sync.Mutex
	slots []fakeSlot
	steps []stepRecord
	// fail, when set, may fail a step before it runs.
	fail func(s *Step) error
	// hook, when set, runs at the start of each step.
	hook func(s *Step)
}

// fakeSlot is one cache position: the token stored there and its position.
type fakeSlot struct {
	written bool
	pos, id int
}

// stepRecord is what a step ran: per sequence of the step (by its first token), the number
// of tokens, and the blocks its table holds.
type stepRecord struct {
	tokens int
	seqs   []stepSeq
}

type stepSeq struct {
	first  backend.Token
	n      int
	blocks []int // the table's blocks, noBlock entries dropped
	row    bool
}

func newFake(lay Layout) *fakeModel {
	if lay.VocabSize == 0 {
		lay.VocabSize = 32
	}
	if lay.MaxStepTokens == 0 {
		lay.MaxStepTokens = 512
	}
	if lay.ContextLength == 0 {
		lay.ContextLength = 1024
	}
	return &fakeModel{lay: lay, slots: make([]fakeSlot, lay.Blocks*lay.BlockSize)}
}

func (f *fakeModel) Layout() Layout { return f.lay }

var errFakeRead = errors.New("fake: read of a position not written")

func (f *fakeModel) Forward(s *Step, logits []float32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hook != nil {
		f.hook(s)
	}
	if f.fail != nil {
		if err := f.fail(s); err != nil {
			return err
		}
	}
	bs, V := f.lay.BlockSize, f.lay.VocabSize
	if len(s.Tokens) == 0 || len(s.Tokens) > f.lay.MaxStepTokens || len(logits) != len(s.Rows)*V {
		return fmt.Errorf("fake: step of %d tokens, %d rows, %d logits", len(s.Tokens), len(s.Rows), len(logits))
	}
	slot := func(t backend.Token) (int, error) {
		if t.Seq < 0 || t.Seq >= len(s.Tables) {
			return 0, fmt.Errorf("fake: sequence %d of %d", t.Seq, len(s.Tables))
		}
		table := s.Tables[t.Seq]
		if t.Pos < 0 || t.Pos/bs >= len(table) || table[t.Pos/bs] < 0 || table[t.Pos/bs] >= f.lay.Blocks {
			return 0, fmt.Errorf("fake: position %d of sequence %d not in its table %v", t.Pos, t.Seq, table)
		}
		return table[t.Pos/bs]*bs + t.Pos%bs, nil
	}
	// Record the step, checking that each sequence's tokens are consecutive.
	rec := stepRecord{tokens: len(s.Tokens)}
	for i, t := range s.Tokens {
		if i > 0 && t.Seq == s.Tokens[i-1].Seq {
			if t.Pos != s.Tokens[i-1].Pos+1 {
				return fmt.Errorf("fake: sequence %d jumps from %d to %d", t.Seq, s.Tokens[i-1].Pos, t.Pos)
			}
			rec.seqs[len(rec.seqs)-1].n++
			continue
		}
		var blocks []int
		for _, b := range s.Tables[t.Seq] {
			if b != noBlock {
				blocks = append(blocks, b)
			}
		}
		rec.seqs = append(rec.seqs, stepSeq{first: t, n: 1, blocks: blocks})
	}
	// Store every token first, as a backend's attention does.
	for _, t := range s.Tokens {
		at, err := slot(t)
		if err != nil {
			return err
		}
		f.slots[at] = fakeSlot{written: true, pos: t.Pos, id: t.ID}
	}
	for r, row := range s.Rows {
		t := s.Tokens[row]
		lo := 0
		if w := f.lay.SlidingWindow; w > 0 {
			lo = max(0, t.Pos-w+1)
		}
		h := historySeed
		for p := lo; p <= t.Pos; p++ {
			at, err := slot(backend.Token{Seq: t.Seq, Pos: p})
			if err != nil {
				return err
			}
			sl := f.slots[at]
			if !sl.written || sl.pos != p {
				return fmt.Errorf("%w: sequence %d position %d (slot %d holds %+v)", errFakeRead, t.Seq, p, at, sl)
			}
			h = mix(h, sl.id, p)
		}
		fill(logits[r*V:(r+1)*V], h)
		for i := range rec.seqs {
			if rec.seqs[i].first.Seq == t.Seq {
				rec.seqs[i].row = true
			}
		}
	}
	f.steps = append(f.steps, rec)
	return nil
}

// records returns the steps run so far.
func (f *fakeModel) records() []stepRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]stepRecord(nil), f.steps...)
}

const historySeed uint64 = 0x9e3779b97f4a7c15

// mix folds token id at position pos into the history hash h.
func mix(h uint64, id, pos int) uint64 {
	h ^= uint64(id)*0xbf58476d1ce4e5b9 + uint64(pos)*0x94d049bb133111eb
	h ^= h >> 31
	h *= 0xd6e9f4a2c1b3e58d
	return h ^ h>>29
}

// fill sets logits from history hash h: values spread over [-4, 4).
func fill(logits []float32, h uint64) {
	for v := range logits {
		x := mix(h, v, -1)
		logits[v] = float32(float64(x>>11)/(1<<53)*8 - 4)
	}
}

// reference generates a choice's tokens without the engine: the fake model's logits from
// the true history, sampled with the choice's parameters.
func reference(lay Layout, prompt []int, p sampling.Params, maxNew int, eos ...int) ([]int, error) {
	sampler, err := sampling.NewSampler(p, lay.VocabSize, prompt)
	if err != nil {
		return nil, err
	}
	tokens := append([]int(nil), prompt...)
	var out []int
	logits := make([]float32, lay.VocabSize)
	for len(out) < maxNew {
		lo := 0
		if w := lay.SlidingWindow; w > 0 {
			lo = max(0, len(tokens)-w)
		}
		h := uint64(historySeed)
		for pos := lo; pos < len(tokens); pos++ {
			h = mix(h, tokens[pos], pos)
		}
		fill(logits, h)
		id, err := sampler.Sample(logits)
		if err != nil {
			return nil, err
		}
		out = append(out, id)
		if p.IsStopToken(id, eos...) {
			break
		}
		tokens = append(tokens, id)
	}
	return out, nil
}
