// mma.h for the CPU emulation (emu_core.h): the WMMA 16×16×16 operations fathom's GEMMs use.
// Every lane holds the whole tile, so the collective semantics hold without the hardware's
// register layout; the alignment rules of the real API are checked.
#pragma once
#include "cuda_bf16.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void> struct fragment {
	static_assert(M == 16 && N == 16 && K == 16, "16x16x16 only");
	float d[256];
};

inline float to_float(float v) { return v; }
inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

inline void check(const void *p, unsigned ldm, unsigned multiple, const char *what) {
	if (ldm % multiple != 0 || (uintptr_t)p % 32 != 0) emu::fail(what);
}

template <typename U, typename T, typename L> inline void fill_fragment(fragment<U, 16, 16, 16, T, L> &f, float v) {
	for (float &x : f.d) x = v;
}

template <typename T>
inline void load_matrix_sync(fragment<matrix_a, 16, 16, 16, T, row_major> &f, const T *p, unsigned ldm) {
	check(p, ldm, 16 / sizeof(T), "wmma load of matrix_a: misaligned");
	for (int i = 0; i < 16; i++)
		for (int k = 0; k < 16; k++) f.d[i * 16 + k] = to_float(p[i * ldm + k]);
}

template <typename T>
inline void load_matrix_sync(fragment<matrix_b, 16, 16, 16, T, col_major> &f, const T *p, unsigned ldm) {
	check(p, ldm, 16 / sizeof(T), "wmma load of matrix_b: misaligned");
	for (int k = 0; k < 16; k++)
		for (int n = 0; n < 16; n++) f.d[k * 16 + n] = to_float(p[n * ldm + k]);
}

template <typename T>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float> &d, const fragment<matrix_a, 16, 16, 16, T, row_major> &a,
		     const fragment<matrix_b, 16, 16, 16, T, col_major> &b,
		     const fragment<accumulator, 16, 16, 16, float> &c) {
	float t[256];
	for (int i = 0; i < 16; i++)
		for (int j = 0; j < 16; j++) {
			float s = c.d[i * 16 + j];
			for (int k = 0; k < 16; k++) s += a.d[i * 16 + k] * b.d[k * 16 + j];
			t[i * 16 + j] = s;
		}
	memcpy(d.d, t, sizeof t);
}

inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f, unsigned ldm, layout_t l) {
	check(p, ldm, 4, "wmma store: misaligned");
	if (l != mem_row_major) emu::fail("wmma store: column-major not emulated");
	__syncwarp();
	if (emu::lane == 0)
		for (int i = 0; i < 16; i++)
			for (int j = 0; j < 16; j++) p[i * ldm + j] = f.d[i * 16 + j];
	__syncwarp();
}

} // namespace wmma
} // namespace nvcuda
