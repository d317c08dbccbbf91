/*
 * transformer_int.h - what the files of the transformer family share and nobody else uses:
 * the callbacks their table rows in transformer.c point at, conversions between the
 * floating-point dtypes (float16 and bfloat16 are computed through float), and small
 * helpers for carving node->scratch and reading scalar inputs.
 *
 * Files: transformer.c (table, shared helpers), transformer_norm.c (LayerNormalization,
 * RMSNormalization, RotaryEmbedding, SwiGLU), transformer_attn.c (Attention),
 * transformer_scan.c (CumSum, CumProd, Trilu, TopK, OneHot), transformer_einsum.c (Einsum).
 */
#ifndef DAB_OPS_TRANSFORMER_INT_H
#define DAB_OPS_TRANSFORMER_INT_H

#include <stdbool.h>
#include <string.h>

#include "ops.h"

/* The floating-point dtypes the family computes in float (half types) or double. */
#define TF_DTM_FLOATS                                                                          \
    (DAB_DTM(DAB_DT_FLOAT) | DAB_DTM(DAB_DT_DOUBLE) | DAB_DTM(DAB_DT_FLOAT16) |                \
     DAB_DTM(DAB_DT_BFLOAT16))

/* Alignment of the pieces carved out of node->scratch. */
#define TF_SCRATCH_ALIGN 64

static inline bool tf_is_float(dab_dtype_t dt)
{
    return dt == DAB_DT_FLOAT || dt == DAB_DT_DOUBLE || dt == DAB_DT_FLOAT16 ||
           dt == DAB_DT_BFLOAT16;
}

/* The dtype a floating-point tensor is computed in: double stays double, the rest float. */
static inline dab_dtype_t tf_compute_dtype(dab_dtype_t dt)
{
    return dt == DAB_DT_DOUBLE ? DAB_DT_DOUBLE : DAB_DT_FLOAT;
}

/*
 * Reserves `bytes` (rounded up to TF_SCRATCH_ALIGN) at *off and advances it; returns the
 * piece's offset. Returns SIZE_MAX and leaves *off alone when the total would overflow,
 * which the caller turns into an error (sizes come from the model).
 */
static inline size_t tf_scratch_take(size_t *off, size_t bytes)
{
    if (bytes > SIZE_MAX / 2 || *off > SIZE_MAX / 2)
        return SIZE_MAX;
    size_t o = *off;
    *off += DAB_ALIGN_UP(bytes, TF_SCRATCH_ALIGN);
    return o;
}

/*
 * Converts n elements between float, double, float16 and bfloat16 (memcpy when the
 * dtypes are equal). Other dtypes are the caller's mistake: nothing is written.
 */
void dab_tf_convert(dab_dtype_t sdt, const void *src, dab_dtype_t ddt, void *dst, int64_t n);

/*
 * Reads a scalar integer input (0-D, or 1-D of one element; int32 or int64) into *v.
 * `what` names it in the error (ETYPE / ESHAPE).
 */
int dab_tf_read_scalar_int(const dab_tensor_t *t, const char *what, int64_t *v, dab_err_t *err);

/* Threads for `work` elementary operations given as a double (products of model sizes
 * may overflow int64; dab_par_threads only compares against thresholds). */
static inline int tf_par_threads(const dab_node_t *node, double work)
{
    return dab_par_threads(node->ctx, work > 1e18 ? (int64_t)1e18 : (int64_t)work);
}

/* Number of threads a node may plan scratch for (at least 1). */
static inline int tf_max_threads(const dab_node_t *node)
{
    return node->ctx && node->ctx->threads > 1 ? node->ctx->threads : 1;
}

/* ---- operator callbacks (contracts as in ops.h), listed in transformer.c ---- */

/* transformer_norm.c */
int dab_tf_norm_init(dab_node_t *node, dab_err_t *err);
int dab_tf_norm_reshape(dab_node_t *node, dab_err_t *err);
int dab_tf_norm_compute(dab_node_t *node, dab_err_t *err);
int dab_tf_rope_init(dab_node_t *node, dab_err_t *err);
int dab_tf_rope_reshape(dab_node_t *node, dab_err_t *err);
int dab_tf_rope_compute(dab_node_t *node, dab_err_t *err);
int dab_tf_swiglu_reshape(dab_node_t *node, dab_err_t *err);
int dab_tf_swiglu_compute(dab_node_t *node, dab_err_t *err);

/* transformer_attn.c */
int dab_tf_attn_init(dab_node_t *node, dab_err_t *err);
int dab_tf_attn_reshape(dab_node_t *node, dab_err_t *err);
int dab_tf_attn_compute(dab_node_t *node, dab_err_t *err);

/* transformer_scan.c */
int dab_tf_cum_init(dab_node_t *node, dab_err_t *err);
int dab_tf_cum_reshape(dab_node_t *node, dab_err_t *err);
int dab_tf_cum_compute(dab_node_t *node, dab_err_t *err);
int dab_tf_trilu_reshape(dab_node_t *node, dab_err_t *err);
int dab_tf_trilu_compute(dab_node_t *node, dab_err_t *err);
int dab_tf_topk_init(dab_node_t *node, dab_err_t *err);
int dab_tf_topk_reshape(dab_node_t *node, dab_err_t *err);
int dab_tf_topk_compute(dab_node_t *node, dab_err_t *err);
int dab_tf_onehot_reshape(dab_node_t *node, dab_err_t *err);
int dab_tf_onehot_compute(dab_node_t *node, dab_err_t *err);

/* transformer_einsum.c */
int dab_tf_einsum_init(dab_node_t *node, dab_err_t *err);
int dab_tf_einsum_reshape(dab_node_t *node, dab_err_t *err);
int dab_tf_einsum_compute(dab_node_t *node, dab_err_t *err);

#endif
