/*
 * transformer_attn.c - Attention (opset 23 and 24): softmax(Q K^T * scale + bias) V per
 * (batch, query head), with 3-D [batch, seq, heads * size] or 4-D [batch, heads, seq, size]
 * inputs, grouped-query heads (query head h reads key/value head h / (q_heads / kv_heads)),
 * a key/value cache (past_key/past_value concatenated before K/V into present_key/value),
 * softcap, and the optional qk_matmul_output at any of its four stages.
 *
 * The bias of score (b, h, i, j) adds up: attn_mask (bool: false is -inf; float: added; a
 * last dim shorter than the total length is padded with -inf), is_causal (key j is visible
 * to query i when j <= i + offset, offset being the past length, or with opset 24's
 * nonpad_kv_seqlen and no past, nonpad_kv_seqlen[b] - q_len) and nonpad_kv_seqlen (keys at
 * or past it are hidden). The structural parts only ever hide a suffix of the keys, so a
 * row computes its scores up to that point and treats the rest as -inf. A row whose keys
 * are all hidden gets probabilities 0 and output 0 (not the NaN of 0/0), as the ONNX test
 * data asks.
 *
 * Work goes row by row: each query row scores its keys into one [total_len] row of scratch,
 * normalizes it and accumulates the value rows, so a thread holds one row of scores at a
 * time (never a [q_len, total_len] block) and rows spread over threads whatever the batch
 * and head counts (decoding too). When several query rows share a key head, each thread
 * also keeps that head's keys transposed (see ATT_KT_ROWS).
 * float16/bfloat16 tensors are converted to float in scratch first; double stays double.
 */
#include "transformer_int.h"

#include <math.h>
#include <omp.h>

enum { ATT_MASK_NONE, ATT_MASK_BOOL, ATT_MASK_ADD };

/* Independent partial sums of a dot product, so float dots vectorize. */
#define ATT_LANES 8

/*
 * Query rows sharing a key head from which a thread transposes the head's keys to
 * [size, total] once: scores then accumulate as s[0..total) += q[d] * Kt[d][0..total),
 * contiguous and vectorized with no horizontal sums (about 1.5x a dot product per key at
 * head size 64). Decoding (a query row or a few per key head) reads each key once and
 * keeps the dot products, which cost less than the transposition there.
 */
#define ATT_KT_ROWS 8
#define ATT_KT_TILE 16 /* the transposition goes tile by tile to stay in cache */

/* Everything the row kernel needs; strides in elements. */
typedef struct attn_geom {
    int64_t b, hq, hkv, sq, skv, past, total, d, dv;
    int64_t q_bs, q_hs, q_rs;
    int64_t k_bs, k_hs, k_rs; /* keys actually attended (present_key or K) */
    int64_t v_bs, v_hs, v_rs;
    int64_t y_bs, y_hs, y_rs;
    int mask_kind;
    int64_t m_bs, m_hs, m_rs, m_len; /* m_len: the mask's last dim (<= total) */
    bool has_past, causal;
    double scale, softcap;
    int qk_mode;
} attn_geom_t;

typedef struct attn_priv {
    int64_t q_heads_attr, kv_heads_attr;
    bool causal, has_scale;
    bool mask_from_add; /* DAB_ATTR_MASK_FROM_ADD */
    double scale_attr, softcap;
    int qk_mode;
    /* from the last reshape */
    attn_geom_t g;
    bool three_d, half;
    dab_dtype_t cdt;
    int64_t k_bs, k_hs, k_rs, v_bs, v_hs, v_rs; /* of the K and V inputs */
    size_t off_q, off_k, off_v, off_pk, off_pv, off_mask, off_pres_k, off_pres_v, off_y, off_qk;
    size_t off_rows, row_stride; /* per thread: a row of scores, then the keys transposed */
    size_t off_kt, off_tags;
    bool use_kt;
    int nt_max;
} attn_priv_t;

