/*
 * transformer_scan.c - operators that walk a tensor along one axis or its last two:
 * CumSum (opset 11/14) and CumProd (26), running sums and products with the exclusive
 * and reverse options; Trilu (14), the upper or lower triangle of each matrix; TopK
 * (1/10/11/24), the k largest or smallest elements along an axis; and OneHot (9/11).
 *
 * Integer scans wrap modulo 2^bits (computed in unsigned types, as ONNX runtimes do,
 * without signed-overflow undefined behaviour); float16/bfloat16 scans run in float.
 * TopK keeps a heap of the k best indices of each slice: O(n log k), ties broken by the
 * lower index, NaN ordered above every number, results always sorted best first.
 */
#include "transformer_int.h"

#include <math.h>
#include <omp.h>

/* ---- CumSum / CumProd ---- */

typedef struct cum_priv {
    bool prod, exclusive, reverse;
    int64_t outer, n, inner; /* x viewed as [outer, n, inner] around the axis */
} cum_priv_t;

int dab_tf_cum_init(dab_node_t *node, dab_err_t *err)
{
    cum_priv_t *p = dab_calloc(1, sizeof *p);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "out of memory for the operator's state");
    p->prod = !strcmp(node->op_type, "CumProd");
    p->exclusive = dab_attr_int(node, "exclusive", 0) != 0;
    p->reverse = dab_attr_int(node, "reverse", 0) != 0;
    node->priv = p;
    return 0;
}

int dab_tf_cum_reshape(dab_node_t *node, dab_err_t *err)
{
    cum_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0];
    int64_t a;
    int axis, rc;
    if ((rc = dab_tf_read_scalar_int(node->inputs[1], "input axis", &a, err)))
        return rc;
    if (x->rank < 1)
        return dab_err_set(err, DAB_ESHAPE, "input x must have rank 1 or more");
    if ((rc = dab_norm_axis(a, x->rank, "input axis", &axis, err)))
        return rc;
    p->outer = p->n = p->inner = 1;
    for (int d = 0; d < x->rank; d++) {
        if (d < axis)
            p->outer *= x->dims[d];
        else if (d == axis)
            p->n = x->dims[d];
        else
            p->inner *= x->dims[d];
    }
    dab_tensor_set_shape(node->outputs[0], x->dtype, x->rank, x->dims);
    if (x->dtype == DAB_DT_FLOAT16 || x->dtype == DAB_DT_BFLOAT16) {
        size_t bytes;
        if (dab_mul_size((size_t)dab_tensor_numel(x), 2 * sizeof(float) + 2 * TF_SCRATCH_ALIGN,
                         &bytes))
            return dab_err_set(err, DAB_ELIMIT, "input x is too large");
        node->scratch_bytes = bytes;
    }
    return 0;
}

/*
 * y along the axis for one outer index; rows of `inner` contiguous elements. Exclusive
 * scans start from the identity and combine the previous input row.
 */
