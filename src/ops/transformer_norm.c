/*
 * transformer_norm.c - LayerNormalization (opset 17) and RMSNormalization (23), which
 * normalize X over its dims [axis, rank) viewed as [rows, n]; RotaryEmbedding (23), which
 * rotates pairs of features of each head by a position's angle; and SwiGLU (28), the gated
 * activation Swish(A) * B.
 *
 * All compute in double when a tensor involved is double and in float otherwise
 * (float16/bfloat16 rows are converted to float on the way in and rounded on the way out),
 * so every dtype goes through one float and one double kernel. Scale and bias are first
 * broadcast into [n] arrays in scratch: the row kernels then read them contiguously.
 */
#include "transformer_int.h"

#include <math.h>
#include <omp.h>

#include "kernels/simd/simd.h"

/* Independent partial sums per row reduction, so float sums vectorize without reassociation. */
#define NORM_LANES 16

/* ---- LayerNormalization / RMSNormalization ---- */

typedef struct norm_priv {
    bool rms;
    int64_t axis_attr;
    double eps;
    dab_dtype_t stash;   /* dtype of Mean / InvStdDev (stash_type) */
    dab_dtype_t cdt;     /* compute dtype, from the last reshape */
    int axis;            /* normalized axis, from the last reshape */
    int64_t rows, n;     /* X viewed as [rows, n] */
    size_t off_scale, off_bias, off_rows; /* scratch pieces */
    int nt_max;
} norm_priv_t;

int dab_tf_norm_init(dab_node_t *node, dab_err_t *err)
{
    norm_priv_t *p = dab_calloc(1, sizeof *p);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "out of memory for the operator's state");
    p->rms = !strcmp(node->op_type, "RMSNormalization");
    p->axis_attr = dab_attr_int(node, "axis", -1);
    p->eps = dab_attr_float(node, "epsilon", 1e-5f);
    int64_t st = dab_attr_int(node, "stash_type", DAB_DT_FLOAT);
    if (st < 0 || st >= DAB_DT_COUNT_ || !tf_is_float((dab_dtype_t)st)) {
        dab_free(p);
        return dab_err_set(err, DAB_EINVAL,
                           "attribute stash_type %lld is not a floating-point data type",
                           (long long)st);
    }
    p->stash = (dab_dtype_t)st;
    node->priv = p;
    return 0;
}

/* Checks that parameter t broadcasts to the normalized shape dims[0..nr) (right-aligned;
 * extra leading dims must be 1). LayerNormalization also flattens Scale/B, so any shape
 * with exactly n elements is accepted there. */
static int norm_check_param(const norm_priv_t *p, const dab_tensor_t *t, const char *what,
                            const int64_t *dims, int nr, dab_err_t *err)
{
    char s[96];
    if (!tf_is_float(t->dtype))
        return dab_err_set(err, DAB_ETYPE, "input %s has dtype %s, a float type is required", what,
                           dab_dtype_name(t->dtype));
    if (!p->rms && dab_tensor_numel(t) == p->n)
        return 0;
    for (int d = 0; d < t->rank; d++) {
        int nd = d - (t->rank - nr); /* matching normalized dim, < 0: leading extra */
        int64_t v = t->dims[d];
        if (v == 1 || (nd >= 0 && v == dims[nd]))
            continue;
        return dab_err_set(err, DAB_ESHAPE,
                           "input %s %s does not broadcast to the normalized shape (the dims of "
                           "X from axis %d)",
                           what, dab_shape_str(t, s, sizeof s), p->axis);
    }
    return 0;
}

