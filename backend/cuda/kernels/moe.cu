// moe.cu: the mixture-of-experts block. One routing kernel computes the router logits,
// softmax, top-k and renormalisation of every token, and its last block groups the (token,
// expert) pairs by expert and lists the GEMM row tiles, so the expert kernels need nothing from
// the host. The experts then run either as grouped tensor-core GEMMs (gemm.cu), after which a
// last kernel sums each token's top-k weighted outputs in rank order, or, for a few tokens, as
// GEMVs that stream the chosen experts' weights, the down product summing each token's pairs.
#include <math.h>

#include "common.cuh"

// FC_ROUTE_THREADS is the routing kernel's block size (a multiple of 32, at most 1024).
#ifndef FC_ROUTE_THREADS
#define FC_ROUTE_THREADS 1024
#endif

enum { ROUTE_THREADS = FC_ROUTE_THREADS, ROUTE_WARPS = ROUTE_THREADS / 32, MOE_GEMV_WARPS = 8 };

// group_pairs runs in the routing kernel's last block (ROUTE_WARPS warps): a stable counting
// sort of the pairs by expert, then the tile list.
__device__ void group_pairs(const fc_moe_args &a) {
	__shared__ int start[FC_MAX_EXPERTS];
	const unsigned full = 0xffffffffu;
	int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	int E = a.experts, P = a.n * a.top_k;
	// Other blocks wrote choice and gain: read them from L2 (__ldcg), past this SM's L1.
	for (int e = warp; e < E; e += ROUTE_WARPS) {
		int count = 0;
		for (int base = 0; base < P; base += 32) {
			int p = base + lane;
			count += __popc(__ballot_sync(full, p < P && __ldcg(&a.choice[p]) == e));
		}
		if (lane == 0) start[e] = count;
	}
	__syncthreads();
	if (threadIdx.x == 0) {
		int off = 0, t = 0;
		for (int e = 0; e < E; e++) {
			int count = start[e];
			a.offsets[e] = off;
			start[e] = off;
			off += count;
			for (int rs = 0; rs < count; rs += FC_GEMM_BM) {
				if (t >= a.max_tiles) __trap(); // the host sized the list wrongly: fail loudly
				a.tiles[2 * t] = e;
				a.tiles[2 * t + 1] = rs;
				t++;
			}
		}
		a.offsets[E] = off;
		*a.tile_count = t;
	}
	__syncthreads();
	for (int e = warp; e < E; e += ROUTE_WARPS) {
		int at = start[e];
		for (int base = 0; base < P; base += 32) {
			int p = base + lane;
			bool hit = p < P && __ldcg(&a.choice[p]) == e;
			unsigned mask = __ballot_sync(full, hit);
			if (hit) {
				int r = at + __popc(mask & ((1u << lane) - 1u));
				a.sorted_token[r] = p / a.top_k;
				a.sorted_gain[r] = __ldcg(&a.gain[p]);
				a.inv[p] = r;
			}
			at += __popc(mask);
		}
	}
}

