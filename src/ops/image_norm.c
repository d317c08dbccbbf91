/*
 * image_norm.c - normalizations over images and signals: InstanceNormalization,
 * GroupNormalization, LpNormalization, MeanVarianceNormalization and LRN, for float and
 * double data.
 *
 * Statistics are accumulated in double whatever the data (two passes: mean, then squared
 * deviations), which is at least as precise as any stash_type GroupNormalization may ask
 * for. Instance and group normalization share one kernel: per (batch, group) the mean and
 * variance, then per channel y = x * a + b with a and b folded from scale and bias.
 */
#include "image_int.h"

#include <math.h>

/* ---- Instance / Group normalization ---- */

typedef struct gn_geom {
    int64_t n, c, groups, sp; /* sp: elements per channel */
} gn_geom_t;

/* Parameter t (scale or bias) as one value per channel in dst; per_group: t holds one per
 * group (GroupNormalization-18) and is spread over its channels. */
static void gn_params(const dab_tensor_t *t, const gn_geom_t *g, bool per_group, double *dst)
{
    int64_t cpg = g->c / g->groups;
    for (int64_t c = 0; c < g->c; c++)
        dst[c] = dab_tensor_get_f64(t, per_group ? c / cpg : c);
}

#define GN_KERNEL(T)                                                                         \
    static void gn_run_##T(const T *restrict x, T *restrict y, const gn_geom_t *g,           \
                           const double *sc, const double *bi, double eps, int nt)           \
    {                                                                                        \
        const int64_t cpg = g->c / g->groups, len = cpg * g->sp;                             \
        DAB_PAR_FOR(nt, int64_t, task, g->n * g->groups,                                     \
            const int64_t grp = task % g->groups;                                            \
            const T *restrict xs = x + task * len;                                           \
            T *restrict ys = y + task * len;                                                 \
            double sum = 0, sq = 0;                                                          \
            for (int64_t i = 0; i < len; i++)                                                \
                sum += (double)xs[i];                                                        \
            const double mean = len ? sum / (double)len : 0;                                 \
            for (int64_t i = 0; i < len; i++) {                                              \
                double d = (double)xs[i] - mean;                                             \
                sq += d * d;                                                                 \
            }                                                                                \
            const double inv = 1 / sqrt((len ? sq / (double)len : 0) + eps);                 \
            for (int64_t k = 0; k < cpg; k++) {                                              \
                const int64_t c = grp * cpg + k;                                             \
                const T a = (T)(sc[c] * inv), b = (T)(bi[c] - mean * sc[c] * inv);           \
                const T *restrict xc = xs + k * g->sp;                                       \
                T *restrict yc = ys + k * g->sp;                                             \
                for (int64_t i = 0; i < g->sp; i++)                                          \
                    yc[i] = xc[i] * a + b;                                                   \
            }                                                                                \
        );                                                                                   \
    }
GN_KERNEL(float)
GN_KERNEL(double)

static bool is_float_dt(dab_dtype_t dt)
{
    return dt == DAB_DT_FLOAT || dt == DAB_DT_DOUBLE;
}

/* Checks X and the two parameter inputs (`count` values each, or `alt` when alt > 0) and
 * sets the output. */
static int norm_check(dab_node_t *node, const char *const *names, int64_t count, int64_t alt,
                      dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    for (int i = 1; i <= 2; i++) {
        const dab_tensor_t *t = node->inputs[i];
        if (!t)
            return dab_err_set(err, DAB_EINVAL, "input %s is required", names[i - 1]);
        if (!is_float_dt(t->dtype) && t->dtype != DAB_DT_FLOAT16)
            return dab_err_set(err, DAB_EUNSUPPORTED, "input %s has dtype %s (float and double "
                               "are supported)", names[i - 1], dab_dtype_name(t->dtype));
        int64_t n = dab_tensor_numel(t);
        if (t->rank != 1 || (n != count && !(alt > 0 && n == alt)))
            return dab_err_set(err, DAB_ESHAPE, "input %s must be 1-D with %lld values, got "
                               "%lld", names[i - 1], (long long)count, (long long)n);
    }
    node->scratch_bytes = 2 * (size_t)x->dims[1] * sizeof(double);
    return dab_img_set_out(node, 0, x->dtype, x->rank, x->dims, err);
}