int dab_tf_norm_reshape(dab_node_t *node, dab_err_t *err)
{
    norm_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0];
    int rank = x->rank, rc;
    if (rank < 1)
        return dab_err_set(err, DAB_ESHAPE, "input X must have rank 1 or more, got %d", rank);
    if ((rc = dab_norm_axis(p->axis_attr, rank, "attribute axis", &p->axis, err)))
        return rc;
    p->rows = 1;
    p->n = 1;
    for (int d = 0; d < rank; d++) {
        if (d < p->axis)
            p->rows *= x->dims[d];
        else
            p->n *= x->dims[d];
    }
    const dab_tensor_t *sc = node->inputs[1];
    const dab_tensor_t *bi = !p->rms && node->n_inputs > 2 ? node->inputs[2] : NULL;
    if ((rc = norm_check_param(p, sc, "Scale", x->dims + p->axis, rank - p->axis, err)))
        return rc;
    if (bi && (rc = norm_check_param(p, bi, "B", x->dims + p->axis, rank - p->axis, err)))
        return rc;
    bool dbl = x->dtype == DAB_DT_DOUBLE || sc->dtype == DAB_DT_DOUBLE ||
               (bi && bi->dtype == DAB_DT_DOUBLE) || p->stash == DAB_DT_DOUBLE;
    p->cdt = dbl ? DAB_DT_DOUBLE : DAB_DT_FLOAT;
    /* RMSNormalization's Y has the scale's type (V); LayerNormalization's has X's */
    dab_dtype_t ydt = p->rms ? sc->dtype : x->dtype;
    dab_tensor_set_shape(node->outputs[0], ydt, rank, x->dims);
    int64_t sdims[DAB_MAX_RANK];
    for (int d = 0; d < rank; d++)
        sdims[d] = d < p->axis ? x->dims[d] : 1;
    for (int i = 1; i < node->n_outputs; i++)
        if (node->outputs[i])
            dab_tensor_set_shape(node->outputs[i], p->stash, rank, sdims);
    /* scratch: scale and bias as [n] compute-type arrays, and a row per thread when X or Y
     * is not of the compute type */
    size_t es = dab_dtype_size(p->cdt), off = 0, row_bytes;
    p->nt_max = tf_max_threads(node);
    if (dab_mul_size((size_t)p->n, es, &row_bytes))
        return dab_err_set(err, DAB_ELIMIT, "the normalized size %lld is too large",
                           (long long)p->n);
    p->off_scale = tf_scratch_take(&off, row_bytes);
    p->off_bias = tf_scratch_take(&off, bi ? row_bytes : 0);
    p->off_rows = off;
    if (x->dtype != p->cdt || ydt != p->cdt) {
        size_t all;
        if (dab_mul_size(row_bytes + TF_SCRATCH_ALIGN, (size_t)p->nt_max, &all) ||
            tf_scratch_take(&off, all) == SIZE_MAX)
            return dab_err_set(err, DAB_ELIMIT, "the normalized size %lld is too large",
                               (long long)p->n);
    }
    if (p->off_scale == SIZE_MAX || p->off_bias == SIZE_MAX)
        return dab_err_set(err, DAB_ELIMIT, "the normalized size %lld is too large",
                           (long long)p->n);
    node->scratch_bytes = off;
    return 0;
}

/* Writes parameter t broadcast to the normalized shape dims[0..nr) as n values of dtype cdt. */
static void norm_expand_param(const norm_priv_t *p, const dab_tensor_t *t, const int64_t *dims,
                              int nr, void *out)
{
    int64_t cnt = dab_tensor_numel(t);
    if (cnt == p->n) { /* same layout (LayerNormalization flattens it) */
        dab_tf_convert(t->dtype, t->data, p->cdt, out, p->n);
        return;
    }
    /* strides of t along the normalized dims, 0 where it broadcasts */
    int64_t st[DAB_MAX_RANK], s = 1;
    for (int d = nr - 1; d >= 0; d--) {
        int td = d - (nr - t->rank);
        int64_t v = td >= 0 ? t->dims[td] : 1;
        st[d] = v == 1 ? 0 : s;
        s *= v;
    }
    for (int64_t j = 0; j < p->n; j++) {
        int64_t rem = j, src = 0;
        for (int d = nr - 1; d >= 0; d--) {
            src += (rem % dims[d]) * st[d];
            rem /= dims[d];
        }
        if (p->cdt == DAB_DT_DOUBLE)
            dab_tf_convert(t->dtype, (const char *)t->data + src * dab_dtype_size(t->dtype),
                           DAB_DT_DOUBLE, (double *)out + j, 1);
        else
            dab_tf_convert(t->dtype, (const char *)t->data + src * dab_dtype_size(t->dtype),
                           DAB_DT_FLOAT, (float *)out + j, 1);
    }
}

/* Stores v as element i of an array of float dtype dt. */
static void store_one(dab_dtype_t dt, void *base, int64_t i, double v)
{
    char *dst = (char *)base + i * (int64_t)dab_dtype_size(dt);
    if (dt == DAB_DT_DOUBLE) {
        memcpy(dst, &v, sizeof v);
        return;
    }
    float f = (float)v;
    dab_tf_convert(DAB_DT_FLOAT, &f, dt, dst, 1);
}