// moe_route_kernel: a block routes one token at a time. Each thread takes a few columns of
// the router product for eight experts at a time, so that all of a token's router reads are in
// flight at once (decode is latency-bound here), and the block sums the partial logits. Ties
// between equal logits go to the lower expert index.
__global__ void __launch_bounds__(ROUTE_THREADS) moe_route_kernel(fc_moe_args a, unsigned int *done) {
	__shared__ float red[ROUTE_WARPS][FC_MAX_EXPERTS];
	__shared__ float lg[FC_MAX_EXPERTS];
	__shared__ bool last;
	int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	int E = a.experts, H = a.hidden, K = a.top_k;
	for (int i = blockIdx.x; i < a.n; i += gridDim.x) {
		const float *xr = a.x + (size_t)i * H;
		for (int e0 = 0; e0 < E; e0 += 8) {
			float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
			if (H % 4 == 0) { // rows are 16-byte aligned: four floats per load
				for (int k = threadIdx.x * 4; k < H; k += ROUTE_THREADS * 4) {
					float4 xv = *(const float4 *)(xr + k);
#pragma unroll
					for (int j = 0; j < 8; j++) {
						if (e0 + j < E) {
							float4 gv = *(const float4 *)(a.gate + (size_t)(e0 + j) * H + k);
							s[j] = fmaf(xv.x, gv.x, fmaf(xv.y, gv.y, fmaf(xv.z, gv.z, fmaf(xv.w, gv.w, s[j]))));
						}
					}
				}
			} else {
				for (int k = threadIdx.x; k < H; k += ROUTE_THREADS) {
#pragma unroll
					for (int j = 0; j < 8; j++)
						if (e0 + j < E) s[j] = fmaf(xr[k], a.gate[(size_t)(e0 + j) * H + k], s[j]);
				}
			}
#pragma unroll
			for (int j = 0; j < 8; j++) {
				float v = warp_sum(s[j]);
				if (lane == 0 && e0 + j < E) red[warp][e0 + j] = v;
			}
		}
		__syncthreads();
		for (int e = threadIdx.x; e < E; e += ROUTE_THREADS) {
			float v = 0.0f;
			for (int w = 0; w < ROUTE_WARPS; w++) v += red[w][e];
			lg[e] = v;
		}
		__syncthreads();
		if (threadIdx.x == 0) {
			if (a.logits)
				for (int e = 0; e < E; e++) a.logits[(size_t)i * E + e] = lg[e];
			float peak = lg[0];
			for (int e = 1; e < E; e++) peak = fmaxf(peak, lg[e]);
			float sum = 0.0f;
			for (int e = 0; e < E; e++) sum += expf(lg[e] - peak);
			unsigned long long taken = 0;
			float total = 0.0f;
			for (int k = 0; k < K; k++) {
				int best = -1;
				for (int e = 0; e < E; e++)
					if (!((taken >> e) & 1ull) && (best < 0 || lg[e] > lg[best])) best = e;
				taken |= 1ull << best;
				float p = expf(lg[best] - peak) / sum;
				a.choice[(size_t)i * K + k] = best;
				a.gain[(size_t)i * K + k] = p;
				total += p;
			}
			for (int k = 0; k < K; k++) a.gain[(size_t)i * K + k] /= total;
		}
		__syncthreads(); // red and lg are free for the next token
	}
	if (a.gemv) return; // the GEMVs read the choices directly
	// The last block to finish groups the pairs for the GEMMs (the threadfence-reduction
	// pattern).
	__threadfence();
	__syncthreads();
	if (threadIdx.x == 0) last = atomicAdd(done, 1u) == gridDim.x - 1;
	__syncthreads();
	if (!last) return;
	__threadfence();
	group_pairs(a);
	if (threadIdx.x == 0) *done = 0; // ready for the next launch
}

// moe_gateup_gemv: block (b, p) computes rows b*MOE_GEMV_WARPS.. of h[p] = silu(w1[e]·x) ⊙
// (w3[e]·x) for pair p = (token p/top_k, expert choice[p]), one warp per row.
template <int DT, bool VEC> __global__ void __launch_bounds__(MOE_GEMV_WARPS * 32)
moe_gateup_gemv(fc_moe_args a, WView w1, WView w3) {
	int lane = threadIdx.x & 31, r = blockIdx.x * MOE_GEMV_WARPS + (threadIdx.x >> 5), p = blockIdx.y;
	if (r >= a.inner) return;
	int e = a.choice[p];
	WView g = wmatrix<DT>(w1, e), u = wmatrix<DT>(w3, e);
	const float *x = a.x + (size_t)(p / a.top_k) * a.hidden;
	float sg = 0.0f, su = 0.0f;
	if (VEC) {
#pragma unroll 4
		for (int k = lane * 8; k < a.hidden; k += 32 * 8) {
			float xv[8], gv[8], uv[8];
			load8(x, k, xv);
			wget8<DT>(g, r, k, gv);
			wget8<DT>(u, r, k, uv);
#pragma unroll
			for (int j = 0; j < 8; j++) sg = fmaf(gv[j], xv[j], sg), su = fmaf(uv[j], xv[j], su);
		}
	} else {
		for (int k = lane; k < a.hidden; k += 32) sg = fmaf(wget<DT>(g, r, k), x[k], sg), su = fmaf(wget<DT>(u, r, k), x[k], su);
	}
	sg = warp_sum(sg);
	su = warp_sum(su);
	if (lane == 0) ((float *)a.h)[(size_t)p * a.inner + r] = silu(sg) * su;
}

// moe_down_gemv: block (b, i) computes rows b*MOE_GEMV_WARPS.. of token i's output,
// out[i] = Σ_k gain[p]·(w2[choice[p]]·h[p]) over its pairs p = i*top_k+k in rank order, one
// warp per row.
template <int DT, bool VEC> __global__ void __launch_bounds__(MOE_GEMV_WARPS * 32)
moe_down_gemv(fc_moe_args a, WView w2) {
	int lane = threadIdx.x & 31, r = blockIdx.x * MOE_GEMV_WARPS + (threadIdx.x >> 5), i = blockIdx.y;
	if (r >= a.hidden) return;
	float total = 0.0f;
	for (int k = 0; k < a.top_k; k++) {
		int p = i * a.top_k + k;
		WView w = wmatrix<DT>(w2, a.choice[p]);
		const float *h = (const float *)a.h + (size_t)p * a.inner;
		float s = 0.0f;
		if (VEC) {
#pragma unroll 4
			for (int c = lane * 8; c < a.inner; c += 32 * 8) {
				float hv[8], wv[8];
				load8(h, c, hv);
				wget8<DT>(w, r, c, wv);
#pragma unroll
				for (int j = 0; j < 8; j++) s = fmaf(wv[j], hv[j], s);
			}
		} else {
			for (int c = lane; c < a.inner; c += 32) s = fmaf(wget<DT>(w, r, c), h[c], s);
		}
		total += a.gain[p] * warp_sum(s);
	}
	if (lane == 0) a.out[(size_t)i * a.hidden + r] = total;
}