static int attn_read_attrs(const dab_node_t *node, attn_priv_t *p, dab_err_t *err)
{
    p->q_heads_attr = dab_attr_int(node, "q_num_heads", 0);
    p->kv_heads_attr = dab_attr_int(node, "kv_num_heads", 0);
    p->causal = dab_attr_int(node, "is_causal", 0) != 0;
    p->mask_from_add = dab_attr_int(node, DAB_ATTR_MASK_FROM_ADD, 0) != 0;
    p->has_scale = dab_attr_find(node, "scale") != NULL;
    p->scale_attr = dab_attr_float(node, "scale", 1.0f);
    p->softcap = dab_attr_float(node, "softcap", 0.0f);
    int64_t mode = dab_attr_int(node, "qk_matmul_output_mode", 0);
    int64_t prec = dab_attr_int(node, "softmax_precision", 0);
    if (mode < 0 || mode > 3)
        return dab_err_set(err, DAB_EINVAL, "attribute qk_matmul_output_mode %lld is not 0..3",
                           (long long)mode);
    p->qk_mode = (int)mode;
    /* softmax runs in float (double for double inputs), at least the precision asked */
    if (prec != 0 && (prec < 0 || prec >= DAB_DT_COUNT_ || !tf_is_float((dab_dtype_t)prec)))
        return dab_err_set(err, DAB_EINVAL,
                           "attribute softmax_precision %lld is not a floating-point type",
                           (long long)prec);
    if (p->q_heads_attr < 0 || p->kv_heads_attr < 0)
        return dab_err_set(err, DAB_EINVAL, "attributes q_num_heads and kv_num_heads must not "
                                            "be negative");
    if (p->has_scale && !(p->scale_attr > 0))
        return dab_err_set(err, DAB_EINVAL, "attribute scale must be positive");
    return 0;
}

int dab_tf_attn_init(dab_node_t *node, dab_err_t *err)
{
    attn_priv_t *p = dab_calloc(1, sizeof *p);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "out of memory for the operator's state");
    int rc = attn_read_attrs(node, p, err);
    if (rc) {
        dab_free(p);
        return rc;
    }
    node->priv = p;
    return 0;
}

static const dab_tensor_t *opt_in(const dab_node_t *node, int i)
{
    return i < node->n_inputs ? node->inputs[i] : NULL;
}

static dab_tensor_t *opt_out(const dab_node_t *node, int i)
{
    return i < node->n_outputs ? node->outputs[i] : NULL;
}

/* Checks one input's shape and fills its layout: (heads, seq, size) and strides. */
static int attn_layout(const dab_tensor_t *t, const char *name, bool three_d, int64_t heads_attr,
                       int64_t *heads, int64_t *seq, int64_t *size, int64_t *bs, int64_t *hs,
                       int64_t *rs, dab_err_t *err)
{
    if (!three_d) {
        *heads = t->dims[1];
        *seq = t->dims[2];
        *size = t->dims[3];
        *rs = *size;
        *hs = *seq * *size;
        *bs = *heads * *hs;
        return 0;
    }
    if (heads_attr <= 0)
        return dab_err_set(err, DAB_EINVAL,
                           "3-D inputs need attributes q_num_heads and kv_num_heads");
    if (t->dims[2] % heads_attr)
        return dab_err_set(err, DAB_ESHAPE, "%s's hidden size %lld is not a multiple of %lld heads",
                           name, (long long)t->dims[2], (long long)heads_attr);
    *heads = heads_attr;
    *seq = t->dims[1];
    *size = t->dims[2] / heads_attr;
    *rs = t->dims[2];
    *hs = *size;
    *bs = *seq * t->dims[2];
    return 0;
}

/* Sets the mask's broadcast strides against [b, hq, sq, *] and its length. */
static int attn_mask_layout(attn_geom_t *g, const dab_tensor_t *m, bool from_add,
                            dab_err_t *err)
{
    char s[96];
    /* A mask taken from an Add (the optimizer's fusion) with one value per row (last dim
     * 1, or a scalar) shifts every score of the row alike, which softmax ignores. */
    if (from_add && tf_is_float(m->dtype) && (m->rank == 0 || m->dims[m->rank - 1] == 1)) {
        g->mask_kind = ATT_MASK_NONE;
        g->m_len = g->total;
        return 0;
    }
    if (m->dtype == DAB_DT_BOOL)
        g->mask_kind = ATT_MASK_BOOL;
    else if (tf_is_float(m->dtype))
        g->mask_kind = ATT_MASK_ADD;
    else
        return dab_err_set(err, DAB_ETYPE, "attn_mask must be bool or a float type, got %s",
                           dab_dtype_name(m->dtype));
    if (m->rank < 1 || m->rank > 4)
        return dab_err_set(err, DAB_ESHAPE, "attn_mask must have rank 1 to 4, got %d", m->rank);
    const int64_t want[3] = {g->b, g->hq, g->sq};
    int64_t st[4] = {0, 0, 0, 0}, stride = 1;
    for (int d = 3; d >= 0; d--) {
        int md = d - (4 - m->rank);
        int64_t v = md >= 0 ? m->dims[md] : 1;
        if (d == 3) {
            if (v > g->total)
                return dab_err_set(err, DAB_ESHAPE,
                                   "attn_mask %s is longer than the %lld keys (past + new)",
                                   dab_shape_str(m, s, sizeof s), (long long)g->total);
            g->m_len = v;
        } else if (v != 1 && v != want[d]) {
            return dab_err_set(err, DAB_ESHAPE,
                               "attn_mask %s does not broadcast to [batch %lld, heads %lld, "
                               "q_len %lld, keys]",
                               dab_shape_str(m, s, sizeof s), (long long)g->b, (long long)g->hq,
                               (long long)g->sq);
        }
        st[d] = v == 1 && d < 3 ? 0 : stride;
        stride *= v;
    }
    g->m_bs = st[0];
    g->m_hs = st[1];
    g->m_rs = st[2];
    return 0;
}

