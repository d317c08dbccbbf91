/*
 * reduce_arg.c - ArgMax and ArgMin (opset 1+; select_last_index from 12): the
 * int64 index of the largest / smallest element along one axis, viewed as
 * [outer, n, inner]. As with numpy, NaN counts as the extreme value, so the first
 * (or last) NaN is the answer when there is one.
 *
 * With inner == 1 each row is contiguous: a vectorized pass finds the extreme
 * value, a short scan finds its first (last) position. Otherwise a tile of
 * columns keeps its best values and indices on the stack while the rows stream by.
 */
#include "reduce_int.h"

#include <stdbool.h>

typedef struct arg_priv {
    bool is_max;
    bool keepdims;
    bool select_last;
    int64_t axis_attr;
    int64_t outer, n, inner; /* from the last reshape */
} arg_priv_t;

int dab_reduce_arg_init(dab_node_t *node, dab_err_t *err)
{
    arg_priv_t *p = dab_calloc(1, sizeof *p);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "out of memory for the operator's state");
    p->is_max = !strcmp(node->op_type, "ArgMax");
    p->keepdims = dab_attr_int(node, "keepdims", 1) != 0;
    p->select_last = dab_attr_int(node, "select_last_index", 0) != 0;
    p->axis_attr = dab_attr_int(node, "axis", 0);
    node->priv = p;
    return 0;
}

int dab_reduce_arg_reshape(dab_node_t *node, dab_err_t *err)
{
    arg_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0];
    int axis;
    int rc = dab_norm_axis(p->axis_attr, x->rank, "attribute 'axis'", &axis, err);
    if (rc)
        return rc;
    p->outer = 1;
    p->inner = 1;
    p->n = x->dims[axis];
    int64_t dims[DAB_MAX_RANK];
    int rank = 0;
    for (int d = 0; d < x->rank; d++) {
        if (d < axis)
            p->outer *= x->dims[d];
        else if (d > axis)
            p->inner *= x->dims[d];
        if (d != axis)
            dims[rank++] = x->dims[d];
        else if (p->keepdims)
            dims[rank++] = 1;
    }
    if (p->n == 0 && p->outer * p->inner > 0)
        return dab_err_set(err, DAB_EINVAL, "cannot take the %s over axis %d of size 0",
                           p->is_max ? "maximum" : "minimum", axis);
    dab_tensor_set_shape(node->outputs[0], DAB_DT_INT64, rank, dims);
    return 0;
}

#define ARG_ISNAN_f(v) ((v) != (v))
#define ARG_ISNAN_i(v) 0

/* v replaces best b: strictly better, or equal when the last index is wanted, or NaN. */
#define ARG_GT(N, v, b) ((v) > (b) || (ARG_ISNAN_##N(v) && !ARG_ISNAN_##N(b)))
#define ARG_GE(N, v, b) ((v) >= (b) || ARG_ISNAN_##N(v))
#define ARG_LT(N, v, b) ((v) < (b) || (ARG_ISNAN_##N(v) && !ARG_ISNAN_##N(b)))
#define ARG_LE(N, v, b) ((v) <= (b) || ARG_ISNAN_##N(v))

/* Columns [0, w) of rows b[r * inner], r < n: running best and index per column. */
#define ARG_COLS(N, T, CMP)                                                                  \
    do {                                                                                     \
        for (int64_t i = 0; i < w; i++) {                                                    \
            best[i] = b[i];                                                                  \
            bi[i] = 0;                                                                       \
        }                                                                                    \
        for (int64_t r = 1; r < n; r++) {                                                    \
            const T *row = b + r * inner;                                                    \
            for (int64_t i = 0; i < w; i++) {                                                \
                bool take = CMP(N, row[i], best[i]);                                         \
                best[i] = take ? row[i] : best[i];                                           \
                bi[i] = take ? r : bi[i];                                                    \
            }                                                                                \
        }                                                                                    \
    } while (0)

/* Extreme value of a contiguous row in DAB_RED_LANES lanes (vectorizes), NaN winning. */
#define ARG_EXTREME(N, T, OP)                                                                \
    static T arg_extreme_##OP##_##T(const T *restrict x, int64_t n)                          \
    {                                                                                        \
        T m = x[0];                                                                          \
        int64_t i = 1;                                                                       \
        if (n >= DAB_RED_LANES) {                                                            \
            T lane[DAB_RED_LANES];                                                           \
            for (int l = 0; l < DAB_RED_LANES; l++)                                          \
                lane[l] = x[l];                                                              \
            for (i = DAB_RED_LANES; i + DAB_RED_LANES <= n; i += DAB_RED_LANES)              \
                for (int l = 0; l < DAB_RED_LANES; l++)                                      \
                    lane[l] = ARG_##OP(N, x[i + l], lane[l]) ? x[i + l] : lane[l];           \
            for (int w = DAB_RED_LANES / 2; w > 0; w /= 2)                                   \
                for (int l = 0; l < w; l++)                                                  \
                    lane[l] = ARG_##OP(N, lane[l + w], lane[l]) ? lane[l + w] : lane[l];     \
            m = ARG_##OP(N, lane[0], m) ? lane[0] : m;                                       \
        }                                                                                    \
        for (; i < n; i++)                                                                   \
            m = ARG_##OP(N, x[i], m) ? x[i] : m;                                             \
        return m;                                                                            \
    }

