// attention.cu: causal attention over the paged KV cache, for prefill and decode alike. Block
// (token i, KV head h, split s) attends the query heads of h's group (one warp each) over the
// positions of split s of token i's window, 32 positions per shared-memory tile, with an online
// softmax in float32. With several splits (few tokens: decode) each split writes a partial
// result that attention_combine merges. The split count is fixed by the host; each block works
// out its share from the token's position, so a launch does not depend on the positions.
#include <math.h>

#include "common.cuh"

enum { ATT_TILE = 32, ATT_MIN_TILES = 2, ATT_MAX_WARPS = 8 };

static inline size_t att_smem(int head_dim, int warps) {
	return ((size_t)ATT_TILE * (head_dim + 1) + (size_t)ATT_TILE * head_dim + (size_t)warps * head_dim) * sizeof(float) +
	       ATT_TILE * sizeof(int);
}

// DPL: head dimensions per lane, ceil(head_dim/32); lane owns dimensions lane + 32*j.
template <int DPL>
__global__ void attention_kernel(float *dst, const float *q, const __half *kc, const __half *vc,
				 const int32_t *pos, const int32_t *table_off, const int32_t *tables, fc_attn_params p,
				 float *part_acc, float *part_ml) {
	extern __shared__ float sm[];
	const unsigned full = 0xffffffffu;
	const int hd = p.head_dim, G = p.heads / p.kv_heads, kvDim = p.kv_heads * hd;
	const int i = blockIdx.x, kvh = blockIdx.y, s = blockIdx.z;
	const int warps = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	float *Ks = sm;                            // [ATT_TILE][hd+1]: odd stride, lanes hit distinct banks
	float *Vs = Ks + ATT_TILE * (hd + 1);      // [ATT_TILE][hd]
	float *Qs = Vs + ATT_TILE * hd;            // [warps][hd]
	int *Slot = (int *)(Qs + warps * hd);      // [ATT_TILE]: the tile's cache slots, -1 past hi

	// The positions this block attends: [lo, hi), split s of token i's window [first, P] cut
	// into splits chunks of whole tiles (at least ATT_MIN_TILES; later splits may be empty).
	const int P = pos[i];
	const int first = p.window > 0 ? max(0, P - p.window + 1) : 0;
	const int chunk = max(ATT_MIN_TILES, (P - first + ATT_TILE * p.splits) / (ATT_TILE * p.splits)) * ATT_TILE;
	const int lo = first + s * chunk, hi = min(P + 1, lo + chunk);
	const int32_t *table = tables + table_off[i];

	for (int h0 = 0; h0 < G; h0 += warps) {
		const int g = h0 + warp, head = kvh * G + g;
		const bool active = g < G;
		if (active)
			for (int d = lane; d < hd; d += 32) Qs[warp * hd + d] = q[((size_t)i * p.heads + head) * hd + d];
		float m = -INFINITY, l = 0.0f, acc[DPL];
#pragma unroll
		for (int j = 0; j < DPL; j++) acc[j] = 0.0f;

		for (int t0 = lo; t0 < hi; t0 += ATT_TILE) {
			__syncthreads(); // the previous tile is consumed; Qs is written
			if (threadIdx.x < ATT_TILE) {
				int pp = t0 + threadIdx.x;
				Slot[threadIdx.x] = pp < hi ? table[pp / p.block_size] * p.block_size + pp % p.block_size : -1;
			}
			__syncthreads();
			// Keys and values to shared memory as floats: eight per 16-byte load when rows
			// allow (then every load of the tile is in flight at once).
			const size_t base = p.layer_offset + (size_t)kvh * hd;
			if (hd % 8 == 0) {
				const int chunks = hd / 8;
#pragma unroll 4
				for (int idx = threadIdx.x; idx < ATT_TILE * chunks; idx += blockDim.x) {
					int j = idx / chunks, d = (idx % chunks) * 8, slot = Slot[j];
					float kv[8] = {0, 0, 0, 0, 0, 0, 0, 0}, vv[8] = {0, 0, 0, 0, 0, 0, 0, 0};
					if (slot >= 0) {
						size_t at = base + (size_t)slot * kvDim + d;
						unpack_f16x8(*(const uint4 *)(kc + at), kv);
						unpack_f16x8(*(const uint4 *)(vc + at), vv);
					}
#pragma unroll
					for (int e = 0; e < 8; e++) {
						Ks[j * (hd + 1) + d + e] = kv[e];
						Vs[j * hd + d + e] = vv[e];
					}
				}
			} else {
				for (int idx = threadIdx.x; idx < ATT_TILE * hd; idx += blockDim.x) {
					int j = idx / hd, d = idx % hd, slot = Slot[j];
					float kv = 0.0f, vv = 0.0f;
					if (slot >= 0) {
						size_t at = base + (size_t)slot * kvDim + d;
						kv = __half2float(kc[at]);
						vv = __half2float(vc[at]);
					}
					Ks[j * (hd + 1) + d] = kv;
					Vs[j * hd + d] = vv;
				}
			}
			__syncthreads();
			if (!active) continue;
			// Lane j scores position t0+j.
			const int pp = t0 + lane;
			float sc = -INFINITY;
			if (pp < hi) {
				float dot = 0.0f;
				for (int d = 0; d < hd; d++) dot = fmaf(Qs[warp * hd + d], Ks[lane * (hd + 1) + d], dot);
				sc = dot * p.scale;
			}
			// Position t0 < hi is valid, so the tile's maximum is finite.
			const float mnew = fmaxf(m, warp_max(sc));
			const float pj = pp < hi ? expf(sc - mnew) : 0.0f;
			const float corr = expf(m - mnew); // 0 while m is -inf
			l = l * corr + warp_sum(pj);
#pragma unroll
			for (int j = 0; j < DPL; j++) acc[j] *= corr;
			const int count = min(ATT_TILE, hi - t0);
			for (int t = 0; t < count; t++) {
				float pt = __shfl_sync(full, pj, t);
#pragma unroll
				for (int j = 0; j < DPL; j++) {
					int d = lane + 32 * j;
					if (d < hd) acc[j] = fmaf(pt, Vs[t * hd + d], acc[j]);
				}
			}
			m = mnew;
		}
		if (active) {
			if (p.splits == 1) {
				float inv = 1.0f / l;
#pragma unroll
				for (int j = 0; j < DPL; j++) {
					int d = lane + 32 * j;
					if (d < hd) dst[((size_t)i * p.heads + head) * hd + d] = acc[j] * inv;
				}
			} else {
				size_t part = ((size_t)i * p.heads + head) * p.splits + s;
#pragma unroll
				for (int j = 0; j < DPL; j++) {
					int d = lane + 32 * j;
					if (d < hd) part_acc[part * hd + d] = acc[j];
				}
				if (lane == 0) part_ml[2 * part] = m, part_ml[2 * part + 1] = l;
			}
		}
	}
}

