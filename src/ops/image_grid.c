/*
 * image_grid.c - sampling grids: GridSample (opset 16's 2-D bilinear/nearest/bicubic and
 * the N-D linear/nearest/cubic of 20+) and AffineGrid, which builds the grids GridSample
 * reads.
 *
 * GridSample follows PyTorch's grid_sampler as ONNX's reference does: a grid point's
 * last axis lists coordinates innermost dim first (x = width), normalized to [-1, 1]
 * over pixel corners (align_corners) or pixel edges. Out-of-range coordinates are
 * clamped (border) or mirrored (reflection) first; the taps an interpolation then needs
 * outside the image read zero, the edge, or their mirror image. Nearest rounds half to
 * even in every dim (as ONNX's test data does, also for 3-D). Each grid point's
 * taps (at most 4^dims) are worked out once and reused for every channel.
 */
#include "image_int.h"

#include <math.h>

enum { GS_LINEAR, GS_NEAREST, GS_CUBIC };
enum { GS_ZEROS, GS_BORDER, GS_REFLECTION };

#define GS_MAX_TAPS 256

typedef struct gs_priv {
    int mode, padding, align;
} gs_priv_t;

int dab_img_gridsample_init(dab_node_t *node, dab_err_t *err)
{
    gs_priv_t *p = dab_calloc(1, sizeof *p);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "out of memory for the operator's state");
    const bool old = node->opset < 20;
    const char *m = dab_attr_string(node, "mode", old ? "bilinear" : "linear");
    const char *pad = dab_attr_string(node, "padding_mode", "zeros");
    int64_t ac = dab_attr_int(node, "align_corners", 0);
    int rc = 0;
    if (!strcmp(m, "linear") || !strcmp(m, "bilinear"))
        p->mode = GS_LINEAR;
    else if (!strcmp(m, "nearest"))
        p->mode = GS_NEAREST;
    else if (!strcmp(m, "cubic") || !strcmp(m, "bicubic"))
        p->mode = GS_CUBIC;
    else
        rc = dab_err_set(err, DAB_EINVAL, "attribute mode '%s' is not %s", m,
                         old ? "bilinear, nearest or bicubic" : "linear, nearest or cubic");
    if (!strcmp(pad, "zeros"))
        p->padding = GS_ZEROS;
    else if (!strcmp(pad, "border"))
        p->padding = GS_BORDER;
    else if (!strcmp(pad, "reflection"))
        p->padding = GS_REFLECTION;
    else if (!rc)
        rc = dab_err_set(err, DAB_EINVAL, "attribute padding_mode '%s' is not zeros, border or "
                         "reflection", pad);
    if (!rc && ac != 0 && ac != 1)
        rc = dab_err_set(err, DAB_EINVAL, "attribute align_corners must be 0 or 1, got %lld",
                         (long long)ac);
    if (rc) {
        dab_free(p);
        return rc;
    }
    p->align = (int)ac;
    node->priv = p;
    return 0;
}

int dab_img_gridsample_reshape(dab_node_t *node, dab_err_t *err)
{
    const gs_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0], *g = node->inputs[1];
    if (x->rank < 3 || (node->opset < 20 && x->rank != 4))
        return dab_err_set(err, DAB_ESHAPE, "input X must be [N, C, %s], got rank %d",
                           node->opset < 20 ? "H, W" : "spatial...", x->rank);
    const int r = x->rank - 2;
    if (g->dtype != DAB_DT_FLOAT && g->dtype != DAB_DT_DOUBLE)
        return dab_err_set(err, DAB_EUNSUPPORTED, "input grid has dtype %s (float and double "
                           "are supported)", dab_dtype_name(g->dtype));
    if (g->rank != x->rank || g->dims[0] != x->dims[0] || g->dims[g->rank - 1] != r)
        return dab_err_set(err, DAB_ESHAPE, "input grid must be [N, out spatial..., %d] with "
                           "the N of X", r);
    int taps = 1;
    for (int i = 0; i < r && taps <= GS_MAX_TAPS; i++)
        taps *= p->mode == GS_NEAREST ? 1 : p->mode == GS_LINEAR ? 2 : 4;
    if (taps > GS_MAX_TAPS)
        return dab_err_set(err, DAB_EUNSUPPORTED, "%d spatial dims need more than %d taps per "
                           "point in this mode", r, GS_MAX_TAPS);
    int64_t dims[DAB_MAX_RANK];
    dims[0] = x->dims[0];
    dims[1] = x->dims[1];
    for (int i = 0; i < r; i++)
        dims[2 + i] = g->dims[1 + i];
    return dab_img_set_out(node, 0, x->dtype, x->rank, dims, err);
}

