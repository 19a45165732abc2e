// gemm.cu: tensor-core GEMMs (WMMA, bfloat16 inputs, float32 accumulation) for prefill: the
// dense y = x·wᵀ, and the grouped expert GEMMs of the MoE block, whose rows are the (token,
// expert) pairs sorted by expert and whose row tiles come from the routing kernel's tile list.
//
// The activation operand is converted ahead into bfloat16 (rows gathered, K padded to a
// multiple of 8), as hi = bf16(x) and, in the exact mode, lo = bf16(x − hi): the kernel then
// multiplies both against the weights, so that the product keeps about 16 bits of each
// activation instead of 8, at twice the tensor-core work. Tiles stream into shared memory
// through a cp.async pipeline several k steps deep.
#include <cuda_pipeline.h>
#include <mma.h>

#include "common.cuh"

using namespace nvcuda;

// FC_GEMM_WN is the width of a warp's part of the tile: 64 (one block per multiprocessor,
// each fragment reused four times) or 32 (two blocks).
#ifndef FC_GEMM_WN
#define FC_GEMM_WN 64
#endif
// FC_GEMM_BK is the depth of one k step (a barrier per step).
#ifndef FC_GEMM_BK
#define FC_GEMM_BK 64
#endif

enum {
	BM = FC_GEMM_BM,  // rows (tokens) of a block tile
	WN = FC_GEMM_WN,  // columns of a warp's part
	FN = WN / 16,     // its fragments across
	BNT = 4 * WN,     // columns of a block tile, over all its weights (NB weights of BNT/NB columns)
	MINB = WN == 32 ? 2 : 1, // blocks per multiprocessor
	BK = FC_GEMM_BK,  // depth of one k step
	PAD = 8,         // bfloat16 padding of a shared-memory row: rows stay 16-byte aligned, banks shift
	ROW = BK + PAD,  // bfloat16 elements of a shared-memory row
	CPAD = 4,        // float padding of an epilogue row
	THREADS = 256,   // eight warps, 2×4, each owning a 64×WN part of the tile
};

enum { EPI_STORE = 0, EPI_SWIGLU = 1, EPI_SCALE = 2 };

// GemmArgs describe one GEMM: out[r, c] = epilogue(Σ_k A[r, k]·W[c, k]).
struct GemmArgs {
	const __nv_bfloat16 *ahi, *alo; // activations [*, lda]; alo only in the exact mode
	int lda;                        // K rounded up to a multiple of 8, zero-padded
	WView w1, w3;                   // weights [N, K]; w3 only with two products (SwiGLU)
	int M;                          // dense: rows of A and out
	const int32_t *offsets, *tiles, *tile_count; // grouped: expert row ranges and the tile list
	void *out, *out_lo;             // EPI_SWIGLU writes bfloat16 hi (and lo) parts, lda_out wide
	int ldo;
	const float *gain; // EPI_SCALE: the weight of output row r
};

// Shared memory: STAGES × (A hi, A lo when exact, the weight tile, its lo part when split),
// as many k steps in flight as fit MINB blocks in a multiprocessor's 227 KB (at most four),
// reused by the epilogue for the float32 tile.
template <bool EXACT, bool BSPLIT> struct GemmSmem {
	static const int A = BM * ROW, B = BNT * ROW;                             // bfloat16 elements
	static const int STAGE = (EXACT ? 2 : 1) * A + (BSPLIT ? 2 : 1) * B;      // bfloat16 elements
	static const int FIT = 225 * 1024 / MINB / (STAGE * 2);
	static const int STAGES = FIT > 4 ? 4 : FIT; // k steps in flight
	static_assert(STAGES >= 2, "a k step does not fit twice");
	static const int MAIN = STAGES * STAGE * 2;                               // bytes
	static const int EPI = BM * (BNT + CPAD) * 4;         // bytes
	static const int BYTES = MAIN > EPI ? MAIN : EPI;
};

// copy16 starts a 16-byte copy from global to shared memory, zero-filling when !valid.
__device__ __forceinline__ void copy16(void *dst, const void *src, bool valid) {
	__pipeline_memcpy_async(dst, src, 16, valid ? 0 : 16);
}

