// basic.cu: contexts, memory, and the row-wise operations (embedding, RMSNorm, add, gather,
// RoPE, KV cache stores).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.cuh"

extern "C" const char *fc_error_string(int code) {
	if (code == FC_ERR_UNSUPPORTED) return "no cuBLASLt algorithm for these operands";
	if (code == FC_ERR_NO_BLAS) return "no usable cuBLASLt library";
	if (code >= FC_ERR_BLAS) return "cuBLASLt error (code - 100100 is the cublasStatus_t)";
	return cudaGetErrorString((cudaError_t)code);
}

extern "C" int fc_device_count(int *n) {
	*n = 0;
	cudaError_t e = cudaGetDeviceCount(n);
	if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver) {
		cudaGetLastError(); // clear the error: no device is a normal answer here
		*n = 0;
		return 0;
	}
	return (int)e;
}

extern "C" int fc_device_info(int device, char *name, int name_len, size_t *total_mem, int *sms, int *major,
			      int *minor) {
	cudaDeviceProp p;
	FC_TRY(cudaGetDeviceProperties(&p, device));
	snprintf(name, (size_t)name_len, "%s", p.name);
	*total_mem = p.totalGlobalMem;
	*sms = p.multiProcessorCount;
	*major = p.major;
	*minor = p.minor;
	return 0;
}

extern "C" int fc_create(int device, fc_ctx **out) {
	*out = NULL;
	fc_ctx *c = (fc_ctx *)calloc(1, sizeof(fc_ctx));
	if (!c) return (int)cudaErrorMemoryAllocation;
	c->device = device;
	int e = fc_enter(c);
	if (!e) e = (int)cudaDeviceGetAttribute(&c->sms, cudaDevAttrMultiProcessorCount, device);
	if (!e) e = (int)cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
	if (!e) e = (int)cudaMalloc((void **)&c->done, sizeof(unsigned int));
	if (!e) e = (int)cudaMemset(c->done, 0, sizeof(unsigned int));
	if (e) {
		fc_destroy(c);
		return e;
	}
	*out = c;
	return 0;
}

extern "C" void fc_destroy(fc_ctx *c) {
	if (!c) return;
	cudaSetDevice(c->device);
	if (c->stream) cudaStreamSynchronize(c->stream);
	fc_blas_close(c);
	if (c->done) cudaFree(c->done);
	if (c->stream) cudaStreamDestroy(c->stream);
	free(c);
}

extern "C" int fc_mem_info(fc_ctx *c, size_t *free_bytes, size_t *total_bytes) {
	FC_TRY((cudaError_t)fc_enter(c));
	return (int)cudaMemGetInfo(free_bytes, total_bytes);
}

extern "C" int fc_malloc(fc_ctx *c, void **p, size_t bytes) {
	*p = NULL;
	FC_TRY((cudaError_t)fc_enter(c));
	FC_TRY(cudaMalloc(p, bytes ? bytes : 1));
	cudaError_t e = cudaMemsetAsync(*p, 0, bytes, c->stream);
	if (e) {
		cudaFree(*p);
		*p = NULL;
	}
	return (int)e;
}

extern "C" int fc_free(fc_ctx *c, void *p) {
	FC_TRY((cudaError_t)fc_enter(c));
	// The stream may still use the memory: cudaFree waits for the device.
	return (int)cudaFree(p);
}

extern "C" int fc_memset(fc_ctx *c, void *p, size_t bytes) {
	FC_TRY((cudaError_t)fc_enter(c));
	return (int)cudaMemsetAsync(p, 0, bytes, c->stream);
}

extern "C" int fc_upload(fc_ctx *c, void *dst, const void *src, size_t bytes) {
	FC_TRY((cudaError_t)fc_enter(c));
	// From pageable memory the call returns once src has been staged, so src may be reused.
	// Wait anyway: the caller's memory may be freed or unmapped right after.
	FC_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream));
	return (int)cudaStreamSynchronize(c->stream);
}

