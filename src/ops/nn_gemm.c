/*
 * nn_gemm.c - Gemm and MatMul.
 *
 * Both reduce to one dab_matmul_geom_t (batch broadcasting, transposes as strides,
 * alpha, accumulate into a pre-filled beta*C) and one of three paths chosen in reshape:
 *   gemv  float32 with a single output row (batch-1 Linear layers): one pass over B;
 *   dnnl  other float32 products, a oneDNN matmul cached per geometry with constant
 *         B packed once; Gemm's row-vector bias (alpha = beta = 1) rides on the primitive;
 *   ref   float64, integers, and anything oneDNN declines.
 * MatMul's batch dims fold into M when B is a single matrix, so a [b, s, k] x [k, n]
 * product is one 2-D GEMM.
 */
#include "nn_int.h"
#include "kernels/simd/simd.h"

#include <string.h>

enum { MM_EMPTY, MM_REF, MM_GEMV, MM_DNNL };

typedef struct mm_priv {
    int is_gemm, trans_a, trans_b;
    float alpha, beta;
    const void *const_b; /* B's data when B is an initializer */
    dab_act_t act;       /* fused by the graph optimizer: oneDNN post-op or applied after */
    nn_cache_t cache;
    /* decided by reshape for the following compute */
    int path;
    int fill;           /* Gemm: write beta*C (or zeros when k == 0) into Y before the product */
    int use_bias;       /* Gemm: C is oneDNN's bias vector */
    int64_t c_rs, c_cs; /* C's strides broadcast over [M, N] */
    dab_matmul_geom_t geom;
    dab_dnnl_prim_t *prim;
} mm_priv_t;

/* Cache key: everything a oneDNN matmul primitive depends on. */
typedef struct mm_key {
    dab_matmul_geom_t g;
    int bias, packed, threads; /* threads: the team it is planned for */
} mm_key_t;

static int mm_init(dab_node_t *node, int is_gemm, dab_err_t *err)
{
    mm_priv_t *p = dab_calloc(1, sizeof *p);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "no memory for the operator state");
    p->is_gemm = is_gemm;
    p->alpha = 1.0f;
    p->beta = 1.0f;
    if (is_gemm) {
        int64_t ta = dab_attr_int(node, "transA", 0), tb = dab_attr_int(node, "transB", 0);
        if ((ta != 0 && ta != 1) || (tb != 0 && tb != 1)) {
            dab_free(p);
            return dab_err_set(err, DAB_EINVAL,
                               "attributes transA/transB must be 0 or 1, got %lld/%lld",
                               (long long)ta, (long long)tb);
        }
        p->trans_a = (int)ta;
        p->trans_b = (int)tb;
        p->alpha = dab_attr_float(node, "alpha", 1.0f);
        p->beta = dab_attr_float(node, "beta", 1.0f);
    }
    p->const_b = nn_const_data(node, 1);
    int rc = nn_fused_act(node, &p->act, err);
    if (rc) {
        dab_free(p);
        return rc;
    }
    node->priv = p;
    return 0;
}

int dab_nn_matmul_init(dab_node_t *node, dab_err_t *err)
{
    return mm_init(node, 0, err);
}

int dab_nn_gemm_init(dab_node_t *node, dab_err_t *err)
{
    return mm_init(node, 1, err);
}

void dab_nn_mm_exit(dab_node_t *node)
{
    mm_priv_t *p = node->priv;
    if (!p)
        return;
    dab_nn_cache_clear(&p->cache);
    dab_free(p);
    node->priv = NULL;
}

