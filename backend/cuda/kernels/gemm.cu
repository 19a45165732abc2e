// gemm.cu: tensor-core GEMMs (WMMA, bfloat16 inputs, float32 accumulation) for prefill: the
// dense y = x·wᵀ, and the grouped expert GEMMs of the MoE block, whose rows are the (token,
// expert) pairs sorted by expert and whose row tiles come from the routing kernel's tile list.
#include <mma.h>

#include "common.cuh"

using namespace nvcuda;

enum {
	BM = FC_GEMM_BM, // rows (tokens) of a block tile
	BN = 64,         // columns (output features) of a block tile
	BK = 32,         // depth of one k step
	PAD = 8,         // bfloat16 padding of a shared-memory row: rows stay 16-byte aligned, banks shift
	CPAD = 4,        // float padding of an epilogue row
	THREADS = 128,   // four warps, 2×2, each owning a 32×32 quarter of the tile
};

enum { EPI_STORE = 0, EPI_SWIGLU = 1, EPI_SCALE = 2 };

// GemmArgs describe one GEMM: out[r, c] = epilogue(Σ_k A[arow(r), k]·W[c, k]).
struct GemmArgs {
	const void *a;        // activations [*, K], float or bfloat16
	const int32_t *arows; // optional: the activation row of output row r (else r)
	WView w1, w3;         // weights [N, K]; w3 only with two products (SwiGLU)
	int M;                // dense: rows of a and out
	const int32_t *offsets, *tiles, *tile_count; // grouped: expert row ranges and the tile list
	void *out;
	int ldo;
	const float *gain; // EPI_SCALE: the weight of output row r
};

// The shared memory of one block: two stages of (A tile, NB weight tiles), reused by the
// epilogue for the float32 accumulators.
template <int NB> struct GemmSmem {
	static const int ROW = BK + PAD;
	static const int STAGE = (BM + NB * BN) * ROW; // bfloat16 elements
	static const int MAIN = 2 * STAGE * 2;         // bytes
	static const int EPI = NB * BM * (BN + CPAD) * 4;
	static const int BYTES = MAIN > EPI ? MAIN : EPI;
};

// gemm_kernel computes one BM×BN tile. TA: activation type; DT: weight type; NB: number of
// weight products (2: gate and up, combined by SwiGLU); VEC: K % 8 == 0 (eight-element loads).
template <typename TA, int DT, int NB, int EPI, bool GROUPED, bool VEC>
__global__ void __launch_bounds__(THREADS) gemm_kernel(GemmArgs g) {
	typedef GemmSmem<NB> S;
	__shared__ __align__(128) unsigned char smem[S::BYTES];
	__nv_bfloat16 *stage = (__nv_bfloat16 *)smem;

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
	const TA *A = (const TA *)g.a;
	const int tid = threadIdx.x;

	// Each thread moves two 8-element chunks of the A tile and of each weight tile per k step:
	// chunk c of a tile is row c/4, columns (c%4)*8 .. +7.
	const int CHUNKS = BM * BK / 8 / THREADS; // == BN*BK/8/THREADS == 2
	uint4 ra[CHUNKS], rb[NB][CHUNKS];

	auto load = [&](int k0) {
#pragma unroll
		for (int i = 0; i < CHUNKS; i++) {
			int c = tid + i * THREADS, row = c / (BK / 8), k = k0 + (c % (BK / 8)) * 8;
			float v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
			int gr = rowBase + row;
			if (gr < rowEnd) {
				size_t src = (size_t)(g.arows ? g.arows[gr] : gr) * K;
				if (VEC) {
					if (k < K) load8(A, src + k, v);
				} else {
#pragma unroll
					for (int j = 0; j < 8; j++)
						if (k + j < K) v[j] = load1(A, src + k + j);
				}
			}
			ra[i] = pack_bf16x8(v);
#pragma unroll
			for (int b = 0; b < NB; b++) {
				float u[8] = {0, 0, 0, 0, 0, 0, 0, 0};
				int gc = col0 + row;
				if (gc < N) {
					if (VEC) {
						if (k < K) wget8<DT>(w[b], gc, k, u);
					} else {
#pragma unroll
						for (int j = 0; j < 8; j++)
							if (k + j < K) u[j] = wget<DT>(w[b], gc, k + j);
					}
				}
				rb[b][i] = pack_bf16x8(u);
			}
		}
	};
	auto store = [&](int s) {
		__nv_bfloat16 *As = stage + s * S::STAGE;
#pragma unroll
		for (int i = 0; i < CHUNKS; i++) {
			int c = tid + i * THREADS, row = c / (BK / 8), col = (c % (BK / 8)) * 8;
			*(uint4 *)(As + row * S::ROW + col) = ra[i];
#pragma unroll
			for (int b = 0; b < NB; b++) *(uint4 *)(As + (BM + b * BN + row) * S::ROW + col) = rb[b][i];
		}
	};

	const int warp = tid >> 5, wm = warp >> 1, wn = warp & 1;
	wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[NB][2][2];
#pragma unroll
	for (int b = 0; b < NB; b++)
#pragma unroll
		for (int i = 0; i < 2; i++)
#pragma unroll
			for (int j = 0; j < 2; j++) wmma::fill_fragment(acc[b][i][j], 0.0f);

	const int KT = (K + BK - 1) / BK;
	load(0);
	store(0);
	__syncthreads();
	for (int kt = 0; kt < KT; kt++) {
		// Fetch the next k step into registers while the tensor cores work on this one.
		if (kt + 1 < KT) load((kt + 1) * BK);
		const __nv_bfloat16 *As = stage + (kt & 1) * S::STAGE;
#pragma unroll
		for (int kk = 0; kk < BK; kk += 16) {
			wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa[2];
#pragma unroll
			for (int i = 0; i < 2; i++) wmma::load_matrix_sync(fa[i], As + (wm * 32 + i * 16) * S::ROW + kk, S::ROW);
#pragma unroll
			for (int b = 0; b < NB; b++) {
				// The weight tile is stored [n][k]: as the K×N operand it is column-major.
				const __nv_bfloat16 *Bs = As + (BM + b * BN) * S::ROW;
#pragma unroll
				for (int j = 0; j < 2; j++) {
					wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb;
					wmma::load_matrix_sync(fb, Bs + (wn * 32 + j * 16) * S::ROW + kk, S::ROW);
#pragma unroll
					for (int i = 0; i < 2; i++) wmma::mma_sync(acc[b][i][j], fa[i], fb, acc[b][i][j]);
				}
			}
		}
		// The other stage was last read in step kt-1, which ended with a barrier.
		if (kt + 1 < KT) store((kt + 1) & 1);
		__syncthreads();
	}

	// Epilogue: accumulators to shared memory, then each element through the epilogue.
	float *Cs = (float *)smem;
	const int CROW = BN + CPAD;
#pragma unroll
	for (int b = 0; b < NB; b++)
#pragma unroll
		for (int i = 0; i < 2; i++)
#pragma unroll
			for (int j = 0; j < 2; j++)
				wmma::store_matrix_sync(Cs + b * BM * CROW + (wm * 32 + i * 16) * CROW + wn * 32 + j * 16,
							acc[b][i][j], CROW, wmma::mem_row_major);
	__syncthreads();
	for (int idx = tid; idx < BM * BN; idx += THREADS) {
		int r = idx / BN, c = idx % BN, gr = rowBase + r, gc = col0 + c;
		if (gr >= rowEnd || gc >= N) continue;
		float v = Cs[r * CROW + c];
		size_t o = (size_t)gr * g.ldo + gc;
		if (EPI == EPI_STORE) ((float *)g.out)[o] = v;
		if (EPI == EPI_SWIGLU) ((__nv_bfloat16 *)g.out)[o] = __float2bfloat16(silu(v) * Cs[BM * CROW + r * CROW + c]);
		if (EPI == EPI_SCALE) ((float *)g.out)[o] = g.gain[gr] * v;
	}
}

