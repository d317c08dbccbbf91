/*
 * reduce_softmax.c - Softmax, LogSoftmax and Hardmax: normalizations along an
 * axis, viewed as [outer, n, inner].
 *
 * Opset 13 changed the meaning of `axis`: before, the input is coerced to 2-D
 * [prod(dims[:axis]), prod(dims[axis:])] and each row normalized (axis default 1);
 * from 13 on, only dim `axis` is normalized (default -1).
 *
 * Softmax subtracts the maximum before exponentiating, so large inputs neither
 * overflow nor lose precision. float rows use dab_expf_fast, which vectorizes.
 * Contiguous rows (inner == 1) are handled one at a time; otherwise a tile of
 * columns keeps its running max and sum on the stack while the rows stream by.
 */
#include "reduce_int.h"

#include <math.h>
#include <stdbool.h>

#include "kernels/simd/simd.h"

enum sm_kind { SM_SOFTMAX, SM_LOGSOFTMAX, SM_HARDMAX };

typedef struct sm_priv {
    int kind;
    bool legacy;             /* opset < 13: coerce to 2-D */
    int64_t axis_attr;
    int64_t outer, n, inner; /* from the last reshape */
} sm_priv_t;

int dab_reduce_softmax_init(dab_node_t *node, dab_err_t *err)
{
    sm_priv_t *p = dab_calloc(1, sizeof *p);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "out of memory for the operator's state");
    if (!strcmp(node->op_type, "LogSoftmax"))
        p->kind = SM_LOGSOFTMAX;
    else if (!strcmp(node->op_type, "Hardmax"))
        p->kind = SM_HARDMAX;
    else
        p->kind = SM_SOFTMAX;
    p->legacy = node->opset < 13;
    p->axis_attr = dab_attr_int(node, "axis", p->legacy ? 1 : -1);
    node->priv = p;
    return 0;
}

int dab_reduce_softmax_reshape(dab_node_t *node, dab_err_t *err)
{
    sm_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0];
    int r = x->rank;
    p->outer = 1;
    p->n = 1;
    p->inner = 1;
    if (r > 0) {
        int axis;
        if (p->legacy) {
            /* the 2-D coercion is Flatten's, which also accepts axis == rank */
            if (p->axis_attr < -(int64_t)r || p->axis_attr > r)
                return dab_err_set(err, DAB_ERANGE,
                                   "attribute 'axis' %lld is out of range for rank %d",
                                   (long long)p->axis_attr, r);
            axis = (int)(p->axis_attr < 0 ? p->axis_attr + r : p->axis_attr);
        } else {
            int rc = dab_norm_axis(p->axis_attr, r, "attribute 'axis'", &axis, err);
            if (rc)
                return rc;
        }
        for (int d = 0; d < r; d++) {
            if (d < axis)
                p->outer *= x->dims[d];
            else if (d == axis || p->legacy)
                p->n *= x->dims[d];
            else
                p->inner *= x->dims[d];
        }
    }
    dab_tensor_set_shape(node->outputs[0], x->dtype, x->rank, x->dims);
    return 0;
}

#define SM_EXP_float(v) dab_expf_fast(v)
#define SM_EXP_double(v) exp(v)
#define SM_LOG_float(v) logf(v)
#define SM_LOG_double(v) log(v)