/*
 * One row: y = (x - mean) * inv * scale + bias with mean and variance over the row
 * (LayerNormalization), or y = x * inv * scale with inv from the mean square (RMS).
 */
#define NORM_DEFINE(T)                                                                         \
    static T norm_sum_##T(const T *restrict x, int64_t n, T shift, int sq)                     \
    {                                                                                          \
        T lane[NORM_LANES] = {0};                                                              \
        int64_t i = 0;                                                                         \
        for (; i + NORM_LANES <= n; i += NORM_LANES)                                           \
            for (int l = 0; l < NORM_LANES; l++) {                                             \
                T v = x[i + l] - shift;                                                        \
                lane[l] += sq ? v * v : v;                                                     \
            }                                                                                  \
        T s = 0;                                                                               \
        for (; i < n; i++) {                                                                   \
            T v = x[i] - shift;                                                                \
            s += sq ? v * v : v;                                                               \
        }                                                                                      \
        for (int l = 0; l < NORM_LANES; l++)                                                   \
            s += lane[l];                                                                      \
        return s;                                                                              \
    }                                                                                          \
                                                                                               \
    static void norm_row_##T(bool rms, const T *restrict x, T *restrict y, int64_t n,          \
                             const T *restrict sc, const T *restrict bi, double eps,           \
                             double *mean_out, double *inv_out)                                \
    {                                                                                          \
        T mean = rms ? (T)0 : norm_sum_##T(x, n, 0, 0) / (T)n;                                 \
        T var = norm_sum_##T(x, n, mean, 1) / (T)n;                                            \
        T inv = (T)1 / (T)sqrt((double)var + eps);                                             \
        if (bi) {                                                                              \
            for (int64_t i = 0; i < n; i++)                                                    \
                y[i] = (x[i] - mean) * inv * sc[i] + bi[i];                                    \
        } else {                                                                               \
            for (int64_t i = 0; i < n; i++)                                                    \
                y[i] = (x[i] - mean) * inv * sc[i];                                            \
        }                                                                                      \
        *mean_out = mean;                                                                      \
        *inv_out = inv;                                                                        \
    }

NORM_DEFINE(float)
NORM_DEFINE(double)

int dab_tf_norm_compute(dab_node_t *node, dab_err_t *err)
{
    norm_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0], *sc = node->inputs[1];
    const dab_tensor_t *bi = !p->rms && node->n_inputs > 2 ? node->inputs[2] : NULL;
    dab_tensor_t *y = node->outputs[0];
    dab_tensor_t *mean = node->n_outputs > 1 ? node->outputs[1] : NULL;
    dab_tensor_t *istd = node->n_outputs > 2 ? node->outputs[2] : NULL;
    char *scratch = node->scratch;
    const int nr = x->rank - p->axis;
    const int64_t *ndims = x->dims + p->axis;
    if (p->rows == 0)
        return 0;
    if (p->n == 0) { /* statistics of no elements are 0/0 */
        for (int64_t r = 0; r < p->rows; r++) {
            if (mean)
                store_one(mean->dtype, mean->data, r, NAN);
            if (istd)
                store_one(istd->dtype, istd->data, r, NAN);
        }
        return 0;
    }
    void *scv = scratch + p->off_scale;
    void *biv = bi ? scratch + p->off_bias : NULL;
    norm_expand_param(p, sc, ndims, nr, scv);
    if (bi)
        norm_expand_param(p, bi, ndims, nr, biv);
    const size_t es = dab_dtype_size(p->cdt);
    const size_t row_stride = DAB_ALIGN_UP((size_t)p->n * es, TF_SCRATCH_ALIGN);
    const size_t xes = dab_dtype_size(x->dtype), yes = dab_dtype_size(y->dtype);
    const bool direct = x->dtype == p->cdt && y->dtype == p->cdt;
    const bool dbl = p->cdt == DAB_DT_DOUBLE;
    int nt = tf_par_threads(node, (double)p->rows * (double)p->n * 4);
    nt = DAB_MIN(nt, p->nt_max);
    const dab_simd_ops_t *simd = dbl ? NULL : dab_simd(); /* float rows: SIMD when active */
    DAB_PAR_FOR(nt, int64_t, r, p->rows, {
        const char *xr = (const char *)x->data + r * p->n * (int64_t)xes;
        char *yr = (char *)y->data + r * p->n * (int64_t)yes;
        void *buf = scratch + p->off_rows + (size_t)omp_get_thread_num() * row_stride;
        const void *xin = xr;
        void *yout = yr;
        if (!direct) {
            dab_tf_convert(x->dtype, xr, p->cdt, buf, p->n);
            xin = buf;
            yout = buf;
        }
        double m, inv;
        if (dbl)
            norm_row_double(p->rms, xin, yout, p->n, scv, biv, p->eps, &m, &inv);
        else if (simd)
            simd->norm_row(p->rms, xin, yout, p->n, scv, biv, p->eps, &m, &inv);
        else
            norm_row_float(p->rms, xin, yout, p->n, scv, biv, p->eps, &m, &inv);
        if (!direct)
            dab_tf_convert(p->cdt, buf, y->dtype, yr, p->n);
        if (mean)
            store_one(mean->dtype, mean->data, r, m);
        if (istd)
            store_one(istd->dtype, istd->data, r, inv);
    });
    (void)err;
    return 0;
}