/* Mirrors x into [lo, hi] (PyTorch's reflect_coordinates). */
static double gs_reflect(double x, double lo, double hi)
{
    double rng = hi - lo;
    if (!(rng > 0))
        return lo;
    if (x < lo) {
        double dx = lo - x, k = floor(dx / rng), rem = dx - k * rng;
        return fmod(k, 2) == 0 ? lo + rem : hi - rem;
    }
    if (x > hi) {
        double dx = x - hi, k = floor(dx / rng), rem = dx - k * rng;
        return fmod(k, 2) == 0 ? hi - rem : lo + rem;
    }
    return x;
}

static void gs_cubic(double t, double *c)
{
    const double A = -0.75;
    double u = t + 1, v = 1 - t, w = 2 - t;
    c[0] = ((A * u - 5 * A) * u + 8 * A) * u - 4 * A;
    c[1] = ((A + 2) * t - (A + 3)) * t * t + 1;
    c[2] = ((A + 2) * v - (A + 3)) * v * v + 1;
    c[3] = ((A * w - 5 * A) * w + 8 * A) * w - 4 * A;
}

/*
 * The taps of one grid point: *n (offset into an [spatial...] plane, weight) pairs.
 * coord[i] is the normalized coordinate of spatial dim i.
 */
static int gs_taps(const gs_priv_t *p, int r, const int64_t *len, const double *coord,
                   bool grid_float, int64_t *off, double *w)
{
    int n = 1;
    off[0] = 0;
    w[0] = 1;
    int64_t stride = 1;
    for (int i = r - 1; i >= 0; i--) {
        const double L = (double)len[i];
        const double lo = p->align ? 0 : -0.5, hi = p->align ? L - 1 : L - 0.5;
        double x = p->align ? (coord[i] + 1) / 2 * (L - 1) : ((coord[i] + 1) * L - 1) / 2;
        /* nearest rounds the float32 coordinate the reference computes, so that ties
         * break the same way; linear and cubic weights keep double precision */
        if (grid_float && p->mode == GS_NEAREST)
            x = (float)x;
        if (!isfinite(x))
            x = -L - 8;
        if (p->mode == GS_NEAREST)
            x = nearbyint(x);
        if (x < lo || x > hi) {
            if (p->padding == GS_BORDER)
                x = x < 0 ? 0 : x > L - 1 ? L - 1 : x;
            else if (p->padding == GS_REFLECTION)
                x = gs_reflect(x, lo, hi);
            else
                x = x < -L - 8 ? -L - 8 : x > 2 * L + 8 ? 2 * L + 8 : x;
        }
        int64_t idx[4];
        double c[4];
        int k;
        if (p->mode == GS_NEAREST) {
            idx[0] = (int64_t)x; /* truncation, as the reference's astype */
            c[0] = 1;
            k = 1;
        } else {
            double x0 = floor(x), t = x - x0;
            if (p->mode == GS_LINEAR) {
                idx[0] = (int64_t)x0;
                idx[1] = idx[0] + 1;
                c[0] = 1 - t;
                c[1] = t;
                k = 2;
            } else {
                for (int j = 0; j < 4; j++)
                    idx[j] = (int64_t)x0 - 1 + j;
                gs_cubic(t, c);
                k = 4;
            }
        }
        /* where each tap reads, or nothing (zeros outside) */
        int64_t at[4];
        bool ok[4];
        for (int j = 0; j < k; j++) {
            int64_t v = idx[j];
            ok[j] = true;
            if (v < 0 || v >= len[i]) {
                if (p->padding == GS_ZEROS)
                    ok[j] = false;
                else if (p->padding == GS_BORDER)
                    v = v < 0 ? 0 : len[i] - 1;
                else
                    v = (int64_t)gs_reflect((double)v, lo, hi);
                v = v < 0 ? 0 : v >= len[i] ? len[i] - 1 : v;
            }
            at[j] = v;
        }
        /* the product with the taps of the inner dims so far */
        int m = 0;
        int64_t o2[GS_MAX_TAPS];
        double w2[GS_MAX_TAPS];
        for (int j = 0; j < k; j++) {
            if (!ok[j] || c[j] == 0)
                continue;
            for (int q = 0; q < n; q++) {
                o2[m] = off[q] + at[j] * stride;
                w2[m] = w[q] * c[j];
                m++;
            }
        }
        memcpy(off, o2, sizeof(int64_t) * (size_t)m);
        memcpy(w, w2, sizeof(double) * (size_t)m);
        n = m;
        stride *= len[i];
    }
    return n;
}

