// Package cpu is the pure-Go backend: weights stay in their stored dtype in the memory map
// (or, bound with BindQuantized, as q8 or q4 copies made once at load), kernels accumulate
// in float32, and work is split over a persistent worker pool. Matrices with rows too wide
// for their activations to stay in L1 (Mixtral's expert down projections: 14,336 values)
// are kept as copies in column panels, which a product with one token streams from memory
// in order against a slice of the activations that does stay there.
//
// The inner loops are internal/kernels' (dot products, matrix products over a range of
// weight rows, softmax, RMSNorm, SiLU): vector code where the CPU has it, generic Go under
// the purego build tag. A matrix product splits the weight's rows over the workers in
// shares of 16 output columns, so workers never write the same cache line and every weight
// row is read once per batch; for a few tokens, which stream the weights from memory, the
// rows are cut into more shares that the workers claim as they go. The mixture-of-experts
// operation groups a batch's tokens by expert and runs every chosen expert once over its
// tokens, all the experts in two parallel phases (gate and up projections with SiLU, then
// the down projection with the routing weights). Quantized products quantize the
// activations to int8 per group of 32 and multiply in integers (VNNI where the CPU has
// it). Options.BF16Activations rounds the activations of bfloat16 products to bfloat16 for
// the AVX512_BF16 dot products. The KV cache is paged: blocks of positions from a shared
// pool, in float16 by default (bfloat16 and float32 as options), each block's keys stored
// transposed so that attention multiplies a tile of query rows by a whole block at once.
// Operations on weights as stored allocate nothing in the steady state.
package cpu