/* Element count a * b * c * d or -1 when it overflows. */
static int64_t count4(int64_t a, int64_t b, int64_t c, int64_t d)
{
    int64_t r;
    if (dab_mul_i64(a, b, &r) || dab_mul_i64(r, c, &r) || dab_mul_i64(r, d, &r))
        return -1;
    return r;
}

int dab_tf_attn_reshape(dab_node_t *node, dab_err_t *err)
{
    attn_priv_t *p = node->priv;
    attn_geom_t *g = &p->g;
    const dab_tensor_t *q = node->inputs[0], *k = node->inputs[1], *v = node->inputs[2];
    const dab_tensor_t *mask = opt_in(node, 3), *pk = opt_in(node, 4), *pv = opt_in(node, 5);
    const dab_tensor_t *nonpad = opt_in(node, 6);
    char s1[96], s2[96];
    int rc;
    memset(g, 0, sizeof *g);
    if (q->rank != k->rank || q->rank != v->rank || (q->rank != 3 && q->rank != 4))
        return dab_err_set(err, DAB_ESHAPE, "Q, K and V must all be 3-D or all 4-D, got ranks "
                                            "%d, %d, %d",
                           q->rank, k->rank, v->rank);
    if (k->dtype != q->dtype || v->dtype != q->dtype)
        return dab_err_set(err, DAB_ETYPE, "Q, K and V must have one dtype, got %s, %s, %s",
                           dab_dtype_name(q->dtype), dab_dtype_name(k->dtype),
                           dab_dtype_name(v->dtype));
    p->three_d = q->rank == 3;
    int64_t kh = 0, vh = 0, kd = 0, vs = 0;
    if ((rc = attn_layout(q, "Q", p->three_d, p->q_heads_attr, &g->hq, &g->sq, &g->d, &g->q_bs,
                          &g->q_hs, &g->q_rs, err)) ||
        (rc = attn_layout(k, "K", p->three_d, p->kv_heads_attr, &kh, &g->skv, &kd, &p->k_bs,
                          &p->k_hs, &p->k_rs, err)) ||
        (rc = attn_layout(v, "V", p->three_d, p->kv_heads_attr, &vh, &vs, &g->dv, &p->v_bs,
                          &p->v_hs, &p->v_rs, err)))
        return rc;
    g->b = q->dims[0];
    g->hkv = kh;
    if (k->dims[0] != g->b || v->dims[0] != g->b)
        return dab_err_set(err, DAB_ESHAPE, "Q, K and V must have the same batch size");
    if (kd != g->d || vh != kh || vs != g->skv) {
        char s3[96];
        return dab_err_set(err, DAB_ESHAPE,
                           "K %s and V %s do not fit Q %s (head size, heads or lengths differ)",
                           dab_shape_str(k, s1, sizeof s1), dab_shape_str(v, s2, sizeof s2),
                           dab_shape_str(q, s3, sizeof s3));
    }
    if (g->hkv <= 0 || g->hq % g->hkv)
        return dab_err_set(err, DAB_ESHAPE,
                           "q heads (%lld) must be a multiple of kv heads (%lld)",
                           (long long)g->hq, (long long)g->hkv);
    /* the cache */
    if ((pk == NULL) != (pv == NULL))
        return dab_err_set(err, DAB_EINVAL, "past_key and past_value come together");
    g->has_past = pk != NULL;
    if (pk) {
        if (pk->dtype != q->dtype || pv->dtype != q->dtype)
            return dab_err_set(err, DAB_ETYPE, "past_key and past_value must have Q's dtype");
        if (pk->rank != 4 || pv->rank != 4 || pk->dims[0] != g->b || pk->dims[1] != g->hkv ||
            pk->dims[3] != g->d || pv->dims[0] != g->b || pv->dims[1] != g->hkv ||
            pv->dims[2] != pk->dims[2] || pv->dims[3] != g->dv)
            return dab_err_set(err, DAB_ESHAPE,
                               "past_key %s / past_value %s must be [batch, kv_heads, past, size]",
                               dab_shape_str(pk, s1, sizeof s1), dab_shape_str(pv, s2, sizeof s2));
        g->past = pk->dims[2];
    }
    g->total = g->past + g->skv;
    if (mask && (rc = attn_mask_layout(g, mask, p->mask_from_add, err)))
        return rc;
    if (nonpad) {
        if (nonpad->dtype != DAB_DT_INT64 || nonpad->rank != 1 || nonpad->dims[0] != g->b)
            return dab_err_set(err, DAB_ESHAPE, "nonpad_kv_seqlen must be int64 [batch %lld]",
                               (long long)g->b);
    }
    g->causal = p->causal;
    g->scale = p->has_scale ? p->scale_attr : 1.0 / sqrt((double)(g->d > 0 ? g->d : 1));
    g->softcap = p->softcap;
    g->qk_mode = p->qk_mode;
    /* outputs */
    int64_t dims[4];
    if (p->three_d) {
        dims[0] = g->b;
        dims[1] = g->sq;
        if (dab_mul_i64(g->hq, g->dv, &dims[2]))
            return dab_err_set(err, DAB_ELIMIT, "the output is too large");
        dab_tensor_set_shape(node->outputs[0], q->dtype, 3, dims);
        g->y_rs = dims[2];
        g->y_hs = g->dv;
        g->y_bs = g->sq * dims[2];
    } else {
        int64_t yd[4] = {g->b, g->hq, g->sq, g->dv};
        dab_tensor_set_shape(node->outputs[0], q->dtype, 4, yd);
        g->y_rs = g->dv;
        g->y_hs = g->sq * g->dv;
        g->y_bs = g->hq * g->y_hs;
    }
    int64_t pkd[4] = {g->b, g->hkv, g->total, g->d}, pvd[4] = {g->b, g->hkv, g->total, g->dv};
    int64_t qkd[4] = {g->b, g->hq, g->sq, g->total};
    if (opt_out(node, 1))
        dab_tensor_set_shape(node->outputs[1], q->dtype, 4, pkd);
    if (opt_out(node, 2))
        dab_tensor_set_shape(node->outputs[2], q->dtype, 4, pvd);
    if (opt_out(node, 3))
        dab_tensor_set_shape(node->outputs[3], q->dtype, 4, qkd);
    /* scratch */
    p->half = q->dtype == DAB_DT_FLOAT16 || q->dtype == DAB_DT_BFLOAT16;
    p->cdt = tf_compute_dtype(q->dtype);
    const size_t cs = dab_dtype_size(p->cdt);
    int64_t n_pk = count4(g->b, g->hkv, g->total, g->d);
    int64_t n_pv = count4(g->b, g->hkv, g->total, g->dv);
    int64_t n_qk = count4(g->b, g->hq, g->sq, g->total), n_y = count4(g->b, g->hq, g->sq, g->dv);
    if (n_pk < 0 || n_pv < 0 || n_qk < 0 || n_y < 0 || n_pk > INT64_MAX / 16 ||
        n_pv > INT64_MAX / 16 || n_qk > INT64_MAX / 16 || n_y > INT64_MAX / 16)
        return dab_err_set(err, DAB_ELIMIT, "the attention is too large");
    size_t off = 0, none = 0;
    p->off_q = tf_scratch_take(&off, p->half ? (size_t)dab_tensor_numel(q) * cs : none);
    p->off_k = tf_scratch_take(&off, p->half ? (size_t)dab_tensor_numel(k) * cs : none);
    p->off_v = tf_scratch_take(&off, p->half ? (size_t)dab_tensor_numel(v) * cs : none);
    p->off_pk = tf_scratch_take(&off, p->half && pk ? (size_t)dab_tensor_numel(pk) * cs : none);
    p->off_pv = tf_scratch_take(&off, p->half && pv ? (size_t)dab_tensor_numel(pv) * cs : none);
    bool conv_mask = mask && g->mask_kind == ATT_MASK_ADD && mask->dtype != p->cdt;
    p->off_mask = tf_scratch_take(&off, conv_mask ? (size_t)dab_tensor_numel(mask) * cs : none);
    bool pres_k_scratch = (pk || opt_out(node, 1)) && (p->half || !opt_out(node, 1));
    bool pres_v_scratch = (pv || opt_out(node, 2)) && (p->half || !opt_out(node, 2));
    p->off_pres_k = tf_scratch_take(&off, pres_k_scratch ? (size_t)n_pk * cs : none);
    p->off_pres_v = tf_scratch_take(&off, pres_v_scratch ? (size_t)n_pv * cs : none);
    p->off_y = tf_scratch_take(&off, p->half ? (size_t)n_y * cs : none);
    p->off_qk = tf_scratch_take(&off, p->half && opt_out(node, 3) ? (size_t)n_qk * cs : none);
    p->nt_max = tf_max_threads(node);
    /* enough query rows per key head pay for transposing its keys once (ATT_KT_ROWS) */
    p->use_kt = g->sq * (g->hq / g->hkv) >= ATT_KT_ROWS && g->d > 0 && g->total > 0;
    int64_t n_kt = count4(g->d, g->total, 1, 1);
    if (n_kt < 0 || n_kt > INT64_MAX / 16)
        return dab_err_set(err, DAB_ELIMIT, "the attention is too large");
    p->off_kt = DAB_ALIGN_UP((size_t)g->total * cs, TF_SCRATCH_ALIGN);
    p->row_stride = p->off_kt + (p->use_kt ? DAB_ALIGN_UP((size_t)n_kt * cs, TF_SCRATCH_ALIGN) : 0);
    if (p->row_stride > SIZE_MAX / 4 / (size_t)p->nt_max)
        return dab_err_set(err, DAB_ELIMIT, "the attention is too large");
    p->off_rows = tf_scratch_take(&off, p->row_stride * (size_t)p->nt_max);
    p->off_tags = tf_scratch_take(&off, sizeof(int64_t) * (size_t)p->nt_max);
    if (p->off_rows == SIZE_MAX || p->off_tags == SIZE_MAX || off > SIZE_MAX / 2)
        return dab_err_set(err, DAB_ELIMIT, "the attention is too large");
    node->scratch_bytes = off;
    return 0;
}

