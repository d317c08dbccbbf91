/*
 * shape.c - the shape / data-movement operator family: its table
 * (dab_ops_shape) and the ops that only relabel a shape or produce small
 * tensors: Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout (inference),
 * Shape, Size, ConstantOfShape and Range. (Constant nodes never reach a session: the
 * loader turns them into constant values.)
 *
 * The ops that move data with strides live in shape_copy.c, Pad in shape_pad.c,
 * Cast and CastLike in shape_cast.c; shape_int.h ties them together. Elements
 * are opaque bytes to these ops, so they accept every fixed-size dtype.
 */
#include "shape_int.h"

#include <math.h>
#include <string.h>

/* A copy of input 0 into output 0 (Reshape and friends: outputs never alias inputs). */
static int copy_input(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *in = node->inputs[0];
    dab_copy_bytes(node->outputs[0]->data, in->data, dab_tensor_bytes(in), node->ctx);
    return 0;
}

/* Axes from an INTS attribute (opset < since) or an optional int input (from since) into
 * axes; *n = -1 when absent. */
static int read_axes(const dab_node_t *node, int since, int input, int64_t *axes, int *n,
                     dab_err_t *err)
{
    if (node->opset < since) {
        const int64_t *v;
        *n = dab_attr_ints(node, "axes", &v);
        if (*n > DAB_MAX_RANK)
            return dab_err_set(err, DAB_ESHAPE, "attribute axes has %d values, more than %d", *n,
                               DAB_MAX_RANK);
        if (*n > 0)
            memcpy(axes, v, sizeof(int64_t) * (size_t)*n);
        return 0;
    }
    const dab_tensor_t *t = dab_shp_in(node, input);
    if (!t) {
        *n = -1;
        return 0;
    }
    return dab_read_ints(t, "input 'axes'", axes, DAB_MAX_RANK, n, err);
}

/* ------------------------------------------------------------------ */
/* Reshape                                                             */
/* ------------------------------------------------------------------ */

static int reshape_init(dab_node_t *node, dab_err_t *err)
{
    const int64_t *v;
    if (node->opset < 5 && dab_attr_ints(node, "shape", &v) < 0)
        return dab_err_set(err, DAB_EINVAL, "attribute shape is required");
    return 0;
}

static int reshape_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *in = node->inputs[0];
    int64_t shape[DAB_MAX_RANK], dims[DAB_MAX_RANK];
    int n;
    if (node->opset < 5) {
        const int64_t *v;
        n = dab_attr_ints(node, "shape", &v);
        if (n > DAB_MAX_RANK)
            return dab_err_set(err, DAB_EUNSUPPORTED, "attribute shape has rank %d, more than %d",
                               n, DAB_MAX_RANK);
        memcpy(shape, v, sizeof(int64_t) * (size_t)n);
    } else {
        int rc = dab_read_ints(node->inputs[1], "input 'shape'", shape, DAB_MAX_RANK, &n, err);
        if (rc)
            return rc;
    }
    bool allowzero = dab_attr_int(node, "allowzero", 0) != 0;
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < n; i++) {
        int64_t v = shape[i];
        if (v == -1) {
            if (infer >= 0)
                return dab_err_set(err, DAB_EINVAL, "shape has -1 at both %d and %d", infer, i);
            infer = i;
            continue;
        }
        if (v < -1)
            return dab_err_set(err, DAB_EINVAL, "shape has invalid dim %lld at %d",
                               (long long)v, i);
        if (v == 0 && !allowzero) {
            if (i >= in->rank)
                return dab_err_set(err, DAB_ESHAPE, "shape copies dim %d (0) from an input of "
                                   "rank %d", i, in->rank);
            v = in->dims[i];
        }
        dims[i] = v;
        if (dab_mul_i64(known, v, &known))
            return dab_err_set(err, DAB_ERANGE, "shape's element count overflows");
    }
    int64_t total = dab_tensor_numel(in);
    char buf[96];
    if (infer >= 0) {
        if (known == 0) {
            if (allowzero)
                return dab_err_set(err, DAB_EINVAL, "shape has both 0 and -1 with allowzero");
            if (total != 0)
                return dab_err_set(err, DAB_ESHAPE, "cannot infer the -1 dim: the other dims "
                                   "hold 0 elements but the input %s holds %lld",
                                   dab_shape_str(in, buf, sizeof buf), (long long)total);
            dims[infer] = 0;
        } else {
            if (total % known)
                return dab_err_set(err, DAB_ESHAPE, "input %s (%lld elements) cannot be "
                                   "reshaped with the -1 dim beside dims holding %lld",
                                   dab_shape_str(in, buf, sizeof buf), (long long)total,
                                   (long long)known);
            dims[infer] = total / known;
        }
    } else if (known != total) {
        return dab_err_set(err, DAB_ESHAPE, "input %s has %lld elements but the shape holds "
                           "%lld", dab_shape_str(in, buf, sizeof buf), (long long)total,
                           (long long)known);
    }
    return dab_shp_set_out(node, 0, in->dtype, n, dims, err);
}

