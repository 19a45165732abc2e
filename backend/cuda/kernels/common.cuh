// common.cuh: helpers shared by the kernel files: the context, error returns, weight element
// loads and warp reductions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "fathom_cuda.h"

struct fc_ctx {
	int device;
	int sms;
	cudaStream_t stream;
	unsigned int *done; // the MoE routing kernel's block counter, zero between launches
	struct fc_blas *blas; // cuBLASLt, once fc_blas_open succeeded (blas.cu)
};

// FC_TRY returns the error of a CUDA call from the enclosing function.
#define FC_TRY(call)                                                                                              \
	do {                                                                                                      \
		cudaError_t e_ = (call);                                                                          \
		if (e_ != cudaSuccess) return (int)e_;                                                            \
	} while (0)

// fc_enter makes the context's device current on the calling host thread: goroutines move
// between threads, so every entry point calls it.
static inline int fc_enter(fc_ctx *c) { return (int)cudaSetDevice(c->device); }

// fc_launched returns the launch error of the last kernel, if any.
static inline int fc_launched() { return (int)cudaGetLastError(); }

static inline unsigned int fc_blocks(size_t n, unsigned int per) { return (unsigned int)((n + per - 1) / per); }

// fc_pad8 rounds k up to a multiple of 8: the row length of a GEMM's bfloat16 activation operand.
__host__ __device__ __forceinline__ int fc_pad8(int k) { return (k + 7) & ~7; }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
	for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
	for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}

__device__ __forceinline__ float silu(float g) { return g / (1.0f + expf(-g)); }

// Eight bfloat16 values in a 16-byte vector, element 0 in the low half of the first word.
// Integer operations, not pointer casts, move them between the vector and floats, so no
// object is read through a pointer of another type.
__device__ __forceinline__ void unpack_bf16x8(uint4 u, float o[8]) {
	const unsigned int w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
	for (int j = 0; j < 4; j++) {
		o[2 * j] = __uint_as_float(w[j] << 16);
		o[2 * j + 1] = __uint_as_float(w[j] & 0xffff0000u);
	}
}

// Eight float16 values in a 16-byte vector, element 0 in the low half of the first word.
__device__ __forceinline__ void unpack_f16x8(uint4 u, float o[8]) {
	const unsigned int w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
	for (int j = 0; j < 4; j++) {
		o[2 * j] = __half2float(__ushort_as_half((unsigned short)(w[j] & 0xffffu)));
		o[2 * j + 1] = __half2float(__ushort_as_half((unsigned short)(w[j] >> 16)));
	}
}

// bf16_split writes v as two bfloat16 parts, hi = bf16(v) and lo = bf16(v − hi), which keep
// about 16 significant bits together.
__device__ __forceinline__ void bf16_split(float v, __nv_bfloat16 *hi, __nv_bfloat16 *lo) {
	*hi = __float2bfloat16(v);
	*lo = __float2bfloat16(v - __bfloat162float(*hi));
}

__device__ __forceinline__ uint4 pack_bf16x8(const float v[8]) {
	unsigned int w[4];
#pragma unroll
	for (int j = 0; j < 4; j++)
		w[j] = (unsigned int)__bfloat16_as_ushort(__float2bfloat16(v[2 * j])) |
		       (unsigned int)__bfloat16_as_ushort(__float2bfloat16(v[2 * j + 1])) << 16;
	return make_uint4(w[0], w[1], w[2], w[3]);
}

// WView is one matrix of a weight (of a stack, matrix e): element (r, k) of a rows×cols
// matrix, with int8 scales per group of columns.
struct WView {
	const void *data;
	const float *scales;
	int rows, cols, group, groups;
};

static inline WView wview(const fc_weight &w) {
	WView v;
	v.data = w.data;
	v.scales = w.scales;
	v.rows = w.rows;
	v.cols = w.cols;
	v.group = w.group > 0 ? w.group : 1;
	v.groups = (w.cols + v.group - 1) / v.group;
	return v;
}