/* MatMul shapes: numpy matmul semantics (1-D operands promoted then squeezed). */
static int matmul_shapes(dab_node_t *node, mm_priv_t *p, dab_tensor_t *y, dab_err_t *err)
{
    const dab_tensor_t *a = node->inputs[0], *b = node->inputs[1];
    if (a->rank < 1 || b->rank < 1)
        return dab_err_set(err, DAB_ESHAPE,
                           "MatMul inputs must have rank >= 1, got ranks %d and %d", a->rank,
                           b->rank);
    const int a1 = a->rank == 1, b1 = b->rank == 1;
    const int64_t m = a1 ? 1 : a->dims[a->rank - 2], k = a->dims[a->rank - 1];
    const int64_t kb = b1 ? b->dims[0] : b->dims[b->rank - 2], n = b1 ? 1 : b->dims[b->rank - 1];
    if (k != kb) {
        char sa[96], sb[96];
        return dab_err_set(err, DAB_ESHAPE,
                           "MatMul inner dims differ: A %s has K = %lld, B %s has %lld",
                           dab_shape_str(a, sa, sizeof sa), (long long)k,
                           dab_shape_str(b, sb, sizeof sb), (long long)kb);
    }
    /* batch dims: everything but the last two (none for 1-D) */
    const int ra = a1 ? 0 : a->rank - 2, rb = b1 ? 0 : b->rank - 2;
    const int r = DAB_MAX(ra, rb);
    dab_matmul_geom_t *g = &p->geom;
    memset(g, 0, sizeof *g);
    g->batch_rank = r;
    int64_t sa = m * k, sb = k * n; /* running strides, innermost batch dim first */
    for (int d = r - 1; d >= 0; d--) {
        int ia = d - (r - ra), ib = d - (r - rb);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char s1[96], s2[96];
            return dab_err_set(err, DAB_ESHAPE,
                               "MatMul batch dims of %s and %s cannot be broadcast",
                               dab_shape_str(a, s1, sizeof s1), dab_shape_str(b, s2, sizeof s2));
        }
        g->batch[d] = da == 1 ? db : da;
        g->a_bstride[d] = da == 1 ? 0 : sa;
        g->b_bstride[d] = db == 1 ? 0 : sb;
        sa *= da;
        sb *= db;
    }
    g->m = m, g->n = n, g->k = k;
    g->a_rs = k, g->a_cs = 1, g->b_rs = n, g->b_cs = 1;
    g->alpha = 1.0;
    g->accumulate = 0;
    p->fill = 0;
    p->use_bias = 0;

    int rank = 0;
    int64_t dims[DAB_MAX_RANK];
    for (int d = 0; d < r; d++)
        dims[rank++] = g->batch[d];
    if (!a1)
        dims[rank++] = m;
    if (!b1)
        dims[rank++] = n;
    if (rank > DAB_MAX_RANK)
        return dab_err_set(err, DAB_ELIMIT, "MatMul output rank %d exceeds %d", rank, DAB_MAX_RANK);
    size_t bytes;
    int rc = dab_shape_check("MatMul output", a->dtype, rank, dims, 0, &bytes, err);
    if (rc)
        return rc;
    dab_tensor_set_shape(y, a->dtype, rank, dims);

    /* Fold batch into M when B is one matrix and A is not broadcast. */
    int b_single = 1, a_full = 1;
    for (int d = 0; d < r; d++) {
        b_single &= g->b_bstride[d] == 0;
        a_full &= g->a_bstride[d] != 0 || g->batch[d] == 1;
    }
    if (r > 0 && b_single && a_full) {
        int64_t nb = 1;
        for (int d = 0; d < r; d++)
            nb *= g->batch[d];
        g->m *= nb;
        g->batch_rank = 0;
    }
    return 0;
}

/* Gemm shapes: 2-D A and B with transposes, C unidirectionally broadcast to [M, N]. */
static int gemm_shapes(dab_node_t *node, mm_priv_t *p, dab_tensor_t *y, dab_err_t *err)
{
    const dab_tensor_t *a = node->inputs[0], *b = node->inputs[1];
    const dab_tensor_t *c = node->n_inputs > 2 ? node->inputs[2] : NULL;
    if (a->rank != 2 || b->rank != 2)
        return dab_err_set(err, DAB_ESHAPE, "Gemm inputs A and B must be 2-D, got ranks %d and %d",
                           a->rank, b->rank);
    const int64_t m = p->trans_a ? a->dims[1] : a->dims[0];
    const int64_t k = p->trans_a ? a->dims[0] : a->dims[1];
    const int64_t kb = p->trans_b ? b->dims[1] : b->dims[0];
    const int64_t n = p->trans_b ? b->dims[0] : b->dims[1];
    if (k != kb)
        return dab_err_set(err, DAB_ESHAPE,
                           "Gemm inner dims differ: op(A) is %lldx%lld, op(B) is %lldx%lld",
                           (long long)m, (long long)k, (long long)kb, (long long)n);
    dab_matmul_geom_t *g = &p->geom;
    memset(g, 0, sizeof *g);
    g->m = m, g->n = n, g->k = k;
    g->a_rs = p->trans_a ? 1 : k;
    g->a_cs = p->trans_a ? m : 1;
    g->b_rs = p->trans_b ? 1 : n;
    g->b_cs = p->trans_b ? k : 1;
    g->alpha = p->alpha;

    p->fill = 0;
    p->use_bias = 0;
    if (c && p->beta != 0.0f) {
        if (c->dtype != a->dtype)
            return dab_err_set(err, DAB_ETYPE, "Gemm input C is %s, A is %s",
                               dab_dtype_name(c->dtype), dab_dtype_name(a->dtype));
        if (c->rank > 2)
            return dab_err_set(err, DAB_ESHAPE, "Gemm input C must have rank <= 2, got %d",
                               c->rank);
        int64_t c0 = c->rank == 2 ? c->dims[0] : 1;
        int64_t c1 = c->rank >= 1 ? c->dims[c->rank - 1] : 1;
        if ((c0 != 1 && c0 != m) || (c1 != 1 && c1 != n)) {
            char s[96];
            return dab_err_set(err, DAB_ESHAPE,
                               "Gemm input C %s cannot be broadcast to [%lld,%lld]",
                               dab_shape_str(c, s, sizeof s), (long long)m, (long long)n);
        }
        p->c_rs = c0 == 1 ? 0 : c1;
        p->c_cs = c1 == 1 ? 0 : 1;
        p->fill = 1;
        g->accumulate = 1;
        /* oneDNN's bias: a row vector added unscaled */
        if (a->dtype == DAB_DT_FLOAT && p->alpha == 1.0f && p->beta == 1.0f && c0 == 1 && c1 == n &&
            m > 1) {
            p->use_bias = 1;
            p->fill = 0;
            g->accumulate = 0;
        }
    } else if (k == 0) {
        p->fill = 2;
    }
    int64_t dims[2] = {m, n};
    size_t bytes;
    int rc = dab_shape_check("Gemm output", a->dtype, 2, dims, 0, &bytes, err);
    if (rc)
        return rc;
    dab_tensor_set_shape(y, a->dtype, 2, dims);
    return 0;
}

