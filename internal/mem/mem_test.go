package mem

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
	"unsafe"
)

// mapped reports whether the address p lies in a mapping of this process (Linux only).
func mapped(t *testing.T, p uintptr) bool {
	t.Helper()
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Skip("no /proc/self/maps")
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var lo, hi uintptr
		if _, err := fmt.Sscanf(sc.Text(), "%x-%x", &lo, &hi); err == nil && lo <= p && p < hi {
			return true
		}
	}
	return false
}

func TestAnon(t *testing.T) {
	b, release := Anon(3 << 20)
	if len(b) != 3<<20 {
		t.Fatalf("len %d", len(b))
	}
	for i := range b {
		if b[i] != 0 {
			t.Fatalf("byte %d is %d, not zero", i, b[i])
		}
	}
	b[0], b[len(b)-1] = 1, 2 // writable
	p := uintptr(unsafe.Pointer(&b[0]))
	if runtime.GOOS == "linux" && !mapped(t, p) {
		t.Fatal("the memory is not in the process's mappings")
	}
	release()
	release() // a second call does nothing
	if runtime.GOOS == "linux" && mapped(t, p) {
		t.Fatal("the memory is still mapped after release")
	}
	if b, release := Anon(0); b != nil {
		t.Fatalf("Anon(0) = %d bytes", len(b))
	} else {
		release()
	}
}

// TestOwned checks that the memory of Owned is unmapped once its owner is unreachable.
func TestOwned(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("checks the mappings in /proc")
	}
	owner := new([64]byte)
	b, _ := Owned(owner, 1<<20)
	p := uintptr(unsafe.Pointer(&b[0]))
	b = nil
	runtime.KeepAlive(owner)
	if !mapped(t, p) {
		t.Fatal("the memory is not mapped while its owner lives")
	}
	owner = nil
	for range 100 {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		if !mapped(t, p) {
			return
		}
	}
	t.Fatal("the memory is still mapped after its owner became unreachable")
}