// wmatrix returns matrix e of a stack.
template <int DT> __device__ __forceinline__ WView wmatrix(WView w, int e) {
	size_t off = (size_t)e * w.rows * w.cols;
	if (DT == FC_F32) w.data = (const float *)w.data + off;
	if (DT == FC_BF16) w.data = (const __nv_bfloat16 *)w.data + off;
	if (DT == FC_F16) w.data = (const __half *)w.data + off;
	if (DT == FC_I8) {
		w.data = (const int8_t *)w.data + off;
		w.scales = w.scales + (size_t)e * w.rows * w.groups;
	}
	return w;
}

// wget returns element (r, k).
template <int DT> __device__ __forceinline__ float wget(const WView &w, int r, int k) {
	size_t i = (size_t)r * w.cols + k;
	if (DT == FC_F32) return ((const float *)w.data)[i];
	if (DT == FC_BF16) return __bfloat162float(((const __nv_bfloat16 *)w.data)[i]);
	if (DT == FC_F16) return __half2float(((const __half *)w.data)[i]);
	return (float)((const int8_t *)w.data)[i] * w.scales[(size_t)r * w.groups + k / w.group];
}

// wget8 sets o to elements (r, k..k+7) with vector loads. It requires cols % 8 == 0 and
// k % 8 == 0 (so the loads are aligned), and for int8 a group that is a multiple of 8 (so the
// eight share one scale).
template <int DT> __device__ __forceinline__ void wget8(const WView &w, int r, int k, float o[8]) {
	size_t i = (size_t)r * w.cols + k;
	if (DT == FC_F32) {
		const float4 *p = (const float4 *)((const float *)w.data + i);
		float4 a = p[0], b = p[1];
		o[0] = a.x, o[1] = a.y, o[2] = a.z, o[3] = a.w, o[4] = b.x, o[5] = b.y, o[6] = b.z, o[7] = b.w;
	} else if (DT == FC_BF16) {
		unpack_bf16x8(*(const uint4 *)((const __nv_bfloat16 *)w.data + i), o);
	} else if (DT == FC_F16) {
		unpack_f16x8(*(const uint4 *)((const __half *)w.data + i), o);
	} else {
		uint2 u = *(const uint2 *)((const int8_t *)w.data + i);
		const int8_t *q = (const int8_t *)&u;
		float s = w.scales[(size_t)r * w.groups + k / w.group];
#pragma unroll
		for (int j = 0; j < 8; j++) o[j] = (float)q[j] * s;
	}
}

// load8 sets o to x[i..i+7] for float or bfloat16 activations (i % 8 == 0, aligned).
__device__ __forceinline__ void load8(const float *x, size_t i, float o[8]) {
	const float4 *p = (const float4 *)(x + i);
	float4 a = p[0], b = p[1];
	o[0] = a.x, o[1] = a.y, o[2] = a.z, o[3] = a.w, o[4] = b.x, o[5] = b.y, o[6] = b.z, o[7] = b.w;
}
__device__ __forceinline__ void load8(const __nv_bfloat16 *x, size_t i, float o[8]) {
	unpack_bf16x8(*(const uint4 *)(x + i), o);
}
__device__ __forceinline__ float load1(const float *x, size_t i) { return x[i]; }
__device__ __forceinline__ float load1(const __nv_bfloat16 *x, size_t i) { return __bfloat162float(x[i]); }

// Host-side entry points shared between files.
int fc_launch_moe_gemm(fc_ctx *c, const fc_moe_args *a);
// fc_blas_dense sets y[n, w.rows] = (hi + lo)·wᵀ through cuBLASLt (lo may be NULL; hi and lo
// rows lda apart); FC_ERR_UNSUPPORTED when cuBLASLt cannot.
int fc_blas_dense(fc_ctx *c, float *y, const __nv_bfloat16 *hi, const __nv_bfloat16 *lo, int lda, fc_weight w, int n);
void fc_blas_close(fc_ctx *c);