extern "C" int fc_download(fc_ctx *c, void *dst, const void *src, size_t bytes) {
	FC_TRY((cudaError_t)fc_enter(c));
	FC_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
	return (int)cudaStreamSynchronize(c->stream);
}

extern "C" int fc_copy(fc_ctx *c, void *dst, const void *src, size_t bytes) {
	FC_TRY((cudaError_t)fc_enter(c));
	return (int)cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream);
}

extern "C" int fc_sync(fc_ctx *c) {
	FC_TRY((cudaError_t)fc_enter(c));
	return (int)cudaStreamSynchronize(c->stream);
}

extern "C" int fc_capture_begin(fc_ctx *c) {
	FC_TRY((cudaError_t)fc_enter(c));
	// Relaxed: the goroutine that records may run on several host threads.
	return (int)cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeRelaxed);
}

extern "C" int fc_capture_end(fc_ctx *c, fc_graph **g) {
	*g = NULL;
	FC_TRY((cudaError_t)fc_enter(c));
	cudaGraph_t graph = NULL;
	cudaError_t e = cudaStreamEndCapture(c->stream, &graph);
	if (e != cudaSuccess || graph == NULL) {
		cudaGetLastError(); // a failed recording is not an error of later calls
		return (int)(e != cudaSuccess ? e : cudaErrorStreamCaptureInvalidated);
	}
	cudaGraphExec_t exec = NULL;
	e = cudaGraphInstantiateWithFlags(&exec, graph, 0);
	cudaGraphDestroy(graph);
	if (e != cudaSuccess) return (int)e;
	*g = (fc_graph *)exec;
	return 0;
}

extern "C" int fc_graph_launch(fc_ctx *c, fc_graph *g) {
	FC_TRY((cudaError_t)fc_enter(c));
	return (int)cudaGraphLaunch((cudaGraphExec_t)g, c->stream);
}

extern "C" void fc_graph_destroy(fc_graph *g) {
	if (g) cudaGraphExecDestroy((cudaGraphExec_t)g);
}

// hash64 is splitmix64's finaliser.
__device__ __forceinline__ uint64_t hash64(uint64_t z) {
	z += 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

__global__ void fill_random_kernel(void *p, int dtype, size_t n, uint64_t seed, float scale) {
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
		// A uniform value in [-1, 1).
		float u = (float)(hash64(seed ^ (i * 0x632be59bd9b4e019ull)) >> 40) * (1.0f / 8388608.0f) - 1.0f;
		if (dtype == FC_F32) ((float *)p)[i] = u * scale;
		else if (dtype == FC_BF16) ((__nv_bfloat16 *)p)[i] = __float2bfloat16(u * scale);
		else ((int8_t *)p)[i] = (int8_t)__float2int_rn(u * 127.0f);
	}
}

extern "C" int fc_fill_random(fc_ctx *c, void *p, int dtype, size_t n, uint64_t seed, float scale) {
	FC_TRY((cudaError_t)fc_enter(c));
	if (n == 0) return 0;
	fill_random_kernel<<<(unsigned int)(c->sms * 8), 256, 0, c->stream>>>(p, dtype, n, seed, scale);
	return fc_launched();
}

__global__ void fill_f32_kernel(float *p, size_t n, float v) {
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) p[i] = v;
}

extern "C" int fc_fill_f32(fc_ctx *c, float *p, size_t n, float v) {
	FC_TRY((cudaError_t)fc_enter(c));
	if (n == 0) return 0;
	fill_f32_kernel<<<(unsigned int)(c->sms * 8), 256, 0, c->stream>>>(p, n, v);
	return fc_launched();
}

// embed_kernel: block i copies row ids[i] of the table into row i of dst.
template <int DT> __global__ void embed_kernel(float *dst, WView t, const int32_t *ids) {
	int i = blockIdx.x;
	int id = ids[i];
	for (int k = threadIdx.x; k < t.cols; k += blockDim.x) dst[(size_t)i * t.cols + k] = wget<DT>(t, id, k);
}

