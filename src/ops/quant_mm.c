/*
 * quant_mm.c - integer matrix products: MatMulInteger (int32 out) and QLinearMatMul
 * (requantized to int8 / uint8), with numpy matmul's 1-D operands and batch
 * broadcasting.
 *
 * A row of the product accumulates sum_k (a[k] - za) * b[k][j] in wrapping 32-bit
 * arithmetic (ONNX accumulates in int32; unsigned keeps overflow defined) and then
 * subtracts zb[j] * sum_k (a[k] - za), so b's zero point costs one pass per row rather
 * than one per product. Zero points and scales may be per tensor, per row of A (per
 * column of B) or, for MatMulInteger, per batch and row ([..., M, 1] / [..., 1, N]).
 */
#include "quant_int.h"

#include <string.h>

typedef struct qmm_geom {
    int64_t m, n, k;
    int brank; /* output batch rank */
    int64_t bdims[DAB_MAX_RANK];
    int64_t a_bstr[DAB_MAX_RANK], b_bstr[DAB_MAX_RANK]; /* in batches; 0 broadcasts */
    int64_t batches, a_batches, b_batches;
} qmm_geom_t;

/* Works out the product's geometry and output shape (dims, *rank). */
static int qmm_geom(const dab_tensor_t *a, const dab_tensor_t *b, qmm_geom_t *g,
                    int64_t *dims, int *rank, dab_err_t *err)
{
    memset(g, 0, sizeof *g);
    char sa[96], sb[96];
    if (a->rank < 1 || b->rank < 1)
        return dab_err_set(err, DAB_ESHAPE, "A and B must have rank >= 1, got %d and %d",
                           a->rank, b->rank);
    int ra = a->rank >= 2 ? a->rank - 2 : 0, rb = b->rank >= 2 ? b->rank - 2 : 0;
    g->m = a->rank >= 2 ? a->dims[a->rank - 2] : 1;
    g->k = a->dims[a->rank - 1];
    int64_t kb = b->rank >= 2 ? b->dims[b->rank - 2] : b->dims[0];
    g->n = b->rank >= 2 ? b->dims[b->rank - 1] : 1;
    if (kb != g->k)
        return dab_err_set(err, DAB_ESHAPE, "A %s and B %s do not fit: %lld columns vs %lld rows",
                           dab_shape_str(a, sa, sizeof sa), dab_shape_str(b, sb, sizeof sb),
                           (long long)g->k, (long long)kb);
    g->brank = DAB_MAX(ra, rb);
    g->batches = g->a_batches = g->b_batches = 1;
    int64_t as = 1, bs = 1;
    for (int d = g->brank - 1; d >= 0; d--) {
        int da = d - (g->brank - ra), db = d - (g->brank - rb);
        int64_t va = da >= 0 ? a->dims[da] : 1, vb = db >= 0 ? b->dims[db] : 1;
        if (va != vb && va != 1 && vb != 1)
            return dab_err_set(err, DAB_ESHAPE, "batch dims of A %s and B %s do not broadcast",
                               dab_shape_str(a, sa, sizeof sa), dab_shape_str(b, sb, sizeof sb));
        g->bdims[d] = va == 1 ? vb : va;
        g->a_bstr[d] = va == 1 ? 0 : as;
        g->b_bstr[d] = vb == 1 ? 0 : bs;
        as *= va;
        bs *= vb;
        g->batches *= g->bdims[d];
    }
    g->a_batches = as;
    g->b_batches = bs;
    *rank = 0;
    for (int d = 0; d < g->brank; d++)
        dims[(*rank)++] = g->bdims[d];
    if (a->rank >= 2)
        dims[(*rank)++] = g->m;
    if (b->rank >= 2)
        dims[(*rank)++] = g->n;
    return 0;
}

/* Batch indices into A and B of output batch ob. */
static void qmm_batch(const qmm_geom_t *g, int64_t ob, int64_t *ab, int64_t *bb)
{
    *ab = *bb = 0;
    for (int d = g->brank - 1; d >= 0; d--) {
        int64_t i = ob % g->bdims[d];
        ob /= g->bdims[d];
        *ab += i * g->a_bstr[d];
        *bb += i * g->b_bstr[d];
    }
}

/* How a zero point or scale spreads over rows (or columns): one value, one per row, or
 * one per batch and row. */
