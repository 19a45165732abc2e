// blas.cu: products through cuBLASLt, for the shapes where a tuned library beats this
// package's own kernels: dense products of more than a few rows, and the expert products of a
// mixture-of-experts block of more than a few tokens (routing, SwiGLU and the routing weights
// stay in small kernels around them).
//
// The library is loaded at run time (dlopen), not linked: the static library of a toolkit is
// close to a gigabyte, and the newest cuBLASLt on the machine (CUDA 12 and later ship Hopper's
// wgmma kernels) serves a binary built with an older toolkit. The few entry points and
// constants used are declared here; they have been stable since CUDA 11. Without the library
// (or with the CPU emulation, which runs a plain product instead) the callers use the
// package's own tensor-core kernels.
//
// Products are y[m, n] = A[m, k]·W[n, k]ᵀ with row-major bfloat16 A and W and float32 y: in
// cuBLASLt's column-major terms yᵀ = op(W)·Aᵀ with op = transpose, the "TN" case.
#include <stdlib.h>
#include <string.h>

#include <map>
#include <mutex>
#include <tuple>

#ifndef FC_EMU
#include <dlfcn.h>
#endif

#include "common.cuh"

namespace {

// The part of cuBLASLt's C interface used here.
typedef void *LtHandle;
typedef void *LtDesc;
typedef void *LtLayout;
typedef void *LtPref;
struct LtAlgo {
	uint64_t data[8];
};
struct LtHeuristic {
	LtAlgo algo;
	size_t workspace;
	int state;
	float waves;
	int reserved[4];
};
enum {
	LT_COMPUTE_32F = 68,          // cublasComputeType_t CUBLAS_COMPUTE_32F
	LT_R_32F = 0,                 // cudaDataType CUDA_R_32F
	LT_R_16BF = 14,               // CUDA_R_16BF
	LT_DESC_TRANSA = 3,           // cublasLtMatmulDescAttributes_t
	LT_DESC_TRANSB = 4,           //
	LT_OP_N = 0,                  // cublasOperation_t
	LT_OP_T = 1,                  //
	LT_LAYOUT_BATCH_COUNT = 5,    // cublasLtMatrixLayoutAttribute_t (int32)
	LT_LAYOUT_BATCH_STRIDE = 6,   // (int64, elements)
	LT_PREF_MAX_WORKSPACE = 1,    // cublasLtMatmulPreferenceAttributes_t (uint64)
	LT_PREF_ALIGN_A = 5,          // (uint32, bytes; B, C, D follow)
	LT_STATUS_NOT_SUPPORTED = 15, // cublasStatus_t CUBLAS_STATUS_NOT_SUPPORTED
};

struct LtApi {
	size_t (*GetVersion)();
	int (*Create)(LtHandle *);
	int (*Destroy)(LtHandle);
	int (*DescCreate)(LtDesc *, int compute, int scale);
	int (*DescDestroy)(LtDesc);
	int (*DescSet)(LtDesc, int attr, const void *buf, size_t size);
	int (*LayoutCreate)(LtLayout *, int type, uint64_t rows, uint64_t cols, int64_t ld);
	int (*LayoutDestroy)(LtLayout);
	int (*LayoutSet)(LtLayout, int attr, const void *buf, size_t size);
	int (*PrefCreate)(LtPref *);
	int (*PrefDestroy)(LtPref);
	int (*PrefSet)(LtPref, int attr, const void *buf, size_t size);
	int (*Heuristic)(LtHandle, LtDesc, LtLayout a, LtLayout b, LtLayout c, LtLayout d, LtPref, int requested,
			 LtHeuristic *results, int *returned);
	int (*Matmul)(LtHandle, LtDesc, const void *alpha, const void *a, LtLayout, const void *b, LtLayout,
		      const void *beta, const void *c, LtLayout, void *d, LtLayout, const LtAlgo *algo, void *workspace,
		      size_t workspace_bytes, cudaStream_t stream);
};

// A GEMM: d[b][r, c] = Σ_k a[b][r, k]·w[b][c, k] (+ d[b][r, c] when accumulate) for batch
// entries b, each operand `stride` elements after the previous one.
struct Gemm {
	int m, n, k, batch;
	const __nv_bfloat16 *a;
	long long lda, stride_a;
	const __nv_bfloat16 *w;
	long long ldw, stride_w;
	float *d;
	long long ldd, stride_d;
	bool accumulate;
};

// Plan is a product's descriptors and algorithm, kept per shape, strides and alignment.
struct Plan {
	LtDesc desc;
	LtLayout la, lb, lc;
	LtAlgo algo;
	size_t workspace;
};
typedef std::tuple<int, int, int, int, long long, long long, long long, long long, long long, long long, int, int,
		   int, int>
	PlanKey;

// The library, loaded once per process.
std::mutex lib_mu;
bool lib_tried;
int lib_status; // 0, or why the library is unusable
LtApi lt;
size_t lib_version;

const size_t WORKSPACE = 32u << 20;
const size_t MAX_PLANS = 512;

} // namespace

