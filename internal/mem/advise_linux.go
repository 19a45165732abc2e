package mem

import "golang.org/x/sys/unix"

// AdviseHuge asks for transparent huge pages for b (page-aligned, as a mapping is); 4 KB
// pages serve too.
func AdviseHuge(b []byte) {
	if len(b) > 0 {
		_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
	}
}