enum { QP_ONE, QP_ROW, QP_BATCH_ROW };

static int qmm_param(const dab_tensor_t *t, int64_t len, int64_t batches, const char *what,
                     const char *unit, int *kind, dab_err_t *err)
{
    int64_t cnt = dab_tensor_numel(t);
    if (cnt == 1)
        *kind = QP_ONE;
    else if (cnt == len && t->rank >= 1)
        *kind = QP_ROW;
    else if (cnt == len * batches && t->rank >= 2)
        *kind = QP_BATCH_ROW;
    else {
        char s[96];
        return dab_err_set(err, DAB_ESHAPE, "%s %s must hold 1 value or one per %s (%lld)",
                           what, dab_shape_str(t, s, sizeof s), unit, (long long)len);
    }
    return 0;
}

static inline int64_t qp_index(int kind, int64_t batch, int64_t len, int64_t r)
{
    return kind == QP_ONE ? 0 : kind == QP_ROW ? r : batch * len + r;
}

/* acc[j] = sum_k (a[k] - za) * b[k][j] over one row of A; *asum = sum_k (a[k] - za). */
#define QMM_ROW(NA, TA, NB, TB)                                                            \
    static void qmm_row_##NA##NB(const TA *restrict a, const TB *restrict b, int64_t k,    \
                                 int64_t n, int32_t za, uint32_t *restrict acc,            \
                                 uint32_t *asum)                                           \
    {                                                                                      \
        for (int64_t j = 0; j < n; j++)                                                    \
            acc[j] = 0;                                                                    \
        uint32_t s = 0;                                                                    \
        for (int64_t kk = 0; kk < k; kk++) {                                               \
            int32_t av = (int32_t)a[kk] - za;                                              \
            s += (uint32_t)av;                                                             \
            if (!av)                                                                       \
                continue;                                                                  \
            const TB *restrict bk = b + kk * n;                                            \
            for (int64_t j = 0; j < n; j++)                                                \
                acc[j] += (uint32_t)(av * (int32_t)bk[j]);                                 \
        }                                                                                  \
        *asum = s;                                                                         \
    }
QMM_ROW(u, uint8_t, u, uint8_t)
QMM_ROW(u, uint8_t, s, int8_t)
QMM_ROW(s, int8_t, u, uint8_t)
QMM_ROW(s, int8_t, s, int8_t)

static void qmm_row(dab_dtype_t adt, const void *a, dab_dtype_t bdt, const void *b, int64_t k,
                    int64_t n, int32_t za, uint32_t *acc, uint32_t *asum)
{
    bool bu = bdt == DAB_DT_UINT8;
    if (adt == DAB_DT_UINT8 && bu)
        qmm_row_uu(a, b, k, n, za, acc, asum);
    else if (adt == DAB_DT_UINT8)
        qmm_row_us(a, b, k, n, za, acc, asum);
    else if (bu)
        qmm_row_su(a, b, k, n, za, acc, asum);
    else
        qmm_row_ss(a, b, k, n, za, acc, asum);
}

/* What both operators share: operands, geometry and zero-point layouts. */
typedef struct qmm {
    const dab_tensor_t *a, *b, *za, *zb;
    qmm_geom_t g;
    int za_kind, zb_kind;
} qmm_t;

static int qmm_setup(dab_node_t *node, int ia, int ib, int iza, int izb, qmm_t *q,
                     int64_t *dims, int *rank, dab_err_t *err)
{
    q->a = node->inputs[ia];
    q->b = node->inputs[ib];
    q->za = dab_q_in(node, iza);
    q->zb = dab_q_in(node, izb);
    if (!(DAB_DTM_Q8 & DAB_DTM(q->b->dtype)))
        return dab_err_set(err, DAB_ETYPE, "B must be int8 or uint8, got %s",
                           dab_dtype_name(q->b->dtype));
    if (q->za && q->za->dtype != q->a->dtype)
        return dab_err_set(err, DAB_ETYPE, "A's zero point is %s but A is %s",
                           dab_dtype_name(q->za->dtype), dab_dtype_name(q->a->dtype));
    if (q->zb && q->zb->dtype != q->b->dtype)
        return dab_err_set(err, DAB_ETYPE, "B's zero point is %s but B is %s",
                           dab_dtype_name(q->zb->dtype), dab_dtype_name(q->b->dtype));
    int rc = qmm_geom(q->a, q->b, &q->g, dims, rank, err);
    q->za_kind = q->zb_kind = QP_ONE;
    if (!rc && q->za)
        rc = qmm_param(q->za, q->g.m, q->g.a_batches, "A's zero point", "row of A", &q->za_kind,
                       err);
    if (!rc && q->zb)
        rc = qmm_param(q->zb, q->g.n, q->g.b_batches, "B's zero point", "column of B",
                       &q->zb_kind, err);
    return rc;
}