// The per-context state: the handle, the workspace and the plans.
struct fc_blas {
	LtHandle handle;
	void *workspace;
	std::map<PlanKey, Plan> plans;
};

#ifndef FC_EMU
static int load_library(const char *path) {
	static const char *names[] = {"libcublasLt.so", "libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11"};
	void *so = NULL;
	if (path && *path) so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	for (size_t i = 0; !so && !(path && *path) && i < sizeof names / sizeof names[0]; i++)
		so = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
	if (!so) return FC_ERR_NO_BLAS;
	struct {
		void **fn;
		const char *name;
	} syms[] = {
		{(void **)&lt.GetVersion, "cublasLtGetVersion"},
		{(void **)&lt.Create, "cublasLtCreate"},
		{(void **)&lt.Destroy, "cublasLtDestroy"},
		{(void **)&lt.DescCreate, "cublasLtMatmulDescCreate"},
		{(void **)&lt.DescDestroy, "cublasLtMatmulDescDestroy"},
		{(void **)&lt.DescSet, "cublasLtMatmulDescSetAttribute"},
		{(void **)&lt.LayoutCreate, "cublasLtMatrixLayoutCreate"},
		{(void **)&lt.LayoutDestroy, "cublasLtMatrixLayoutDestroy"},
		{(void **)&lt.LayoutSet, "cublasLtMatrixLayoutSetAttribute"},
		{(void **)&lt.PrefCreate, "cublasLtMatmulPreferenceCreate"},
		{(void **)&lt.PrefDestroy, "cublasLtMatmulPreferenceDestroy"},
		{(void **)&lt.PrefSet, "cublasLtMatmulPreferenceSetAttribute"},
		{(void **)&lt.Heuristic, "cublasLtMatmulAlgoGetHeuristic"},
		{(void **)&lt.Matmul, "cublasLtMatmul"},
	};
	for (auto &s : syms) {
		*s.fn = dlsym(so, s.name);
		if (!*s.fn) return FC_ERR_NO_BLAS; // the library stays loaded, unused
	}
	lib_version = lt.GetVersion();
	return 0;
}
#endif

extern "C" int fc_blas_open(fc_ctx *c, const char *path, int *version) {
	*version = 0;
	FC_TRY((cudaError_t)fc_enter(c));
	if (c->blas) {
		*version = (int)lib_version;
		return 0;
	}
	{
		std::lock_guard<std::mutex> lock(lib_mu);
		if (!lib_tried) {
			lib_tried = true;
#ifdef FC_EMU
			(void)path;
			lib_status = 0;
			lib_version = 1; // the emulation's plain product
#else
			lib_status = load_library(path);
#endif
		}
		if (lib_status) return lib_status;
	}
	fc_blas *b = new fc_blas();
#ifndef FC_EMU
	int s = lt.Create(&b->handle);
	if (s) {
		delete b;
		return FC_ERR_BLAS + s;
	}
#endif
	cudaError_t e = cudaMalloc(&b->workspace, WORKSPACE);
	if (e != cudaSuccess) {
#ifndef FC_EMU
		lt.Destroy(b->handle);
#endif
		delete b;
		return (int)e;
	}
	c->blas = b;
	*version = (int)lib_version;
	return 0;
}

static void drop_plans(fc_blas *b) {
#ifndef FC_EMU
	for (auto &kv : b->plans) {
		lt.LayoutDestroy(kv.second.la);
		lt.LayoutDestroy(kv.second.lb);
		lt.LayoutDestroy(kv.second.lc);
		lt.DescDestroy(kv.second.desc);
	}
#endif
	b->plans.clear();
}

