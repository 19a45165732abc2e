package tokenizer

import "math"

// mergeQueue is a 4-ary min-heap of merge candidates ordered by key. Both BPE encoders pack
// their priority (merge rank, or negated piece score) and the left symbol's position into
// one key, so that "best merge, leftmost first" is a single integer comparison.
type mergeQueue []queueItem

type queueItem struct {
	key   uint64 // priority << 32 | left position
	right int32  // right symbol (SentencePiece) or merged id (BPE)
	size  int32  // byte length of the merged piece (SentencePiece)
}

func (q *mergeQueue) push(it queueItem) {
	*q = append(*q, it)
	a := *q
	i := len(a) - 1
	for i > 0 {
		p := (i - 1) / 4
		if a[p].key <= it.key {
			break
		}
		a[i] = a[p]
		i = p
	}
	a[i] = it
}

// init orders a queue filled in any order, in linear time.
func (q mergeQueue) init() {
	if len(q) < 2 {
		return
	}
	for i := (len(q) - 2) / 4; i >= 0; i-- {
		q.down(i)
	}
}

func (q *mergeQueue) pop() queueItem {
	a := *q
	top := a[0]
	last := len(a) - 1
	a[0] = a[last]
	*q = a[:last]
	if last > 0 {
		(*q).down(0)
	}
	return top
}

func (q mergeQueue) down(i int) {
	it := q[i]
	n := len(q)
	for {
		c := 4*i + 1
		if c >= n {
			break
		}
		best := c
		for k := c + 1; k < c+4 && k < n; k++ {
			if q[k].key < q[best].key {
				best = k
			}
		}
		if q[best].key >= it.key {
			break
		}
		q[i] = q[best]
		i = best
	}
	q[i] = it
}

// scoreKey maps a float32 score to a uint32 that sorts best (highest) score first.
func scoreKey(f float32) uint32 {
	b := math.Float32bits(f)
	if b&(1<<31) != 0 {
		b = ^b
	} else {
		b |= 1 << 31
	}
	return ^b
}
