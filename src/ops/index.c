/*
 * index.c - indexing, scatter/gather, selection and loss operators: the family's
 * table, the helpers its files share (index_int.h), and the small selection ops
 * Compress, NonZero and EyeLike.
 *
 * The gathers and scatters live in index_scatter.c, Unique and NonMaxSuppression in
 * index_select.c, the two loss functions in index_loss.c. Indices read from inputs are
 * untrusted: every op checks them all against the axis they index before touching
 * memory, and reports the first bad one with ERANGE.
 *
 * Ops whose output shape depends on input values (Compress, NonZero, Unique, NMS) count
 * in reshape, where inputs already hold their data.
 */
#include "index_int.h"

#include <stdio.h>

/* ------------------------------------------------------------------ */
/* shared helpers                                                      */
/* ------------------------------------------------------------------ */

int dab_idx_check_int(const dab_tensor_t *t, const char *what, dab_err_t *err)
{
    if (t->dtype != DAB_DT_INT64 && t->dtype != DAB_DT_INT32)
        return dab_err_set(err, DAB_ETYPE, "input '%s' must be int32 or int64, got %s", what,
                           dab_dtype_name(t->dtype));
    return 0;
}

int dab_idx_check_range(const dab_tensor_t *t, const char *what, int64_t dim, dab_err_t *err)
{
    int64_t n = dab_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        int64_t v = dab_idx_at(t, i);
        if (v < -dim || v >= dim)
            return dab_err_set(err, DAB_ERANGE,
                               "input '%s' has value %lld at position %lld, out of range "
                               "[%lld, %lld)",
                               what, (long long)v, (long long)i, (long long)-dim,
                               (long long)dim);
    }
    return 0;
}

void dab_idx_strides(const dab_tensor_t *t, int64_t *s)
{
    int64_t acc = 1;
    for (int d = t->rank - 1; d >= 0; d--) {
        s[d] = acc;
        acc *= t->dims[d];
    }
}

int64_t dab_idx_prod(const int64_t *dims, int from, int to)
{
    int64_t p = 1;
    for (int d = from; d < to; d++)
        p *= dims[d];
    return p;
}

void dab_idx_sort(int64_t *a, int64_t *tmp, int64_t n, dab_idx_cmp_fn cmp, const void *ctx)
{
    /* bottom-up merge sort: short runs by insertion, then merges ping-ponging between
     * a and tmp; taking from the left run on ties keeps it stable */
    const int64_t run = 16;
    for (int64_t lo = 0; lo < n; lo += run) {
        int64_t hi = DAB_MIN(lo + run, n);
        for (int64_t i = lo + 1; i < hi; i++) {
            int64_t v = a[i], j = i;
            while (j > lo && cmp(a[j - 1], v, ctx) > 0) {
                a[j] = a[j - 1];
                j--;
            }
            a[j] = v;
        }
    }
    int64_t *src = a, *dst = tmp;
    for (int64_t w = run; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = DAB_MIN(lo + w, n), hi = DAB_MIN(lo + 2 * w, n);
            int64_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                dst[k++] = cmp(src[j], src[i], ctx) < 0 ? src[j++] : src[i++];
            while (i < mid)
                dst[k++] = src[i++];
            while (j < hi)
                dst[k++] = src[j++];
        }
        int64_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != a)
        memcpy(a, src, (size_t)n * sizeof *a);
}

int dab_idx_grow(void **buf, size_t *cap, size_t bytes, dab_err_t *err)
{
    if (*buf && *cap >= bytes)
        return 0;
    void *p = dab_malloc(bytes ? bytes : 1);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "out of memory for %zu bytes of operator state",
                           bytes);
    dab_free(*buf);
    *buf = p;
    *cap = bytes;
    return 0;
}