void fc_blas_close(fc_ctx *c) {
	fc_blas *b = c->blas;
	if (!b) return;
	drop_plans(b);
#ifndef FC_EMU
	lt.Destroy(b->handle);
#endif
	cudaFree(b->workspace);
	delete b;
	c->blas = NULL;
}

// alignment returns the alignment in bytes (at most 256) that every matrix of a batch keeps.
static unsigned int alignment(const void *p, long long stride_bytes, int batch) {
	unsigned long long v = (unsigned long long)(uintptr_t)p | 256ull;
	if (batch > 1) v |= (unsigned long long)stride_bytes;
	return (unsigned int)(v & (~v + 1));
}

#ifdef FC_EMU
// The emulation's product: one thread per output, float32 sums in k order.
__global__ void plain_gemm_kernel(Gemm g) {
	const int b = blockIdx.y;
	for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (long long)g.m * g.n;
	     i += (long long)gridDim.x * blockDim.x) {
		const int r = (int)(i / g.n), col = (int)(i % g.n);
		const __nv_bfloat16 *a = g.a + b * g.stride_a + r * g.lda, *w = g.w + b * g.stride_w + col * g.ldw;
		float s = 0.0f;
		for (int k = 0; k < g.k; k++) s += __bfloat162float(a[k]) * __bfloat162float(w[k]);
		float *d = g.d + b * g.stride_d + r * g.ldd + col;
		*d = g.accumulate ? *d + s : s;
	}
}

static int run(fc_ctx *c, const Gemm &g) {
	if (g.m == 0 || g.n == 0 || g.batch == 0) return 0;
	plain_gemm_kernel<<<dim3(4, g.batch), 64, 0, c->stream>>>(g);
	return fc_launched();
}
#else
// plan returns the plan of a product, making it (and asking the library for its best
// algorithm) the first time.
static int plan(fc_blas *b, const Gemm &g, Plan **out) {
	const unsigned int aa = alignment(g.w, 2 * g.stride_w, g.batch), ab = alignment(g.a, 2 * g.stride_a, g.batch),
			   ad = alignment(g.d, 4 * g.stride_d, g.batch);
	PlanKey key(g.m, g.n, g.k, g.batch, g.lda, g.stride_a, g.ldw, g.stride_w, g.ldd, g.stride_d, g.accumulate, aa,
		    ab, ad);
	auto it = b->plans.find(key);
	if (it != b->plans.end()) {
		*out = &it->second;
		return 0;
	}
	if (b->plans.size() >= MAX_PLANS) drop_plans(b);
	Plan p = {};
	LtPref pref = NULL;
	int s = lt.DescCreate(&p.desc, LT_COMPUTE_32F, LT_R_32F);
	const int32_t opT = LT_OP_T, opN = LT_OP_N;
	if (!s) s = lt.DescSet(p.desc, LT_DESC_TRANSA, &opT, sizeof opT);
	if (!s) s = lt.DescSet(p.desc, LT_DESC_TRANSB, &opN, sizeof opN);
	// Column-major: A = w stored k×n (transposed by the product), B = a stored k×m, C = D = y
	// stored n×m.
	if (!s) s = lt.LayoutCreate(&p.la, LT_R_16BF, (uint64_t)g.k, (uint64_t)g.n, g.ldw);
	if (!s) s = lt.LayoutCreate(&p.lb, LT_R_16BF, (uint64_t)g.k, (uint64_t)g.m, g.lda);
	if (!s) s = lt.LayoutCreate(&p.lc, LT_R_32F, (uint64_t)g.n, (uint64_t)g.m, g.ldd);
	if (!s && g.batch > 1) {
		const int32_t count = g.batch;
		const LtLayout layouts[3] = {p.la, p.lb, p.lc};
		const int64_t strides[3] = {g.stride_w, g.stride_a, g.stride_d};
		for (int i = 0; i < 3 && !s; i++) {
			s = lt.LayoutSet(layouts[i], LT_LAYOUT_BATCH_COUNT, &count, sizeof count);
			if (!s) s = lt.LayoutSet(layouts[i], LT_LAYOUT_BATCH_STRIDE, &strides[i], sizeof strides[i]);
		}
	}
	if (!s) s = lt.PrefCreate(&pref);
	const uint64_t ws = WORKSPACE;
	if (!s) s = lt.PrefSet(pref, LT_PREF_MAX_WORKSPACE, &ws, sizeof ws);
	const uint32_t aligns[4] = {aa, ab, ad, ad};
	for (int i = 0; i < 4 && !s; i++) s = lt.PrefSet(pref, LT_PREF_ALIGN_A + i, &aligns[i], sizeof aligns[i]);
	LtHeuristic h = {};
	int found = 0;
	if (!s) s = lt.Heuristic(b->handle, p.desc, p.la, p.lb, p.lc, p.lc, pref, 1, &h, &found);
	if (pref) lt.PrefDestroy(pref);
	if (!s && found < 1) s = LT_STATUS_NOT_SUPPORTED;
	if (s) {
		if (p.la) lt.LayoutDestroy(p.la);
		if (p.lb) lt.LayoutDestroy(p.lb);
		if (p.lc) lt.LayoutDestroy(p.lc);
		if (p.desc) lt.DescDestroy(p.desc);
		return s == LT_STATUS_NOT_SUPPORTED ? FC_ERR_UNSUPPORTED : FC_ERR_BLAS + s;
	}
	p.algo = h.algo;
	p.workspace = h.workspace;
	*out = &(b->plans[key] = p);
	return 0;
}

