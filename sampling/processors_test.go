package sampling

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"testing"

	"github.com/fathom-llm/fathom/internal/fixtures"
)

// readF32Tensors reads the float32 tensors of a small safetensors file: an 8-byte
// little-endian header length, a JSON header, then the data.
func readF32Tensors(t *testing.T, path string) map[string][]float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(b)
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &hdr); err != nil {
		t.Fatal(err)
	}
	data := b[8+n:]
	out := map[string][]float32{}
	for name, raw := range hdr {
		if name == "__metadata__" {
			continue
		}
		var info struct {
			DType   string   `json:"dtype"`
			Offsets [2]int64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(raw, &info); err != nil {
			t.Fatal(err)
		}
		if info.DType != "F32" {
			t.Fatalf("%s: dtype %s", name, info.DType)
		}
		raw := data[info.Offsets[0]:info.Offsets[1]]
		v := make([]float32, len(raw)/4)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		out[name] = v
	}
	return out
}

type processorFixture struct {
	Vocab   int   `json:"vocab"`
	History []int `json:"history"`
	Cases   []struct {
		Name string `json:"name"`
		Kept int    `json:"kept"`
	} `json:"cases"`
}

func loadProcessorFixture(t *testing.T) (processorFixture, map[string][]float32) {
	t.Helper()
	var fx processorFixture
	b, err := os.ReadFile(fixtures.Path(t, "reference", "logits_processors.reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &fx); err != nil {
		t.Fatal(err)
	}
	return fx, readF32Tensors(t, fixtures.Path(t, "reference", "logits_processors.reference.safetensors"))
}

// TestProcessorsMatchReference applies each processor alone to the reference input and
// compares with the reference output: the same kept set, values within 1e-6 relative.
func TestProcessorsMatchReference(t *testing.T) {
	fx, tensors := loadProcessorFixture(t)
	input := tensors["input_logits"]
	if len(input) != fx.Vocab {
		t.Fatalf("input has %d logits, vocab %d", len(input), fx.Vocab)
	}
	apply := map[string]func([]float32){
		"repetition_penalty_1.3": func(x []float32) { ApplyRepetitionPenalty(x, fx.History, 1.3) },
		"repetition_penalty_0.8": func(x []float32) { ApplyRepetitionPenalty(x, fx.History, 0.8) },
		"temperature_0.7":        func(x []float32) { ApplyTemperature(x, 0.7) },
		"top_k_40":               func(x []float32) { ApplyTopK(x, 40) },
		"top_p_0.9":              func(x []float32) { ApplyTopP(x, 0.9) },
		"top_p_0.5":              func(x []float32) { ApplyTopP(x, 0.5) },
		"min_p_0.05":             func(x []float32) { ApplyMinP(x, 0.05) },
		"min_p_0.2":              func(x []float32) { ApplyMinP(x, 0.2) },
	}
	for _, c := range fx.Cases {
		t.Run(c.Name, func(t *testing.T) {
			f, ok := apply[c.Name]
			if !ok {
				t.Fatalf("no processor for case %q", c.Name)
			}
			want, ok := tensors[c.Name]
			if !ok {
				t.Fatalf("no reference tensor %q", c.Name)
			}
			got := append([]float32(nil), input...)
			f(got)
			kept := 0
			for i := range want {
				wInf, gInf := math.IsInf(float64(want[i]), -1), math.IsInf(float64(got[i]), -1)
				if wInf != gInf {
					t.Fatalf("token %d: got %v, want %v", i, got[i], want[i])
				}
				if wInf {
					continue
				}
				kept++
				if d := math.Abs(float64(got[i]) - float64(want[i])); d > 1e-6*math.Abs(float64(want[i])) {
					t.Errorf("token %d: got %v, want %v", i, got[i], want[i])
				}
			}
			if kept != c.Kept {
				t.Errorf("kept %d tokens, reference says %d", kept, c.Kept)
			}
		})
	}
}