/*
 * Row r (batch * m + i) of the product into acc (n values), B's zero point subtracted.
 */
static void qmm_product_row(const qmm_t *q, int64_t r, uint32_t *acc)
{
    const qmm_geom_t *g = &q->g;
    int64_t ob = r / g->m, i = r % g->m, ab, bb;
    qmm_batch(g, ob, &ab, &bb);
    const char *a = (const char *)q->a->data + (ab * g->m + i) * g->k;
    const char *b = (const char *)q->b->data + bb * g->k * g->n;
    int32_t za = q->za ? dab_q_geti(q->za, qp_index(q->za_kind, ab, g->m, i)) : 0;
    uint32_t asum;
    qmm_row(q->a->dtype, a, q->b->dtype, b, g->k, g->n, za, acc, &asum);
    if (!q->zb)
        return;
    for (int64_t j = 0; j < g->n; j++)
        acc[j] -= (uint32_t)dab_q_geti(q->zb, qp_index(q->zb_kind, bb, g->n, j)) * asum;
}

static int qmm_threads(const dab_node_t *node, const qmm_geom_t *g)
{
    return dab_par_threads(node->ctx, dab_q_work(g->batches * g->m * g->n, g->k));
}

/* ---- MatMulInteger ---- */

int dab_q_matmulint_reshape(dab_node_t *node, dab_err_t *err)
{
    qmm_t q;
    int64_t dims[DAB_MAX_RANK];
    int rank;
    int rc = qmm_setup(node, 0, 1, 2, 3, &q, dims, &rank, err);
    if (!rc)
        rc = dab_shape_check("output Y", DAB_DT_INT32, rank, dims, 0, NULL, err);
    if (rc)
        return rc;
    dab_tensor_set_shape(node->outputs[0], DAB_DT_INT32, rank, dims);
    return 0;
}

int dab_q_matmulint_compute(dab_node_t *node, dab_err_t *err)
{
    qmm_t q;
    int64_t dims[DAB_MAX_RANK];
    int rank;
    int rc = qmm_setup(node, 0, 1, 2, 3, &q, dims, &rank, err);
    if (rc)
        return rc;
    int64_t rows = q.g.batches * q.g.m, n = q.g.n;
    /* int32 and uint32 may alias: the rows accumulate in the output itself */
    uint32_t *y = node->outputs[0]->data;
    int nt = qmm_threads(node, &q.g);
    DAB_PAR_FOR(nt, int64_t, r, rows, qmm_product_row(&q, r, y + r * n););
    return 0;
}

/* ---- QLinearMatMul ---- */

/* Inputs: a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point. */
typedef struct qlmm {
    qmm_t q;
    const dab_tensor_t *sa, *sb, *sy, *zy;
    int sa_kind, sb_kind, sy_kind, zy_kind;
    int32_t lo, hi;
} qlmm_t;