void dab_idx_copy(void *dst, const void *src, size_t n, const dab_exec_ctx_t *ctx)
{
    const size_t chunk = (size_t)1 << 18;
    int64_t chunks = (int64_t)((n + chunk - 1) / chunk);
    int nt = dab_par_threads(ctx, (int64_t)(n / 8));
    DAB_PAR_FOR(nt, int64_t, c, chunks,
        size_t off = (size_t)c * chunk;
        memcpy((char *)dst + off, (const char *)src + off, DAB_MIN(chunk, n - off));
    );
}

/* ------------------------------------------------------------------ */
/* Compress                                                            */
/* ------------------------------------------------------------------ */

/*
 * Like numpy.compress: a condition shorter than the axis drops the slices past its
 * end; a longer one is accepted as long as its extra entries are false.
 */
static int compress_count(const dab_node_t *node, int64_t len, int64_t *kept, dab_err_t *err)
{
    const dab_tensor_t *c = node->inputs[1];
    if (c->dtype != DAB_DT_BOOL)
        return dab_err_set(err, DAB_ETYPE, "input 'condition' must be bool, got %s",
                           dab_dtype_name(c->dtype));
    if (c->rank != 1)
        return dab_err_set(err, DAB_ESHAPE, "input 'condition' must be 1-D, got rank %d",
                           c->rank);
    const uint8_t *cv = c->data;
    int64_t n = 0;
    for (int64_t i = 0; i < c->dims[0]; i++) {
        if (!cv[i])
            continue;
        if (i >= len)
            return dab_err_set(err, DAB_ERANGE,
                               "input 'condition' is true at %lld, past the %lld slices it "
                               "selects from",
                               (long long)i, (long long)len);
        n++;
    }
    *kept = n;
    return 0;
}

static int compress_axis(const dab_node_t *node, int *axis, dab_err_t *err)
{
    const dab_attr_t *a = dab_attr_find(node, "axis");
    if (!a) {
        *axis = -1;
        return 0;
    }
    const dab_tensor_t *x = node->inputs[0];
    if (node->opset < 11 && a->i < 0)
        return dab_err_set(err, DAB_ERANGE, "attribute 'axis' %lld must be >= 0 before opset 11",
                           (long long)a->i);
    return dab_norm_axis(a->i, x->rank, "attribute 'axis'", axis, err);
}

static int compress_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    int axis, rc;
    if ((rc = compress_axis(node, &axis, err)))
        return rc;
    int64_t len = axis < 0 ? dab_tensor_numel(x) : x->dims[axis], kept;
    if ((rc = compress_count(node, len, &kept, err)))
        return rc;
    if (axis < 0) {
        dab_tensor_set_shape(node->outputs[0], x->dtype, 1, &kept);
        return 0;
    }
    int64_t dims[DAB_MAX_RANK];
    memcpy(dims, x->dims, sizeof dims);
    dims[axis] = kept;
    dab_tensor_set_shape(node->outputs[0], x->dtype, x->rank, dims);
    return 0;
}

static int compress_compute(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0], *c = node->inputs[1];
    int axis, rc;
    if ((rc = compress_axis(node, &axis, err)))
        return rc;
    int64_t outer = 1, len, inner = 1;
    if (axis < 0) {
        len = dab_tensor_numel(x);
    } else {
        outer = dab_idx_prod(x->dims, 0, axis);
        len = x->dims[axis];
        inner = dab_idx_prod(x->dims, axis + 1, x->rank);
    }
    int64_t kept = node->outputs[0]->dims[axis < 0 ? 0 : axis];
    size_t row = (size_t)inner * dab_dtype_size(x->dtype);
    const uint8_t *cv = c->data;
    int64_t n = DAB_MIN(len, c->dims[0]);
    if (row == 0 || kept == 0)
        return 0;
    const char *src = x->data;
    char *dst = node->outputs[0]->data;
    int nt = dab_par_threads(node->ctx, outer * len * inner);
    DAB_PAR_FOR(nt, int64_t, o, outer,
        const char *s = src + (size_t)(o * len) * row;
        char *d = dst + (size_t)(o * kept) * row;
        for (int64_t i = 0; i < n; i++)
            if (cv[i]) {
                memcpy(d, s + (size_t)i * row, row);
                d += row;
            }
    );
    return 0;
}

