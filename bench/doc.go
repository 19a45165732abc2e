// Package bench holds fathom's standard benchmarks: the fixture model, synthetic models with
// the exact Mixtral 8x7B layer shapes, and the machine's roofline figures (memory bandwidth,
// peak FLOP/s) measured in the same run.
package bench