#define GS_KERNEL(T)                                                                         \
    static void gs_run_##T(const gs_priv_t *p, const dab_tensor_t *x, const dab_tensor_t *g, \
                           T *restrict y, int nt)                                            \
    {                                                                                        \
        const int r = x->rank - 2;                                                           \
        const int64_t n = x->dims[0], c = x->dims[1];                                        \
        int64_t plane = 1, pts = 1;                                                          \
        for (int i = 0; i < r; i++) {                                                        \
            plane *= x->dims[2 + i];                                                         \
            pts *= g->dims[1 + i];                                                           \
        }                                                                                    \
        const T *xd = x->data;                                                               \
        const bool gf = g->dtype == DAB_DT_FLOAT;                                            \
        DAB_PAR_FOR(nt, int64_t, task, n * pts,                                              \
            const int64_t b = task / pts, pt = task % pts;                                   \
            double coord[DAB_MAX_RANK], w[GS_MAX_TAPS];                                      \
            int64_t off[GS_MAX_TAPS];                                                        \
            for (int i = 0; i < r; i++) {                                                    \
                int64_t gi = task * r + (r - 1 - i);                                         \
                coord[i] = gf ? (double)((const float *)g->data)[gi]                         \
                              : ((const double *)g->data)[gi];                               \
            }                                                                                \
            int m = gs_taps(p, r, x->dims + 2, coord, gf, off, w);                           \
            for (int64_t ch = 0; ch < c; ch++) {                                             \
                const T *xp = xd + (b * c + ch) * plane;                                     \
                double acc = 0;                                                              \
                for (int q = 0; q < m; q++)                                                  \
                    acc += w[q] * (double)xp[off[q]];                                        \
                y[(b * c + ch) * pts + pt] = (T)acc;                                         \
            }                                                                                \
        );                                                                                   \
    }
GS_KERNEL(float)
GS_KERNEL(double)

int dab_img_gridsample_compute(dab_node_t *node, dab_err_t *err)
{
    const gs_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0], *g = node->inputs[1];
    dab_tensor_t *y = node->outputs[0];
    if (dab_tensor_numel(y) == 0)
        return 0;
    int64_t plane = 1;
    for (int i = 2; i < x->rank; i++)
        plane *= x->dims[i];
    if (plane == 0)
        return dab_err_set(err, DAB_ESHAPE, "input X has an empty spatial dim");
    int nt = dab_par_threads(node->ctx, dab_tensor_numel(y) * 8);
    if (x->dtype == DAB_DT_FLOAT)
        gs_run_float(p, x, g, y->data, nt);
    else
        gs_run_double(p, x, g, y->data, nt);
    return 0;
}

/* ---- AffineGrid ---- */

int dab_img_affinegrid_init(dab_node_t *node, dab_err_t *err)
{
    int64_t ac = dab_attr_int(node, "align_corners", 0);
    if (ac != 0 && ac != 1)
        return dab_err_set(err, DAB_EINVAL, "attribute align_corners must be 0 or 1, got %lld",
                           (long long)ac);
    return 0;
}