static int gn_compute(dab_node_t *node, const gn_geom_t *g, bool per_group, double eps)
{
    const dab_tensor_t *x = node->inputs[0];
    double *sc = node->scratch, *bi = sc + g->c;
    gn_params(node->inputs[1], g, per_group, sc);
    gn_params(node->inputs[2], g, per_group, bi);
    int nt = dab_par_threads(node->ctx, dab_tensor_numel(x) * 3);
    if (nt > g->n * g->groups)
        nt = (int)DAB_MAX(g->n * g->groups, 1);
    if (x->dtype == DAB_DT_FLOAT)
        gn_run_float(x->data, node->outputs[0]->data, g, sc, bi, eps, nt);
    else
        gn_run_double(x->data, node->outputs[0]->data, g, sc, bi, eps, nt);
    return 0;
}

static int gn_geom_of(const dab_tensor_t *x, int64_t groups, gn_geom_t *g, dab_err_t *err)
{
    if (x->rank < 2)
        return dab_err_set(err, DAB_ESHAPE, "input X must be [N, C, ...], got rank %d", x->rank);
    g->n = x->dims[0];
    g->c = x->dims[1];
    g->groups = groups;
    g->sp = 1;
    for (int d = 2; d < x->rank; d++)
        g->sp *= x->dims[d];
    if (groups < 1 || g->c % groups)
        return dab_err_set(err, DAB_EINVAL, "attribute num_groups %lld does not divide the %lld "
                           "channels", (long long)groups, (long long)g->c);
    return 0;
}

int dab_img_instnorm_init(dab_node_t *node, dab_err_t *err)
{
    return 0;
}

int dab_img_instnorm_reshape(dab_node_t *node, dab_err_t *err)
{
    static const char *const names[] = {"scale", "B"};
    gn_geom_t g = {0};
    const dab_tensor_t *x = node->inputs[0];
    int rc = gn_geom_of(x, x->rank >= 2 ? DAB_MAX(x->dims[1], 1) : 1, &g, err);
    return rc ? rc : norm_check(node, names, g.c, 0, err);
}

int dab_img_instnorm_compute(dab_node_t *node, dab_err_t *err)
{
    gn_geom_t g = {0};
    const dab_tensor_t *x = node->inputs[0];
    int rc = gn_geom_of(x, DAB_MAX(x->dims[1], 1), &g, err);
    if (rc)
        return rc;
    return gn_compute(node, &g, false, dab_attr_float(node, "epsilon", 1e-5f));
}

static int gn_groups(const dab_node_t *node, int64_t *groups, dab_err_t *err)
{
    const dab_attr_t *a = dab_attr_find(node, "num_groups");
    if (!a || a->type != DAB_ATTR_INT)
        return dab_err_set(err, DAB_EINVAL, "attribute num_groups is required");
    *groups = a->i;
    int64_t st = dab_attr_int(node, "stash_type", 1);
    if (st != DAB_DT_FLOAT && st != DAB_DT_DOUBLE && st != DAB_DT_FLOAT16 &&
        st != DAB_DT_BFLOAT16)
        return dab_err_set(err, DAB_EINVAL, "attribute stash_type %lld is not a float type",
                           (long long)st);
    return 0;
}

int dab_img_groupnorm_init(dab_node_t *node, dab_err_t *err)
{
    int64_t groups = 1;
    return gn_groups(node, &groups, err);
}

int dab_img_groupnorm_reshape(dab_node_t *node, dab_err_t *err)
{
    static const char *const names[] = {"scale", "bias"};
    int64_t groups = 1;
    gn_geom_t g = {0};
    int rc = gn_groups(node, &groups, err);
    if (rc || (rc = gn_geom_of(node->inputs[0], groups, &g, err)))
        return rc;
    /* opset 18 has one scale and bias per group, 21 one per channel */
    return node->opset < 21 ? norm_check(node, names, g.groups, g.c, err)
                            : norm_check(node, names, g.c, 0, err);
}

int dab_img_groupnorm_compute(dab_node_t *node, dab_err_t *err)
{
    int64_t groups = 1;
    gn_geom_t g = {0};
    int rc = gn_groups(node, &groups, err);
    if (rc || (rc = gn_geom_of(node->inputs[0], groups, &g, err)))
        return rc;
    bool per_group = dab_tensor_numel(node->inputs[1]) != g.c;
    return gn_compute(node, &g, per_group, dab_attr_float(node, "epsilon", 1e-5f));
}

/* ---- LpNormalization ---- */

