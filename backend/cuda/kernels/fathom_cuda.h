/*
 * fathom_cuda.h: the C interface of libfathomcuda.a, the CUDA kernels of fathom's cuda backend.
 *
 * Every function returns 0 on success or a cudaError_t value (fc_error_string describes it).
 * Kernels run on the context's stream in call order; only fc_download and fc_sync wait.
 * Matrices are row-major. Activations are float32; weights are float32, bfloat16, float16 or int8 with
 * one float32 scale per group of `group` consecutive elements of a row.
 */
#ifndef FATHOM_CUDA_H
#define FATHOM_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Weight element types. */
enum { FC_F32 = 0, FC_BF16 = 1, FC_I8 = 2, FC_F16 = 3 };

/* Fixed kernel parameters the host plans with. */
enum {
	FC_GEMV_MAX_ROWS = 8, /* fc_gemv handles at most this many activation rows */
	FC_GEMM_BM = 128,     /* rows of one GEMM tile; the MoE tile list counts tiles of this height */
	FC_MAX_EXPERTS = 64,  /* the most experts fc_moe routes over */
	FC_MAX_HEAD_DIM = 256 /* the largest attention head fc_attention supports */
};

/* Return codes beyond CUDA's: no cuBLASLt product for these operands (the caller uses the
 * package's own kernels); no usable cuBLASLt library; FC_ERR_BLAS + a cublasStatus_t. */
enum { FC_ERR_UNSUPPORTED = 100000, FC_ERR_NO_BLAS = 100001, FC_ERR_BLAS = 100100 };

typedef struct fc_ctx fc_ctx;

/*
 * A weight matrix, or a stack of matrices of one shape (the experts of an MoE block, matrix e
 * at element offset e*rows*cols and scale offset e*rows*groups, groups = ceil(cols/group)).
 */
typedef struct {
	int dtype;           /* FC_F32, FC_BF16, FC_F16 or FC_I8 */
	const void *data;    /* rows*cols elements per matrix */
	const float *scales; /* FC_I8 only: rows*groups scales per matrix */
	int rows, cols;
	int group; /* FC_I8 only: a multiple of 8 */
} fc_weight;

const char *fc_error_string(int code);

/* Devices and contexts. */
int fc_device_count(int *n);
int fc_device_info(int device, char *name, int name_len, size_t *total_mem, int *sms, int *major, int *minor);
int fc_create(int device, fc_ctx **out);
void fc_destroy(fc_ctx *c);
int fc_mem_info(fc_ctx *c, size_t *free_bytes, size_t *total_bytes);

/* Memory: fc_malloc returns zeroed memory. fc_upload's source may be reused when it returns. */
int fc_malloc(fc_ctx *c, void **p, size_t bytes);
int fc_free(fc_ctx *c, void *p);
int fc_memset(fc_ctx *c, void *p, size_t bytes);
int fc_upload(fc_ctx *c, void *dst, const void *src, size_t bytes);
int fc_download(fc_ctx *c, void *dst, const void *src, size_t bytes);
int fc_copy(fc_ctx *c, void *dst, const void *src, size_t bytes);
int fc_sync(fc_ctx *c);
/* fc_fill_random fills n elements of dtype (FC_F32 or FC_BF16; FC_I8 fills int8 values in
 * [-127, 127]) with a deterministic hash of (seed, index) scaled to [-scale, scale]. */
int fc_fill_random(fc_ctx *c, void *p, int dtype, size_t n, uint64_t seed, float scale);
/* fc_fill_f32 sets n floats to v. */
int fc_fill_f32(fc_ctx *c, float *p, size_t n, float v);

/* Graphs: fc_capture_begin starts recording the context's stream (kernels launched on it
 * until fc_capture_end are recorded, not run); fc_capture_end makes the record an executable
 * graph (*g stays NULL when recording failed, for instance after a copy from host memory or a
 * synchronisation during it); fc_graph_launch runs it on the stream. */
typedef struct fc_graph fc_graph;
int fc_capture_begin(fc_ctx *c);
int fc_capture_end(fc_ctx *c, fc_graph **g);
int fc_graph_launch(fc_ctx *c, fc_graph *g);
void fc_graph_destroy(fc_graph *g);

/* Elementwise and row operations. */
int fc_embed(fc_ctx *c, float *dst, fc_weight table, const int32_t *ids, int n);
int fc_rmsnorm(fc_ctx *c, float *dst, const float *x, const float *w, int n, int d, float eps);
/* fc_add_rmsnorm: x += r, then dst = rmsnorm(x)·w, row by row. */
int fc_add_rmsnorm(fc_ctx *c, float *dst, float *x, const float *r, const float *w, int n, int d, float eps);
int fc_add(fc_ctx *c, float *dst, const float *x, size_t count);
int fc_gather(fc_ctx *c, float *dst, const float *src, const int32_t *rows, int n, int cols);
/* fc_rope rotates every head of x [n, cols] by the row's position: inv holds head_dim/2
 * inverse frequencies. */
int fc_rope(fc_ctx *c, float *x, const int32_t *pos, const float *inv, int n, int cols, int head_dim);

/* y[n, w.rows] = x[n, w.cols] · wᵀ. fc_gemv: n <= FC_GEMV_MAX_ROWS, CUDA cores, float32 x.
 * fc_gemm: any n, tensor cores on bfloat16 (FC_BF16, FC_F16 or FC_I8 weights): x is converted into
 * scratch (4*n*pad8(w.cols) bytes) as bfloat16, and with exact set as a pair of bfloat16 parts
 * (x = hi + lo, about 16 significant bits) that are both multiplied (float16 weights are split
 * the same way, exactly). pad8(k) = k rounded up to a multiple of 8. */