#define CUM_DEFINE(T, U, SUF)                                                                  \
    static void cum_##SUF(const cum_priv_t *p, const T *x, T *y)                               \
    {                                                                                          \
        const int64_t n = p->n, in = p->inner;                                                 \
        for (int64_t o = 0; o < p->outer; o++) {                                               \
            const T *xo = x + o * n * in;                                                      \
            T *yo = y + o * n * in;                                                            \
            for (int64_t k = 0; k < n; k++) {                                                  \
                int64_t r = p->reverse ? n - 1 - k : k;                                        \
                int64_t pr = p->reverse ? r + 1 : r - 1;                                       \
                T *yr = yo + r * in;                                                           \
                const T *src = xo + (p->exclusive ? pr : r) * in;                              \
                if (k == 0) {                                                                  \
                    for (int64_t i = 0; i < in; i++)                                           \
                        yr[i] = p->exclusive ? (T)(p->prod ? 1 : 0) : src[i];                  \
                    continue;                                                                  \
                }                                                                              \
                const T *yp = yo + pr * in;                                                    \
                if (p->prod) {                                                                 \
                    for (int64_t i = 0; i < in; i++)                                           \
                        yr[i] = (T)((U)yp[i] * (U)src[i]);                                     \
                } else {                                                                       \
                    for (int64_t i = 0; i < in; i++)                                           \
                        yr[i] = (T)((U)yp[i] + (U)src[i]);                                     \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }

CUM_DEFINE(float, float, f32)
CUM_DEFINE(double, double, f64)
CUM_DEFINE(int8_t, uint32_t, i8)
CUM_DEFINE(uint8_t, uint32_t, u8)
CUM_DEFINE(int16_t, uint32_t, i16)
CUM_DEFINE(uint16_t, uint32_t, u16)
CUM_DEFINE(int32_t, uint32_t, i32)
CUM_DEFINE(uint32_t, uint32_t, u32)
CUM_DEFINE(int64_t, uint64_t, i64)
CUM_DEFINE(uint64_t, uint64_t, u64)

int dab_tf_cum_compute(dab_node_t *node, dab_err_t *err)
{
    cum_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0];
    dab_tensor_t *y = node->outputs[0];
    switch (x->dtype) {
    case DAB_DT_FLOAT: cum_f32(p, x->data, y->data); return 0;
    case DAB_DT_DOUBLE: cum_f64(p, x->data, y->data); return 0;
    case DAB_DT_INT8: cum_i8(p, x->data, y->data); return 0;
    case DAB_DT_UINT8: cum_u8(p, x->data, y->data); return 0;
    case DAB_DT_INT16: cum_i16(p, x->data, y->data); return 0;
    case DAB_DT_UINT16: cum_u16(p, x->data, y->data); return 0;
    case DAB_DT_INT32: cum_i32(p, x->data, y->data); return 0;
    case DAB_DT_UINT32: cum_u32(p, x->data, y->data); return 0;
    case DAB_DT_INT64: cum_i64(p, x->data, y->data); return 0;
    case DAB_DT_UINT64: cum_u64(p, x->data, y->data); return 0;
    case DAB_DT_FLOAT16:
    case DAB_DT_BFLOAT16: {
        int64_t n = dab_tensor_numel(x);
        float *xf = node->scratch;
        float *yf = (float *)((char *)node->scratch +
                              DAB_ALIGN_UP((size_t)n * sizeof(float), TF_SCRATCH_ALIGN));
        dab_tf_convert(x->dtype, x->data, DAB_DT_FLOAT, xf, n);
        cum_f32(p, xf, yf);
        dab_tf_convert(DAB_DT_FLOAT, yf, y->dtype, y->data, n);
        return 0;
    }
    default:
        return dab_err_set(err, DAB_EUNSUPPORTED, "dtype %s is not supported",
                           dab_dtype_name(x->dtype));
    }
}

/* ---- Trilu ---- */

int dab_tf_trilu_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    if (x->rank < 2)
        return dab_err_set(err, DAB_ESHAPE, "input must have rank 2 or more, got %d", x->rank);
    if (node->n_inputs > 1 && node->inputs[1]) {
        int64_t k;
        int rc = dab_tf_read_scalar_int(node->inputs[1], "input k", &k, err);
        if (rc)
            return rc;
    }
    dab_tensor_set_shape(node->outputs[0], x->dtype, x->rank, x->dims);
    return 0;
}

int dab_tf_trilu_compute(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    dab_tensor_t *y = node->outputs[0];
    int64_t k = 0;
    if (node->n_inputs > 1 && node->inputs[1]) {
        int rc = dab_tf_read_scalar_int(node->inputs[1], "input k", &k, err);
        if (rc)
            return rc;
    }
    const bool upper = dab_attr_int(node, "upper", 1) != 0;
    const int64_t rows = x->dims[x->rank - 2], cols = x->dims[x->rank - 1];
    const int64_t mats = rows > 0 && cols > 0 ? dab_tensor_numel(x) / (rows * cols) : 0;
    const size_t es = dab_dtype_size(x->dtype);
    /* clamp k so that i + k below cannot overflow; beyond +-cols it changes nothing */
    k = DAB_MAX(DAB_MIN(k, cols + 1), -rows - 1);
    for (int64_t m = 0; m < mats; m++) {
        for (int64_t i = 0; i < rows; i++) {
            const char *xr = (const char *)x->data + (size_t)((m * rows + i) * cols) * es;
            char *yr = (char *)y->data + (size_t)((m * rows + i) * cols) * es;
            /* upper keeps columns j >= i + k, lower keeps j <= i + k */
            int64_t lo = upper ? DAB_MIN(DAB_MAX(i + k, 0), cols) : 0;
            int64_t hi = upper ? cols : DAB_MIN(DAB_MAX(i + k + 1, 0), cols);
            memset(yr, 0, (size_t)lo * es);
            memcpy(yr + (size_t)lo * es, xr + (size_t)lo * es, (size_t)(hi - lo) * es);
            memset(yr + (size_t)hi * es, 0, (size_t)(cols - hi) * es);
        }
    }
    return 0;
}

/* ---- TopK ---- */

typedef struct topk_priv {
    int64_t k_attr;     /* opset < 10 */
    int64_t axis_attr;
    bool largest;
    /* from the last reshape */
    int64_t k, outer, n, inner;
    size_t stride_bytes; /* one thread's scratch */
} topk_priv_t;

int dab_tf_topk_init(dab_node_t *node, dab_err_t *err)
{
    topk_priv_t *p = dab_calloc(1, sizeof *p);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "out of memory for the operator's state");
    p->k_attr = dab_attr_int(node, "k", -1);
    p->axis_attr = dab_attr_int(node, "axis", -1);
    p->largest = node->opset < 11 || dab_attr_int(node, "largest", 1) != 0;
    if (node->opset < 10 && p->k_attr < 0) {
        dab_free(p);
        return dab_err_set(err, DAB_EINVAL, "attribute k is required and must not be negative");
    }
    node->priv = p;
    return 0;
}

