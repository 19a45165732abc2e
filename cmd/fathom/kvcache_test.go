package main

import (
	"testing"

	"github.com/fathom-llm/fathom/safetensors"
)

func TestKVCacheSize(t *testing.T) {
	for _, tc := range []struct {
		in     string
		tokens int
		bytes  int64
		bad    bool
	}{
		{"8192", 8192, 0, false},
		{"512MiB", 0, 512 << 20, false},
		{"2GB", 0, 2e9, false},
		{"1.5 GiB", 0, 3 << 29, false},
		{"100B", 0, 100, false},
		{"0", 0, 0, true},
		{"-3", 0, 0, true},
		{"12 parsecs", 0, 0, true},
		{"GiB", 0, 0, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			var k kvCacheSize
			err := k.Set(tc.in)
			if (err != nil) != tc.bad || k.tokens != tc.tokens || k.bytes != tc.bytes {
				t.Errorf("Set(%q) = %+v, %v", tc.in, k, err)
			}
		})
	}
}

func TestParseKVType(t *testing.T) {
	for in, want := range map[string]safetensors.DType{"f16": safetensors.F16, "BF16": safetensors.BF16, "float32": safetensors.F32} {
		if got, err := parseKVType(in); got != want || err != nil {
			t.Errorf("parseKVType(%q) = %s, %v", in, got, err)
		}
	}
	if _, err := parseKVType("q8"); err == nil {
		t.Error("q8 accepted")
	}
}