/* ------------------------------------------------------------------ */
/* Flatten                                                             */
/* ------------------------------------------------------------------ */

static int flatten_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *in = node->inputs[0];
    int64_t axis = dab_attr_int(node, "axis", 1);
    if (axis < 0)
        axis += in->rank;
    if (axis < 0 || axis > in->rank)
        return dab_err_set(err, DAB_ERANGE, "attribute axis %lld is out of range for rank %d",
                           (long long)dab_attr_int(node, "axis", 1), in->rank);
    int64_t dims[2] = {1, 1};
    for (int d = 0; d < in->rank; d++)
        dims[d < axis ? 0 : 1] *= in->dims[d];
    return dab_shp_set_out(node, 0, in->dtype, 2, dims, err);
}

/* ------------------------------------------------------------------ */
/* Squeeze / Unsqueeze                                                 */
/* ------------------------------------------------------------------ */

static int squeeze_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *in = node->inputs[0];
    int64_t axes[DAB_MAX_RANK], dims[DAB_MAX_RANK];
    int n;
    int rc = read_axes(node, 13, 1, axes, &n, err);
    if (rc)
        return rc;
    bool drop[DAB_MAX_RANK] = {0};
    if (n <= 0) { /* absent or empty axes: every unit dim goes */
        n = 0;
        for (int d = 0; d < in->rank; d++)
            drop[d] = in->dims[d] == 1;
    }
    for (int i = 0; i < n; i++) {
        int a;
        rc = dab_norm_axis(axes[i], in->rank, "axes value", &a, err);
        if (rc)
            return rc;
        if (in->dims[a] != 1)
            return dab_err_set(err, DAB_ESHAPE, "cannot squeeze axis %d of size %lld", a,
                               (long long)in->dims[a]);
        drop[a] = true;
    }
    int r = 0;
    for (int d = 0; d < in->rank; d++)
        if (!drop[d])
            dims[r++] = in->dims[d];
    return dab_shp_set_out(node, 0, in->dtype, r, dims, err);
}

static int unsqueeze_init(dab_node_t *node, dab_err_t *err)
{
    const int64_t *v;
    if (node->opset < 13 && dab_attr_ints(node, "axes", &v) < 0)
        return dab_err_set(err, DAB_EINVAL, "attribute axes is required");
    return 0;
}

static int unsqueeze_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *in = node->inputs[0];
    int64_t axes[DAB_MAX_RANK], dims[DAB_MAX_RANK];
    int n;
    int rc = read_axes(node, 13, 1, axes, &n, err);
    if (rc)
        return rc;
    if (n < 0)
        return dab_err_set(err, DAB_EINVAL, "axes are required");
    int r = in->rank + n;
    if (r > DAB_MAX_RANK)
        return dab_err_set(err, DAB_EUNSUPPORTED, "the output would have rank %d, more than %d",
                           r, DAB_MAX_RANK);
    bool ins[DAB_MAX_RANK] = {0};
    for (int i = 0; i < n; i++) {
        int a;
        rc = dab_norm_axis(axes[i], r, "axes value", &a, err);
        if (rc)
            return rc;
        if (ins[a])
            return dab_err_set(err, DAB_EINVAL, "axes names axis %d twice", a);
        ins[a] = true;
    }
    for (int d = 0, k = 0; d < r; d++)
        dims[d] = ins[d] ? 1 : in->dims[k++];
    return dab_shp_set_out(node, 0, in->dtype, r, dims, err);
}