template <typename TA, int NB, int EPI, bool GROUPED>
static int launch(fc_ctx *c, int dtype, dim3 grid, const GemmArgs &g) {
	bool vec = g.w1.cols % 8 == 0 && (dtype != FC_I8 || g.w1.group % 8 == 0);
#define FC_GEMM_CASE(DT)                                                                                          \
	case DT:                                                                                                  \
		if (vec) gemm_kernel<TA, DT, NB, EPI, GROUPED, true><<<grid, THREADS, 0, c->stream>>>(g);        \
		else gemm_kernel<TA, DT, NB, EPI, GROUPED, false><<<grid, THREADS, 0, c->stream>>>(g);           \
		break;
	switch (dtype) {
		FC_GEMM_CASE(FC_F32)
		FC_GEMM_CASE(FC_BF16)
		FC_GEMM_CASE(FC_I8)
	default: return (int)cudaErrorInvalidValue;
	}
#undef FC_GEMM_CASE
	return fc_launched();
}

int fc_launch_gemm_dense(fc_ctx *c, float *y, const float *x, const fc_weight &w, int n) {
	GemmArgs g = {};
	g.a = x;
	g.w1 = g.w3 = wview(w);
	g.M = n;
	g.out = y;
	g.ldo = w.rows;
	dim3 grid(fc_blocks((size_t)w.rows, BN), fc_blocks((size_t)n, BM));
	if (grid.y > 65535) return (int)cudaErrorInvalidConfiguration;
	return launch<float, 1, EPI_STORE, false>(c, w.dtype, grid, g);
}

extern "C" int fc_gemm(fc_ctx *c, float *y, const float *x, fc_weight w, int n) {
	FC_TRY((cudaError_t)fc_enter(c));
	if (n == 0 || w.rows == 0) return 0;
	return fc_launch_gemm_dense(c, y, x, w, n);
}

// fc_launch_moe_gemm runs the two grouped GEMMs of the MoE block after routing:
// h[r] = silu(x[token(r)]·w1[e]ᵀ) ⊙ (x[token(r)]·w3[e]ᵀ), then y[r] = gain[r]·(h[r]·w2[e]ᵀ).
int fc_launch_moe_gemm(fc_ctx *c, const fc_moe_args *a) {
	if (a->max_tiles > 65535) return (int)cudaErrorInvalidConfiguration;
	GemmArgs g = {};
	g.offsets = a->offsets;
	g.tiles = a->tiles;
	g.tile_count = a->tile_count;

	g.a = a->x;
	g.arows = a->sorted_token;
	g.w1 = wview(a->w1);
	g.w3 = wview(a->w3);
	g.out = a->h;
	g.ldo = a->inner;
	int e = launch<float, 2, EPI_SWIGLU, true>(c, a->w1.dtype, dim3(fc_blocks((size_t)a->inner, BN), a->max_tiles), g);
	if (e) return e;

	g.a = a->h;
	g.arows = NULL;
	g.w1 = g.w3 = wview(a->w2);
	g.out = a->y;
	g.ldo = a->hidden;
	g.gain = a->sorted_gain;
	return launch<__nv_bfloat16, 1, EPI_SCALE, true>(c, a->w2.dtype, dim3(fc_blocks((size_t)a->hidden, BN), a->max_tiles), g);
}