int fc_gemv(fc_ctx *c, float *y, const float *x, fc_weight w, int n);
/* fc_gemm runs bfloat16 weights through cuBLASLt once fc_blas_open has succeeded (falling
 * back to its own kernels where cuBLASLt has no algorithm). fc_blas_open loads cuBLASLt for
 * the context: the library file path, or NULL for libcublasLt.so and its versioned names. It
 * sets *version to cublasLtGetVersion() (1 under the CPU emulation, which runs plain products
 * instead). */
int fc_blas_open(fc_ctx *c, const char *path, int *version);
int fc_gemm(fc_ctx *c, float *y, const float *x, fc_weight w, int n, void *scratch, int exact);

/* Attention over a paged KV cache of float16 keys and values laid out as
 * [layers][blocks][block_size][kv_heads][head_dim]. */
typedef struct {
	int n, heads, kv_heads, head_dim;
	int block_size, window; /* window <= 0: no sliding window */
	int splits;             /* splits of each token's positions (see fc_attention) */
	size_t layer_offset;    /* elements before this layer's first block */
	float scale;
} fc_attn_params;

/* fc_kv_store writes k and v [n, kv_dim] into the cache slots (block*block_size+offset). */
int fc_kv_store(fc_ctx *c, void *kc, void *vc, const float *k, const float *v, const int32_t *slot, int n, int kv_dim,
		size_t layer_offset);
/* fc_attention sets dst [n, heads*head_dim] from q. Each token's window is cut into splits
 * chunks of whole 32-position tiles (at least two; trailing splits may be empty), each attended
 * by its own blocks; part_acc [n*heads*splits*head_dim] and part_ml [n*heads*splits*2] are
 * scratch when splits > 1. The launch depends on n, the heads and splits, not on positions. */
int fc_attention(fc_ctx *c, float *dst, const float *q, const void *kc, const void *vc, const int32_t *pos,
		 const int32_t *table_off, const int32_t *tables, fc_attn_params p, float *part_acc, float *part_ml);

/* The mixture-of-experts block. Scratch arrays are sized for n tokens (pairs = n*top_k). */
typedef struct {
	int n, hidden, inner, experts, top_k;
	int gemv;  /* 1: stream each pair's expert with GEMV kernels; 0: grouped tensor-core GEMMs */
	int exact; /* grouped GEMMs: activations as bfloat16 pairs (see fc_gemm) */
	const float *x;     /* [n, hidden] */
	float *out;         /* [n, hidden] */
	float *logits;      /* optional [n, experts] */
	const float *gate;  /* router [experts, hidden] */
	fc_weight w1, w2, w3; /* stacks: w1, w3 [inner, hidden], w2 [hidden, inner] */

	int32_t *choice;       /* [pairs] expert of pair (token i, rank k) at i*top_k+k */
	float *gain;           /* [pairs] its renormalised probability */
	int32_t *offsets;      /* [experts+1] start of each expert's rows in the sorted order */
	int32_t *sorted_token; /* [pairs] token of sorted row r */
	float *sorted_gain;    /* [pairs] gain of sorted row r */
	int32_t *inv;          /* [pairs] sorted row of pair p */
	int32_t *tiles;        /* [2*max_tiles] (expert, first row) of each GEMM row tile */
	int max_tiles;         /* ceil(pairs/FC_GEMM_BM) + experts bounds the tile count */
	int32_t *tile_count;   /* [1] */
	void *xa;              /* grouped: 4*pairs*pad8(hidden) bytes, the sorted rows as bfloat16 (pairs) */
	void *h;               /* 4*pairs*pad8(inner) bytes: float32 [pairs, inner] (gemv), or bfloat16
				  [pairs, pad8(inner)] (and its lo part after it, exact) */
	float *y;              /* grouped: [pairs, hidden] weighted expert outputs */

	/* fc_moe_blas: each expert owns parts*cap rows (parts = 2 in the exact mode, else 1) of
	 * the buffers below, experts*parts*cap rows in all; cap is at least every expert's pair
	 * count. */
	int cap;
	void *bx;    /* bfloat16 rows of pad8(max(hidden, inner)): the sorted tokens, then h */
	float *bd1;  /* float32 rows of pad8(max(hidden, inner)): the gate products, then y */
	float *bd3;  /* float32 rows of pad8(inner): the up products */
} fc_moe_args;

/* fc_moe runs the whole block: fc_moe_route, then the GEMVs (gemv set) or fc_moe_grouped.
 * fc_moe_route computes choice and gain, and (gemv unset) offsets, the sorted arrays and the
 * tile list. After it, fc_moe_grouped runs the experts as the package's grouped GEMMs, and
 * fc_moe_blas as batched cuBLASLt products (bfloat16 experts; FC_ERR_UNSUPPORTED otherwise). */
int fc_moe(fc_ctx *c, const fc_moe_args *a);
int fc_moe_route(fc_ctx *c, const fc_moe_args *a);
int fc_moe_grouped(fc_ctx *c, const fc_moe_args *a);
int fc_moe_blas(fc_ctx *c, const fc_moe_args *a);

#ifdef __cplusplus
}
#endif
#endif
