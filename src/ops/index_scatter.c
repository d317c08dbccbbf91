/*
 * index_scatter.c - gathers and scatters driven by index tensors: GatherElements,
 * GatherND, ScatterElements (and its deprecated alias Scatter), ScatterND and
 * TensorScatter (the KV-cache update of opset 24).
 *
 * Elements are moved as opaque bytes, so one path serves every fixed-size dtype;
 * only the scatter reductions (add/mul/max/min) look at values, through per-dtype
 * kernels where integers wrap (computed unsigned) and half types go through float.
 * Gathers run in parallel over output rows; scatters run in the order of their
 * updates, as ONNX's reference does, so duplicate indices give its result.
 */
#include "index_int.h"

/* ------------------------------------------------------------------ */
/* reductions                                                          */
/* ------------------------------------------------------------------ */

enum { RED_NONE, RED_ADD, RED_MUL, RED_MAX, RED_MIN };

static const char *const g_red_names[] = {"none", "add", "mul", "max", "min"};

/* Reads attribute 'reduction' (opset 16 added add/mul, 18 max/min). */
static int read_reduction(const dab_node_t *node, int *red, dab_err_t *err)
{
    const char *s = dab_attr_string(node, "reduction", "none");
    for (int i = 0; i < (int)DAB_ARRAY_LEN(g_red_names); i++) {
        if (strcmp(s, g_red_names[i]))
            continue;
        int since = i == RED_NONE ? 0 : i <= RED_MUL ? 16 : 18;
        if (node->opset < since)
            return dab_err_set(err, DAB_EINVAL,
                               "attribute 'reduction' '%s' needs opset %d, the model has %d", s,
                               since, node->opset);
        *red = i;
        return 0;
    }
    return dab_err_set(err, DAB_EINVAL,
                       "attribute 'reduction' '%s' is not none, add, mul, max or min", s);
}

/*
 * dst[i] op= src[i] for n contiguous elements. CT is the type the arithmetic runs in,
 * UT the one integer add/mul wrap in (unsigned, so overflow is defined). max/min
 * propagate NaN like numpy's maximum/minimum.
 */
#define RED_DEFINE(NAME, T, CT, UT, LD, ST)                                               \
    static void red_##NAME(int red, T *restrict d, const T *restrict s, int64_t n)       \
    {                                                                                     \
        switch (red) {                                                                    \
        case RED_ADD:                                                                     \
            for (int64_t i = 0; i < n; i++)                                               \
                d[i] = ST((CT)((UT)LD(d[i]) + (UT)LD(s[i])));                             \
            break;                                                                        \
        case RED_MUL:                                                                     \
            for (int64_t i = 0; i < n; i++)                                               \
                d[i] = ST((CT)((UT)LD(d[i]) * (UT)LD(s[i])));                             \
            break;                                                                        \
        case RED_MAX:                                                                     \
            for (int64_t i = 0; i < n; i++) {                                             \
                CT a = LD(d[i]), b = LD(s[i]);                                            \
                d[i] = ST(a != a ? a : (b != b || b > a) ? b : a);                        \
            }                                                                             \
            break;                                                                        \
        case RED_MIN:                                                                     \
            for (int64_t i = 0; i < n; i++) {                                             \
                CT a = LD(d[i]), b = LD(s[i]);                                            \
                d[i] = ST(a != a ? a : (b != b || b < a) ? b : a);                        \
            }                                                                             \
            break;                                                                        \
        default:                                                                          \
            memcpy(d, s, (size_t)n * sizeof *d);                                          \
            break;                                                                        \
        }                                                                                 \
    }