extern "C" int fc_embed(fc_ctx *c, float *dst, fc_weight table, const int32_t *ids, int n) {
	FC_TRY((cudaError_t)fc_enter(c));
	if (n == 0) return 0;
	WView t = wview(table);
	switch (table.dtype) {
	case FC_F32: embed_kernel<FC_F32><<<n, 256, 0, c->stream>>>(dst, t, ids); break;
	case FC_BF16: embed_kernel<FC_BF16><<<n, 256, 0, c->stream>>>(dst, t, ids); break;
	case FC_F16: embed_kernel<FC_F16><<<n, 256, 0, c->stream>>>(dst, t, ids); break;
	case FC_I8: embed_kernel<FC_I8><<<n, 256, 0, c->stream>>>(dst, t, ids); break;
	default: return (int)cudaErrorInvalidValue;
	}
	return fc_launched();
}

// block_sum returns the sum of v over the block (blockDim.x a multiple of 32, at most 1024) to
// every thread.
__device__ float block_sum(float v) {
	__shared__ float part[32];
	__shared__ float total;
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	v = warp_sum(v);
	if (lane == 0) part[warp] = v;
	__syncthreads();
	if (warp == 0) {
		float s = lane < (int)(blockDim.x >> 5) ? part[lane] : 0.0f;
		s = warp_sum(s);
		if (lane == 0) total = s;
	}
	__syncthreads();
	return total;
}

// row_threads is the block size of the row kernels: about four elements per thread, so that
// a row's loads are in flight at once (one row per block is latency-bound in decode).
static inline unsigned int row_threads(int d) {
	unsigned int t = ((unsigned int)(d + 3) / 4 + 31) / 32 * 32;
	return t < 32 ? 32 : t > 1024 ? 1024 : t;
}

// rmsnorm_kernel: block i normalises row i.
__global__ void rmsnorm_kernel(float *dst, const float *x, const float *w, int d, float eps) {
	const float *xr = x + (size_t)blockIdx.x * d;
	float *yr = dst + (size_t)blockIdx.x * d;
	float ss = 0.0f;
#pragma unroll 4
	for (int k = threadIdx.x; k < d; k += blockDim.x) ss += xr[k] * xr[k];
	float s = rsqrtf(block_sum(ss) / (float)d + eps);
	for (int k = threadIdx.x; k < d; k += blockDim.x) yr[k] = xr[k] * s * w[k];
}

extern "C" int fc_rmsnorm(fc_ctx *c, float *dst, const float *x, const float *w, int n, int d, float eps) {
	FC_TRY((cudaError_t)fc_enter(c));
	if (n == 0) return 0;
	rmsnorm_kernel<<<n, row_threads(d), 0, c->stream>>>(dst, x, w, d, eps);
	return fc_launched();
}

// add_rmsnorm_kernel: block i adds row i of r into x, then normalises it into dst. Each
// thread reads back only the elements it wrote.
__global__ void add_rmsnorm_kernel(float *dst, float *x, const float *r, const float *w, int d, float eps) {
	float *xr = x + (size_t)blockIdx.x * d;
	const float *rr = r + (size_t)blockIdx.x * d;
	float *yr = dst + (size_t)blockIdx.x * d;
	float ss = 0.0f;
#pragma unroll 4
	for (int k = threadIdx.x; k < d; k += blockDim.x) {
		float v = xr[k] + rr[k];
		xr[k] = v;
		ss += v * v;
	}
	float s = rsqrtf(block_sum(ss) / (float)d + eps);
	for (int k = threadIdx.x; k < d; k += blockDim.x) yr[k] = xr[k] * s * w[k];
}

extern "C" int fc_add_rmsnorm(fc_ctx *c, float *dst, float *x, const float *r, const float *w, int n, int d, float eps) {
	FC_TRY((cudaError_t)fc_enter(c));
	if (n == 0) return 0;
	add_rmsnorm_kernel<<<n, row_threads(d), 0, c->stream>>>(dst, x, r, w, d, eps);
	return fc_launched();
}

