package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/fathom-llm/fathom/safetensors"
)

// kvCacheSize is the value of --kv-cache: a number of tokens, or of bytes with a unit.
type kvCacheSize struct {
	tokens int
	bytes  int64
	text   string
}

// byteUnits are the units --kv-cache accepts, longest first.
var byteUnits = []struct {
	suffix string
	size   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

func (k *kvCacheSize) String() string { return k.text }

func (k *kvCacheSize) Set(s string) error {
	s = strings.TrimSpace(s)
	for _, u := range byteUnits {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil || !(v > 0) || v*float64(u.size) > 1<<62 {
				return fmt.Errorf("%q is not a positive size in %s", s, u.suffix)
			}
			*k = kvCacheSize{bytes: int64(v * float64(u.size)), text: s}
			return nil
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return fmt.Errorf("%q is neither a positive number of tokens nor of bytes with a unit (KiB, MiB, GiB, KB, MB, GB)", s)
	}
	*k = kvCacheSize{tokens: n, text: s}
	return nil
}

// parseKVType parses --kv-type.
func parseKVType(s string) (safetensors.DType, error) {
	switch strings.ToLower(s) {
	case "f16", "float16", "fp16":
		return safetensors.F16, nil
	case "bf16", "bfloat16":
		return safetensors.BF16, nil
	case "f32", "float32", "fp32":
		return safetensors.F32, nil
	}
	return "", fmt.Errorf("%q is not f16, bf16 or f32", s)
}

// formatBytes writes a size with a binary unit.
func formatBytes(b float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for b >= 1024 && i < len(units)-1 {
		b /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", b)
	}
	return fmt.Sprintf("%.1f %s", b, units[i])
}