#define ATTN_DEFINE(T, EXP, TANH)                                                              \
    static inline T attn_dot_##T(const T *restrict a, const T *restrict b, int64_t n)          \
    {                                                                                          \
        T lane[ATT_LANES] = {0};                                                               \
        int64_t i = 0;                                                                         \
        for (; i + ATT_LANES <= n; i += ATT_LANES)                                             \
            for (int l = 0; l < ATT_LANES; l++)                                                \
                lane[l] += a[i + l] * b[i + l];                                                \
        T s = 0;                                                                               \
        for (; i < n; i++)                                                                     \
            s += a[i] * b[i];                                                                  \
        for (int l = 0; l < ATT_LANES; l++)                                                    \
            s += lane[l];                                                                      \
        return s;                                                                              \
    }                                                                                          \
                                                                                               \
    /* kt[d * total + j] = key j's element d, for the keys of (b, kh) */                      \
    static void attn_transpose_##T(const attn_geom_t *g, const T *k, int64_t b, int64_t kh,    \
                                   T *restrict kt)                                             \
    {                                                                                          \
        const T *kb = k + b * g->k_bs + kh * g->k_hs;                                          \
        const int64_t n = g->total, tile = ATT_KT_TILE;                                        \
        for (int64_t j0 = 0; j0 < n; j0 += tile)                                               \
            for (int64_t d0 = 0; d0 < g->d; d0 += tile) {                                      \
                const int64_t j1 = DAB_MIN(j0 + tile, n), d1 = DAB_MIN(d0 + tile, g->d);       \
                for (int64_t d = d0; d < d1; d++)                                              \
                    for (int64_t j = j0; j < j1; j++)                                          \
                        kt[d * n + j] = kb[j * g->k_rs + d];                                   \
            }                                                                                  \
    }                                                                                          \
                                                                                               \
    /* Query row r = (b * hq + h) * sq + i: scores into s[total], output row into y. kt: the   \
     * row's keys transposed, or NULL to take dot products with k. */                          \
    static void attn_row_##T(const attn_geom_t *g, int64_t r, const T *q, const T *k,          \
                             const T *kt, const T *v, const void *mask, const int64_t *nonpad, \
                             T *y, T *qk, T *restrict s)                                       \
    {                                                                                          \
        const int64_t i = r % g->sq, h = (r / g->sq) % g->hq, b = r / (g->sq * g->hq);         \
        const int64_t kh = h / (g->hq / g->hkv), total = g->total;                             \
        const T *qi = q + b * g->q_bs + h * g->q_hs + i * g->q_rs;                             \
        const T *kb = k + b * g->k_bs + kh * g->k_hs;                                          \
        const T *vb = v + b * g->v_bs + kh * g->v_hs;                                          \
        T *yi = y + b * g->y_bs + h * g->y_hs + i * g->y_rs;                                   \
        T *qki = qk ? qk + r * total : NULL;                                                   \
        /* keys [end, total) are hidden by structure: mask padding, nonpad, causal */          \
        int64_t end = total;                                                                   \
        if (mask)                                                                              \
            end = DAB_MIN(end, g->m_len);                                                      \
        if (nonpad)                                                                            \
            end = DAB_MIN(end, nonpad[b]);                                                     \
        if (g->causal) {                                                                       \
            int64_t off = g->has_past ? g->past : nonpad ? nonpad[b] - g->sq : 0;              \
            end = DAB_MIN(end, DAB_MAX(i + off + 1, 0));                                       \
        }                                                                                      \
        const int64_t ncomp = qki && g->qk_mode <= 1 ? total : end;                            \
        const T scale = (T)g->scale;                                                           \
        if (kt) {                                                                              \
            for (int64_t j = 0; j < ncomp; j++)                                                \
                s[j] = 0;                                                                      \
            for (int64_t d = 0; d < g->d; d++) {                                               \
                const T qd = qi[d] * scale, *ktd = kt + d * total;                             \
                for (int64_t j = 0; j < ncomp; j++)                                            \
                    s[j] += qd * ktd[j];                                                       \
            }                                                                                  \
        } else {                                                                               \
            for (int64_t j = 0; j < ncomp; j++)                                                \
                s[j] = attn_dot_##T(qi, kb + j * g->k_rs, g->d) * scale;                       \
        }                                                                                      \
        if (qki && g->qk_mode == 0)                                                            \
            memcpy(qki, s, (size_t)total * sizeof(T));                                         \
        if (g->softcap > 0) {                                                                  \
            const T cap = (T)g->softcap, inv_cap = (T)1 / cap;                                 \
            for (int64_t j = 0; j < ncomp; j++)                                                \
                s[j] = cap * TANH(s[j] * inv_cap);                                             \
        }                                                                                      \
        if (qki && g->qk_mode == 1)                                                            \
            memcpy(qki, s, (size_t)total * sizeof(T));                                         \
        if (g->mask_kind == ATT_MASK_BOOL) {                                                   \
            const uint8_t *mr = (const uint8_t *)mask + b * g->m_bs + h * g->m_hs + i * g->m_rs;  \
            for (int64_t j = 0; j < end; j++)                                                  \
                s[j] = mr[j] ? s[j] : (T)-INFINITY;                                            \
        } else if (g->mask_kind == ATT_MASK_ADD) {                                             \
            const T *mr = (const T *)mask + b * g->m_bs + h * g->m_hs + i * g->m_rs;           \
            for (int64_t j = 0; j < end; j++)                                                  \
                s[j] += mr[j];                                                                 \
        }                                                                                      \
        if (qki && g->qk_mode == 2) {                                                          \
            memcpy(qki, s, (size_t)DAB_MAX(end, 0) * sizeof(T));                               \
            for (int64_t j = DAB_MAX(end, 0); j < total; j++)                                  \
                qki[j] = (T)-INFINITY;                                                         \
        }                                                                                      \
        T m = (T)-INFINITY;                                                                    \
        for (int64_t j = 0; j < end; j++)                                                      \
            m = s[j] > m ? s[j] : m;                                                           \
        for (int64_t d = 0; d < g->dv; d++)                                                    \
            yi[d] = 0;                                                                         \
        if (m == (T)-INFINITY) { /* every key hidden: probabilities 0 */                       \
            if (qki && g->qk_mode == 3)                                                        \
                memset(qki, 0, (size_t)total * sizeof(T));                                     \
            return;                                                                            \
        }                                                                                      \
        T sum = 0;                                                                             \
        for (int64_t j = 0; j < end; j++) {                                                    \
            s[j] = EXP(s[j] - m);                                                              \
            sum += s[j];                                                                       \
        }                                                                                      \
        const T inv = (T)1 / sum;                                                              \
        for (int64_t j = 0; j < end; j++)                                                      \
            s[j] *= inv;                                                                       \
        if (qki && g->qk_mode == 3) {                                                          \
            memcpy(qki, s, (size_t)end * sizeof(T));                                           \
            memset(qki + end, 0, (size_t)(total - end) * sizeof(T));                           \
        }                                                                                      \
        for (int64_t j = 0; j < end; j++) {                                                    \
            const T pj = s[j], *vj = vb + j * g->v_rs;                                         \
            for (int64_t d = 0; d < g->dv; d++)                                                \
                yi[d] += pj * vj[d];                                                           \
        }                                                                                      \
    }                                                                                          \
                                                                                               \
    /* Rows [0, rows) on nt threads; each thread's scratch holds its score row and the keys   \
     * it transposed last (tags[thread]: which (b, kv head), -1 none). */                      \
    static void attn_rows_##T(const attn_geom_t *g, bool use_kt, int nt, const T *q,           \
                              const T *k, const T *v, const void *mask, const int64_t *nonpad, \
                              T *y, T *qk, char *scr, size_t stride, size_t off_kt,            \
                              int64_t *tags)                                                   \
    {                                                                                          \
        const int64_t rows = g->b * g->hq * g->sq;                                             \
        for (int t = 0; t < nt; t++)                                                           \
            tags[t] = -1;                                                                      \
        DAB_PAR_FOR(nt, int64_t, r, rows, {                                                    \
            const int tid = omp_get_thread_num();                                              \
            char *mine = scr + (size_t)tid * stride;                                           \
            T *kt = NULL;                                                                      \
            if (use_kt) {                                                                      \
                int64_t b = r / (g->sq * g->hq), h = (r / g->sq) % g->hq;                      \
                int64_t grp = b * g->hkv + h / (g->hq / g->hkv);                               \
                kt = (T *)(mine + off_kt);                                                     \
                if (tags[tid] != grp) {                                                        \
                    attn_transpose_##T(g, k, b, grp % g->hkv, kt);                             \
                    tags[tid] = grp;                                                           \
                }                                                                              \
            }                                                                                  \
            attn_row_##T(g, r, q, k, kt, v, mask, nonpad, y, qk, (T *)mine);                   \
        });                                                                                    \
    }