/* the [outer, n, inner] view along the attribute axis, and p */
static int lpn_geom(const dab_node_t *node, int64_t *outer, int64_t *n, int64_t *inner, int *p,
                    dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    int64_t pv = dab_attr_int(node, "p", 2);
    if (pv != 1 && pv != 2)
        return dab_err_set(err, DAB_EINVAL, "attribute p %lld must be 1 or 2", (long long)pv);
    *p = (int)pv;
    *outer = *n = *inner = 1;
    if (x->rank == 0)
        return 0;
    int axis;
    int rc = dab_norm_axis(dab_attr_int(node, "axis", -1), x->rank, "attribute axis", &axis, err);
    if (rc)
        return rc;
    for (int d = 0; d < x->rank; d++)
        *(d < axis ? outer : d == axis ? n : inner) *= x->dims[d];
    return 0;
}

int dab_img_lpnorm_init(dab_node_t *node, dab_err_t *err)
{
    int64_t pv = dab_attr_int(node, "p", 2);
    if (pv != 1 && pv != 2)
        return dab_err_set(err, DAB_EINVAL, "attribute p %lld must be 1 or 2", (long long)pv);
    return 0;
}

int dab_img_lpnorm_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    int64_t o = 1, n = 1, i = 1;
    int p = 2;
    int rc = lpn_geom(node, &o, &n, &i, &p, err);
    return rc ? rc : dab_img_set_out(node, 0, x->dtype, x->rank, x->dims, err);
}

#define LPN_TILE 256

/* A zero vector stays zero (ONNX Runtime's choice; the formula would give NaN). */
#define LPN_KERNEL(T)                                                                        \
    static void lpn_run_##T(const T *restrict x, T *restrict y, int64_t outer, int64_t n,    \
                            int64_t inner, int p, int nt)                                    \
    {                                                                                        \
        const int64_t tiles = (inner + LPN_TILE - 1) / LPN_TILE;                             \
        DAB_PAR_FOR(nt, int64_t, task, outer * tiles,                                        \
            const int64_t o = task / tiles, c0 = (task % tiles) * LPN_TILE;                  \
            const int64_t w = DAB_MIN((int64_t)LPN_TILE, inner - c0);                        \
            const T *restrict xs = x + o * n * inner + c0;                                   \
            T *restrict ys = y + o * n * inner + c0;                                         \
            double acc[LPN_TILE];                                                            \
            for (int64_t i = 0; i < w; i++)                                                  \
                acc[i] = 0;                                                                  \
            for (int64_t r = 0; r < n; r++) {                                                \
                const T *restrict xr = xs + r * inner;                                       \
                if (p == 1)                                                                  \
                    for (int64_t i = 0; i < w; i++)                                          \
                        acc[i] += fabs((double)xr[i]);                                       \
                else                                                                         \
                    for (int64_t i = 0; i < w; i++)                                          \
                        acc[i] += (double)xr[i] * (double)xr[i];                             \
            }                                                                                \
            for (int64_t i = 0; i < w; i++) {                                                \
                double nrm = p == 1 ? acc[i] : sqrt(acc[i]);                                 \
                acc[i] = nrm > 0 ? 1 / nrm : 0;                                              \
            }                                                                                \
            for (int64_t r = 0; r < n; r++)                                                  \
                for (int64_t i = 0; i < w; i++)                                              \
                    ys[r * inner + i] = (T)((double)xs[r * inner + i] * acc[i]);             \
        );                                                                                   \
    }
LPN_KERNEL(float)
LPN_KERNEL(double)

int dab_img_lpnorm_compute(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    int64_t o = 1, n = 1, i = 1;
    int p = 2;
    int rc = lpn_geom(node, &o, &n, &i, &p, err);
    if (rc)
        return rc;
    int nt = dab_par_threads(node->ctx, dab_tensor_numel(x) * 2);
    if (x->dtype == DAB_DT_FLOAT)
        lpn_run_float(x->data, node->outputs[0]->data, o, n, i, p, nt);
    else
        lpn_run_double(x->data, node->outputs[0]->data, o, n, i, p, nt);
    return 0;
}

/* ---- MeanVarianceNormalization ---- */

/* Dims split into kept ones (each group of statistics) and reduced ones (a group's
 * members), with their strides in x; adjacent dims of the same kind are merged. */
typedef struct mvn_geom {
    int nk, nr;
    int64_t kd[DAB_MAX_RANK], ks[DAB_MAX_RANK]; /* kept dims, strides */
    int64_t rd[DAB_MAX_RANK], rs[DAB_MAX_RANK]; /* reduced dims, strides */
    int64_t groups, members;
} mvn_geom_t;