int dab_tf_topk_reshape(dab_node_t *node, dab_err_t *err)
{
    topk_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0];
    int axis, rc;
    if (x->rank < 1)
        return dab_err_set(err, DAB_ESHAPE, "input X must have rank 1 or more");
    if ((rc = dab_norm_axis(p->axis_attr, x->rank, "attribute axis", &axis, err)))
        return rc;
    if (node->opset >= 10) {
        const dab_tensor_t *kt = node->inputs[1];
        if (kt->dtype != DAB_DT_INT64)
            return dab_err_set(err, DAB_ETYPE, "input K must be int64, got %s",
                               dab_dtype_name(kt->dtype));
        if (kt->rank > 1 || dab_tensor_numel(kt) != 1)
            return dab_err_set(err, DAB_ESHAPE, "input K must hold exactly one value");
        p->k = ((const int64_t *)kt->data)[0];
    } else {
        p->k = p->k_attr;
    }
    if (p->k < 0 || p->k > x->dims[axis])
        return dab_err_set(err, DAB_ERANGE, "k = %lld is outside [0, %lld] (the size of axis %d)",
                           (long long)p->k, (long long)x->dims[axis], axis);
    int64_t dims[DAB_MAX_RANK];
    p->outer = p->inner = 1;
    for (int d = 0; d < x->rank; d++) {
        dims[d] = d == axis ? p->k : x->dims[d];
        if (d < axis)
            p->outer *= x->dims[d];
        else if (d > axis)
            p->inner *= x->dims[d];
    }
    p->n = x->dims[axis];
    dab_tensor_set_shape(node->outputs[0], x->dtype, x->rank, dims);
    dab_tensor_set_shape(node->outputs[1], DAB_DT_INT64, x->rank, dims);
    /* per thread: the heap of k indices, and for half types the slice as float keys */
    bool half = x->dtype == DAB_DT_FLOAT16 || x->dtype == DAB_DT_BFLOAT16;
    size_t heap = (size_t)p->k * sizeof(int64_t), keys = half ? (size_t)p->n * sizeof(float) : 0;
    p->stride_bytes = DAB_ALIGN_UP(heap, TF_SCRATCH_ALIGN) + DAB_ALIGN_UP(keys, TF_SCRATCH_ALIGN);
    if (p->stride_bytes > SIZE_MAX / 2 / (size_t)tf_max_threads(node))
        return dab_err_set(err, DAB_ELIMIT, "input X is too large");
    node->scratch_bytes = p->stride_bytes * (size_t)tf_max_threads(node);
    return 0;
}