__global__ void add_kernel(float *dst, const float *x, size_t count) {
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x)
		dst[i] += x[i];
}

extern "C" int fc_add(fc_ctx *c, float *dst, const float *x, size_t count) {
	FC_TRY((cudaError_t)fc_enter(c));
	if (count == 0) return 0;
	unsigned int blocks = fc_blocks(count, 256);
	if (blocks > (unsigned int)c->sms * 16) blocks = (unsigned int)c->sms * 16;
	add_kernel<<<blocks, 256, 0, c->stream>>>(dst, x, count);
	return fc_launched();
}

__global__ void gather_kernel(float *dst, const float *src, const int32_t *rows, int cols) {
	const float *s = src + (size_t)rows[blockIdx.x] * cols;
	float *d = dst + (size_t)blockIdx.x * cols;
	for (int k = threadIdx.x; k < cols; k += blockDim.x) d[k] = s[k];
}

extern "C" int fc_gather(fc_ctx *c, float *dst, const float *src, const int32_t *rows, int n, int cols) {
	FC_TRY((cudaError_t)fc_enter(c));
	if (n == 0 || cols == 0) return 0;
	gather_kernel<<<n, 256, 0, c->stream>>>(dst, src, rows, cols);
	return fc_launched();
}

// rope_kernel: block (i, h) rotates head h of row i. The angle pos·inv is a float32 product
// and its cosine and sine are taken in double precision and rounded, as the reference does.
__global__ void rope_kernel(float *x, const int32_t *pos, const float *inv, int cols, int head_dim) {
	int half = head_dim / 2;
	float p = (float)pos[blockIdx.x];
	float *row = x + (size_t)blockIdx.x * cols;
	for (int i = threadIdx.x; i < half; i += blockDim.x) {
		int h = blockIdx.y;
		float angle = p * inv[i];
		float cs = (float)cos((double)angle), sn = (float)sin((double)angle);
		float *hd = row + (size_t)h * head_dim;
		float a = hd[i], b = hd[i + half];
		hd[i] = a * cs - b * sn;
		hd[i + half] = b * cs + a * sn;
	}
}

extern "C" int fc_rope(fc_ctx *c, float *x, const int32_t *pos, const float *inv, int n, int cols, int head_dim) {
	FC_TRY((cudaError_t)fc_enter(c));
	if (n == 0 || cols == 0) return 0;
	unsigned int threads = (unsigned int)((head_dim / 2 + 31) / 32 * 32);
	rope_kernel<<<dim3(n, cols / head_dim), threads < 256 ? threads : 256, 0, c->stream>>>(x, pos, inv, cols, head_dim);
	return fc_launched();
}

// kv_store_kernel: block (i, b) stores 256 of token i's keys and values at its slot, as
// float16.
__global__ void kv_store_kernel(__half *kc, __half *vc, const float *k, const float *v, const int32_t *slot,
				int kv_dim) {
	int i = blockIdx.x, j = blockIdx.y * blockDim.x + threadIdx.x;
	if (j >= kv_dim) return;
	size_t at = (size_t)slot[i] * kv_dim + j, from = (size_t)i * kv_dim + j;
	kc[at] = __float2half(k[from]);
	vc[at] = __float2half(v[from]);
}

extern "C" int fc_kv_store(fc_ctx *c, void *kc, void *vc, const float *k, const float *v, const int32_t *slot, int n,
			   int kv_dim, size_t layer_offset) {
	FC_TRY((cudaError_t)fc_enter(c));
	if (n == 0) return 0;
	kv_store_kernel<<<dim3(n, fc_blocks((size_t)kv_dim, 256)), 256, 0, c->stream>>>(
		(__half *)kc + layer_offset, (__half *)vc + layer_offset, k, v, slot, kv_dim);
	return fc_launched();
}