// moe_sum_kernel: out[i] = Σ_k y[inv[i*top_k+k]] in rank order k = 0, 1, ... (grouped GEMMs'
// sorted rows); block (i, b) sums 256 columns of token i.
__global__ void moe_sum_kernel(float *out, const float *y, const int32_t *inv, int top_k, int hidden) {
	int i = blockIdx.x, c = blockIdx.y * blockDim.x + threadIdx.x;
	if (c >= hidden) return;
	float s = 0.0f;
	for (int k = 0; k < top_k; k++) s += y[(size_t)inv[i * top_k + k] * hidden + c];
	out[(size_t)i * hidden + c] = s;
}

template <int DT> static void launch_moe_gemv(fc_ctx *c, const fc_moe_args &a) {
	int P = a.n * a.top_k;
	bool vec1 = a.hidden % 8 == 0 && (DT != FC_I8 || a.w1.group % 8 == 0);
	bool vec2 = a.inner % 8 == 0 && (DT != FC_I8 || a.w2.group % 8 == 0);
	dim3 g1(fc_blocks((size_t)a.inner, MOE_GEMV_WARPS), P), g2(fc_blocks((size_t)a.hidden, MOE_GEMV_WARPS), a.n);
	WView w1 = wview(a.w1), w2 = wview(a.w2), w3 = wview(a.w3);
	if (vec1) moe_gateup_gemv<DT, true><<<g1, MOE_GEMV_WARPS * 32, 0, c->stream>>>(a, w1, w3);
	else moe_gateup_gemv<DT, false><<<g1, MOE_GEMV_WARPS * 32, 0, c->stream>>>(a, w1, w3);
	if (vec2) moe_down_gemv<DT, true><<<g2, MOE_GEMV_WARPS * 32, 0, c->stream>>>(a, w2);
	else moe_down_gemv<DT, false><<<g2, MOE_GEMV_WARPS * 32, 0, c->stream>>>(a, w2);
}

extern "C" int fc_moe_route(fc_ctx *c, const fc_moe_args *a) {
	FC_TRY((cudaError_t)fc_enter(c));
	if (a->n == 0) return 0;
	if (a->experts < 1 || a->experts > FC_MAX_EXPERTS || a->top_k < 1 || a->top_k > a->experts ||
	    a->w1.dtype != a->w2.dtype || a->w1.dtype != a->w3.dtype)
		return (int)cudaErrorInvalidValue;
	unsigned int blocks = (unsigned int)a->n;
	if (blocks > (unsigned int)c->sms * 2) blocks = (unsigned int)c->sms * 2;
	// Launch with copies: the CPU emulation's recorded launches keep their arguments, not
	// what a pointer points to.
	const fc_moe_args args = *a;
	moe_route_kernel<<<blocks, ROUTE_THREADS, 0, c->stream>>>(args, c->done);
	return fc_launched();
}

extern "C" int fc_moe(fc_ctx *c, const fc_moe_args *a) {
	FC_TRY((cudaError_t)fc_moe_route(c, a));
	if (a->n == 0) return 0;
	if (a->gemv) {
		switch (a->w1.dtype) {
		case FC_F32: launch_moe_gemv<FC_F32>(c, *a); break;
		case FC_BF16: launch_moe_gemv<FC_BF16>(c, *a); break;
		case FC_F16: launch_moe_gemv<FC_F16>(c, *a); break;
		case FC_I8: launch_moe_gemv<FC_I8>(c, *a); break;
		default: return (int)cudaErrorInvalidValue;
		}
		return fc_launched();
	}
	return fc_moe_grouped(c, a);
}

extern "C" int fc_moe_grouped(fc_ctx *c, const fc_moe_args *a) {
	FC_TRY((cudaError_t)fc_enter(c));
	if (a->n == 0) return 0;
	FC_TRY((cudaError_t)fc_launch_moe_gemm(c, a));
	float *out = a->out, *y = a->y;
	const int32_t *inv = a->inv;
	const int top_k = a->top_k, hidden = a->hidden;
	moe_sum_kernel<<<dim3(a->n, fc_blocks((size_t)hidden, 256)), 256, 0, c->stream>>>(out, y, inv, top_k, hidden);
	return fc_launched();
}