#define RED_ID(x) (x)
RED_DEFINE(f32, float, float, float, RED_ID, RED_ID)
RED_DEFINE(f64, double, double, double, RED_ID, RED_ID)
RED_DEFINE(f16, uint16_t, float, float, dab_f16_to_f32, dab_f32_to_f16)
RED_DEFINE(bf16, uint16_t, float, float, dab_bf16_to_f32, dab_f32_to_bf16)
RED_DEFINE(i8, int8_t, int8_t, uint32_t, RED_ID, RED_ID)
RED_DEFINE(u8, uint8_t, uint8_t, uint32_t, RED_ID, RED_ID)
RED_DEFINE(i16, int16_t, int16_t, uint32_t, RED_ID, RED_ID)
RED_DEFINE(u16, uint16_t, uint16_t, uint32_t, RED_ID, RED_ID)
RED_DEFINE(i32, int32_t, int32_t, uint32_t, RED_ID, RED_ID)
RED_DEFINE(u32, uint32_t, uint32_t, uint32_t, RED_ID, RED_ID)
RED_DEFINE(i64, int64_t, int64_t, uint64_t, RED_ID, RED_ID)
RED_DEFINE(u64, uint64_t, uint64_t, uint64_t, RED_ID, RED_ID)

/* Applies reduction red of n elements of dtype dt from s to d (RED_NONE copies). */
static void red_apply(dab_dtype_t dt, int red, void *d, const void *s, int64_t n)
{
    switch (dt) {
    case DAB_DT_FLOAT: red_f32(red, d, s, n); break;
    case DAB_DT_DOUBLE: red_f64(red, d, s, n); break;
    case DAB_DT_FLOAT16: red_f16(red, d, s, n); break;
    case DAB_DT_BFLOAT16: red_bf16(red, d, s, n); break;
    case DAB_DT_INT8: red_i8(red, d, s, n); break;
    case DAB_DT_UINT8: red_u8(red, d, s, n); break;
    case DAB_DT_INT16: red_i16(red, d, s, n); break;
    case DAB_DT_UINT16: red_u16(red, d, s, n); break;
    case DAB_DT_INT32: red_i32(red, d, s, n); break;
    case DAB_DT_UINT32: red_u32(red, d, s, n); break;
    case DAB_DT_INT64: red_i64(red, d, s, n); break;
    case DAB_DT_UINT64: red_u64(red, d, s, n); break;
    default: memcpy(d, s, (size_t)n * dab_dtype_size(dt)); break; /* bool: only "none" */
    }
}

/* Copies one element of es bytes (es a power of two up to 8). */
static inline void elem_copy(char *d, const char *s, size_t es)
{
    switch (es) {
    case 1: *d = *s; break;
    case 2: memcpy(d, s, 2); break;
    case 4: memcpy(d, s, 4); break;
    default: memcpy(d, s, 8); break;
    }
}

/* ------------------------------------------------------------------ */
/* element-wise index checks shared by GatherElements / ScatterElements */
/* ------------------------------------------------------------------ */

/* indices has data's rank (>= 1) and no larger a dim than data's except along axis. */
static int elements_shapes(const dab_node_t *node, const dab_tensor_t *data,
                           const dab_tensor_t *ind, int *axis, dab_err_t *err)
{
    int rc = dab_idx_check_int(ind, "indices", err);
    if (rc)
        return rc;
    if (data->rank < 1)
        return dab_err_set(err, DAB_ESHAPE, "input 'data' must have rank >= 1");
    if (ind->rank != data->rank)
        return dab_err_set(err, DAB_ESHAPE, "input 'indices' has rank %d, 'data' has %d",
                           ind->rank, data->rank);
    if ((rc = dab_norm_axis(dab_attr_int(node, "axis", 0), data->rank, "attribute 'axis'", axis,
                            err)))
        return rc;
    for (int d = 0; d < data->rank; d++)
        if (d != *axis && ind->dims[d] > data->dims[d])
            return dab_err_set(err, DAB_ESHAPE,
                               "input 'indices' has %lld at dim %d, more than 'data''s %lld",
                               (long long)ind->dims[d], d, (long long)data->dims[d]);
    return 0;
}