/* Keys compare with NaN above every number and equal to itself, so the order is total. */
#define TOPK_CMP_FLOAT(a, b) (isnan(a) ? (isnan(b) ? 0 : 1) : isnan(b) ? -1 : (a > b) - (a < b))
#define TOPK_CMP_INT(a, b) ((a > b) - (a < b))

/*
 * The k best indices of the slice v[i * st], i < n, sorted best first into out.
 * "better": larger (or smaller) key, then lower index. A heap keeps the k best so far
 * with the worst of them at the root.
 */
#define TOPK_DEFINE(T, CMP, SUF)                                                               \
    static inline bool topk_better_##SUF(const T *v, int64_t st, bool largest, int64_t a,      \
                                         int64_t b)                                            \
    {                                                                                          \
        T va = v[a * st], vb = v[b * st];                                                      \
        int c = CMP(va, vb);                                                                   \
        if (!largest)                                                                          \
            c = -c;                                                                            \
        return c > 0 || (c == 0 && a < b);                                                     \
    }                                                                                          \
    static void topk_sift_##SUF(const T *v, int64_t st, bool largest, int64_t *h, int64_t m,   \
                                int64_t i)                                                     \
    {                                                                                          \
        for (;;) {                                                                             \
            int64_t w = i, l = 2 * i + 1, r = l + 1;                                           \
            if (l < m && topk_better_##SUF(v, st, largest, h[w], h[l]))                        \
                w = l;                                                                         \
            if (r < m && topk_better_##SUF(v, st, largest, h[w], h[r]))                        \
                w = r;                                                                         \
            if (w == i)                                                                        \
                return;                                                                        \
            int64_t t = h[i];                                                                  \
            h[i] = h[w];                                                                       \
            h[w] = t;                                                                          \
            i = w;                                                                             \
        }                                                                                      \
    }                                                                                          \
    static void topk_slice_##SUF(const T *v, int64_t st, int64_t n, int64_t k, bool largest,   \
                                 int64_t *h)                                                   \
    {                                                                                          \
        if (k == 0)                                                                            \
            return;                                                                            \
        for (int64_t i = 0; i < k; i++)                                                        \
            h[i] = i;                                                                          \
        for (int64_t i = k / 2 - 1; i >= 0; i--)                                               \
            topk_sift_##SUF(v, st, largest, h, k, i);                                          \
        for (int64_t i = k; i < n; i++) {                                                      \
            if (topk_better_##SUF(v, st, largest, i, h[0])) {                                  \
                h[0] = i;                                                                      \
                topk_sift_##SUF(v, st, largest, h, k, 0);                                      \
            }                                                                                  \
        }                                                                                      \
        /* pop the worst to the end: best first */                                             \
        for (int64_t m = k - 1; m > 0; m--) {                                                  \
            int64_t t = h[0];                                                                  \
            h[0] = h[m];                                                                       \
            h[m] = t;                                                                          \
            topk_sift_##SUF(v, st, largest, h, m, 0);                                          \
        }                                                                                      \
    }

TOPK_DEFINE(float, TOPK_CMP_FLOAT, f32)
TOPK_DEFINE(double, TOPK_CMP_FLOAT, f64)
TOPK_DEFINE(int8_t, TOPK_CMP_INT, i8)
TOPK_DEFINE(uint8_t, TOPK_CMP_INT, u8)
TOPK_DEFINE(int16_t, TOPK_CMP_INT, i16)
TOPK_DEFINE(uint16_t, TOPK_CMP_INT, u16)
TOPK_DEFINE(int32_t, TOPK_CMP_INT, i32)
TOPK_DEFINE(uint32_t, TOPK_CMP_INT, u32)
TOPK_DEFINE(int64_t, TOPK_CMP_INT, i64)
TOPK_DEFINE(uint64_t, TOPK_CMP_INT, u64)

static void topk_one(dab_dtype_t dt, const void *base, int64_t st, int64_t n, int64_t k,
                     bool largest, int64_t *h, float *keys)
{
    switch (dt) {
    case DAB_DT_FLOAT: topk_slice_f32(base, st, n, k, largest, h); break;
    case DAB_DT_DOUBLE: topk_slice_f64(base, st, n, k, largest, h); break;
    case DAB_DT_INT8: topk_slice_i8(base, st, n, k, largest, h); break;
    case DAB_DT_UINT8: topk_slice_u8(base, st, n, k, largest, h); break;
    case DAB_DT_INT16: topk_slice_i16(base, st, n, k, largest, h); break;
    case DAB_DT_UINT16: topk_slice_u16(base, st, n, k, largest, h); break;
    case DAB_DT_INT32: topk_slice_i32(base, st, n, k, largest, h); break;
    case DAB_DT_UINT32: topk_slice_u32(base, st, n, k, largest, h); break;
    case DAB_DT_INT64: topk_slice_i64(base, st, n, k, largest, h); break;
    case DAB_DT_UINT64: topk_slice_u64(base, st, n, k, largest, h); break;
    default: /* float16 / bfloat16: float keys */
        for (int64_t i = 0; i < n; i++)
            dab_tf_convert(dt, (const uint16_t *)base + i * st, DAB_DT_FLOAT, keys + i, 1);
        topk_slice_f32(keys, 1, n, k, largest, h);
        break;
    }
}

int dab_tf_topk_compute(dab_node_t *node, dab_err_t *err)
{
    topk_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0];
    dab_tensor_t *vals = node->outputs[0], *idx = node->outputs[1];
    const size_t es = dab_dtype_size(x->dtype);
    const int64_t slices = p->outer * p->inner;
    if (p->k == 0 || slices == 0)
        return 0;
    int nt = tf_par_threads(node, (double)slices * (double)p->n * 8);
    nt = DAB_MIN(nt, tf_max_threads(node));
    DAB_PAR_FOR(nt, int64_t, s, slices, {
        int64_t o = s / p->inner, i = s % p->inner;
        char *buf = (char *)node->scratch + (size_t)omp_get_thread_num() * p->stride_bytes;
        int64_t *h = (int64_t *)buf;
        float *keys = (float *)(buf + DAB_ALIGN_UP((size_t)p->k * sizeof(int64_t),
                                                   TF_SCRATCH_ALIGN));
        const char *base = (const char *)x->data + (size_t)(o * p->n * p->inner + i) * es;
        topk_one(x->dtype, base, p->inner, p->n, p->k, p->largest, h, keys);
        for (int64_t j = 0; j < p->k; j++) {
            int64_t out = (o * p->k + j) * p->inner + i;
            memcpy((char *)vals->data + (size_t)out * es, base + (size_t)(h[j] * p->inner) * es,
                   es);
            ((int64_t *)idx->data)[out] = h[j];
        }
    });
    (void)err;
    return 0;
}

