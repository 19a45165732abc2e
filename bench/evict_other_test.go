//go:build !linux

package bench

import "errors"

// evict is not available without fadvise.
func evict(string) error { return errors.New("no fadvise on this system") }