static int qlmm_setup(dab_node_t *node, qlmm_t *p, int64_t *dims, int *rank, dab_err_t *err)
{
    int rc = qmm_setup(node, 0, 3, 2, 5, &p->q, dims, rank, err);
    if (rc)
        return rc;
    p->sa = node->inputs[1];
    p->sb = node->inputs[4];
    p->sy = node->inputs[6];
    p->zy = node->inputs[7];
    dab_dtype_t sdt = p->sa->dtype;
    if ((sdt != DAB_DT_FLOAT && sdt != DAB_DT_FLOAT16 && sdt != DAB_DT_BFLOAT16) ||
        p->sb->dtype != sdt || p->sy->dtype != sdt)
        return dab_err_set(err, DAB_ETYPE,
                           "a_scale, b_scale and y_scale must share one of float, float16 and "
                           "bfloat16; got %s, %s and %s",
                           dab_dtype_name(sdt), dab_dtype_name(p->sb->dtype),
                           dab_dtype_name(p->sy->dtype));
    if (!(DAB_DTM_Q8 & DAB_DTM(p->zy->dtype)))
        return dab_err_set(err, DAB_ETYPE, "y_zero_point must be int8 or uint8, got %s",
                           dab_dtype_name(p->zy->dtype));
    dab_q_int_range(p->zy->dtype, &p->lo, &p->hi);
    const qmm_geom_t *g = &p->q.g;
    if ((rc = qmm_param(p->sa, g->m, g->a_batches, "a_scale", "row of a", &p->sa_kind, err)) ||
        (rc = qmm_param(p->sb, g->n, g->b_batches, "b_scale", "column of b", &p->sb_kind, err)) ||
        (rc = qmm_param(p->sy, g->m, g->a_batches, "y_scale", "row of y", &p->sy_kind, err)) ||
        (rc = qmm_param(p->zy, g->m, g->a_batches, "y_zero_point", "row of y", &p->zy_kind,
                        err)))
        return rc;
    return 0;
}

/* Scratch: one row of accumulators per thread. */
static size_t qlmm_scratch(const dab_node_t *node, const qmm_geom_t *g)
{
    int t = node->ctx && node->ctx->threads > 1 ? node->ctx->threads : 1;
    return (size_t)t * (size_t)g->n * sizeof(uint32_t);
}

int dab_q_qlmatmul_reshape(dab_node_t *node, dab_err_t *err)
{
    qlmm_t p;
    int64_t dims[DAB_MAX_RANK];
    int rank;
    int rc = qlmm_setup(node, &p, dims, &rank, err);
    if (!rc)
        rc = dab_shape_check("output y", p.zy->dtype, rank, dims, 0, NULL, err);
    if (rc)
        return rc;
    dab_tensor_set_shape(node->outputs[0], p.zy->dtype, rank, dims);
    node->scratch_bytes = qlmm_scratch(node, &p.q.g);
    return 0;
}

static void qlmm_rows(const qlmm_t *p, void *y, int64_t r0, int64_t r1, uint32_t *acc)
{
    const qmm_geom_t *g = &p->q.g;
    dab_dtype_t sdt = p->sa->dtype, ydt = p->zy->dtype;
    for (int64_t r = r0; r < r1; r++) {
        qmm_product_row(&p->q, r, acc);
        int64_t ab, bb, i = r % g->m;
        qmm_batch(g, r / g->m, &ab, &bb);
        float sa = dab_q_getf(p->sa, qp_index(p->sa_kind, ab, g->m, i));
        float sy = dab_q_getf(p->sy, qp_index(p->sy_kind, ab, g->m, i));
        int32_t zy = dab_q_geti(p->zy, qp_index(p->zy_kind, ab, g->m, i));
        double mult = dab_q_mult(sdt, sa, dab_q_getf(p->sb, 0), sy);
        for (int64_t j = 0; j < g->n; j++) {
            if (p->sb_kind != QP_ONE)
                mult = dab_q_mult(sdt, sa, dab_q_getf(p->sb, qp_index(p->sb_kind, bb, g->n, j)),
                                  sy);
            dab_q_put8(ydt, y, r * g->n + j,
                       dab_q_requant((int32_t)acc[j], mult, zy, p->lo, p->hi));
        }
    }
}

int dab_q_qlmatmul_compute(dab_node_t *node, dab_err_t *err)
{
    qlmm_t p;
    int64_t dims[DAB_MAX_RANK];
    int rank;
    int rc = qlmm_setup(node, &p, dims, &rank, err);
    if (rc)
        return rc;
    int64_t rows = p.q.g.batches * p.q.g.m, n = p.q.g.n;
    if (rows == 0 || n == 0)
        return 0;
    int nt = qmm_threads(node, &p.q.g);
    if (node->scratch_bytes < (size_t)nt * (size_t)n * sizeof(uint32_t))
        nt = 1;
    uint32_t *acc = node->scratch;
    void *y = node->outputs[0]->data;
    DAB_PAR_FOR(nt, int, t, nt,
        qlmm_rows(&p, y, rows * t / nt, rows * (t + 1) / nt, acc + (int64_t)t * n););
    return 0;
}