int dab_nn_mm_reshape(dab_node_t *node, dab_err_t *err)
{
    mm_priv_t *p = node->priv;
    const dab_tensor_t *a = node->inputs[0], *b = node->inputs[1];
    dab_tensor_t *y = node->outputs[0];
    if (b->dtype != a->dtype)
        return dab_err_set(err, DAB_ETYPE, "input B is %s, A is %s", dab_dtype_name(b->dtype),
                           dab_dtype_name(a->dtype));
    int rc = p->is_gemm ? gemm_shapes(node, p, y, err) : matmul_shapes(node, p, y, err);
    if (rc)
        return rc;
    node->scratch_bytes = 0;
    p->prim = NULL;
    p->geom.act = p->act;
    const dab_matmul_geom_t *g = &p->geom;
    if (g->m == 0 || g->n == 0 || dab_tensor_numel(y) == 0) {
        p->path = MM_EMPTY;
        p->fill = 0;
        return 0;
    }
    if (g->k == 0) {
        p->path = MM_EMPTY; /* the fill is the whole answer */
        if (p->use_bias) {
            p->use_bias = 0;
            p->fill = 1;
        }
        if (!p->is_gemm)
            p->fill = 2;
        return 0;
    }
    p->path = MM_REF;
    if (a->dtype != DAB_DT_FLOAT)
        return 0;
    /* A single row is a gemv on the tensors as they are, except for constant weights
     * too big for L2, which stream faster from oneDNN's packed layout (1024x1024: 49 us
     * vs 60 us on one core; equal at 512x512 and below, where the gemv also needs no
     * primitive for the new shape). */
    const float *cb = p->const_b && b->data == p->const_b ? p->const_b : NULL;
    if (g->m == 1 && g->batch_rank == 0 && !p->use_bias && (!cb || g->k * g->n <= (1 << 18))) {
        p->path = MM_GEMV;
        return 0;
    }
    int64_t nb = 1;
    for (int d = 0; d < g->batch_rank; d++)
        nb *= g->batch[d];
    mm_key_t key;
    memset(&key, 0, sizeof key);
    key.g = *g;
    key.bias = p->use_bias;
    key.packed = cb != NULL;
    key.threads = nn_dnnl_threads_gemm(node->ctx, nb * g->m * g->n * g->k);
    nn_cache_entry_t *e = dab_nn_cache_find(&p->cache, &key, sizeof key);
    if (!e) {
        e = dab_nn_cache_insert(&p->cache, &key, sizeof key);
        dab_err_t derr;
        rc = dab_dnnl_matmul_create(g, p->use_bias, cb, key.threads, &e->prim, &derr);
        if (rc && rc != DAB_EUNSUPPORTED) {
            e->used = 0;
            *err = derr;
            return rc;
        }
        dab_nn_cache_share(&p->cache, e);
    }
    if (e->prim) {
        p->path = MM_DNNL;
        p->prim = e->prim;
        node->scratch_bytes = dab_dnnl_prim_scratch_bytes(e->prim);
    } else if (p->use_bias) {
        /* reference path: C goes through the fill again */
        p->use_bias = 0;
        p->fill = 1;
        p->geom.accumulate = 1;
    }
    return 0;
}