/* ------------------------------------------------------------------ */
/* NonZero                                                             */
/* ------------------------------------------------------------------ */

/* Whether element i is non-zero; floats compare as values, so -0.0 is zero and NaN
 * is not. */
static bool nz_at(const dab_tensor_t *t, int64_t i)
{
    switch (t->dtype) {
    case DAB_DT_FLOAT16: return dab_f16_to_f32(((const uint16_t *)t->data)[i]) != 0.0f;
    case DAB_DT_BFLOAT16: return dab_bf16_to_f32(((const uint16_t *)t->data)[i]) != 0.0f;
    case DAB_DT_FLOAT: return ((const float *)t->data)[i] != 0.0f;
    case DAB_DT_DOUBLE: return ((const double *)t->data)[i] != 0.0;
    case DAB_DT_BOOL:
    case DAB_DT_UINT8:
    case DAB_DT_INT8: return ((const uint8_t *)t->data)[i] != 0;
    case DAB_DT_UINT16:
    case DAB_DT_INT16: return ((const uint16_t *)t->data)[i] != 0;
    case DAB_DT_UINT32:
    case DAB_DT_INT32: return ((const uint32_t *)t->data)[i] != 0;
    default: return ((const uint64_t *)t->data)[i] != 0;
    }
}

static int nonzero_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    int64_t n = dab_tensor_numel(x), cnt = 0;
    for (int64_t i = 0; i < n; i++)
        cnt += nz_at(x, i);
    /* a scalar gives [0, count], unlike numpy's [1, count] (the spec says so) */
    int64_t dims[2] = {x->rank, cnt};
    dab_tensor_set_shape(node->outputs[0], DAB_DT_INT64, 2, dims);
    return 0;
}