/* ---- OneHot ---- */

/* depth as a count: any numeric scalar, floats truncated. */
static int onehot_depth(const dab_tensor_t *t, int64_t *depth, dab_err_t *err)
{
    if (dab_tensor_numel(t) != 1 || t->rank > 1)
        return dab_err_set(err, DAB_ESHAPE, "input depth must hold exactly one value");
    double v = dab_tensor_get_f64(t, 0);
    if (!(v >= 1) || v > (double)INT32_MAX)
        return dab_err_set(err, DAB_ERANGE, "input depth %g is not a positive count", v);
    *depth = (int64_t)v;
    return 0;
}

int dab_tf_onehot_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *ind = node->inputs[0], *vals = node->inputs[2];
    int64_t depth = 0;
    int rc, axis = 0;
    if ((rc = onehot_depth(node->inputs[1], &depth, err)))
        return rc;
    if (vals->rank != 1 || vals->dims[0] != 2)
        return dab_err_set(err, DAB_ESHAPE, "input values must be [off_value, on_value]");
    if (dab_dtype_size(vals->dtype) == 0 || vals->dtype == DAB_DT_STRING)
        return dab_err_set(err, DAB_EUNSUPPORTED, "values of dtype %s are not supported",
                           dab_dtype_name(vals->dtype));
    if (ind->rank + 1 > DAB_MAX_RANK)
        return dab_err_set(err, DAB_ELIMIT, "the output would have more than %d dims",
                           DAB_MAX_RANK);
    if ((rc = dab_norm_axis(dab_attr_int(node, "axis", -1), ind->rank + 1, "attribute axis",
                            &axis, err)))
        return rc;
    int64_t dims[DAB_MAX_RANK];
    for (int d = 0, s = 0; d <= ind->rank; d++)
        dims[d] = d == axis ? depth : ind->dims[s++];
    dab_tensor_set_shape(node->outputs[0], vals->dtype, ind->rank + 1, dims);
    return 0;
}