// gemm_kernel computes one BM×BNT tile: BNT/NB columns of each of NB weight products (2: gate
// and up, combined by SwiGLU). DT: weight type; VEC: K % 8 == 0 (bfloat16 weights then stream
// through cp.async; other weights are converted through registers). In the exact mode float16
// weights are split like the activations (exactly: 11 bits are a bfloat16 and a remainder),
// and the products hi·hi, lo·hi and hi·lo are summed.
template <int DT, int NB, int EPI, bool GROUPED, bool EXACT, bool VEC>
__global__ void __launch_bounds__(THREADS, MINB) gemm_kernel(GemmArgs g) {
	const bool BSPLIT = EXACT && DT == FC_F16;
	typedef GemmSmem<EXACT, BSPLIT> S;
	extern __shared__ float sm[];
	__nv_bfloat16 *stages = (__nv_bfloat16 *)sm;
	const int BN = BNT / NB; // columns of each weight

	int rowBase, rowEnd, e = 0;
	if (GROUPED) {
		int t = blockIdx.y;
		if (t >= *g.tile_count) return;
		e = g.tiles[2 * t];
		rowBase = g.offsets[e] + g.tiles[2 * t + 1];
		rowEnd = min(g.offsets[e + 1], rowBase + BM);
	} else {
		rowBase = blockIdx.y * BM;
		rowEnd = min(g.M, rowBase + BM);
	}
	WView w[NB];
	w[0] = wmatrix<DT>(g.w1, e);
	if (NB == 2) w[NB - 1] = wmatrix<DT>(g.w3, e);
	const int N = g.w1.rows, K = g.w1.cols;
	const int col0 = blockIdx.x * BN;
	const int tid = threadIdx.x;

	// Per k step the threads move the tiles in 16-byte chunks: chunk c is row c/4, columns
	// (c%4)*8 .. +7. Row j of the weight tile is column col0 + j%BN of weight j/BN.
	const int ACHUNKS = BM * BK / 8 / THREADS, BCHUNKS = BNT * BK / 8 / THREADS;
	auto load = [&](int stage, int k0) {
		__nv_bfloat16 *As = stages + stage * S::STAGE, *Bs = As + (EXACT ? 2 : 1) * S::A;
#pragma unroll
		for (int i = 0; i < ACHUNKS; i++) {
			int c = tid + i * THREADS, row = c / (BK / 8), col = (c % (BK / 8)) * 8, k = k0 + col;
			int gr = rowBase + row;
			bool ok = gr < rowEnd && k < g.lda;
			size_t src = ok ? (size_t)gr * g.lda + k : 0;
			copy16(As + row * ROW + col, g.ahi + src, ok);
			if (EXACT) copy16(As + S::A + row * ROW + col, g.alo + src, ok);
		}
#pragma unroll
		for (int i = 0; i < BCHUNKS; i++) {
			int c = tid + i * THREADS, row = c / (BK / 8), col = (c % (BK / 8)) * 8, k = k0 + col;
			const WView &wb = w[row / BN];
			int gc = col0 + row % BN;
			if (DT == FC_BF16 && VEC) {
				bool okb = gc < N && k < K;
				copy16(Bs + row * ROW + col,
				       (const __nv_bfloat16 *)wb.data + (okb ? (size_t)gc * K + k : 0), okb);
			} else {
				float u[8] = {0, 0, 0, 0, 0, 0, 0, 0};
				if (gc < N) {
					if (VEC) {
						if (k < K) wget8<DT>(wb, gc, k, u);
					} else {
#pragma unroll
						for (int j = 0; j < 8; j++)
							if (k + j < K) u[j] = wget<DT>(wb, gc, k + j);
					}
				}
				*(uint4 *)(Bs + row * ROW + col) = pack_bf16x8(u);
				if (BSPLIT) {
					float rest[8];
#pragma unroll
					for (int j = 0; j < 8; j++) {
						__nv_bfloat16 hi, lo;
						bf16_split(u[j], &hi, &lo);
						rest[j] = __bfloat162float(lo);
					}
					*(uint4 *)(Bs + S::B + row * ROW + col) = pack_bf16x8(rest);
				}
			}
		}
	};

	const int warp = tid >> 5, wm = warp >> 2, wn = warp & 3;
	wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[4][FN];
#pragma unroll
	for (int i = 0; i < 4; i++)
#pragma unroll
		for (int j = 0; j < FN; j++) wmma::fill_fragment(acc[i][j], 0.0f);

	const int KT = (g.lda + BK - 1) / BK;
#pragma unroll
	for (int s = 0; s < S::STAGES - 1; s++) {
		if (s < KT) load(s, s * BK);
		__pipeline_commit();
	}
	for (int kt = 0; kt < KT; kt++) {
		__pipeline_wait_prior(S::STAGES - 2); // step kt has landed (this thread's copies)
		__syncthreads();                   // everyone's copies; step kt-1's stage is free
		if (kt + S::STAGES - 1 < KT) load((kt + S::STAGES - 1) % S::STAGES, (kt + S::STAGES - 1) * BK);
		__pipeline_commit();
		const __nv_bfloat16 *As = stages + (kt % S::STAGES) * S::STAGE, *Bs = As + (EXACT ? 2 : 1) * S::A;
#pragma unroll
		for (int kk = 0; kk < BK; kk += 16) {
			wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb[FN];
#pragma unroll
			for (int j = 0; j < FN; j++) wmma::load_matrix_sync(fb[j], Bs + (wn * WN + j * 16) * ROW + kk, ROW);
#pragma unroll
			for (int part = 0; part < (EXACT ? 2 : 1); part++) {
#pragma unroll
				for (int i = 0; i < 4; i++) {
					wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
					wmma::load_matrix_sync(fa, As + part * S::A + (wm * 64 + i * 16) * ROW + kk, ROW);
#pragma unroll
					for (int j = 0; j < FN; j++) wmma::mma_sync(acc[i][j], fa, fb[j], acc[i][j]);
				}
			}
			if (BSPLIT) {
#pragma unroll
				for (int j = 0; j < FN; j++)
					wmma::load_matrix_sync(fb[j], Bs + S::B + (wn * WN + j * 16) * ROW + kk, ROW);
#pragma unroll
				for (int i = 0; i < 4; i++) {
					wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
					wmma::load_matrix_sync(fa, As + (wm * 64 + i * 16) * ROW + kk, ROW);
#pragma unroll
					for (int j = 0; j < FN; j++) wmma::mma_sync(acc[i][j], fa, fb[j], acc[i][j]);
				}
			}
		}
	}
	__pipeline_wait_prior(0);
	__syncthreads(); // the stages are free for the epilogue

	// Epilogue: accumulators to shared memory, then each element through the epilogue.
	float *Cs = sm;
	const int CROW = BNT + CPAD;
#pragma unroll
	for (int i = 0; i < 4; i++)
#pragma unroll
		for (int j = 0; j < FN; j++)
			wmma::store_matrix_sync(Cs + (wm * 64 + i * 16) * CROW + wn * WN + j * 16, acc[i][j], CROW,
						wmma::mem_row_major);
	__syncthreads();
	for (int idx = tid; idx < BM * BN; idx += THREADS) {
		int r = idx / BN, c = idx % BN, gr = rowBase + r, gc = col0 + c;
		if (gr >= rowEnd) continue;
		size_t o = (size_t)gr * g.ldo + gc;
		if (EPI == EPI_SWIGLU) {
			// h's padding columns (N .. ldo) must read as zeros in the next GEMM.
			if (gc >= g.ldo) continue;
			float v = gc < N ? silu(Cs[r * CROW + c]) * Cs[r * CROW + BN + c] : 0.0f;
			__nv_bfloat16 hi, lo;
			bf16_split(v, &hi, &lo);
			((__nv_bfloat16 *)g.out)[o] = hi;
			if (EXACT) ((__nv_bfloat16 *)g.out_lo)[o] = lo;
			continue;
		}
		if (gc >= N) continue;
		float v = Cs[r * CROW + c];
		if (EPI == EPI_STORE) ((float *)g.out)[o] = v;
		if (EPI == EPI_SCALE) ((float *)g.out)[o] = g.gain[gr] * v;
	}
}