static int run(fc_ctx *c, const Gemm &g) {
	if (g.m == 0 || g.n == 0 || g.batch == 0) return 0;
	Plan *p;
	int e = plan(c->blas, g, &p);
	if (e) return e;
	const float one = 1.0f, beta = g.accumulate ? 1.0f : 0.0f;
	int s = lt.Matmul(c->blas->handle, p->desc, &one, g.w, p->la, g.a, p->lb, &beta, g.d, p->lc, g.d, p->lc, &p->algo,
			  c->blas->workspace, p->workspace, c->stream);
	if (s == LT_STATUS_NOT_SUPPORTED) return FC_ERR_UNSUPPORTED;
	return s ? FC_ERR_BLAS + s : 0;
}
#endif

int fc_blas_dense(fc_ctx *c, float *y, const __nv_bfloat16 *hi, const __nv_bfloat16 *lo, int lda, fc_weight w, int n) {
	if (!c->blas || w.dtype != FC_BF16) return FC_ERR_UNSUPPORTED;
	Gemm g = {};
	g.m = n;
	g.n = w.rows;
	g.k = w.cols;
	g.batch = 1;
	g.a = hi;
	g.lda = lda;
	g.w = (const __nv_bfloat16 *)w.data;
	g.ldw = w.cols;
	g.d = y;
	g.ldd = w.rows;
	int e = run(c, g);
	if (e || !lo) return e;
	// The lo parts of the activations, added to the same outputs.
	g.a = lo;
	g.accumulate = true;
	return run(c, g);
}

// The experts through cuBLASLt. Expert e owns `parts`·cap rows of each buffer from row
// e·parts·cap: its pairs' rows (rank j within the expert at row j), then, in the exact mode,
// their lo parts from row cap on. So each projection is one batched product over the experts
// with rows, not pairs, as its m, and the weights are read once however the activations are
// split. cap is at least every expert's pair count (the host reads the counts, or uses the
// token count, which bounds them); rows past an expert's count hold stale values whose
// products nothing reads.

// expert_of returns the expert of sorted row r (offsets[e] <= r < offsets[e+1]).
__device__ __forceinline__ int expert_of(const int32_t *offsets, int r) {
	int e = 0;
	while (offsets[e + 1] <= r) e++;
	return e;
}

// moe_blas_row returns the buffer row of sorted row r's hi part.
__device__ __forceinline__ size_t moe_blas_row(const fc_moe_args &a, int parts, int r) {
	const int e = expert_of(a.offsets, r);
	return (size_t)e * parts * a.cap + (r - a.offsets[e]);
}

// moe_blas_pack: block r writes sorted row r's token as bfloat16 hi (and lo) parts.
__global__ void moe_blas_pack(fc_moe_args a, int parts, int ldx) {
	const int r = blockIdx.x;
	const size_t row = moe_blas_row(a, parts, r);
	const float *src = a.x + (size_t)a.sorted_token[r] * a.hidden;
	__nv_bfloat16 *hi = (__nv_bfloat16 *)a.bx + row * ldx, *lo = hi + (size_t)a.cap * ldx;
	for (int k = threadIdx.x; k < a.hidden; k += blockDim.x) {
		__nv_bfloat16 h, l;
		bf16_split(src[k], &h, &l);
		hi[k] = h;
		if (parts == 2) lo[k] = l;
	}
}

