// Package cpu is the pure-Go backend: weights stay in their stored dtype in the memory map,
// kernels accumulate in float32, and work is split over a persistent worker pool.
package cpu