// attention_combine: block (token i, head) merges the splits' partial results; thread d owns
// dimension d. Empty splits carry m = -inf and weigh nothing.
__global__ void attention_combine(float *dst, const float *part_acc, const float *part_ml, int head_dim, int splits) {
	size_t base = (size_t)blockIdx.x * splits;
	float M = -INFINITY;
	for (int s = 0; s < splits; s++) M = fmaxf(M, part_ml[2 * (base + s)]);
	for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
		float L = 0.0f, A = 0.0f;
		for (int s = 0; s < splits; s++) {
			float m = part_ml[2 * (base + s)];
			if (m == -INFINITY) continue;
			float w = expf(m - M);
			L += w * part_ml[2 * (base + s) + 1];
			A += w * part_acc[(base + s) * head_dim + d];
		}
		dst[(size_t)blockIdx.x * head_dim + d] = A / L;
	}
}

template <int DPL>
static int launch_attention(fc_ctx *c, float *dst, const float *q, const void *kc, const void *vc, const int32_t *pos,
			    const int32_t *table_off, const int32_t *tables, const fc_attn_params &p, float *part_acc,
			    float *part_ml) {
	int G = p.heads / p.kv_heads;
	int warps = G < ATT_MAX_WARPS ? G : ATT_MAX_WARPS;
	size_t smem = att_smem(p.head_dim, warps);
	if (smem > 48 * 1024)
		FC_TRY(cudaFuncSetAttribute(attention_kernel<DPL>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
	dim3 grid(p.n, p.kv_heads, p.splits);
	attention_kernel<DPL><<<grid, warps * 32, smem, c->stream>>>(dst, q, (const __half *)kc,
								    (const __half *)vc, pos, table_off, tables, p,
								    part_acc, part_ml);
	return fc_launched();
}

extern "C" int fc_attention(fc_ctx *c, float *dst, const float *q, const void *kc, const void *vc, const int32_t *pos,
			    const int32_t *table_off, const int32_t *tables, fc_attn_params p, float *part_acc,
			    float *part_ml) {
	FC_TRY((cudaError_t)fc_enter(c));
	if (p.n == 0) return 0;
	if (p.head_dim < 1 || p.head_dim > FC_MAX_HEAD_DIM || p.kv_heads < 1 || p.heads % p.kv_heads != 0 ||
	    p.splits < 1 || p.kv_heads > 65535 ||
	    p.splits > 65535)
		return (int)cudaErrorInvalidValue;
	int e;
	if (p.head_dim <= 32) e = launch_attention<1>(c, dst, q, kc, vc, pos, table_off, tables, p, part_acc, part_ml);
	else if (p.head_dim <= 64) e = launch_attention<2>(c, dst, q, kc, vc, pos, table_off, tables, p, part_acc, part_ml);
	else if (p.head_dim <= 128) e = launch_attention<4>(c, dst, q, kc, vc, pos, table_off, tables, p, part_acc, part_ml);
	else e = launch_attention<8>(c, dst, q, kc, vc, pos, table_off, tables, p, part_acc, part_ml);
	if (e || p.splits == 1) return e;
	int threads = p.head_dim < 32 ? 32 : ((p.head_dim + 31) / 32) * 32;
	attention_combine<<<p.n * p.heads, threads, 0, c->stream>>>(dst, part_acc, part_ml, p.head_dim, p.splits);
	return fc_launched();
}
