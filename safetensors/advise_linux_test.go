package safetensors

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"
)

// TestMappingAsksForHugePages checks that Open's mapping of a file carries the huge-page
// advice (VmFlags "hg" in /proc/self/smaps), and the memory of OpenOptions.InMemory too.
func TestMappingAsksForHugePages(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage/enabled"); err != nil {
		t.Skip("this kernel has no transparent huge pages")
	}
	path := filepath.Join(t.TempDir(), SingleFileName)
	big := Tensor{Name: "w", DType: U8, Shape: []int{4 << 20}, Data: make([]byte, 4<<20)}
	if err := WriteFile(path, []Tensor{big}, nil); err != nil {
		t.Fatal(err)
	}
	for _, o := range []OpenOptions{{}, {InMemory: true}} {
		f, err := OpenWith(path, o)
		if err != nil {
			t.Fatal(err)
		}
		w, err := f.Tensor("w")
		if err != nil {
			t.Fatal(err)
		}
		flags, err := vmFlags(uintptr(unsafe.Pointer(&w.Data[0])))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(" "+flags+" ", " hg ") {
			t.Errorf("in memory %v: the mapping's flags are %q, without hg", o.InMemory, flags)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// vmFlags returns the VmFlags of the mapping of this process that holds address p.
func vmFlags(p uintptr) (string, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return "", err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	in := false
	for s.Scan() {
		line := s.Text()
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x ", &lo, &hi); n == 2 {
			in = lo <= p && p < hi
			continue
		}
		if flags, ok := strings.CutPrefix(line, "VmFlags:"); ok && in {
			return strings.TrimSpace(flags), nil
		}
	}
	if err := s.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("no mapping holds %#x", p)
}