/* ---- RotaryEmbedding ---- */

typedef struct rope_priv {
    bool interleaved;
    int64_t num_heads_attr, rdim_attr;
    /* from the last reshape */
    dab_dtype_t cdt;
    int64_t b, s, h, d, rd; /* batch, sequence, heads, head size, rotated dims */
    int64_t x_bs, x_ss, x_hs; /* element strides of X (and Y) along batch, seq, head */
    size_t row_stride;        /* bytes of one thread's scratch */
} rope_priv_t;

int dab_tf_rope_init(dab_node_t *node, dab_err_t *err)
{
    rope_priv_t *p = dab_calloc(1, sizeof *p);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "out of memory for the operator's state");
    p->interleaved = dab_attr_int(node, "interleaved", 0) != 0;
    p->num_heads_attr = dab_attr_int(node, "num_heads", 0);
    p->rdim_attr = dab_attr_int(node, "rotary_embedding_dim", 0);
    if (p->num_heads_attr < 0 || p->rdim_attr < 0) {
        dab_free(p);
        return dab_err_set(err, DAB_EINVAL,
                           "attributes num_heads and rotary_embedding_dim must not be negative");
    }
    node->priv = p;
    return 0;
}

int dab_tf_rope_reshape(dab_node_t *node, dab_err_t *err)
{
    rope_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0], *cs = node->inputs[1], *sn = node->inputs[2];
    const dab_tensor_t *pos = node->n_inputs > 3 ? node->inputs[3] : NULL;
    char s1[96], s2[96];
    if (x->rank == 4) {
        p->b = x->dims[0];
        p->h = x->dims[1];
        p->s = x->dims[2];
        p->d = x->dims[3];
        p->x_hs = p->s * p->d;
        p->x_ss = p->d;
        p->x_bs = p->h * p->s * p->d;
    } else if (x->rank == 3) {
        if (p->num_heads_attr <= 0)
            return dab_err_set(err, DAB_EINVAL, "a 3-D input needs attribute num_heads");
        p->b = x->dims[0];
        p->s = x->dims[1];
        p->h = p->num_heads_attr;
        if (x->dims[2] % p->h)
            return dab_err_set(err, DAB_ESHAPE,
                               "the hidden size %lld is not a multiple of num_heads %lld",
                               (long long)x->dims[2], (long long)p->h);
        p->d = x->dims[2] / p->h;
        p->x_hs = p->d;
        p->x_ss = x->dims[2];
        p->x_bs = p->s * x->dims[2];
    } else {
        return dab_err_set(err, DAB_ESHAPE, "input X must be 3-D or 4-D, got rank %d", x->rank);
    }
    p->rd = p->rdim_attr ? p->rdim_attr : p->d;
    if (p->rd > p->d || p->rd % 2)
        return dab_err_set(err, DAB_EINVAL,
                           "rotary_embedding_dim %lld must be even and at most the head size %lld",
                           (long long)p->rd, (long long)p->d);
    if (cs->dtype != x->dtype || sn->dtype != x->dtype)
        return dab_err_set(err, DAB_ETYPE, "cos_cache and sin_cache must have X's dtype %s",
                           dab_dtype_name(x->dtype));
    if (!dab_shape_equal(cs, sn))
        return dab_err_set(err, DAB_ESHAPE, "cos_cache %s and sin_cache %s differ in shape",
                           dab_shape_str(cs, s1, sizeof s1), dab_shape_str(sn, s2, sizeof s2));
    int64_t half = p->rd / 2;
    if (pos) {
        if (pos->dtype != DAB_DT_INT64 && pos->dtype != DAB_DT_INT32)
            return dab_err_set(err, DAB_ETYPE, "position_ids must be int64, got %s",
                               dab_dtype_name(pos->dtype));
        if (pos->rank != 2 || pos->dims[0] != p->b || pos->dims[1] != p->s)
            return dab_err_set(err, DAB_ESHAPE,
                               "position_ids %s must be [batch, sequence] = [%lld, %lld]",
                               dab_shape_str(pos, s1, sizeof s1), (long long)p->b,
                               (long long)p->s);
        if (cs->rank != 2 || cs->dims[1] != half)
            return dab_err_set(err, DAB_ESHAPE,
                               "with position_ids cos_cache %s must be [max_position, %lld]",
                               dab_shape_str(cs, s1, sizeof s1), (long long)half);
    } else if (cs->rank != 3 || cs->dims[0] != p->b || cs->dims[1] != p->s ||
               cs->dims[2] != half) {
        return dab_err_set(err, DAB_ESHAPE,
                           "without position_ids cos_cache %s must be [%lld, %lld, %lld]",
                           dab_shape_str(cs, s1, sizeof s1), (long long)p->b, (long long)p->s,
                           (long long)half);
    }
    dab_tensor_set_shape(node->outputs[0], x->dtype, x->rank, x->dims);
    /* scratch per thread: cos and sin rows and a head in and out, in the compute type */
    p->cdt = tf_compute_dtype(x->dtype);
    size_t bytes;
    if (dab_mul_size((size_t)(p->rd + 2 * p->d), dab_dtype_size(p->cdt), &bytes) ||
        bytes > SIZE_MAX / 2 / (size_t)tf_max_threads(node))
        return dab_err_set(err, DAB_ELIMIT, "the head size %lld is too large", (long long)p->d);
    p->row_stride = DAB_ALIGN_UP(bytes, TF_SCRATCH_ALIGN);
    node->scratch_bytes = p->row_stride * (size_t)tf_max_threads(node);
    return 0;
}