int dab_tf_onehot_compute(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *ind = node->inputs[0], *vals = node->inputs[2];
    dab_tensor_t *y = node->outputs[0];
    int64_t depth = 0;
    int rc, axis = 0;
    if ((rc = onehot_depth(node->inputs[1], &depth, err)) ||
        (rc = dab_norm_axis(dab_attr_int(node, "axis", -1), ind->rank + 1, "attribute axis",
                            &axis, err)))
        return rc;
    const size_t es = dab_dtype_size(vals->dtype);
    const char *off = vals->data, *on = (const char *)vals->data + es;
    const int64_t total = dab_tensor_numel(y);
    char *out = y->data;
    switch (es) { /* fill with off_value */
    case 1: memset(out, off[0], (size_t)total); break;
    case 2: {
        uint16_t v;
        memcpy(&v, off, 2);
        for (int64_t i = 0; i < total; i++)
            ((uint16_t *)out)[i] = v;
        break;
    }
    case 4: {
        uint32_t v;
        memcpy(&v, off, 4);
        for (int64_t i = 0; i < total; i++)
            ((uint32_t *)out)[i] = v;
        break;
    }
    default:
        for (int64_t i = 0; i < total; i++)
            memcpy(out + (size_t)i * es, off, es);
        break;
    }
    /* indices viewed as [outer, inner] around the inserted axis */
    int64_t inner = 1;
    for (int d = axis; d < ind->rank; d++)
        inner *= ind->dims[d];
    const int64_t n = dab_tensor_numel(ind);
    const bool flt = tf_is_float(ind->dtype);
    for (int64_t i = 0; i < n; i++) {
        int64_t v;
        if (flt) {
            double f = dab_tensor_get_f64(ind, i);
            if (!(f > -(double)depth - 1 && f < (double)depth + 1))
                continue; /* out of range (or NaN): all off */
            v = (int64_t)f;
        } else {
            v = dab_tensor_get_i64(ind, i);
            if (ind->dtype == DAB_DT_UINT64 && ((const uint64_t *)ind->data)[i] > INT64_MAX)
                continue;
        }
        if (v < 0)
            v += depth;
        if (v < 0 || v >= depth)
            continue;
        int64_t o = i / inner, r = i % inner;
        memcpy(out + (size_t)((o * depth + v) * inner + r) * es, on, es);
    }
    return 0;
}