/*
 * The offset into data of the first element of row `row` of indices viewed as [rows,
 * last], without the axis term (added per element).
 */
static int64_t elements_row_base(const dab_tensor_t *ind, const int64_t *dstr, int axis,
                                 int64_t row)
{
    int64_t base = 0;
    for (int d = ind->rank - 2; d >= 0; d--) {
        int64_t c = row % ind->dims[d];
        row /= ind->dims[d];
        if (d != axis)
            base += c * dstr[d];
    }
    return base;
}

/* ------------------------------------------------------------------ */
/* GatherElements                                                      */
/* ------------------------------------------------------------------ */

int dab_idx_gather_elements_init(dab_node_t *node, dab_err_t *err)
{
    return 0;
}

int dab_idx_gather_elements_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *data = node->inputs[0], *ind = node->inputs[1];
    int axis;
    int rc = elements_shapes(node, data, ind, &axis, err);
    if (rc)
        return rc;
    dab_tensor_set_shape(node->outputs[0], data->dtype, ind->rank, ind->dims);
    return 0;
}

int dab_idx_gather_elements_compute(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *data = node->inputs[0], *ind = node->inputs[1];
    int axis;
    int rc = elements_shapes(node, data, ind, &axis, err);
    if (rc)
        return rc;
    int64_t dim = data->dims[axis];
    if ((rc = dab_idx_check_range(ind, "indices", dim, err)))
        return rc;
    int r = data->rank;
    int64_t last = ind->dims[r - 1], n = dab_tensor_numel(ind);
    if (n == 0)
        return 0;
    int64_t rows = n / last, dstr[DAB_MAX_RANK];
    dab_idx_strides(data, dstr);
    int64_t astr = dstr[axis], jstr = axis == r - 1 ? 0 : 1;
    size_t es = dab_dtype_size(data->dtype);
    const char *src = data->data;
    char *dst = node->outputs[0]->data;
    int nt = dab_par_threads(node->ctx, n);
    DAB_PAR_FOR(nt, int64_t, row, rows,
        int64_t base = elements_row_base(ind, dstr, axis, row);
        for (int64_t j = 0; j < last; j++) {
            int64_t v = dab_idx_at(ind, row * last + j);
            v += v < 0 ? dim : 0;
            elem_copy(dst + (size_t)(row * last + j) * es,
                      src + (size_t)(base + v * astr + j * jstr) * es, es);
        }
    );
    return 0;
}

/* ------------------------------------------------------------------ */
/* ScatterElements / Scatter                                           */
/* ------------------------------------------------------------------ */

int dab_idx_scatter_elements_init(dab_node_t *node, dab_err_t *err)
{
    int red = RED_NONE;
    if (!strcmp(node->op_type, "ScatterElements"))
        return read_reduction(node, &red, err);
    return 0;
}

static int scatter_elements_check(const dab_node_t *node, int *axis, int *red, dab_err_t *err)
{
    const dab_tensor_t *data = node->inputs[0], *ind = node->inputs[1], *upd = node->inputs[2];
    int rc = elements_shapes(node, data, ind, axis, err);
    if (rc)
        return rc;
    if (upd->dtype != data->dtype)
        return dab_err_set(err, DAB_ETYPE, "input 'updates' is %s, 'data' is %s",
                           dab_dtype_name(upd->dtype), dab_dtype_name(data->dtype));
    if (!dab_shape_equal(upd, ind)) {
        char a[96], b[96];
        return dab_err_set(err, DAB_ESHAPE, "input 'updates' %s must have the shape of "
                           "'indices' %s", dab_shape_str(upd, a, sizeof a),
                           dab_shape_str(ind, b, sizeof b));
    }
    *red = RED_NONE;
    if (!strcmp(node->op_type, "ScatterElements") && (rc = read_reduction(node, red, err)))
        return rc;
    if (*red != RED_NONE && data->dtype == DAB_DT_BOOL)
        return dab_err_set(err, DAB_EUNSUPPORTED, "reduction '%s' on bool data is not supported",
                           g_red_names[*red]);
    return 0;
}