// convert_rows_kernel: block r writes row r of the activation operand: x[rows ? rows[r] : r]
// as bfloat16 hi (and lo) parts, K values padded with zeros to lda.
__global__ void convert_rows_kernel(__nv_bfloat16 *hi, __nv_bfloat16 *lo, const float *x, const int32_t *rows, int K,
				    int lda) {
	const float *src = x + (size_t)(rows ? rows[blockIdx.x] : blockIdx.x) * K;
	size_t at = (size_t)blockIdx.x * lda;
	for (int k = threadIdx.x; k < lda; k += blockDim.x) {
		__nv_bfloat16 h, l;
		bf16_split(k < K ? src[k] : 0.0f, &h, &l);
		hi[at + k] = h;
		if (lo) lo[at + k] = l;
	}
}

static int convert_rows(fc_ctx *c, __nv_bfloat16 *hi, __nv_bfloat16 *lo, const float *x, const int32_t *rows, int n,
			int K) {
	convert_rows_kernel<<<n, 256, 0, c->stream>>>(hi, lo, x, rows, K, fc_pad8(K));
	return fc_launched();
}

template <int NB, int EPI, bool GROUPED, bool EXACT, bool VEC>
static int launch_dt(fc_ctx *c, int dtype, dim3 grid, const GemmArgs &g) {
#define FC_GEMM_CASE(DT)                                                                                          \
	case DT: {                                                                                                \
		auto kernel = gemm_kernel<DT, NB, EPI, GROUPED, EXACT, VEC>;                                      \
		const int smem = GemmSmem<EXACT, EXACT && DT == FC_F16>::BYTES;                                  \
		FC_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));          \
		FC_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, 100));       \
		kernel<<<grid, THREADS, smem, c->stream>>>(g);                                                    \
		break;                                                                                            \
	}
	switch (dtype) {
		FC_GEMM_CASE(FC_BF16)
		FC_GEMM_CASE(FC_F16)
		FC_GEMM_CASE(FC_I8)
	default: return (int)cudaErrorInvalidValue;
	}
