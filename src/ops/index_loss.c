/*
 * index_loss.c - NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss, the two
 * classification losses: both pick, for every sample position, the score of its
 * target class (the second after a log-softmax over the class axis), weight it,
 * and reduce.
 *
 * Scores are viewed as [N, C, D] (D the product of the spatial dims, 1 for 2-D
 * input) and targets as [N, D]. Per-position losses and weights are computed in
 * double into scratch, in parallel over N, then reduced serially: "none" writes
 * them out, "sum" adds them, "mean" divides their sum by the sum of the weights of
 * the positions that are not ignored (their count when there are no weights).
 * Targets are class numbers, never wrapped: a target outside [0, C) that is not
 * ignore_index is an error.
 */
#include "index_int.h"

#include <math.h>

enum { LOSS_NONE, LOSS_SUM, LOSS_MEAN };

typedef struct loss_priv {
    bool sce; /* SoftmaxCrossEntropyLoss (log-softmax first) */
    int reduction;
    bool has_ignore;
    int64_t ignore_index;
    int64_t n, c, d; /* from the last reshape */
} loss_priv_t;

int dab_idx_loss_init(dab_node_t *node, dab_err_t *err)
{
    const char *r = dab_attr_string(node, "reduction", "mean");
    int red;
    if (!strcmp(r, "none"))
        red = LOSS_NONE;
    else if (!strcmp(r, "sum"))
        red = LOSS_SUM;
    else if (!strcmp(r, "mean"))
        red = LOSS_MEAN;
    else
        return dab_err_set(err, DAB_EINVAL, "attribute 'reduction' '%s' is not none, sum or mean",
                           r);
    loss_priv_t *p = dab_calloc(1, sizeof *p);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "out of memory for the operator's state");
    p->sce = !strcmp(node->op_type, "SoftmaxCrossEntropyLoss");
    p->reduction = red;
    const dab_attr_t *ii = dab_attr_find(node, "ignore_index");
    p->has_ignore = ii != NULL;
    p->ignore_index = ii ? ii->i : 0;
    node->priv = p;
    return 0;
}

int dab_idx_loss_reshape(dab_node_t *node, dab_err_t *err)
{
    loss_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0], *t = node->inputs[1], *w = dab_idx_in(node, 2);
    const char *xn = p->sce ? "scores" : "input", *tn = p->sce ? "labels" : "target";
    int rc = dab_idx_check_int(t, tn, err);
    if (rc)
        return rc;
    if (x->rank < 2)
        return dab_err_set(err, DAB_ESHAPE, "input '%s' must be [N, C, ...], got rank %d", xn,
                           x->rank);
    bool ok = t->rank == x->rank - 1 && t->dims[0] == x->dims[0];
    for (int k = 1; ok && k < t->rank; k++)
        ok = t->dims[k] == x->dims[k + 1];
    if (!ok) {
        char a[96], b[96];
        return dab_err_set(err, DAB_ESHAPE, "input '%s' %s must be '%s' %s without dim 1", tn,
                           dab_shape_str(t, a, sizeof a), xn, dab_shape_str(x, b, sizeof b));
    }
    if (w) {
        if (w->dtype != x->dtype)
            return dab_err_set(err, DAB_ETYPE, "input 'weight' is %s, '%s' is %s",
                               dab_dtype_name(w->dtype), xn, dab_dtype_name(x->dtype));
        if (w->rank != 1 || w->dims[0] != x->dims[1])
            return dab_err_set(err, DAB_ESHAPE, "input 'weight' must be [%lld] (one per class)",
                               (long long)x->dims[1]);
    }
    p->n = x->dims[0];
    p->c = x->dims[1];
    p->d = dab_idx_prod(x->dims, 2, x->rank);
    if (p->reduction == LOSS_NONE)
        dab_tensor_set_shape(node->outputs[0], x->dtype, t->rank, t->dims);
    else
        dab_tensor_set_shape(node->outputs[0], x->dtype, 0, NULL);
    dab_tensor_t *lp = dab_idx_out(node, 1);
    if (lp)
        dab_tensor_set_shape(lp, x->dtype, x->rank, x->dims);
    /* class weights, then per position: log-sum-exp, loss, weight */
    size_t cells;
    if (dab_mul_size((size_t)dab_tensor_numel(t), 3, &cells) || cells + (size_t)p->c < cells ||
        dab_mul_size(cells + (size_t)p->c, sizeof(double), &node->scratch_bytes))
        return dab_err_set(err, DAB_ELIMIT, "input '%s' is too large for the loss's scratch",
                           tn);
    return 0;
}

