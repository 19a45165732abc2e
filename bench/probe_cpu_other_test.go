//go:build !unix

package bench

import "time"

// cpuTime returns 0 where the processor time is not available: the metrics built on it are
// left out.
func cpuTime() time.Duration { return 0 }