int dab_idx_scatter_elements_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *data = node->inputs[0];
    int axis, red;
    int rc = scatter_elements_check(node, &axis, &red, err);
    if (rc)
        return rc;
    dab_tensor_set_shape(node->outputs[0], data->dtype, data->rank, data->dims);
    return 0;
}

int dab_idx_scatter_elements_compute(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *data = node->inputs[0], *ind = node->inputs[1], *upd = node->inputs[2];
    int axis, red;
    int rc = scatter_elements_check(node, &axis, &red, err);
    if (rc)
        return rc;
    int64_t dim = data->dims[axis];
    if ((rc = dab_idx_check_range(ind, "indices", dim, err)))
        return rc;
    char *dst = node->outputs[0]->data;
    dab_idx_copy(dst, data->data, dab_tensor_bytes(data), node->ctx);
    int r = data->rank;
    int64_t last = ind->dims[r - 1], n = dab_tensor_numel(ind);
    if (n == 0)
        return 0;
    int64_t rows = n / last, dstr[DAB_MAX_RANK];
    dab_idx_strides(data, dstr);
    int64_t astr = dstr[axis], jstr = axis == r - 1 ? 0 : 1;
    size_t es = dab_dtype_size(data->dtype);
    const char *us = upd->data;
    for (int64_t row = 0; row < rows; row++) {
        int64_t base = elements_row_base(ind, dstr, axis, row);
        for (int64_t j = 0; j < last; j++) {
            int64_t v = dab_idx_at(ind, row * last + j);
            v += v < 0 ? dim : 0;
            char *d = dst + (size_t)(base + v * astr + j * jstr) * es;
            const char *s = us + (size_t)(row * last + j) * es;
            if (red == RED_NONE)
                elem_copy(d, s, es);
            else
                red_apply(data->dtype, red, d, s, 1);
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* GatherND / ScatterND                                                */
/* ------------------------------------------------------------------ */

/* Checks every k-tuple of indices (last dim k) against data's dims from `first` on. */
static int nd_check_range(const dab_tensor_t *ind, const dab_tensor_t *data, int first,
                          dab_err_t *err)
{
    int64_t k = ind->dims[ind->rank - 1], n = dab_tensor_numel(ind);
    for (int64_t i = 0; i < n; i++) {
        int64_t v = dab_idx_at(ind, i), dim = data->dims[first + i % k];
        if (v < -dim || v >= dim)
            return dab_err_set(err, DAB_ERANGE,
                               "input 'indices' has value %lld at position %lld, out of range "
                               "[%lld, %lld) for dim %d of 'data'",
                               (long long)v, (long long)i, (long long)-dim, (long long)dim,
                               first + (int)(i % k));
    }
    return 0;
}

/* The offset into data (elements, from dim `first` on) of index tuple t of length k. */
static int64_t nd_offset(const dab_tensor_t *ind, const dab_tensor_t *data,
                         const int64_t *dstr, int first, int64_t k, int64_t t)
{
    int64_t off = 0;
    for (int64_t j = 0; j < k; j++) {
        int64_t v = dab_idx_at(ind, t * k + j), dim = data->dims[first + j];
        v += v < 0 ? dim : 0;
        off += v * dstr[first + j];
    }
    return off;
}

static int gather_nd_check(const dab_node_t *node, int *b_out, dab_err_t *err)
{
    const dab_tensor_t *data = node->inputs[0], *ind = node->inputs[1];
    int rc = dab_idx_check_int(ind, "indices", err);
    if (rc)
        return rc;
    if (data->rank < 1 || ind->rank < 1)
        return dab_err_set(err, DAB_ESHAPE, "inputs 'data' and 'indices' must have rank >= 1");
    int64_t b = node->opset >= 12 ? dab_attr_int(node, "batch_dims", 0) : 0;
    if (b < 0 || b >= DAB_MIN(data->rank, ind->rank))
        return dab_err_set(err, DAB_ERANGE,
                           "attribute 'batch_dims' %lld must be in [0, %d) for ranks %d and %d",
                           (long long)b, DAB_MIN(data->rank, ind->rank), data->rank, ind->rank);
    for (int d = 0; d < b; d++)
        if (ind->dims[d] != data->dims[d])
            return dab_err_set(err, DAB_ESHAPE,
                               "batch dim %d: 'indices' has %lld, 'data' has %lld", d,
                               (long long)ind->dims[d], (long long)data->dims[d]);
    int64_t k = ind->dims[ind->rank - 1];
    if (k < 1 || k > data->rank - b)
        return dab_err_set(err, DAB_ESHAPE,
                           "the last dim of 'indices' is %lld, it must be in [1, %lld]",
                           (long long)k, (long long)(data->rank - b));
    *b_out = (int)b;
    return 0;
}

int dab_idx_gather_nd_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *data = node->inputs[0], *ind = node->inputs[1];
    int b;
    int rc = gather_nd_check(node, &b, err);
    if (rc)
        return rc;
    int k = (int)ind->dims[ind->rank - 1];
    int rank = ind->rank - 1 + data->rank - b - k;
    if (rank > DAB_MAX_RANK)
        return dab_err_set(err, DAB_EUNSUPPORTED, "the output would have rank %d, more than %d",
                           rank, DAB_MAX_RANK);
    int64_t dims[DAB_MAX_RANK];
    int r = 0;
    for (int d = 0; d < ind->rank - 1; d++)
        dims[r++] = ind->dims[d];
    for (int d = b + k; d < data->rank; d++)
        dims[r++] = data->dims[d];
    dab_tensor_set_shape(node->outputs[0], data->dtype, rank, dims);
    return 0;
}

int dab_idx_gather_nd_compute(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *data = node->inputs[0], *ind = node->inputs[1];
    int b;
    int rc = gather_nd_check(node, &b, err);
    if (rc)
        return rc;
    int k = (int)ind->dims[ind->rank - 1];
    if ((rc = nd_check_range(ind, data, b, err)))
        return rc;
    int64_t tuples = dab_tensor_numel(ind) / k;
    int64_t batches = dab_idx_prod(data->dims, 0, b);
    int64_t per_batch = batches ? tuples / batches : 0;
    int64_t slice = dab_idx_prod(data->dims, b + k, data->rank);
    int64_t bstride = dab_idx_prod(data->dims, b, data->rank), dstr[DAB_MAX_RANK];
    dab_idx_strides(data, dstr);
    size_t es = dab_dtype_size(data->dtype), row = (size_t)slice * es;
    if (tuples == 0 || row == 0)
        return 0;
    const char *src = data->data;
    char *dst = node->outputs[0]->data;
    int nt = dab_par_threads(node->ctx, tuples * slice);
    DAB_PAR_FOR(nt, int64_t, t, tuples,
        int64_t off = (t / per_batch) * bstride + nd_offset(ind, data, dstr, b, k, t);
        memcpy(dst + (size_t)t * row, src + (size_t)off * es, row);
    );
    return 0;
}

int dab_idx_scatter_nd_init(dab_node_t *node, dab_err_t *err)
{
    int red;
    return read_reduction(node, &red, err);
}

static int scatter_nd_check(const dab_node_t *node, int *red, dab_err_t *err)
{
    const dab_tensor_t *data = node->inputs[0], *ind = node->inputs[1], *upd = node->inputs[2];
    int rc = dab_idx_check_int(ind, "indices", err);
    if (rc || (rc = read_reduction(node, red, err)))
        return rc;
    if (data->rank < 1 || ind->rank < 1)
        return dab_err_set(err, DAB_ESHAPE, "inputs 'data' and 'indices' must have rank >= 1");
    if (upd->dtype != data->dtype)
        return dab_err_set(err, DAB_ETYPE, "input 'updates' is %s, 'data' is %s",
                           dab_dtype_name(upd->dtype), dab_dtype_name(data->dtype));
    if (*red != RED_NONE && data->dtype == DAB_DT_BOOL)
        return dab_err_set(err, DAB_EUNSUPPORTED, "reduction '%s' on bool data is not supported",
                           g_red_names[*red]);
    int64_t k = ind->dims[ind->rank - 1];
    if (k > data->rank)
        return dab_err_set(err, DAB_ESHAPE,
                           "the last dim of 'indices' is %lld, more than the rank %d of 'data'",
                           (long long)k, data->rank);
    /* updates = indices.shape[:-1] ++ data.shape[k:] */
    int want = ind->rank - 1 + data->rank - (int)k;
    bool ok = upd->rank == want;
    for (int d = 0; ok && d < ind->rank - 1; d++)
        ok = upd->dims[d] == ind->dims[d];
    for (int d = (int)k; ok && d < data->rank; d++)
        ok = upd->dims[ind->rank - 1 + d - k] == data->dims[d];
    if (!ok) {
        char a[96], b[96], c[96];
        return dab_err_set(err, DAB_ESHAPE,
                           "input 'updates' %s must be indices.shape[:-1] ++ data.shape[%lld:] "
                           "(indices %s, data %s)",
                           dab_shape_str(upd, a, sizeof a), (long long)k,
                           dab_shape_str(ind, b, sizeof b), dab_shape_str(data, c, sizeof c));
    }
    return 0;
}

int dab_idx_scatter_nd_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *data = node->inputs[0];
    int red;
    int rc = scatter_nd_check(node, &red, err);
    if (rc)
        return rc;
    dab_tensor_set_shape(node->outputs[0], data->dtype, data->rank, data->dims);
    return 0;
}

int dab_idx_scatter_nd_compute(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *data = node->inputs[0], *ind = node->inputs[1], *upd = node->inputs[2];
    int red;
    int rc = scatter_nd_check(node, &red, err);
    if (rc)
        return rc;
    char *dst = node->outputs[0]->data;
    dab_idx_copy(dst, data->data, dab_tensor_bytes(data), node->ctx);
    int64_t k = ind->dims[ind->rank - 1];
    if (k > 0 && (rc = nd_check_range(ind, data, 0, err)))
        return rc;
    int64_t tuples = dab_idx_prod(ind->dims, 0, ind->rank - 1);
    int64_t slice = dab_idx_prod(data->dims, (int)k, data->rank), dstr[DAB_MAX_RANK];
    dab_idx_strides(data, dstr);
    size_t es = dab_dtype_size(data->dtype);
    const char *us = upd->data;
    if (slice == 0)
        return 0;
    for (int64_t t = 0; t < tuples; t++) {
        int64_t off = nd_offset(ind, data, dstr, 0, k, t);
        red_apply(data->dtype, red, dst + (size_t)off * es, us + (size_t)(t * slice) * es, slice);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* TensorScatter                                                       */
/* ------------------------------------------------------------------ */

static int tensor_scatter_check(const dab_node_t *node, int *axis, bool *circular,
                                dab_err_t *err)
{
    const dab_tensor_t *past = node->inputs[0], *upd = node->inputs[1];
    const dab_tensor_t *wi = dab_idx_in(node, 2);
    const char *mode = dab_attr_string(node, "mode", "linear");
    if (!strcmp(mode, "linear"))
        *circular = false;
    else if (!strcmp(mode, "circular"))
        *circular = true;
    else
        return dab_err_set(err, DAB_EINVAL, "attribute 'mode' '%s' is not linear or circular",
                           mode);
    if (past->rank < 2)
        return dab_err_set(err, DAB_ESHAPE, "input 'past_cache' must have rank >= 2, got %d",
                           past->rank);
    int rc = dab_norm_axis(dab_attr_int(node, "axis", -2), past->rank, "attribute 'axis'", axis,
                           err);
    if (rc)
        return rc;
    if (*axis == 0)
        return dab_err_set(err, DAB_EINVAL, "attribute 'axis' must not be the batch dim 0");
    if (upd->dtype != past->dtype)
        return dab_err_set(err, DAB_ETYPE, "input 'update' is %s, 'past_cache' is %s",
                           dab_dtype_name(upd->dtype), dab_dtype_name(past->dtype));
    bool ok = upd->rank == past->rank;
    for (int d = 0; ok && d < past->rank; d++)
        ok = d == *axis ? upd->dims[d] <= past->dims[d] : upd->dims[d] == past->dims[d];
    if (!ok) {
        char a[96], b[96];
        return dab_err_set(err, DAB_ESHAPE,
                           "input 'update' %s must match 'past_cache' %s except for a shorter "
                           "dim %d",
                           dab_shape_str(upd, a, sizeof a), dab_shape_str(past, b, sizeof b),
                           *axis);
    }
    if (wi) {
        if (wi->dtype != DAB_DT_INT64)
            return dab_err_set(err, DAB_ETYPE, "input 'write_indices' must be int64, got %s",
                               dab_dtype_name(wi->dtype));
        if (wi->rank != 1 || wi->dims[0] != past->dims[0])
            return dab_err_set(err, DAB_ESHAPE,
                               "input 'write_indices' must be [%lld] (one per batch)",
                               (long long)past->dims[0]);
    }
    return 0;
}

int dab_idx_tensor_scatter_init(dab_node_t *node, dab_err_t *err)
{
    return 0;
}

int dab_idx_tensor_scatter_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *past = node->inputs[0];
    int axis;
    bool circular;
    int rc = tensor_scatter_check(node, &axis, &circular, err);
    if (rc)
        return rc;
    dab_tensor_set_shape(node->outputs[0], past->dtype, past->rank, past->dims);
    return 0;
}

int dab_idx_tensor_scatter_compute(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *past = node->inputs[0], *upd = node->inputs[1];
    const dab_tensor_t *wi = dab_idx_in(node, 2);
    int axis;
    bool circular;
    int rc = tensor_scatter_check(node, &axis, &circular, err);
    if (rc)
        return rc;
    int64_t batch = past->dims[0], max_seq = past->dims[axis], seq = upd->dims[axis];
    const int64_t *w = wi ? wi->data : NULL;
    for (int64_t i = 0; w && i < batch; i++)
        if (w[i] < 0 || (!circular && w[i] > max_seq - seq))
            return dab_err_set(err, DAB_ERANGE,
                               "input 'write_indices' has value %lld at position %lld: "
                               "writing %lld rows there does not fit in %lld",
                               (long long)w[i], (long long)i, (long long)seq,
                               (long long)max_seq);
    char *dst = node->outputs[0]->data;
    dab_idx_copy(dst, past->data, dab_tensor_bytes(past), node->ctx);
    int64_t prefix = dab_idx_prod(past->dims, 0, axis);
    int64_t per_batch = dab_idx_prod(past->dims, 1, axis);
    size_t row = (size_t)dab_idx_prod(past->dims, axis + 1, past->rank) *
                 dab_dtype_size(past->dtype);
    if (prefix == 0 || seq == 0 || row == 0)
        return 0;
    const char *src = upd->data;
    int nt = dab_par_threads(node->ctx, prefix * seq * (int64_t)row / 4);
    DAB_PAR_FOR(nt, int64_t, p, prefix,
        int64_t start = w ? w[p / per_batch] : 0;
        for (int64_t s = 0; s < seq; s++) {
            int64_t pos = circular ? (start + s) % max_seq : start + s;
            memcpy(dst + (size_t)(p * max_seq + pos) * row,
                   src + (size_t)(p * seq + s) * row, row);
        }
    );
    return 0;
}