/* ------------------------------------------------------------------ */
/* Identity, Dropout                                                   */
/* ------------------------------------------------------------------ */

static int identity_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *in = node->inputs[0];
    return dab_shp_set_out(node, 0, in->dtype, in->rank, in->dims, err);
}

static int dropout_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *in = node->inputs[0];
    const dab_tensor_t *tm = node->opset >= 12 ? dab_shp_in(node, 2) : NULL;
    if (tm) {
        if (tm->dtype != DAB_DT_BOOL || dab_tensor_numel(tm) != 1)
            return dab_err_set(err, DAB_ETYPE, "input 'training_mode' must be one bool");
        if (((const uint8_t *)tm->data)[0])
            return dab_err_set(err, DAB_EUNSUPPORTED, "training_mode is true; only inference "
                               "is supported");
    }
    int rc = dab_shp_set_out(node, 0, in->dtype, in->rank, in->dims, err);
    if (rc)
        return rc;
    /* the mask is bool from opset 10, the data's type before */
    return dab_shp_set_out(node, 1, node->opset >= 10 ? DAB_DT_BOOL : in->dtype, in->rank,
                           in->dims, err);
}

static int dropout_compute(dab_node_t *node, dab_err_t *err)
{
    copy_input(node, err);
    dab_tensor_t *mask = dab_shp_out(node, 1);
    if (mask) {
        uint8_t one = 1;
        _Alignas(16) unsigned char v[16];
        dab_cast_elems(DAB_DT_BOOL, &one, mask->dtype, v, 1);
        dab_fill_elems(mask->data, v, dab_dtype_size(mask->dtype), dab_tensor_numel(mask),
                       node->ctx);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Shape, Size                                                         */
/* ------------------------------------------------------------------ */

static void shape_range(const dab_node_t *node, int rank, int64_t *start, int64_t *end)
{
    int64_t s = dab_attr_int(node, "start", 0), e = dab_attr_int(node, "end", rank);
    if (s < 0)
        s += rank;
    if (e < 0)
        e += rank;
    *start = s < 0 ? 0 : s > rank ? rank : s;
    *end = e < 0 ? 0 : e > rank ? rank : e;
}

static int shape_reshape(dab_node_t *node, dab_err_t *err)
{
    int64_t s, e;
    shape_range(node, node->inputs[0]->rank, &s, &e);
    int64_t n = e > s ? e - s : 0;
    return dab_shp_set_out(node, 0, DAB_DT_INT64, 1, &n, err);
}

static int shape_compute(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *in = node->inputs[0];
    int64_t s, e;
    shape_range(node, in->rank, &s, &e);
    int64_t *o = node->outputs[0]->data;
    for (int64_t d = s; d < e; d++)
        o[d - s] = in->dims[d];
    return 0;
}

static int size_reshape(dab_node_t *node, dab_err_t *err)
{
    return dab_shp_set_out(node, 0, DAB_DT_INT64, 0, NULL, err);
}

static int size_compute(dab_node_t *node, dab_err_t *err)
{
    *(int64_t *)node->outputs[0]->data = dab_tensor_numel(node->inputs[0]);
    return 0;
}

/* ------------------------------------------------------------------ */
/* ConstantOfShape                                                     */
/* ------------------------------------------------------------------ */

/* The fill value's tensor, or NULL for the default float 0. */
static int cos_value(const dab_node_t *node, const dab_tensor_t **out, dab_err_t *err)
{
    const dab_attr_t *a = dab_attr_find(node, "value");
    *out = NULL;
    if (!a)
        return 0;
    if (a->type != DAB_ATTR_TENSOR || !a->t)
        return dab_err_set(err, DAB_EINVAL, "attribute value must be a tensor");
    if (!dab_cast_supported(a->t->dtype, a->t->dtype))
        return dab_err_set(err, DAB_EUNSUPPORTED, "a %s value is not supported",
                           dab_dtype_name(a->t->dtype));
    if (dab_tensor_numel(a->t) != 1)
        return dab_err_set(err, DAB_EINVAL, "attribute value must hold one element, it has %lld",
                           (long long)dab_tensor_numel(a->t));
    *out = a->t;
    return 0;
}

static int cos_init(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *v;
    return cos_value(node, &v, err);
}

static int cos_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *v;
    int rc = cos_value(node, &v, err);
    if (rc)
        return rc;
    int64_t dims[DAB_MAX_RANK];
    int n;
    rc = dab_read_ints(node->inputs[0], "input 'shape'", dims, DAB_MAX_RANK, &n, err);
    if (rc)
        return rc;
    return dab_shp_set_out(node, 0, v ? v->dtype : DAB_DT_FLOAT, n, dims, err);
}

static int cos_compute(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *v;
    int rc = cos_value(node, &v, err);
    if (rc)
        return rc;
    dab_tensor_t *o = node->outputs[0];
    float zero = 0.0f;
    dab_fill_elems(o->data, v ? v->data : &zero, dab_dtype_size(o->dtype), dab_tensor_numel(o),
                   node->ctx);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Range                                                               */
/* ------------------------------------------------------------------ */

static bool range_is_int(dab_dtype_t dt)
{
    return dt == DAB_DT_INT16 || dt == DAB_DT_INT32 || dt == DAB_DT_INT64;
}

/* Reads start, limit and delta (as int64 for integer dtypes, double otherwise) and the
 * element count. */
static int range_params(const dab_node_t *node, int64_t *is, int64_t *id, double *fs, double *fd,
                        int64_t *count, dab_err_t *err)
{
    static const char *const names[3] = {"start", "limit", "delta"};
    const dab_tensor_t *t0 = node->inputs[0];
    double f[3];
    int64_t v[3];
    for (int k = 0; k < 3; k++) {
        const dab_tensor_t *t = node->inputs[k];
        if (t->dtype != t0->dtype)
            return dab_err_set(err, DAB_ETYPE, "input '%s' is %s but 'start' is %s", names[k],
                               dab_dtype_name(t->dtype), dab_dtype_name(t0->dtype));
        if (dab_tensor_numel(t) != 1)
            return dab_err_set(err, DAB_ESHAPE, "input '%s' must be a scalar", names[k]);
        if (range_is_int(t->dtype))
            dab_cast_elems(t->dtype, t->data, DAB_DT_INT64, &v[k], 1);
        else
            dab_cast_elems(t->dtype, t->data, DAB_DT_DOUBLE, &f[k], 1);
    }
    if (range_is_int(t0->dtype)) {
        if (v[2] == 0)
            return dab_err_set(err, DAB_EINVAL, "input 'delta' is 0");
        int64_t diff, n = 0;
        if (__builtin_sub_overflow(v[1], v[0], &diff) || (v[2] == -1 && diff == INT64_MIN))
            return dab_err_set(err, DAB_ERANGE, "the range from %lld to %lld is too long",
                               (long long)v[0], (long long)v[1]);
        if (diff != 0 && (diff > 0) == (v[2] > 0))
            n = diff / v[2] + (diff % v[2] != 0);
        *is = v[0];
        *id = v[2];
        *count = n;
        return 0;
    }
    if (f[2] == 0)
        return dab_err_set(err, DAB_EINVAL, "input 'delta' is 0");
    double n = ceil((f[1] - f[0]) / f[2]);
    if (n != n || n > 1e15)
        return dab_err_set(err, DAB_ERANGE, "the range from %g to %g by %g is not finite or too "
                           "long", f[0], f[1], f[2]);
    *fs = f[0];
    *fd = f[2];
    *count = n > 0 ? (int64_t)n : 0;
    return 0;
}

static int range_reshape(dab_node_t *node, dab_err_t *err)
{
    int64_t is, id, n;
    double fs, fd;
    int rc = range_params(node, &is, &id, &fs, &fd, &n, err);
    if (rc)
        return rc;
    return dab_shp_set_out(node, 0, node->inputs[0]->dtype, 1, &n, err);
}

static int range_compute(dab_node_t *node, dab_err_t *err)
{
    int64_t is, id, n;
    double fs, fd;
    int rc = range_params(node, &is, &id, &fs, &fd, &n, err);
    if (rc)
        return rc;
    dab_tensor_t *o = node->outputs[0];
    void *d = o->data;
    switch (o->dtype) {
    case DAB_DT_INT64:
        for (int64_t i = 0; i < n; i++)
            ((int64_t *)d)[i] = is + i * id;
        break;
    case DAB_DT_INT32:
        for (int64_t i = 0; i < n; i++)
            ((int32_t *)d)[i] = (int32_t)(is + i * id);
        break;
    case DAB_DT_INT16:
        for (int64_t i = 0; i < n; i++)
            ((int16_t *)d)[i] = (int16_t)(is + i * id);
        break;
    case DAB_DT_DOUBLE:
        for (int64_t i = 0; i < n; i++)
            ((double *)d)[i] = fs + (double)i * fd;
        break;
    case DAB_DT_FLOAT:
        for (int64_t i = 0; i < n; i++)
            ((float *)d)[i] = (float)(fs + (double)i * fd);
        break;
    default: {
        /* float16 / bfloat16: compute in float, convert a chunk at a time */
        float buf[256];
        for (int64_t a = 0; a < n; a += 256) {
            int64_t m = DAB_MIN((int64_t)256, n - a);
            for (int64_t i = 0; i < m; i++)
                buf[i] = (float)(fs + (double)(a + i) * fd);
            dab_cast_elems(DAB_DT_FLOAT, buf, o->dtype, (uint16_t *)d + a, m);
        }
        break;
    }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* the table                                                           */
/* ------------------------------------------------------------------ */

#define DTM_SHAPE_OF (DAB_DTM_MOVE | DAB_DTM(DAB_DT_STRING))
#define DTM_DROPOUT \
    (DAB_DTM_FLOATS | DAB_DTM(DAB_DT_FLOAT16) | DAB_DTM(DAB_DT_BFLOAT16))
#define DTM_RANGE                                                                   \
    (DAB_DTM_FLOATS | DAB_DTM(DAB_DT_INT16) | DAB_DTM(DAB_DT_INT32) |               \
     DAB_DTM(DAB_DT_INT64) | DAB_DTM(DAB_DT_FLOAT16) | DAB_DTM(DAB_DT_BFLOAT16))
#define DTM_I64 DAB_DTM(DAB_DT_INT64)

/* An op whose init, reshape and compute live in shape_copy.c / shape_pad.c / shape_cast.c. */
#define EXT(name) dab_shp_##name##_init, dab_shp_##name##_reshape, dab_shp_##name##_compute, NULL

const dab_op_def_t dab_ops_shape[] = {
    /* domain, name, since, until, dtypes, dtype_input, inputs min/max, outputs min/max,
     * init, reshape, compute, exit */
    {"", "Reshape", 1, 4, DAB_DTM_MOVE, 0, 1, 1, 1, 1,
     reshape_init, reshape_reshape, copy_input, NULL},
    {"", "Reshape", 5, 0, DAB_DTM_MOVE, 0, 2, 2, 1, 1,
     reshape_init, reshape_reshape, copy_input, NULL},
    {"", "Flatten", 1, 0, DAB_DTM_MOVE, 0, 1, 1, 1, 1, NULL, flatten_reshape, copy_input, NULL},
    {"", "Squeeze", 1, 12, DAB_DTM_MOVE, 0, 1, 1, 1, 1, NULL, squeeze_reshape, copy_input, NULL},
    {"", "Squeeze", 13, 0, DAB_DTM_MOVE, 0, 1, 2, 1, 1, NULL, squeeze_reshape, copy_input, NULL},
    {"", "Unsqueeze", 1, 12, DAB_DTM_MOVE, 0, 1, 1, 1, 1,
     unsqueeze_init, unsqueeze_reshape, copy_input, NULL},
    {"", "Unsqueeze", 13, 0, DAB_DTM_MOVE, 0, 2, 2, 1, 1,
     unsqueeze_init, unsqueeze_reshape, copy_input, NULL},
    {"", "Identity", 1, 0, DAB_DTM_MOVE, 0, 1, 1, 1, 1, NULL, identity_reshape, copy_input, NULL},
    {"", "Dropout", 1, 11, DTM_DROPOUT, 0, 1, 1, 1, 2,
     NULL, dropout_reshape, dropout_compute, NULL},
    {"", "Dropout", 12, 0, DTM_DROPOUT, 0, 1, 3, 1, 2,
     NULL, dropout_reshape, dropout_compute, NULL},
    {"", "Shape", 1, 0, DTM_SHAPE_OF, 0, 1, 1, 1, 1, NULL, shape_reshape, shape_compute, NULL},
    {"", "Size", 1, 0, DTM_SHAPE_OF, 0, 1, 1, 1, 1, NULL, size_reshape, size_compute, NULL},
    {"", "ConstantOfShape", 9, 0, DTM_I64, 0, 1, 1, 1, 1, cos_init, cos_reshape, cos_compute, NULL},
    {"", "Range", 11, 0, DTM_RANGE, 0, 3, 3, 1, 1, NULL, range_reshape, range_compute, NULL},
    {"", "Transpose", 1, 0, DAB_DTM_MOVE, 0, 1, 1, 1, 1, EXT(transpose)},
    {"", "Expand", 8, 0, DAB_DTM_MOVE, 0, 2, 2, 1, 1, EXT(expand)},
    {"", "Tile", 1, 5, DAB_DTM_MOVE, 0, 3, 3, 1, 1, EXT(tile)},
    {"", "Tile", 6, 0, DAB_DTM_MOVE, 0, 2, 2, 1, 1, EXT(tile)},
    {"", "Slice", 1, 9, DAB_DTM_MOVE, 0, 1, 1, 1, 1, EXT(slice)},
    {"", "Slice", 10, 0, DAB_DTM_MOVE, 0, 3, 5, 1, 1, EXT(slice)},
    {"", "Concat", 1, 0, DAB_DTM_MOVE, 0, 1, -1, 1, 1, EXT(concat)},
    {"", "Split", 1, 1, DAB_DTM_MOVE, 0, 1, 2, 1, -1, EXT(split)},
    {"", "Split", 2, 12, DAB_DTM_MOVE, 0, 1, 1, 1, -1, EXT(split)},
    {"", "Split", 13, 0, DAB_DTM_MOVE, 0, 1, 2, 1, -1, EXT(split)},
    {"", "Gather", 1, 0, DAB_DTM_MOVE, 0, 2, 2, 1, 1, EXT(gather)},
    {"", "Pad", 1, 10, DAB_DTM_MOVE, 0, 1, 1, 1, 1, EXT(pad)},
    {"", "Pad", 11, 17, DAB_DTM_MOVE, 0, 2, 3, 1, 1, EXT(pad)},
    {"", "Pad", 18, 0, DAB_DTM_MOVE, 0, 2, 4, 1, 1, EXT(pad)},
    {"", "Cast", 1, 0, DAB_DTM_CAST, 0, 1, 1, 1, 1, EXT(cast)},
    {"", "CastLike", 15, 0, DAB_DTM_CAST, 0, 2, 2, 1, 1, EXT(castlike)},
    {0},
};