#define ARG_DEFINE(N, T)                                                                     \
    ARG_EXTREME(N, T, GT)                                                                    \
    ARG_EXTREME(N, T, LT)                                                                    \
    static void arg_run_##T(const arg_priv_t *p, const T *x, int64_t *y, int nt)             \
    {                                                                                        \
        int64_t outer = p->outer, n = p->n, inner = p->inner;                                \
        bool last = p->select_last;                                                          \
        if (inner == 1) {                                                                    \
            DAB_PAR_FOR(nt, int64_t, o, outer,                                            \
                const T *r = x + o * n;                                                      \
                T m = p->is_max ? arg_extreme_GT_##T(r, n) : arg_extreme_LT_##T(r, n);       \
                bool nan = ARG_ISNAN_##N(m);                                                 \
                int64_t k;                                                                   \
                if (last) {                                                                  \
                    for (k = n - 1; k > 0; k--)                                              \
                        if (nan ? ARG_ISNAN_##N(r[k]) : r[k] == m)                           \
                            break;                                                           \
                } else {                                                                     \
                    for (k = 0; k < n - 1; k++)                                              \
                        if (nan ? ARG_ISNAN_##N(r[k]) : r[k] == m)                           \
                            break;                                                           \
                }                                                                            \
                y[o] = k;                                                                    \
            );                                                                                \
            return;                                                                          \
        }                                                                                    \
        int64_t ntiles = (inner + DAB_RED_TILE - 1) / DAB_RED_TILE;                          \
        int64_t items = outer * ntiles;                                                      \
        DAB_PAR_FOR(nt, int64_t, it, items,                                             \
            int64_t o = it / ntiles;                                                         \
            int64_t i0 = (it - o * ntiles) * DAB_RED_TILE;                                   \
            int64_t w = DAB_MIN(DAB_RED_TILE, inner - i0);                                   \
            const T *b = x + o * n * inner + i0;                                             \
            T best[DAB_RED_TILE];                                                            \
            int64_t bi[DAB_RED_TILE];                                                        \
            if (p->is_max && !last)                                                          \
                ARG_COLS(N, T, ARG_GT);                                                      \
            else if (p->is_max)                                                              \
                ARG_COLS(N, T, ARG_GE);                                                      \
            else if (!last)                                                                  \
                ARG_COLS(N, T, ARG_LT);                                                      \
            else                                                                             \
                ARG_COLS(N, T, ARG_LE);                                                      \
            memcpy(y + o * inner + i0, bi, (size_t)w * sizeof bi[0]);                        \
        );                                                                                    \
    }

ARG_DEFINE(f, float)
ARG_DEFINE(f, double)
ARG_DEFINE(i, int8_t)
ARG_DEFINE(i, int16_t)
ARG_DEFINE(i, int32_t)
ARG_DEFINE(i, int64_t)
ARG_DEFINE(i, uint8_t)
ARG_DEFINE(i, uint16_t)
ARG_DEFINE(i, uint32_t)
ARG_DEFINE(i, uint64_t)

int dab_reduce_arg_compute(dab_node_t *node, dab_err_t *err)
{
    const arg_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0];
    int64_t *y = node->outputs[0]->data;
    if (p->outer * p->inner == 0)
        return 0;
    int nt = dab_par_threads(node->ctx, p->outer * p->n * p->inner);
    switch (x->dtype) {
    case DAB_DT_FLOAT: arg_run_float(p, x->data, y, nt); return 0;
    case DAB_DT_DOUBLE: arg_run_double(p, x->data, y, nt); return 0;
    case DAB_DT_INT8: arg_run_int8_t(p, x->data, y, nt); return 0;
    case DAB_DT_INT16: arg_run_int16_t(p, x->data, y, nt); return 0;
    case DAB_DT_INT32: arg_run_int32_t(p, x->data, y, nt); return 0;
    case DAB_DT_INT64: arg_run_int64_t(p, x->data, y, nt); return 0;
    case DAB_DT_UINT8: arg_run_uint8_t(p, x->data, y, nt); return 0;
    case DAB_DT_UINT16: arg_run_uint16_t(p, x->data, y, nt); return 0;
    case DAB_DT_UINT32: arg_run_uint32_t(p, x->data, y, nt); return 0;
    case DAB_DT_UINT64: arg_run_uint64_t(p, x->data, y, nt); return 0;
    default:
        return dab_err_set(err, DAB_EUNSUPPORTED, "input 'data' of type %s is not supported",
                           dab_dtype_name(x->dtype));
    }
}
