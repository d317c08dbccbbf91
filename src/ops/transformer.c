/*
 * transformer.c - transformer operators (normalizations, attention, rotary embeddings,
 * triangular masks, scans along an axis, top-k, one-hot, einsum): the family's table and
 * the helpers its files share (float16/bfloat16 conversions, scalar inputs).
 * The operators live in transformer_norm.c, transformer_attn.c, transformer_scan.c and
 * transformer_einsum.c.
 */
#include "transformer_int.h"

/* ---- dtype conversions ---- */


/* Element i of a float-family array as float / double. */
static inline double load_f64(dab_dtype_t dt, const void *p, int64_t i)
{
    switch (dt) {
    case DAB_DT_FLOAT: return ((const float *)p)[i];
    case DAB_DT_DOUBLE: return ((const double *)p)[i];
    case DAB_DT_FLOAT16: return dab_f16_to_f32(((const uint16_t *)p)[i]);
    default: return dab_bf16_to_f32(((const uint16_t *)p)[i]);
    }
}

void dab_tf_convert(dab_dtype_t sdt, const void *src, dab_dtype_t ddt, void *dst, int64_t n)
{
    if (n <= 0 || !tf_is_float(sdt) || !tf_is_float(ddt))
        return;
    if (sdt == ddt) {
        memcpy(dst, src, (size_t)n * dab_dtype_size(sdt));
        return;
    }
    /* the common cases get loops of their own so they vectorize */
    if (sdt == DAB_DT_BFLOAT16 && ddt == DAB_DT_FLOAT) {
        const uint16_t *s = src;
        float *d = dst;
        for (int64_t i = 0; i < n; i++)
            d[i] = dab_bf16_to_f32(s[i]);
        return;
    }
    if (sdt == DAB_DT_FLOAT && ddt == DAB_DT_BFLOAT16) {
        const float *s = src;
        uint16_t *d = dst;
        for (int64_t i = 0; i < n; i++)
            d[i] = dab_f32_to_bf16(s[i]);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        double v = load_f64(sdt, src, i);
        switch (ddt) {
        case DAB_DT_FLOAT: ((float *)dst)[i] = (float)v; break;
        case DAB_DT_DOUBLE: ((double *)dst)[i] = v; break;
        /* narrowing double -> float -> half rounds twice; halves only come from float here */
        case DAB_DT_FLOAT16: ((uint16_t *)dst)[i] = dab_f32_to_f16((float)v); break;
        default: ((uint16_t *)dst)[i] = dab_f32_to_bf16((float)v); break;
        }
    }
}

int dab_tf_read_scalar_int(const dab_tensor_t *t, const char *what, int64_t *v, dab_err_t *err)
{
    if (t->dtype != DAB_DT_INT64 && t->dtype != DAB_DT_INT32)
        return dab_err_set(err, DAB_ETYPE, "%s must be int32 or int64, got %s", what,
                           dab_dtype_name(t->dtype));
    if (t->rank > 1 || dab_tensor_numel(t) != 1) {
        char s[96];
        return dab_err_set(err, DAB_ESHAPE, "%s must be a scalar, got shape %s", what,
                           dab_shape_str(t, s, sizeof s));
    }
    *v = t->dtype == DAB_DT_INT64 ? ((const int64_t *)t->data)[0]
                                  : ((const int32_t *)t->data)[0];
    return 0;
}

/* ---- the table ---- */

#define T_FLT TF_DTM_FLOATS
#define T_HALF (DAB_DTM(DAB_DT_FLOAT16) | DAB_DTM(DAB_DT_BFLOAT16))
#define T_NUM (DAB_DTM_NUMERIC | T_HALF)
#define T_ALL (DAB_DTM_ALL | T_HALF)

const dab_op_def_t dab_ops_transformer[] = {
    {"", "LayerNormalization", 17, 0, T_FLT, 0, 2, 3, 1, 3, dab_tf_norm_init,
     dab_tf_norm_reshape, dab_tf_norm_compute, dab_op_free_priv},
    {"", "RMSNormalization", 23, 0, T_FLT, 0, 2, 2, 1, 1, dab_tf_norm_init, dab_tf_norm_reshape,
     dab_tf_norm_compute, dab_op_free_priv},
    {"", "RotaryEmbedding", 23, 0, T_FLT, 0, 3, 4, 1, 1, dab_tf_rope_init, dab_tf_rope_reshape,
     dab_tf_rope_compute, dab_op_free_priv},
    {"", "SwiGLU", 28, 0, T_FLT, 0, 2, 2, 1, 1, NULL, dab_tf_swiglu_reshape,
     dab_tf_swiglu_compute, NULL},
    {"", "Attention", 23, 23, T_FLT, 0, 3, 6, 1, 4, dab_tf_attn_init, dab_tf_attn_reshape,
     dab_tf_attn_compute, dab_op_free_priv},
    {"", "Attention", 24, 0, T_FLT, 0, 3, 7, 1, 4, dab_tf_attn_init, dab_tf_attn_reshape,
     dab_tf_attn_compute, dab_op_free_priv},
    {"", "CumSum", 11, 0, T_NUM, 0, 2, 2, 1, 1, dab_tf_cum_init, dab_tf_cum_reshape,
     dab_tf_cum_compute, dab_op_free_priv},
    {"", "CumProd", 26, 0, T_NUM, 0, 2, 2, 1, 1, dab_tf_cum_init, dab_tf_cum_reshape,
     dab_tf_cum_compute, dab_op_free_priv},
    {"", "Trilu", 14, 0, T_ALL, 0, 1, 2, 1, 1, NULL, dab_tf_trilu_reshape, dab_tf_trilu_compute,
     NULL},
    {"", "TopK", 1, 9, T_NUM, 0, 1, 1, 2, 2, dab_tf_topk_init, dab_tf_topk_reshape,
     dab_tf_topk_compute, dab_op_free_priv},
    {"", "TopK", 10, 0, T_NUM, 0, 2, 2, 2, 2, dab_tf_topk_init, dab_tf_topk_reshape,
     dab_tf_topk_compute, dab_op_free_priv},
    {"", "OneHot", 9, 0, T_NUM, 0, 3, 3, 1, 1, NULL, dab_tf_onehot_reshape,
     dab_tf_onehot_compute, NULL},
    {"", "Einsum", 12, 0, DAB_DTM_NUMERIC, 0, 1, -1, 1, 1, dab_tf_einsum_init,
     dab_tf_einsum_reshape, dab_tf_einsum_compute, dab_op_free_priv},
    {0},
};