static int nonzero_compute(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    int64_t *out = node->outputs[0]->data;
    int64_t cnt = node->outputs[0]->dims[1], n = dab_tensor_numel(x), k = 0;
    int64_t coord[DAB_MAX_RANK] = {0};
    for (int64_t i = 0; i < n; i++) {
        if (nz_at(x, i)) {
            for (int d = 0; d < x->rank; d++)
                out[d * cnt + k] = coord[d];
            k++;
        }
        for (int d = x->rank - 1; d >= 0; d--) {
            if (++coord[d] < x->dims[d])
                break;
            coord[d] = 0;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* EyeLike                                                             */
/* ------------------------------------------------------------------ */

#define EYE_DTM (DAB_IDX_DTM_MOVE)

static int eyelike_dtype(const dab_node_t *node, dab_dtype_t *dt, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    int64_t want = dab_attr_int(node, "dtype", x->dtype);
    if (want <= 0 || want >= DAB_DT_COUNT_ || want == DAB_DT_STRING)
        return dab_err_set(err, DAB_EINVAL, "attribute 'dtype' %lld is not a numeric or bool "
                           "data type", (long long)want);
    if (!(EYE_DTM & DAB_DTM(want)))
        return dab_err_set(err, DAB_EUNSUPPORTED, "attribute 'dtype' %s is not supported",
                           dab_dtype_name((dab_dtype_t)want));
    *dt = (dab_dtype_t)want;
    return 0;
}

static int eyelike_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    if (x->rank != 2)
        return dab_err_set(err, DAB_ESHAPE, "input 'input' must be 2-D, got rank %d", x->rank);
    dab_dtype_t dt = DAB_DT_UNDEFINED;
    int rc = eyelike_dtype(node, &dt, err);
    if (rc)
        return rc;
    dab_tensor_set_shape(node->outputs[0], dt, 2, x->dims);
    return 0;
}

static int eyelike_compute(dab_node_t *node, dab_err_t *err)
{
    dab_tensor_t *y = node->outputs[0];
    int64_t rows = y->dims[0], cols = y->dims[1], k = dab_attr_int(node, "k", 0);
    size_t es = dab_dtype_size(y->dtype);
    memset(y->data, 0, dab_tensor_bytes(y));
    /* the one of each dtype, as bytes */
    union {
        uint8_t u8;
        uint16_t u16;
        uint32_t u32;
        uint64_t u64;
        float f;
        double d;
    } one;
    switch (y->dtype) {
    case DAB_DT_FLOAT: one.f = 1.0f; break;
    case DAB_DT_DOUBLE: one.d = 1.0; break;
    case DAB_DT_FLOAT16: one.u16 = dab_f32_to_f16(1.0f); break;
    case DAB_DT_BFLOAT16: one.u16 = dab_f32_to_bf16(1.0f); break;
    default:
        if (es == 1)
            one.u8 = 1;
        else if (es == 2)
            one.u16 = 1;
        else if (es == 4)
            one.u32 = 1;
        else
            one.u64 = 1;
        break;
    }
    /* row i has its one at column i + k when that is inside the matrix */
    if (k >= cols || k <= -rows)
        return 0;
    int64_t r0 = k < 0 ? -k : 0, r1 = DAB_MIN(rows, cols - k);
    char *base = y->data;
    for (int64_t r = r0; r < r1; r++)
        memcpy(base + (size_t)(r * cols + r + k) * es, &one, es);
    return 0;
}

/* ------------------------------------------------------------------ */
/* the table                                                           */
/* ------------------------------------------------------------------ */

#define T_MOVE DAB_IDX_DTM_MOVE
#define T_LOSS DAB_IDX_DTM_LOSS
#define T_NMS DAB_DTM(DAB_DT_FLOAT)

#define OP3(name) dab_idx_##name##_init, dab_idx_##name##_reshape, dab_idx_##name##_compute

const dab_op_def_t dab_ops_index[] = {
    {"", "GatherElements", 11, 0, T_MOVE, 0, 2, 2, 1, 1, OP3(gather_elements), NULL},
    {"", "GatherND", 11, 0, T_MOVE, 0, 2, 2, 1, 1, NULL, dab_idx_gather_nd_reshape,
     dab_idx_gather_nd_compute, NULL},
    {"", "Scatter", 9, 10, T_MOVE, 0, 3, 3, 1, 1, OP3(scatter_elements), NULL},
    {"", "Scatter", 11, 12, T_MOVE, 0, 3, 3, 1, 1, OP3(scatter_elements), NULL},
    {"", "ScatterElements", 11, 0, T_MOVE, 0, 3, 3, 1, 1, OP3(scatter_elements), NULL},
    {"", "ScatterND", 11, 0, T_MOVE, 0, 3, 3, 1, 1, OP3(scatter_nd), NULL},
    {"", "TensorScatter", 24, 0, T_MOVE, 0, 2, 3, 1, 1, OP3(tensor_scatter), NULL},
    {"", "Compress", 9, 0, T_MOVE, 0, 2, 2, 1, 1, NULL, compress_reshape, compress_compute, NULL},
    {"", "NonZero", 9, 0, T_MOVE, 0, 1, 1, 1, 1, NULL, nonzero_reshape, nonzero_compute, NULL},
    {"", "EyeLike", 9, 0, T_MOVE, 0, 1, 1, 1, 1, NULL, eyelike_reshape, eyelike_compute, NULL},
    {"", "Unique", 11, 0, T_MOVE, 0, 1, 1, 1, 4, OP3(unique), dab_idx_unique_exit},
    {"", "NonMaxSuppression", 10, 0, T_NMS, 0, 2, 5, 1, 1, OP3(nms), dab_idx_nms_exit},
    {"", "NegativeLogLikelihoodLoss", 12, 0, T_LOSS, 0, 2, 3, 1, 1, OP3(loss),
     dab_op_free_priv},
    {"", "SoftmaxCrossEntropyLoss", 12, 0, T_LOSS, 0, 2, 3, 1, 2, OP3(loss), dab_op_free_priv},
    {0},
};