static int mvn_geom(const dab_node_t *node, mvn_geom_t *g, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    static const int64_t def_axes[] = {0, 2, 3};
    const int64_t *axes = def_axes;
    int na = dab_attr_ints(node, "axes", &axes);
    if (na < 0) {
        axes = def_axes;
        na = 3;
    }
    bool red[DAB_MAX_RANK] = {0};
    for (int i = 0; i < na; i++) {
        int a;
        int rc = dab_norm_axis(axes[i], x->rank, "attribute axes value", &a, err);
        if (rc)
            return rc;
        red[a] = true;
    }
    memset(g, 0, sizeof *g);
    g->groups = g->members = 1;
    int64_t st = 1;
    int last = -1; /* kind of the dim merged last: 0 kept, 1 reduced */
    for (int d = x->rank - 1; d >= 0; d--) {
        int64_t dim = x->dims[d];
        int kind = red[d];
        int64_t *dims = kind ? g->rd : g->kd, *str = kind ? g->rs : g->ks;
        int *cnt = kind ? &g->nr : &g->nk;
        if (dim != 1) {
            if (last == kind && *cnt > 0 && str[*cnt - 1] * dims[*cnt - 1] == st)
                dims[*cnt - 1] *= dim;
            else {
                dims[*cnt] = dim;
                str[*cnt] = st;
                (*cnt)++;
            }
            last = kind;
        }
        *(kind ? &g->members : &g->groups) *= dim;
        st *= dim;
    }
    return 0;
}

int dab_img_mvn_init(dab_node_t *node, dab_err_t *err)
{
    return 0;
}

int dab_img_mvn_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    mvn_geom_t g = {0};
    int rc = mvn_geom(node, &g, err);
    return rc ? rc : dab_img_set_out(node, 0, x->dtype, x->rank, x->dims, err);
}

/* Visits the members of one group: the innermost reduced dim (listed first) as a strided
 * run, the others by an odometer. */
#define MVN_VISIT(g, base, off, ...)                                                         \
    do {                                                                                     \
        int64_t ctr_[DAB_MAX_RANK] = {0}, run_ = (g)->nr ? (g)->rd[0] : 1,                   \
                rstr_ = (g)->nr ? (g)->rs[0] : 0, outer_ = (g)->members / (run_ ? run_ : 1); \
        int64_t pos_ = (base);                                                               \
        for (int64_t o_ = 0; o_ < outer_ && run_; o_++) {                                    \
            for (int64_t k_ = 0; k_ < run_; k_++) {                                          \
                const int64_t off = pos_ + k_ * rstr_;                                       \
                __VA_ARGS__                                                                  \
            }                                                                                \
            for (int e_ = 1; e_ < (g)->nr; e_++) {                                           \
                pos_ += (g)->rs[e_];                                                         \
                if (++ctr_[e_] < (g)->rd[e_])                                                \
                    break;                                                                   \
                pos_ -= (g)->rs[e_] * (g)->rd[e_];                                           \
                ctr_[e_] = 0;                                                                \
            }                                                                                \
        }                                                                                    \
    } while (0)

#define MVN_KERNEL(T)                                                                        \
    static void mvn_run_##T(const T *restrict x, T *restrict y, const mvn_geom_t *g, int nt) \
    {                                                                                        \
        DAB_PAR_FOR(nt, int64_t, grp, g->groups,                                             \
            int64_t base = 0, rem = grp;                                                     \
            for (int e = 0; e < g->nk; e++) {                                                \
                base += (rem % g->kd[e]) * g->ks[e];                                         \
                rem /= g->kd[e];                                                             \
            }                                                                                \
            double sum = 0, sq = 0;                                                          \
            MVN_VISIT(g, base, off, sum += (double)x[off];);                                 \
            const double mean = g->members ? sum / (double)g->members : 0;                   \
            MVN_VISIT(g, base, off, double d_ = (double)x[off] - mean; sq += d_ * d_;);      \
            const double sd = sqrt(g->members ? sq / (double)g->members : 0);                \
            const double inv = 1 / (sd + 1e-9);                                              \
            MVN_VISIT(g, base, off, y[off] = (T)(((double)x[off] - mean) * inv););           \
        );                                                                                   \
    }
MVN_KERNEL(float)
MVN_KERNEL(double)

