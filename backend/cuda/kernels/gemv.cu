// gemv.cu: matrix-vector products for a few activation rows, which read the weight once at
// memory bandwidth: one warp per weight row, float32 activations and accumulation.
#include "common.cuh"

enum { GEMV_WARPS = 8 };

// gemv_kernel: y[t, r] = Σ_k x[t, k]·w[r, k] for t < n (n <= NT). Warp w of block b owns weight
// row r = b*GEMV_WARPS + w. VEC: cols % 8 == 0, eight elements per load.
template <int DT, int NT, bool VEC> __global__ void __launch_bounds__(GEMV_WARPS * 32)
gemv_kernel(float *y, const float *x, WView w, int n) {
	int lane = threadIdx.x & 31;
	int r = blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
	if (r >= w.rows) return;
	int K = w.cols;
	float acc[NT];
#pragma unroll
	for (int t = 0; t < NT; t++) acc[t] = 0.0f;
	if (VEC) {
		// Unrolled so that each lane keeps several weight loads in flight.
#pragma unroll 4
		for (int k = lane * 8; k < K; k += 32 * 8) {
			float wv[8];
			wget8<DT>(w, r, k, wv);
#pragma unroll
			for (int t = 0; t < NT; t++) {
				if (t < n) {
					float xv[8];
					load8(x, (size_t)t * K + k, xv);
#pragma unroll
					for (int j = 0; j < 8; j++) acc[t] = fmaf(wv[j], xv[j], acc[t]);
				}
			}
		}
	} else {
		for (int k = lane; k < K; k += 32) {
			float wv = wget<DT>(w, r, k);
#pragma unroll
			for (int t = 0; t < NT; t++)
				if (t < n) acc[t] = fmaf(wv, x[(size_t)t * K + k], acc[t]);
		}
	}
#pragma unroll
	for (int t = 0; t < NT; t++) {
		if (t < n) {
			float s = warp_sum(acc[t]);
			if (lane == 0) y[(size_t)t * w.rows + r] = s;
		}
	}
}

template <int DT, int NT> static void launch_gemv(fc_ctx *c, float *y, const float *x, const WView &w, int n) {
	dim3 grid(fc_blocks((size_t)w.rows, GEMV_WARPS));
	bool vec = w.cols % 8 == 0 && (DT != FC_I8 || w.group % 8 == 0);
	if (vec) gemv_kernel<DT, NT, true><<<grid, GEMV_WARPS * 32, 0, c->stream>>>(y, x, w, n);
	else gemv_kernel<DT, NT, false><<<grid, GEMV_WARPS * 32, 0, c->stream>>>(y, x, w, n);
}

template <int DT> static void gemv_dt(fc_ctx *c, float *y, const float *x, const WView &w, int n) {
	if (n <= 1) launch_gemv<DT, 1>(c, y, x, w, n);
	else if (n <= 2) launch_gemv<DT, 2>(c, y, x, w, n);
	else if (n <= 4) launch_gemv<DT, 4>(c, y, x, w, n);
	else launch_gemv<DT, FC_GEMV_MAX_ROWS>(c, y, x, w, n);
}

extern "C" int fc_gemv(fc_ctx *c, float *y, const float *x, fc_weight w, int n) {
	FC_TRY((cudaError_t)fc_enter(c));
	if (n < 0 || n > FC_GEMV_MAX_ROWS) return (int)cudaErrorInvalidValue;
	if (n == 0 || w.rows == 0) return 0;
	WView v = wview(w);
	switch (w.dtype) {
	case FC_F32: gemv_dt<FC_F32>(c, y, x, v, n); break;
	case FC_BF16: gemv_dt<FC_BF16>(c, y, x, v, n); break;
	case FC_F16: gemv_dt<FC_F16>(c, y, x, v, n); break;
	case FC_I8: gemv_dt<FC_I8>(c, y, x, v, n); break;
	default: return (int)cudaErrorInvalidValue;
	}
	return fc_launched();
}
