// Package cpu is the pure-Go backend: weights stay in their stored dtype in the memory map,
// kernels accumulate in float32, and work is split over a persistent worker pool.
//
// The inner loops are internal/kernels' (dot products, matrix products over a range of
// weight rows, softmax, RMSNorm, SiLU): vector code where the CPU has it, generic Go under
// the purego build tag. A matrix product splits the weight's rows over the workers in
// shares of 16 output columns, so workers never write the same cache line and every weight
// row is read once per batch. The mixture-of-experts operation groups a batch's tokens by
// expert and runs each chosen expert once over its tokens. The KV cache is paged: blocks of
// positions from a shared pool, in float32. Operations allocate nothing in the steady state.
package cpu