#define SM_DEFINE(T)                                                                         \
    /* max of a contiguous row, in DAB_RED_LANES lanes */                                    \
    static T sm_row_max_##T(const T *restrict x, int64_t n)                                  \
    {                                                                                        \
        T m = x[0];                                                                          \
        int64_t i = 1;                                                                       \
        if (n >= DAB_RED_LANES) {                                                            \
            T lane[DAB_RED_LANES];                                                           \
            for (int l = 0; l < DAB_RED_LANES; l++)                                          \
                lane[l] = x[l];                                                              \
            for (i = DAB_RED_LANES; i + DAB_RED_LANES <= n; i += DAB_RED_LANES)              \
                for (int l = 0; l < DAB_RED_LANES; l++)                                      \
                    lane[l] = x[i + l] > lane[l] ? x[i + l] : lane[l];                       \
            for (int w = DAB_RED_LANES / 2; w > 0; w /= 2)                                   \
                for (int l = 0; l < w; l++)                                                  \
                    lane[l] = lane[l + w] > lane[l] ? lane[l + w] : lane[l];                 \
            m = lane[0] > m ? lane[0] : m;                                                   \
        }                                                                                    \
        for (; i < n; i++)                                                                   \
            m = x[i] > m ? x[i] : m;                                                         \
        return m;                                                                            \
    }                                                                                        \
                                                                                             \
    /* y = exp(x - m), returning the sum of y */                                             \
    static T sm_row_expsum_##T(const T *restrict x, T *restrict y, int64_t n, T m)           \
    {                                                                                        \
        T s = 0;                                                                             \
        int64_t i = 0;                                                                       \
        if (n >= DAB_RED_LANES) {                                                            \
            T lane[DAB_RED_LANES] = {0};                                                     \
            for (; i + DAB_RED_LANES <= n; i += DAB_RED_LANES)                               \
                for (int l = 0; l < DAB_RED_LANES; l++) {                                    \
                    T e = SM_EXP_##T(x[i + l] - m);                                          \
                    y[i + l] = e;                                                            \
                    lane[l] += e;                                                            \
                }                                                                            \
            for (int w = DAB_RED_LANES / 2; w > 0; w /= 2)                                   \
                for (int l = 0; l < w; l++)                                                  \
                    lane[l] += lane[l + w];                                                  \
            s += lane[0];                                                                    \
        }                                                                                    \
        for (; i < n; i++) {                                                                 \
            y[i] = SM_EXP_##T(x[i] - m);                                                     \
            s += y[i];                                                                       \
        }                                                                                    \
        return s;                                                                            \
    }                                                                                        \
                                                                                             \
    /* the sum of exp(x - m) */                                                              \
    static T sm_row_sumexp_##T(const T *restrict x, int64_t n, T m)                          \
    {                                                                                        \
        T s = 0;                                                                             \
        int64_t i = 0;                                                                       \
        if (n >= DAB_RED_LANES) {                                                            \
            T lane[DAB_RED_LANES] = {0};                                                     \
            for (; i + DAB_RED_LANES <= n; i += DAB_RED_LANES)                               \
                for (int l = 0; l < DAB_RED_LANES; l++)                                      \
                    lane[l] += SM_EXP_##T(x[i + l] - m);                                     \
            for (int w = DAB_RED_LANES / 2; w > 0; w /= 2)                                   \
                for (int l = 0; l < w; l++)                                                  \
                    lane[l] += lane[l + w];                                                  \
            s += lane[0];                                                                    \
        }                                                                                    \
        for (; i < n; i++)                                                                   \
            s += SM_EXP_##T(x[i] - m);                                                       \
        return s;                                                                            \
    }                                                                                        \
                                                                                             \
    static void sm_row_##T(int kind, const T *restrict x, T *restrict y, int64_t n)          \
    {                                                                                        \
        T m = sm_row_max_##T(x, n);                                                          \
        if (kind == SM_SOFTMAX) {                                                            \
            T inv = (T)1 / sm_row_expsum_##T(x, y, n, m);                                    \
            for (int64_t i = 0; i < n; i++)                                                  \
                y[i] *= inv;                                                                 \
        } else if (kind == SM_LOGSOFTMAX) {                                                  \
            T ls = SM_LOG_##T(sm_row_sumexp_##T(x, n, m));                                   \
            for (int64_t i = 0; i < n; i++)                                                  \
                y[i] = (x[i] - m) - ls;                                                      \
        } else {                                                                             \
            int64_t k = 0;                                                                   \
            while (k < n - 1 && x[k] != m)                                                   \
                k++;                                                                         \
            memset(y, 0, (size_t)n * sizeof *y);                                             \
            y[k] = 1;                                                                        \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    /* columns [0, w) of the n rows x[r * inner] */                                          \
    static void sm_cols_##T(int kind, const T *restrict x, T *restrict y, int64_t n,         \
                            int64_t inner, int64_t w)                                        \
    {                                                                                        \
        T mx[DAB_RED_TILE], s[DAB_RED_TILE];                                                 \
        if (kind == SM_HARDMAX) {                                                            \
            int64_t bi[DAB_RED_TILE];                                                        \
            for (int64_t i = 0; i < w; i++) {                                                \
                mx[i] = x[i];                                                                \
                bi[i] = 0;                                                                   \
            }                                                                                \
            for (int64_t r = 1; r < n; r++) {                                                \
                const T *xr = x + r * inner;                                                 \
                for (int64_t i = 0; i < w; i++) {                                            \
                    bool take = xr[i] > mx[i];                                               \
                    mx[i] = take ? xr[i] : mx[i];                                            \
                    bi[i] = take ? r : bi[i];                                                \
                }                                                                            \
            }                                                                                \
            for (int64_t r = 0; r < n; r++) {                                                \
                T *yr = y + r * inner;                                                       \
                for (int64_t i = 0; i < w; i++)                                              \
                    yr[i] = bi[i] == r ? (T)1 : (T)0;                                        \
            }                                                                                \
            return;                                                                          \
        }                                                                                    \
        for (int64_t i = 0; i < w; i++) {                                                    \
            mx[i] = x[i];                                                                    \
            s[i] = 0;                                                                        \
        }                                                                                    \
        for (int64_t r = 1; r < n; r++) {                                                    \
            const T *xr = x + r * inner;                                                     \
            for (int64_t i = 0; i < w; i++)                                                  \
                mx[i] = xr[i] > mx[i] ? xr[i] : mx[i];                                       \
        }                                                                                    \
        for (int64_t r = 0; r < n; r++) {                                                    \
            const T *xr = x + r * inner;                                                     \
            T *yr = y + r * inner;                                                           \
            for (int64_t i = 0; i < w; i++) {                                                \
                T e = SM_EXP_##T(xr[i] - mx[i]);                                             \
                if (kind == SM_SOFTMAX)                                                      \
                    yr[i] = e;                                                               \
                s[i] += e;                                                                   \
            }                                                                                \
        }                                                                                    \
        if (kind == SM_SOFTMAX) {                                                            \
            for (int64_t i = 0; i < w; i++)                                                  \
                s[i] = (T)1 / s[i];                                                          \
            for (int64_t r = 0; r < n; r++) {                                                \
                T *yr = y + r * inner;                                                       \
                for (int64_t i = 0; i < w; i++)                                              \
                    yr[i] *= s[i];                                                           \
            }                                                                                \
        } else {                                                                             \
            for (int64_t i = 0; i < w; i++)                                                  \
                s[i] = SM_LOG_##T(s[i]);                                                     \
            for (int64_t r = 0; r < n; r++) {                                                \
                const T *xr = x + r * inner;                                                 \
                T *yr = y + r * inner;                                                       \
                for (int64_t i = 0; i < w; i++)                                              \
                    yr[i] = (xr[i] - mx[i]) - s[i];                                          \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    static void sm_run_##T(const sm_priv_t *p, const T *x, T *y, int nt)                     \
    {                                                                                        \
        int64_t outer = p->outer, n = p->n, inner = p->inner;                                \
        if (inner == 1) {                                                                    \
            DAB_PAR_FOR(nt, int64_t, o, outer,                                               \
                        sm_row_##T(p->kind, x + o * n, y + o * n, n););                      \
            return;                                                                          \
        }                                                                                    \
        int64_t ntiles = (inner + DAB_RED_TILE - 1) / DAB_RED_TILE;                          \
        int64_t items = outer * ntiles;                                                      \
        DAB_PAR_FOR(nt, int64_t, it, items,                                                  \
            int64_t o = it / ntiles;                                                         \
            int64_t i0 = (it - o * ntiles) * DAB_RED_TILE;                                   \
            int64_t off = o * n * inner + i0;                                                \
            sm_cols_##T(p->kind, x + off, y + off, n, inner,                                 \
                        DAB_MIN(DAB_RED_TILE, inner - i0)););                                \
    }

SM_DEFINE(float)
SM_DEFINE(double)

int dab_reduce_softmax_compute(dab_node_t *node, dab_err_t *err)
{
    const sm_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0];
    dab_tensor_t *y = node->outputs[0];
    if (p->outer * p->n * p->inner == 0)
        return 0;
    int nt = dab_par_threads(node->ctx, p->outer * p->n * p->inner * 8);
    switch (x->dtype) {
    case DAB_DT_FLOAT: {
        /* contiguous rows go through the SIMD kernels when a level is active */
        const dab_simd_ops_t *s = p->inner == 1 && p->kind != SM_HARDMAX ? dab_simd() : NULL;
        if (s) {
            void (*row)(const float *, float *, int64_t) =
                p->kind == SM_SOFTMAX ? s->softmax : s->logsoftmax;
            const float *xd = x->data;
            float *yd = y->data;
            const int64_t n = p->n;
            DAB_PAR_FOR(nt, int64_t, o, p->outer, row(xd + o * n, yd + o * n, n););
            return 0;
        }
        sm_run_float(p, x->data, y->data, nt);
        return 0;
    }
    case DAB_DT_DOUBLE: sm_run_double(p, x->data, y->data, nt); return 0;
    default:
        return dab_err_set(err, DAB_EUNSUPPORTED, "input of type %s is not supported",
                           dab_dtype_name(x->dtype));
    }
}