// moe_blas_swiglu: block (r, b) computes 256 columns of sorted row r's h = silu(g) ⊙ u from
// the gate and up products (the sum of their hi and lo rows), as bfloat16 hi (and lo) parts.
__global__ void moe_blas_swiglu(fc_moe_args a, int parts, int ldi) {
	const int r = blockIdx.x, c = blockIdx.y * blockDim.x + threadIdx.x;
	if (c >= a.inner) return;
	const size_t row = moe_blas_row(a, parts, r), at = row * ldi + c, lo = (size_t)a.cap * ldi;
	float g = a.bd1[at], u = a.bd3[at];
	if (parts == 2) g += a.bd1[at + lo], u += a.bd3[at + lo];
	__nv_bfloat16 h, l;
	bf16_split(silu(g) * u, &h, &l);
	__nv_bfloat16 *out = (__nv_bfloat16 *)a.bx;
	out[at] = h;
	if (parts == 2) out[at + lo] = l;
}

// moe_blas_sum: out[i] = Σ_k gain[p]·y[p] over token i's pairs p = i·top_k + k in rank order;
// block (i, b) sums 256 columns.
__global__ void moe_blas_sum(fc_moe_args a, int parts, int ldh) {
	const int i = blockIdx.x, c = blockIdx.y * blockDim.x + threadIdx.x;
	if (c >= a.hidden) return;
	const float *y = a.bd1;
	float s = 0.0f;
	for (int k = 0; k < a.top_k; k++) {
		const int p = i * a.top_k + k;
		const size_t at = moe_blas_row(a, parts, a.inv[p]) * ldh + c;
		float v = y[at];
		if (parts == 2) v += y[at + (size_t)a.cap * ldh];
		s += a.gain[p] * v;
	}
	a.out[(size_t)i * a.hidden + c] = s;
}

extern "C" int fc_moe_blas(fc_ctx *c, const fc_moe_args *args) {
	FC_TRY((cudaError_t)fc_enter(c));
	// Launches take copies (the CPU emulation records arguments, not what pointers point to).
	const fc_moe_args copy = *args, *a = &copy;
	if (!c->blas || a->w1.dtype != FC_BF16 || a->cap < 1) return FC_ERR_UNSUPPORTED;
	if (a->n == 0) return 0;
	const int parts = a->exact ? 2 : 1, P = a->n * a->top_k, E = a->experts, H = a->hidden, I = a->inner;
	const int ldx = fc_pad8(H), ldi = fc_pad8(I);
	const long long rows = (long long)parts * a->cap; // rows of one expert

	moe_blas_pack<<<P, 256, 0, c->stream>>>(copy, parts, ldx);
	FC_TRY((cudaError_t)fc_launched());
	Gemm g = {};
	g.m = (int)rows;
	g.batch = E;
	// Gate and up: [rows, H]·[I, H]ᵀ per expert.
	g.n = I;
	g.k = H;
	g.a = (const __nv_bfloat16 *)a->bx;
	g.lda = ldx;
	g.stride_a = rows * ldx;
	g.ldw = H;
	g.stride_w = (long long)I * H;
	g.ldd = ldi;
	g.stride_d = rows * ldi;
	g.w = (const __nv_bfloat16 *)a->w1.data;
	g.d = a->bd1;
	int e = run(c, g);
	if (e) return e;
	g.w = (const __nv_bfloat16 *)a->w3.data;
	g.d = a->bd3;
	if ((e = run(c, g))) return e;
	moe_blas_swiglu<<<dim3(P, fc_blocks((size_t)I, 256)), 256, 0, c->stream>>>(copy, parts, ldi);
	FC_TRY((cudaError_t)fc_launched());
	// Down: [rows, I]·[H, I]ᵀ per expert, into bd1 (the gate products are spent).
	g.n = H;
	g.k = I;
	g.lda = ldi;
	g.stride_a = rows * ldi;
	g.ldw = I;
	g.stride_w = (long long)H * I;
	g.ldd = ldx;
	g.stride_d = rows * ldx;
	g.w = (const __nv_bfloat16 *)a->w2.data;
	g.d = a->bd1;
	if ((e = run(c, g))) return e;
	moe_blas_sum<<<dim3(a->n, fc_blocks((size_t)H, 256)), 256, 0, c->stream>>>(copy, parts, ldx);
	return fc_launched();
}