/* Y = beta * C broadcast (fill 1) or zeros (fill 2). */
#define DEF_FILL(TY, SUF)                                                                          \
    static void fill_##SUF(TY *y, const TY *c, int64_t m, int64_t n, int64_t rs, int64_t cs,       \
                           double beta)                                                            \
    {                                                                                              \
        const TY bt = (TY)beta;                                                                    \
        for (int64_t i = 0; i < m; i++)                                                            \
            for (int64_t j = 0; j < n; j++)                                                        \
                y[i * n + j] =                                                                     \
                    c ? (beta == 1.0 ? c[i * rs + j * cs] : bt * c[i * rs + j * cs]) : (TY)0;      \
    }
DEF_FILL(float, f32)
DEF_FILL(double, f64)
DEF_FILL(int8_t, i8)
DEF_FILL(uint8_t, u8)
DEF_FILL(int16_t, i16)
DEF_FILL(uint16_t, u16)
DEF_FILL(int32_t, i32)
DEF_FILL(uint32_t, u32)
DEF_FILL(int64_t, i64)
DEF_FILL(uint64_t, u64)

static int fill_out(dab_node_t *node, mm_priv_t *p, dab_err_t *err)
{
    dab_tensor_t *y = node->outputs[0];
    const dab_tensor_t *c = p->fill == 1 ? node->inputs[2] : NULL;
    const void *cd = c ? c->data : NULL;
    /* MatMul's output may be [b..., m, n]: zero it as one row block */
    int64_t m = p->is_gemm ? p->geom.m : 1, n = p->is_gemm ? p->geom.n : dab_tensor_numel(y);
    switch (y->dtype) {
    case DAB_DT_FLOAT: fill_f32(y->data, cd, m, n, p->c_rs, p->c_cs, p->beta); break;
    case DAB_DT_DOUBLE: fill_f64(y->data, cd, m, n, p->c_rs, p->c_cs, p->beta); break;
    case DAB_DT_INT8: fill_i8(y->data, cd, m, n, p->c_rs, p->c_cs, p->beta); break;
    case DAB_DT_UINT8: fill_u8(y->data, cd, m, n, p->c_rs, p->c_cs, p->beta); break;
    case DAB_DT_INT16: fill_i16(y->data, cd, m, n, p->c_rs, p->c_cs, p->beta); break;
    case DAB_DT_UINT16: fill_u16(y->data, cd, m, n, p->c_rs, p->c_cs, p->beta); break;
    case DAB_DT_INT32: fill_i32(y->data, cd, m, n, p->c_rs, p->c_cs, p->beta); break;
    case DAB_DT_UINT32: fill_u32(y->data, cd, m, n, p->c_rs, p->c_cs, p->beta); break;
    case DAB_DT_INT64: fill_i64(y->data, cd, m, n, p->c_rs, p->c_cs, p->beta); break;
    case DAB_DT_UINT64: fill_u64(y->data, cd, m, n, p->c_rs, p->c_cs, p->beta); break;
    default:
        return dab_err_set(err, DAB_EUNSUPPORTED, "dtype %s is not supported",
                           dab_dtype_name(y->dtype));
    }
    return 0;
}

int dab_nn_mm_compute(dab_node_t *node, dab_err_t *err)
{
    mm_priv_t *p = node->priv;
    const dab_tensor_t *a = node->inputs[0], *b = node->inputs[1];
    dab_tensor_t *y = node->outputs[0];
    const dab_matmul_geom_t *g = &p->geom;
    int rc;
    if (p->fill && (rc = fill_out(node, p, err)))
        return rc;
    int64_t nb = 1;
    for (int d = 0; d < g->batch_rank; d++)
        nb *= g->batch[d];
    int nt = dab_par_threads(node->ctx, nb * g->m * g->n * g->k);
    switch (p->path) {
    case MM_EMPTY: break;
    case MM_GEMV:
        dab_simd_gemv_f32(g->n, g->k, a->data, b->data, g->b_rs, g->b_cs, (float)g->alpha,
                          g->accumulate, y->data, nt);
        break;
    case MM_DNNL: /* a fused activation is the primitive's post-op */
        return dab_dnnl_prim_run(p->prim, a->data, b->data,
                                 p->use_bias ? node->inputs[2]->data : NULL, y->data, node->scratch,
                                 err);
    default:
        rc = dab_ref_matmul(a->dtype, g, a->data, b->data, y->data, nt);
        if (rc)
            return dab_err_set(err, rc, "dtype %s is not supported", dab_dtype_name(a->dtype));
        break;
    }
    if ((rc = dab_act_apply(&p->act, y->dtype, y->data, dab_tensor_numel(y), nt)))
        return dab_err_set(err, rc, "dtype %s is not supported", dab_dtype_name(y->dtype));
    return 0;
}