/* Scratch view of one run. */
typedef struct loss_run {
    const loss_priv_t *p;
    const dab_tensor_t *t;
    const double *wc; /* [C] class weights, NULL: all 1 */
    double *lse, *loss, *wpos; /* [N * D] each */
} loss_run_t;

/*
 * Sample n: for SCE the log-sum-exp over classes of each position (and log_prob when
 * lp is not NULL), then each position's loss and weight. T is the storage type, LD
 * reads one as double, ST writes a double back.
 */
#define LOSS_DEFINE(NAME, T, LD, ST)                                                        \
    static void loss_sample_##NAME(const loss_run_t *r, const T *x, T *lp, int64_t n)       \
    {                                                                                       \
        const loss_priv_t *p = r->p;                                                        \
        int64_t C = p->c, D = p->d;                                                         \
        const T *xn = x + n * C * D;                                                        \
        double *lse = r->lse + n * D;                                                       \
        if (p->sce) {                                                                       \
            for (int64_t d = 0; d < D; d++)                                                 \
                lse[d] = LD(xn[d]);                                                         \
            for (int64_t c = 1; c < C; c++)                                                 \
                for (int64_t d = 0; d < D; d++) {                                           \
                    double v = LD(xn[c * D + d]);                                           \
                    lse[d] = v > lse[d] ? v : lse[d];                                       \
                }                                                                           \
            double *sum = r->loss + n * D; /* borrowed until the losses are written */      \
            for (int64_t d = 0; d < D; d++)                                                 \
                sum[d] = 0;                                                                 \
            for (int64_t c = 0; c < C; c++)                                                 \
                for (int64_t d = 0; d < D; d++)                                             \
                    sum[d] += exp(LD(xn[c * D + d]) - lse[d]);                              \
            for (int64_t d = 0; d < D; d++)                                                 \
                lse[d] += log(sum[d]);                                                      \
            if (lp) {                                                                       \
                T *lpn = lp + n * C * D;                                                    \
                for (int64_t c = 0; c < C; c++)                                             \
                    for (int64_t d = 0; d < D; d++)                                         \
                        lpn[c * D + d] = ST(LD(xn[c * D + d]) - lse[d]);                    \
            }                                                                               \
        }                                                                                   \
        for (int64_t d = 0; d < D; d++) {                                                   \
            int64_t i = n * D + d, c = dab_idx_at(r->t, i);                                 \
            if (p->has_ignore && c == p->ignore_index) {                                    \
                r->loss[i] = 0;                                                             \
                r->wpos[i] = 0;                                                             \
                continue;                                                                   \
            }                                                                               \
            double w = r->wc ? r->wc[c] : 1.0;                                              \
            double v = LD(xn[c * D + d]) - (p->sce ? lse[d] : 0.0);                         \
            r->loss[i] = -v * w;                                                            \
            r->wpos[i] = w;                                                                 \
        }                                                                                   \
    }

#define LOSS_ID(v) (v)
#define LOSS_F32(v) ((float)(v))
#define LOSS_F16(v) dab_f32_to_f16((float)(v))
#define LOSS_BF16(v) dab_f32_to_bf16((float)(v))
LOSS_DEFINE(f32, float, LOSS_ID, LOSS_F32)
LOSS_DEFINE(f64, double, LOSS_ID, LOSS_ID)
LOSS_DEFINE(f16, uint16_t, dab_f16_to_f32, LOSS_F16)
LOSS_DEFINE(bf16, uint16_t, dab_bf16_to_f32, LOSS_BF16)

