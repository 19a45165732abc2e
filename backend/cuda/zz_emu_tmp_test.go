//go:build cuda && cgo

package cuda

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/backend/backendtest"
)

func TestEmuSplits(t *testing.T) {
	g := open(t, Options{})
	defer g.Close()
	for _, window := range []int{0, 150, 37} {
		const heads, kvh, hd, bs = 4, 1, 32, 16
		c, err := g.NewCache(backend.CacheConfig{Layers: 1, KVHeads: kvh, HeadDim: hd, BlockSize: bs, Blocks: 40})
		if err != nil {
			t.Fatal(err)
		}
		seq, _ := c.NewSequence()
		r := rand.New(rand.NewPCG(1, uint64(window)))
		var K, V [][]float32
		for _, step := range []int{200, 1, 1, 60, 1} {
			start := len(K)
			var toks []backend.Token
			for i := range step {
				toks = append(toks, backend.Token{Seq: seq, Pos: start + i})
			}
			bt, err := c.Prepare(toks)
			if err != nil {
				t.Fatal(err)
			}
			n := len(toks)
			qv := make([]float32, n*heads*hd)
			kv := make([]float32, n*kvh*hd)
			vv := make([]float32, n*kvh*hd)
			for _, s := range [][]float32{qv, kv, vv} {
				for i := range s {
					s[i] = float32(r.NormFloat64())
				}
			}
			for i := range n {
				K = append(K, kv[i*hd:(i+1)*hd])
				V = append(V, vv[i*hd:(i+1)*hd])
			}
			q, k, v, dst := mustTensor(t, g, n, heads*hd), mustTensor(t, g, n, hd), mustTensor(t, g, n, hd), mustTensor(t, g, n, heads*hd)
			g.Write(q, qv)
			g.Write(k, kv)
			g.Write(v, vv)
			p := backend.AttentionParams{Heads: heads, KVHeads: kvh, HeadDim: hd, Scale: float32(1 / math.Sqrt(hd)), SlidingWindow: window}
			if err := g.Attention(dst, q, k, v, bt, p); err != nil {
				t.Fatal(err)
			}
			got := make([]float32, n*heads*hd)
			g.Read(got, dst)
			want := make([]float64, n*heads*hd)
			for i, tok := range toks {
				first := 0
				if window > 0 {
					first = max(0, tok.Pos-window+1)
				}
				for h := range heads {
					qh := qv[(i*heads+h)*hd : (i*heads+h+1)*hd]
					sc := make([]float64, tok.Pos+1-first)
					peak := math.Inf(-1)
					for j := range sc {
						var s float64
						for d := range hd {
							s += float64(qh[d]) * float64(K[first+j][d])
						}
						sc[j] = s / math.Sqrt(hd)
						peak = max(peak, sc[j])
					}
					var sum float64
					for j := range sc {
						sc[j] = math.Exp(sc[j] - peak)
						sum += sc[j]
					}
					for j := range sc {
						for d := range hd {
							want[(i*heads+h)*hd+d] += sc[j] / sum * float64(V[first+j][d])
						}
					}
				}
			}
			_, splits := planAttention(n, kvh, min(start+n, max(window, 0)+(start+n)*boolInt(window == 0)), g.sms)
			e := backendtest.RelErr(got, want)
			t.Logf("window %d step of %d at %d: splits ~%d, relative error %.3g", window, n, start, splits, e)
			if e > 1e-2 {
				t.Errorf("window %d step at %d: relative error %.3g", window, start, e)
			}
		}
		c.Close()
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