#define ROPE_DEFINE(T)                                                                         \
    static void rope_head_##T(bool inter, int64_t d, int64_t half, const T *restrict x,        \
                              const T *restrict c, const T *restrict s, T *restrict y)         \
    {                                                                                          \
        if (inter) {                                                                           \
            for (int64_t k = 0; k < half; k++) {                                               \
                T x1 = x[2 * k], x2 = x[2 * k + 1];                                            \
                y[2 * k] = c[k] * x1 - s[k] * x2;                                              \
                y[2 * k + 1] = s[k] * x1 + c[k] * x2;                                          \
            }                                                                                  \
        } else {                                                                               \
            for (int64_t k = 0; k < half; k++) {                                               \
                T x1 = x[k], x2 = x[k + half];                                                 \
                y[k] = c[k] * x1 - s[k] * x2;                                                  \
                y[k + half] = s[k] * x1 + c[k] * x2;                                           \
            }                                                                                  \
        }                                                                                      \
        for (int64_t k = 2 * half; k < d; k++)                                                 \
            y[k] = x[k];                                                                       \
    }

ROPE_DEFINE(float)
ROPE_DEFINE(double)

int dab_tf_rope_compute(dab_node_t *node, dab_err_t *err)
{
    rope_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0], *cs = node->inputs[1], *sn = node->inputs[2];
    const dab_tensor_t *pos = node->n_inputs > 3 ? node->inputs[3] : NULL;
    dab_tensor_t *y = node->outputs[0];
    const int64_t half = p->rd / 2, max_pos = pos ? cs->dims[0] : 0;
    const size_t es = dab_dtype_size(x->dtype), ces = dab_dtype_size(p->cdt);
    if (pos) { /* indices are data: check them all before any thread reads a cache row */
        for (int64_t i = 0; i < p->b * p->s; i++) {
            int64_t v = dab_tensor_get_i64(pos, i);
            if (v < 0 || v >= max_pos)
                return dab_err_set(err, DAB_ERANGE,
                                   "position_ids[%lld] = %lld is outside the cache's %lld "
                                   "positions",
                                   (long long)i, (long long)v, (long long)max_pos);
        }
    }
    int nt = tf_par_threads(node, (double)dab_tensor_numel(x) * 4);
    nt = DAB_MIN(nt, tf_max_threads(node));
    const bool dbl = p->cdt == DAB_DT_DOUBLE;
    DAB_PAR_FOR(nt, int64_t, bs, p->b * p->s, {
        int64_t b = bs / p->s, s = bs % p->s;
        int64_t row = pos ? dab_tensor_get_i64(pos, bs) : bs;
        char *buf = (char *)node->scratch + (size_t)omp_get_thread_num() * p->row_stride;
        char *cbuf = buf, *sbuf = cbuf + (size_t)half * ces;
        char *xbuf = sbuf + (size_t)half * ces, *ybuf = xbuf + (size_t)p->d * ces;
        dab_tf_convert(cs->dtype, (const char *)cs->data + (size_t)(row * half) * es, p->cdt,
                       cbuf, half);
        dab_tf_convert(sn->dtype, (const char *)sn->data + (size_t)(row * half) * es, p->cdt,
                       sbuf, half);
        for (int64_t h = 0; h < p->h; h++) {
            int64_t off = b * p->x_bs + s * p->x_ss + h * p->x_hs;
            dab_tf_convert(x->dtype, (const char *)x->data + (size_t)off * es, p->cdt, xbuf,
                           p->d);
            if (dbl)
                rope_head_double(p->interleaved, p->d, half, (const double *)xbuf,
                                 (const double *)cbuf, (const double *)sbuf, (double *)ybuf);
            else
                rope_head_float(p->interleaved, p->d, half, (const float *)xbuf,
                                (const float *)cbuf, (const float *)sbuf, (float *)ybuf);
            dab_tf_convert(p->cdt, ybuf, y->dtype, (char *)y->data + (size_t)off * es, p->d);
        }
    });
    return 0;
}