static double loss_ld(dab_dtype_t dt, const void *p, int64_t i)
{
    switch (dt) {
    case DAB_DT_FLOAT: return ((const float *)p)[i];
    case DAB_DT_DOUBLE: return ((const double *)p)[i];
    case DAB_DT_FLOAT16: return dab_f16_to_f32(((const uint16_t *)p)[i]);
    default: return dab_bf16_to_f32(((const uint16_t *)p)[i]);
    }
}

static void loss_st(dab_dtype_t dt, void *p, int64_t i, double v)
{
    switch (dt) {
    case DAB_DT_FLOAT: ((float *)p)[i] = (float)v; break;
    case DAB_DT_DOUBLE: ((double *)p)[i] = v; break;
    case DAB_DT_FLOAT16: ((uint16_t *)p)[i] = dab_f32_to_f16((float)v); break;
    default: ((uint16_t *)p)[i] = dab_f32_to_bf16((float)v); break;
    }
}

int dab_idx_loss_compute(dab_node_t *node, dab_err_t *err)
{
    const loss_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0], *t = node->inputs[1], *w = dab_idx_in(node, 2);
    dab_tensor_t *out = node->outputs[0], *lp = dab_idx_out(node, 1);
    int64_t npos = p->n * p->d;
    for (int64_t i = 0; i < npos; i++) {
        int64_t c = dab_idx_at(t, i);
        if ((c < 0 || c >= p->c) && !(p->has_ignore && c == p->ignore_index))
            return dab_err_set(err, DAB_ERANGE,
                               "input '%s' has value %lld at position %lld, out of range "
                               "[0, %lld)",
                               p->sce ? "labels" : "target", (long long)c, (long long)i,
                               (long long)p->c);
    }
    double *wc = node->scratch;
    loss_run_t r = {p, t, w ? wc : NULL, wc + p->c, wc + p->c + npos, wc + p->c + 2 * npos};
    for (int64_t c = 0; w && c < p->c; c++)
        wc[c] = loss_ld(w->dtype, w->data, c);
    int nt = dab_par_threads(node->ctx, npos * p->c * (p->sce ? 8 : 1));
    void *lpd = lp ? lp->data : NULL;
    switch (x->dtype) {
    case DAB_DT_FLOAT:
        DAB_PAR_FOR(nt, int64_t, n, p->n, loss_sample_f32(&r, x->data, lpd, n););
        break;
    case DAB_DT_DOUBLE:
        DAB_PAR_FOR(nt, int64_t, n, p->n, loss_sample_f64(&r, x->data, lpd, n););
        break;
    case DAB_DT_FLOAT16:
        DAB_PAR_FOR(nt, int64_t, n, p->n, loss_sample_f16(&r, x->data, lpd, n););
        break;
    case DAB_DT_BFLOAT16:
        DAB_PAR_FOR(nt, int64_t, n, p->n, loss_sample_bf16(&r, x->data, lpd, n););
        break;
    default:
        return dab_err_set(err, DAB_EUNSUPPORTED, "dtype %s is not supported",
                           dab_dtype_name(x->dtype));
    }
    if (p->reduction == LOSS_NONE) {
        for (int64_t i = 0; i < npos; i++)
            loss_st(out->dtype, out->data, i, r.loss[i]);
        return 0;
    }
    double sum = 0, wsum = 0;
    for (int64_t i = 0; i < npos; i++) {
        sum += r.loss[i];
        wsum += r.wpos[i];
    }
    /* mean over no counted position is 0 / 0: NaN, as in the reference */
    loss_st(out->dtype, out->data, 0, p->reduction == LOSS_SUM ? sum : sum / wsum);
    return 0;
}