int dab_img_mvn_compute(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    mvn_geom_t g = {0};
    int rc = mvn_geom(node, &g, err);
    if (rc)
        return rc;
    int nt = dab_par_threads(node->ctx, dab_tensor_numel(x) * 3);
    if (nt > g.groups)
        nt = (int)DAB_MAX(g.groups, 1);
    if (x->dtype == DAB_DT_FLOAT)
        mvn_run_float(x->data, node->outputs[0]->data, &g, nt);
    else
        mvn_run_double(x->data, node->outputs[0]->data, &g, nt);
    return 0;
}

/* ---- LRN ---- */

typedef struct lrn_args {
    int64_t size;
    double alpha, beta, bias;
} lrn_args_t;

static int lrn_attrs(const dab_node_t *node, lrn_args_t *a, dab_err_t *err)
{
    const dab_attr_t *s = dab_attr_find(node, "size");
    if (!s || s->type != DAB_ATTR_INT || s->i < 1 || s->i > INT32_MAX)
        return dab_err_set(err, DAB_EINVAL, "attribute size is required and must be positive");
    a->size = s->i;
    a->alpha = dab_attr_float(node, "alpha", 1e-4f);
    a->beta = dab_attr_float(node, "beta", 0.75f);
    a->bias = dab_attr_float(node, "bias", 1.0f);
    return 0;
}

int dab_img_lrn_init(dab_node_t *node, dab_err_t *err)
{
    lrn_args_t a = {0};
    return lrn_attrs(node, &a, err);
}

int dab_img_lrn_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    lrn_args_t a = {0};
    int rc = lrn_attrs(node, &a, err);
    if (rc)
        return rc;
    if (x->rank < 2)
        return dab_err_set(err, DAB_ESHAPE, "input X must be [N, C, ...], got rank %d", x->rank);
    return dab_img_set_out(node, 0, x->dtype, x->rank, x->dims, err);
}

/* y = x / (bias + alpha / size * sum of x^2 over the channel window)^beta, a tile of
 * positions at a time so the window's squares accumulate in a vector. */
#define LRN_KERNEL(T, POW)                                                                   \
    static void lrn_run_##T(const T *restrict x, T *restrict y, int64_t n, int64_t c,        \
                            int64_t sp, const lrn_args_t *a, int nt)                         \
    {                                                                                        \
        const int64_t tiles = (sp + LPN_TILE - 1) / LPN_TILE;                                \
        const int64_t lo = (a->size - 1) / 2, hi = a->size - 1 - lo;                         \
        const T k = (T)a->bias, s = (T)(a->alpha / (double)a->size), nb = (T)-a->beta;       \
        DAB_PAR_FOR(nt, int64_t, task, n * c * tiles,                                        \
            const int64_t t = task % tiles, ch = (task / tiles) % c, b = task / (tiles * c); \
            const int64_t p0 = t * LPN_TILE, w = DAB_MIN((int64_t)LPN_TILE, sp - p0);        \
            T acc[LPN_TILE];                                                                 \
            for (int64_t i = 0; i < w; i++)                                                  \
                acc[i] = 0;                                                                  \
            const int64_t c0 = DAB_MAX(ch - lo, (int64_t)0), c1 = DAB_MIN(ch + hi, c - 1);   \
            for (int64_t cc = c0; cc <= c1; cc++) {                                          \
                const T *restrict xr = x + (b * c + cc) * sp + p0;                           \
                for (int64_t i = 0; i < w; i++)                                              \
                    acc[i] += xr[i] * xr[i];                                                 \
            }                                                                                \
            const T *restrict xc = x + (b * c + ch) * sp + p0;                               \
            T *restrict yc = y + (b * c + ch) * sp + p0;                                     \
            for (int64_t i = 0; i < w; i++)                                                  \
                yc[i] = xc[i] * POW(k + s * acc[i], nb);                                     \
        );                                                                                   \
    }
LRN_KERNEL(float, powf)
LRN_KERNEL(double, pow)

int dab_img_lrn_compute(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    lrn_args_t a = {0};
    int rc = lrn_attrs(node, &a, err);
    if (rc)
        return rc;
    int64_t sp = 1;
    for (int d = 2; d < x->rank; d++)
        sp *= x->dims[d];
    int nt = dab_par_threads(node->ctx, dab_tensor_numel(x) * (DAB_MIN(a.size, x->dims[1]) + 8));
    if (x->dtype == DAB_DT_FLOAT)
        lrn_run_float(x->data, node->outputs[0]->data, x->dims[0], x->dims[1], sp, &a, nt);
    else
        lrn_run_double(x->data, node->outputs[0]->data, x->dims[0], x->dims[1], sp, &a, nt);
    return 0;
}