/* size as [N, C, spatial...] with 2 or 3 spatial dims matching theta */
static int ag_size(const dab_node_t *node, int64_t *size, int *n, dab_err_t *err)
{
    const dab_tensor_t *theta = node->inputs[0];
    int rc = dab_read_ints(node->inputs[1], "input size", size, DAB_MAX_RANK, n, err);
    if (rc)
        return rc;
    if (*n != 4 && *n != 5)
        return dab_err_set(err, DAB_ESHAPE, "input size must have 4 or 5 values, got %d", *n);
    const int r = *n - 2;
    if (theta->rank != 3 || theta->dims[0] != size[0] || theta->dims[1] != r ||
        theta->dims[2] != r + 1)
        return dab_err_set(err, DAB_ESHAPE, "input theta must be [N, %d, %d] with N = %lld", r,
                           r + 1, (long long)size[0]);
    for (int i = 0; i < *n; i++)
        if (size[i] < 0)
            return dab_err_set(err, DAB_EINVAL, "input size value %lld is negative",
                               (long long)size[i]);
    return 0;
}

int dab_img_affinegrid_reshape(dab_node_t *node, dab_err_t *err)
{
    int64_t size[DAB_MAX_RANK], dims[DAB_MAX_RANK];
    int n = 0;
    int rc = ag_size(node, size, &n, err);
    if (rc)
        return rc;
    const int r = n - 2;
    dims[0] = size[0];
    for (int i = 0; i < r; i++)
        dims[1 + i] = size[2 + i];
    dims[r + 1] = r;
    return dab_img_set_out(node, 0, node->inputs[0]->dtype, r + 2, dims, err);
}

/* Normalized coordinate of position i of len: corners at +-1, or pixel centers inside. */
static double ag_base(int64_t i, int64_t len, bool align)
{
    if (align)
        return len > 1 ? -1 + 2 * (double)i / (double)(len - 1) : -1;
    return (2 * (double)i + 1) / (double)len - 1;
}

#define AG_KERNEL(T)                                                                         \
    static void ag_run_##T(const T *theta, T *restrict out, int r, const int64_t *size,      \
                           bool align, int nt)                                               \
    {                                                                                        \
        const int64_t d = r == 3 ? size[2] : 1, h = size[r], w = size[r + 1];                \
        const int64_t pts = d * h * w;                                                       \
        DAB_PAR_FOR(nt, int64_t, task, size[0] * pts,                                        \
            const int64_t b = task / pts, pt = task % pts;                                   \
            double v[4];                                                                     \
            v[0] = ag_base(pt % w, w, align);                                                \
            v[1] = ag_base((pt / w) % h, h, align);                                          \
            v[2] = ag_base(pt / (w * h), d, align);                                          \
            v[r] = 1;                                                                        \
            const T *th = theta + b * r * (r + 1);                                           \
            for (int i = 0; i < r; i++) {                                                    \
                double acc = 0;                                                              \
                for (int j = 0; j <= r; j++)                                                 \
                    acc += (double)th[i * (r + 1) + j] * v[j];                               \
                out[task * r + i] = (T)acc;                                                  \
            }                                                                                \
        );                                                                                   \
    }
AG_KERNEL(float)
AG_KERNEL(double)

int dab_img_affinegrid_compute(dab_node_t *node, dab_err_t *err)
{
    int64_t size[DAB_MAX_RANK];
    int n = 0;
    int rc = ag_size(node, size, &n, err);
    if (rc)
        return rc;
    const dab_tensor_t *theta = node->inputs[0];
    dab_tensor_t *y = node->outputs[0];
    bool align = dab_attr_int(node, "align_corners", 0) != 0;
    int nt = dab_par_threads(node->ctx, dab_tensor_numel(y) * 4);
    if (theta->dtype == DAB_DT_FLOAT)
        ag_run_float(theta->data, y->data, n - 2, size, align, nt);
    else
        ag_run_double(theta->data, y->data, n - 2, size, align, nt);
    return 0;
}