/* ---- SwiGLU ---- */

int dab_tf_swiglu_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *a = node->inputs[0], *b = node->inputs[1];
    char s1[96], s2[96];
    if (b->dtype != a->dtype)
        return dab_err_set(err, DAB_ETYPE, "inputs A (%s) and B (%s) must have one dtype",
                           dab_dtype_name(a->dtype), dab_dtype_name(b->dtype));
    if (!dab_shape_equal(a, b))
        return dab_err_set(err, DAB_ESHAPE, "inputs A %s and B %s must have the same shape",
                           dab_shape_str(a, s1, sizeof s1), dab_shape_str(b, s2, sizeof s2));
    dab_tensor_set_shape(node->outputs[0], a->dtype, a->rank, a->dims);
    return 0;
}

/* Elements a chunk of SwiGLU converts at a time for the half types (on the stack). */
#define SWIGLU_CHUNK 512

int dab_tf_swiglu_compute(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *a = node->inputs[0], *b = node->inputs[1];
    dab_tensor_t *y = node->outputs[0];
    const float alpha = dab_attr_float(node, "alpha", 1.0f);
    const int64_t n = dab_tensor_numel(a);
    if (a->dtype == DAB_DT_DOUBLE) {
        const double *av = a->data, *bv = b->data;
        double *yv = y->data;
        for (int64_t i = 0; i < n; i++)
            yv[i] = av[i] / (1.0 + exp(-(double)alpha * av[i])) * bv[i];
        return 0;
    }
    if (a->dtype == DAB_DT_FLOAT) {
        const float *av = a->data, *bv = b->data;
        float *yv = y->data;
        for (int64_t i = 0; i < n; i++)
            yv[i] = av[i] / (1.0f + expf(-alpha * av[i])) * bv[i];
        return 0;
    }
    const size_t es = dab_dtype_size(a->dtype);
    for (int64_t i0 = 0; i0 < n; i0 += SWIGLU_CHUNK) {
        float ab[SWIGLU_CHUNK], bb[SWIGLU_CHUNK];
        int64_t m = DAB_MIN((int64_t)SWIGLU_CHUNK, n - i0);
        dab_tf_convert(a->dtype, (const char *)a->data + (size_t)i0 * es, DAB_DT_FLOAT, ab, m);
        dab_tf_convert(b->dtype, (const char *)b->data + (size_t)i0 * es, DAB_DT_FLOAT, bb, m);
        for (int64_t i = 0; i < m; i++)
            ab[i] = ab[i] / (1.0f + expf(-alpha * ab[i])) * bb[i];
        dab_tf_convert(DAB_DT_FLOAT, ab, y->dtype, (char *)y->data + (size_t)i0 * es, m);
    }
    (void)err;
    return 0;
}