#undef FC_GEMM_CASE
	return fc_launched();
}

// launch picks the kernel for the weights' type, the mode and K's alignment.
template <int NB, int EPI, bool GROUPED>
static int launch(fc_ctx *c, int dtype, dim3 grid, const GemmArgs &g) {
	bool vec = g.w1.cols % 8 == 0 && (dtype != FC_I8 || g.w1.group % 8 == 0);
	bool exact = g.alo != NULL;
	if (exact) return vec ? launch_dt<NB, EPI, GROUPED, true, true>(c, dtype, grid, g)
			      : launch_dt<NB, EPI, GROUPED, true, false>(c, dtype, grid, g);
	return vec ? launch_dt<NB, EPI, GROUPED, false, true>(c, dtype, grid, g)
		   : launch_dt<NB, EPI, GROUPED, false, false>(c, dtype, grid, g);
}

extern "C" int fc_gemm(fc_ctx *c, float *y, const float *x, fc_weight w, int n, void *scratch, int exact) {
	FC_TRY((cudaError_t)fc_enter(c));
	if (n == 0 || w.rows == 0) return 0;
	dim3 grid(fc_blocks((size_t)w.rows, BNT), fc_blocks((size_t)n, BM));
	if (grid.y > 65535) return (int)cudaErrorInvalidConfiguration;
	GemmArgs g = {};
	g.lda = fc_pad8(w.cols);
	g.ahi = (const __nv_bfloat16 *)scratch;
	g.alo = exact ? g.ahi + (size_t)n * g.lda : NULL;
	FC_TRY((cudaError_t)convert_rows(c, (__nv_bfloat16 *)g.ahi, (__nv_bfloat16 *)g.alo, x, NULL, n, w.cols));
	int e = fc_blas_dense(c, y, g.ahi, g.alo, g.lda, w, n);
	if (e != FC_ERR_UNSUPPORTED) return e;
	g.w1 = g.w3 = wview(w);
	g.M = n;
	g.out = y;
	g.ldo = w.rows;
	return launch<1, EPI_STORE, false>(c, w.dtype, grid, g);
}

// fc_launch_moe_gemm runs the two grouped GEMMs of the MoE block after routing:
// h[r] = silu(x[token(r)]·w1[e]ᵀ) ⊙ (x[token(r)]·w3[e]ᵀ), then y[r] = gain[r]·(h[r]·w2[e]ᵀ).
int fc_launch_moe_gemm(fc_ctx *c, const fc_moe_args *a) {
	if (a->max_tiles > 65535) return (int)cudaErrorInvalidConfiguration;
	const int P = a->n * a->top_k;
	GemmArgs g = {};
	g.offsets = a->offsets;
	g.tiles = a->tiles;
	g.tile_count = a->tile_count;

	// The tokens' rows in sorted order, as the first product's operand.
	g.lda = fc_pad8(a->hidden);
	g.ahi = (const __nv_bfloat16 *)a->xa;
	g.alo = a->exact ? g.ahi + (size_t)P * g.lda : NULL;
	FC_TRY((cudaError_t)convert_rows(c, (__nv_bfloat16 *)g.ahi, (__nv_bfloat16 *)g.alo, a->x, a->sorted_token, P,
					 a->hidden));
	g.w1 = wview(a->w1);
	g.w3 = wview(a->w3);
	const int ldh = fc_pad8(a->inner);
	g.out = a->h;
	g.out_lo = a->exact ? (__nv_bfloat16 *)a->h + (size_t)P * ldh : NULL;
	g.ldo = ldh;
	int e = launch<2, EPI_SWIGLU, true>(c, a->w1.dtype, dim3(fc_blocks((size_t)a->inner, BNT / 2), a->max_tiles), g);
	if (e) return e;

	g.ahi = (const __nv_bfloat16 *)a->h;
	g.alo = (const __nv_bfloat16 *)g.out_lo;
	g.lda = ldh;
	g.w1 = g.w3 = wview(a->w2);
	g.out = a->y;
	g.out_lo = NULL;
	g.ldo = a->hidden;
	g.gain = a->sorted_gain;
	return launch<1, EPI_SCALE, true>(c, a->w2.dtype, dim3(fc_blocks((size_t)a->hidden, BNT), a->max_tiles), g);
}