ATTN_DEFINE(float, expf, tanhf)
ATTN_DEFINE(double, exp, tanh)

/* Copies the cache: dst [b, hkv, total, size] = past rows then the new rows from src. */
static void attn_concat(const attn_geom_t *g, size_t es, int64_t size, const char *past,
                        const char *src, int64_t bs, int64_t hs, int64_t rs, char *dst)
{
    const size_t row = (size_t)size * es;
    for (int64_t b = 0; b < g->b; b++)
        for (int64_t h = 0; h < g->hkv; h++) {
            char *o = dst + (size_t)((b * g->hkv + h) * g->total) * row;
            if (g->past) {
                memcpy(o, past + (size_t)((b * g->hkv + h) * g->past) * row,
                       (size_t)g->past * row);
                o += (size_t)g->past * row;
            }
            for (int64_t j = 0; j < g->skv; j++)
                memcpy(o + (size_t)j * row, src + (size_t)(b * bs + h * hs + j * rs) * es, row);
        }
}

int dab_tf_attn_compute(dab_node_t *node, dab_err_t *err)
{
    attn_priv_t *p = node->priv;
    attn_geom_t g = p->g;
    const dab_tensor_t *q = node->inputs[0], *k = node->inputs[1], *v = node->inputs[2];
    const dab_tensor_t *mask = opt_in(node, 3), *pk = opt_in(node, 4), *pv = opt_in(node, 5);
    const dab_tensor_t *nonpad = opt_in(node, 6);
    dab_tensor_t *y = node->outputs[0], *ok = opt_out(node, 1), *ov = opt_out(node, 2);
    dab_tensor_t *oqk = opt_out(node, 3);
    char *scr = node->scratch;
    const dab_dtype_t cdt = p->cdt;
    const size_t cs = dab_dtype_size(cdt);
    const int64_t *np = nonpad ? nonpad->data : NULL;
    for (int64_t b = 0; np && b < g.b; b++)
        if (np[b] < 0 || np[b] > g.total)
            return dab_err_set(err, DAB_ERANGE,
                               "nonpad_kv_seqlen[%lld] = %lld is outside [0, %lld] (the keys)",
                               (long long)b, (long long)np[b], (long long)g.total);
    /* everything in the compute type */
    const void *qd = q->data, *kd = k->data, *vd = v->data;
    const void *pkd = pk ? pk->data : NULL, *pvd = pv ? pv->data : NULL;
    if (p->half) {
        dab_tf_convert(q->dtype, q->data, cdt, scr + p->off_q, dab_tensor_numel(q));
        dab_tf_convert(k->dtype, k->data, cdt, scr + p->off_k, dab_tensor_numel(k));
        dab_tf_convert(v->dtype, v->data, cdt, scr + p->off_v, dab_tensor_numel(v));
        qd = scr + p->off_q;
        kd = scr + p->off_k;
        vd = scr + p->off_v;
        if (pk) {
            dab_tf_convert(pk->dtype, pk->data, cdt, scr + p->off_pk, dab_tensor_numel(pk));
            dab_tf_convert(pv->dtype, pv->data, cdt, scr + p->off_pv, dab_tensor_numel(pv));
            pkd = scr + p->off_pk;
            pvd = scr + p->off_pv;
        }
    }
    const void *md = mask ? mask->data : NULL;
    if (mask && g.mask_kind == ATT_MASK_ADD && mask->dtype != cdt) {
        dab_tf_convert(mask->dtype, mask->data, cdt, scr + p->off_mask, dab_tensor_numel(mask));
        md = scr + p->off_mask;
    }
    /* keys and values attended: K/V as they are, or the cache with the new rows appended */
    g.k_bs = p->k_bs, g.k_hs = p->k_hs, g.k_rs = p->k_rs;
    g.v_bs = p->v_bs, g.v_hs = p->v_hs, g.v_rs = p->v_rs;
    if (pk || ok) {
        char *dst = p->half || !ok ? scr + p->off_pres_k : ok->data;
        attn_concat(&g, cs, g.d, pkd, kd, p->k_bs, p->k_hs, p->k_rs, dst);
        if (p->half && ok)
            dab_tf_convert(cdt, dst, ok->dtype, ok->data, dab_tensor_numel(ok));
        if (pk) {
            kd = dst;
            g.k_rs = g.d, g.k_hs = g.total * g.d, g.k_bs = g.hkv * g.k_hs;
        }
    }
    if (pv || ov) {
        char *dst = p->half || !ov ? scr + p->off_pres_v : ov->data;
        attn_concat(&g, cs, g.dv, pvd, vd, p->v_bs, p->v_hs, p->v_rs, dst);
        if (p->half && ov)
            dab_tf_convert(cdt, dst, ov->dtype, ov->data, dab_tensor_numel(ov));
        if (pv) {
            vd = dst;
            g.v_rs = g.dv, g.v_hs = g.total * g.dv, g.v_bs = g.hkv * g.v_hs;
        }
    }
    void *yd = p->half ? scr + p->off_y : y->data;
    void *qkd = oqk ? (p->half ? scr + p->off_qk : oqk->data) : NULL;
    const int64_t rows = g.b * g.hq * g.sq;
    int nt = tf_par_threads(node, (double)rows * (double)g.total * (double)(g.d + g.dv + 8));
    nt = DAB_MIN(nt, p->nt_max);
    int64_t *tags = (int64_t *)(scr + p->off_tags);
    if (cdt == DAB_DT_DOUBLE)
        attn_rows_double(&g, p->use_kt, nt, qd, kd, vd, md, np, yd, qkd, scr + p->off_rows,
                         p->row_stride, p->off_kt, tags);
    else
        attn_rows_float(&g, p->use_kt, nt, qd, kd, vd, md, np, yd, qkd, scr + p->off_rows,
                        p->row_stride, p->off_kt, tags);
    if (p->half) {
        dab_tf_convert(cdt, yd, y->dtype, y->data, dab_tensor_numel(y));
        if (oqk)
            dab_tf_convert(cdt, qkd, oqk->dtype, oqk->data, dab_tensor_numel(oqk));
    }
    return 0;
}
