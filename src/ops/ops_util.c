/*
 * ops_util.c - helpers shared by operator families: numpy broadcasting, axis
 * normalization, reading shape-like integer inputs, and sizing thread teams.
 */
#include "ops.h"

#include <stdio.h>

int dab_broadcast_shapes(int n, const dab_tensor_t *const *ts, dab_tensor_t *out,
                         dab_err_t *err)
{
    int rank = 0;
    for (int k = 0; k < n; k++)
        rank = DAB_MAX(rank, ts[k]->rank);
    for (int d = 0; d < rank; d++) {
        int64_t dim = 1;
        for (int k = 0; k < n; k++) {
            int off = rank - ts[k]->rank;
            if (d < off)
                continue;
            int64_t v = ts[k]->dims[d - off];
            if (v == dim || v == 1)
                continue;
            if (dim == 1) {
                dim = v;
                continue;
            }
            char a[96], b[96];
            dab_shape_str(ts[0], a, sizeof a);
            dab_shape_str(ts[k], b, sizeof b);
            return dab_err_set(err, DAB_ESHAPE, "shapes %s and %s cannot be broadcast (dim %d)",
                               a, b, d);
        }
        out->dims[d] = dim;
    }
    out->rank = rank;
    return 0;
}

void dab_broadcast_strides(const dab_tensor_t *in, const dab_tensor_t *out, int64_t *strides)
{
    int off = out->rank - in->rank;
    int64_t s = 1;
    for (int d = out->rank - 1; d >= 0; d--) {
        if (d < off) {
            strides[d] = 0;
            continue;
        }
        int64_t v = in->dims[d - off];
        strides[d] = v == 1 ? 0 : s;
        s *= v;
    }
}

int dab_norm_axis(int64_t axis, int rank, const char *what, int *out, dab_err_t *err)
{
    if (axis < -(int64_t)rank || axis >= (int64_t)rank)
        return dab_err_set(err, DAB_ERANGE, "%s %lld is out of range for rank %d", what,
                           (long long)axis, rank);
    *out = (int)(axis < 0 ? axis + rank : axis);
    return 0;
}

int dab_read_ints(const dab_tensor_t *t, const char *what, int64_t *vals, int max, int *n,
                  dab_err_t *err)
{
    if (t->dtype != DAB_DT_INT64 && t->dtype != DAB_DT_INT32)
        return dab_err_set(err, DAB_ETYPE, "%s must be int32 or int64, got %s", what,
                           dab_dtype_name(t->dtype));
    if (t->rank > 1)
        return dab_err_set(err, DAB_ESHAPE, "%s must be 1-D, got rank %d", what, t->rank);
    int64_t cnt = dab_tensor_numel(t);
    if (cnt > max)
        return dab_err_set(err, DAB_ELIMIT, "%s has %lld values, at most %d are supported", what,
                           (long long)cnt, max);
    for (int64_t i = 0; i < cnt; i++)
        vals[i] = t->dtype == DAB_DT_INT64 ? ((const int64_t *)t->data)[i]
                                           : ((const int32_t *)t->data)[i];
    *n = (int)cnt;
    return 0;
}

void dab_op_free_priv(dab_node_t *node)
{
    dab_free(node->priv);
    node->priv = NULL;
}

int dab_par_threads(const dab_exec_ctx_t *ctx, int64_t work)
{
    /* Below ~32k elementary operations a fork/join costs more than it saves. */
    if (!ctx || ctx->threads <= 1 || work < 32768)
        return 1;
    int64_t t = work / 32768;
    return (int)DAB_MIN(t, (int64_t)ctx->threads);
}
