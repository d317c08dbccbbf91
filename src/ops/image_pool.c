/*
 * image_pool.c - windowed operators over [N, C, spatial...]: LpPool (opsets 1 to 22),
 * MaxUnpool and Col2Im.
 *
 * LpPool reads its window attributes and sizes its output with the same helpers as
 * MaxPool and AveragePool (nn_int.h), so padding, auto_pad, dilations and ceil_mode mean
 * the same thing for all pools; padded positions contribute nothing to the sum of |x|^p.
 * MaxUnpool scatters X into a zeroed output at the flat indices MaxPool produced.
 * Col2Im sums each column's block back into the image (the inverse layout of im2col).
 */
#include "image_int.h"
#include "nn_int.h"

#include <math.h>

/* ---- LpPool ---- */

typedef struct lpp_priv {
    nn_win_attrs_t wa;
    int ceil_mode;
    double p;
    /* decided by reshape; spatial dims padded to DAB_KSP with neutral values */
    int64_t n, c, in[DAB_KSP], out[DAB_KSP], k[DAB_KSP], s[DAB_KSP], d[DAB_KSP], pl[DAB_KSP];
} lpp_priv_t;

int dab_img_lppool_init(dab_node_t *node, dab_err_t *err)
{
    lpp_priv_t *p = dab_calloc(1, sizeof *p);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "out of memory for the operator's state");
    int rc = dab_nn_win_attrs(node, &p->wa, err);
    if (!rc && p->wa.n_kernel <= 0)
        rc = dab_err_set(err, DAB_EINVAL, "attribute kernel_shape is required");
    int64_t cm = dab_attr_int(node, "ceil_mode", 0);
    if (!rc && cm != 0 && cm != 1)
        rc = dab_err_set(err, DAB_EINVAL, "attribute ceil_mode must be 0 or 1, got %lld",
                         (long long)cm);
    /* p is a float before opset 2 and an int after; dab_attr_float reads both */
    p->p = dab_attr_float(node, "p", 2.0f);
    if (!rc && !(p->p > 0 && isfinite(p->p)))
        rc = dab_err_set(err, DAB_EINVAL, "attribute p %g must be positive", p->p);
    if (rc) {
        dab_free(p);
        return rc;
    }
    p->ceil_mode = (int)cm;
    node->priv = p;
    return 0;
}

int dab_img_lppool_reshape(dab_node_t *node, dab_err_t *err)
{
    lpp_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0];
    if (x->rank < 3)
        return dab_err_set(err, DAB_ESHAPE, "input X must be [N, C, spatial...], got rank %d",
                           x->rank);
    const int nsp = x->rank - 2;
    if (nsp > DAB_KSP)
        return dab_err_set(err, DAB_EUNSUPPORTED, "%d spatial dims (at most %d are supported)",
                           nsp, DAB_KSP);
    int rc = dab_nn_win_check_rank(&p->wa, nsp, err);
    if (rc)
        return rc;
    int64_t dims[DAB_MAX_RANK];
    p->n = dims[0] = x->dims[0];
    p->c = dims[1] = x->dims[1];
    for (int i = 0; i < DAB_KSP; i++) {
        p->in[i] = p->out[i] = p->k[i] = p->s[i] = p->d[i] = 1;
        p->pl[i] = 0;
    }
    for (int i = 0; i < nsp; i++) {
        int64_t ph;
        p->in[i] = x->dims[2 + i];
        p->k[i] = p->wa.kernel[i];
        p->s[i] = nn_win_stride(&p->wa, i);
        p->d[i] = node->opset >= 18 ? nn_win_dil(&p->wa, i) : 1;
        int64_t lo = p->wa.n_pads > 0 ? p->wa.pads[i] : 0;
        int64_t hi = p->wa.n_pads > 0 ? p->wa.pads[nsp + i] : 0;
        rc = dab_nn_win_out(p->wa.auto_pad, p->in[i], p->k[i], p->s[i], p->d[i], lo, hi,
                            node->opset >= 18 ? p->ceil_mode : 0, &p->out[i], &p->pl[i], &ph, i,
                            err);
        if (rc)
            return rc;
        dims[2 + i] = p->out[i];
    }
    return dab_img_set_out(node, 0, x->dtype, x->rank, dims, err);
}

/* |v|^p and its inverse, with p = 1 and 2 exact */
static inline double lpp_pow(double v, double p)
{
    return p == 2 ? v * v : p == 1 ? fabs(v) : pow(fabs(v), p);
}

static inline double lpp_root(double v, double p)
{
    return p == 2 ? sqrt(v) : p == 1 ? v : pow(v, 1 / p);
}

/* The window taps k in [*k0, *k1) of output o that land inside the input
 * (i = o * s - pl + k * d in [0, in)), so padding costs nothing. */
static inline void lpp_range(int64_t o, int64_t s, int64_t pl, int64_t d, int64_t k, int64_t in,
                             int64_t *k0, int64_t *k1)
{
    int64_t start = o * s - pl; /* input position of tap 0 */
    int64_t lo = start >= 0 ? 0 : (-start + d - 1) / d;
    int64_t hi = start >= in ? 0 : (in - 1 - start) / d + 1;
    *k0 = lo;
    *k1 = DAB_MAX(lo, DAB_MIN(hi, k));
}

#define LPP_KERNEL(T)                                                                        \
    static void lpp_run_##T(const lpp_priv_t *p, const T *restrict x, T *restrict y, int nt) \
    {                                                                                        \
        const int64_t plane_in = p->in[0] * p->in[1] * p->in[2];                             \
        const int64_t plane_out = p->out[0] * p->out[1] * p->out[2];                         \
        const double pw = p->p;                                                              \
        DAB_PAR_FOR(nt, int64_t, task, p->n * p->c * p->out[0],                              \
            const int64_t o0 = task % p->out[0], nc = task / p->out[0];                      \
            const T *xp = x + nc * plane_in;                                                 \
            T *yp = y + nc * plane_out + o0 * p->out[1] * p->out[2];                         \
            int64_t a0, b0, a1, b1, a2, b2;                                                  \
            lpp_range(o0, p->s[0], p->pl[0], p->d[0], p->k[0], p->in[0], &a0, &b0);          \
            for (int64_t o1 = 0; o1 < p->out[1]; o1++) {                                     \
                lpp_range(o1, p->s[1], p->pl[1], p->d[1], p->k[1], p->in[1], &a1, &b1);      \
                for (int64_t o2 = 0; o2 < p->out[2]; o2++) {                                 \
                    lpp_range(o2, p->s[2], p->pl[2], p->d[2], p->k[2], p->in[2], &a2, &b2);  \
                    const int64_t base2 = o2 * p->s[2] - p->pl[2];                           \
                    double acc = 0;                                                          \
                    for (int64_t k0 = a0; k0 < b0; k0++) {                                   \
                        const int64_t i0 = o0 * p->s[0] - p->pl[0] + k0 * p->d[0];           \
                        for (int64_t k1 = a1; k1 < b1; k1++) {                               \
                            const int64_t i1 = o1 * p->s[1] - p->pl[1] + k1 * p->d[1];       \
                            const T *row = xp + (i0 * p->in[1] + i1) * p->in[2];             \
                            for (int64_t k2 = a2; k2 < b2; k2++)                             \
                                acc += lpp_pow((double)row[base2 + k2 * p->d[2]], pw);       \
                        }                                                                    \
                    }                                                                        \
                    yp[o1 * p->out[2] + o2] = (T)lpp_root(acc, pw);                          \
                }                                                                            \
            }                                                                                \
        );                                                                                   \
    }
LPP_KERNEL(float)
LPP_KERNEL(double)

int dab_img_lppool_compute(dab_node_t *node, dab_err_t *err)
{
    const lpp_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0];
    dab_tensor_t *y = node->outputs[0];
    double taps = 1; /* at most the input's extent per dim */
    for (int i = 0; i < DAB_KSP; i++)
        taps *= (double)DAB_MIN(p->k[i], p->in[i]);
    double work = (double)dab_tensor_numel(y) * taps;
    int nt = dab_par_threads(node->ctx, work > 1e15 ? (int64_t)1e15 : (int64_t)work);
    if (x->dtype == DAB_DT_FLOAT)
        lpp_run_float(p, x->data, y->data, nt);
    else
        lpp_run_double(p, x->data, y->data, nt);
    return 0;
}

/* ---- MaxUnpool ---- */

typedef struct unpool_priv {
    nn_win_attrs_t wa;
    int64_t inferred[DAB_MAX_RANK]; /* the shape the indices count in (from reshape) */
} unpool_priv_t;

int dab_img_maxunpool_init(dab_node_t *node, dab_err_t *err)
{
    unpool_priv_t *p = dab_calloc(1, sizeof *p);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "out of memory for the operator's state");
    int rc = dab_nn_win_attrs(node, &p->wa, err);
    if (!rc && p->wa.n_kernel <= 0)
        rc = dab_err_set(err, DAB_EINVAL, "attribute kernel_shape is required");
    if (rc) {
        dab_free(p);
        return rc;
    }
    node->priv = p;
    return 0;
}

/*
 * The indices count in the shape MaxPool's input had, inferred from X and the window:
 * (in - 1) * stride - pads + kernel. An output_shape (which may add what the pooling's
 * rounding dropped) only enlarges that box; as in ONNX's reference the unpooled values keep
 * their coordinates and the extra end positions are zero.
 */
int dab_img_maxunpool_reshape(dab_node_t *node, dab_err_t *err)
{
    unpool_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0], *ind = node->inputs[1];
    const dab_tensor_t *shape = img_in(node, 2);
    if (x->rank < 3)
        return dab_err_set(err, DAB_ESHAPE, "input X must be [N, C, spatial...], got rank %d",
                           x->rank);
    const int nsp = x->rank - 2;
    int rc = dab_nn_win_check_rank(&p->wa, nsp, err);
    if (rc)
        return rc;
    if (ind->dtype != DAB_DT_INT64)
        return dab_err_set(err, DAB_ETYPE, "input I must be int64, got %s",
                           dab_dtype_name(ind->dtype));
    if (!dab_shape_equal(x, ind))
        return dab_err_set(err, DAB_ESHAPE, "input I must have the shape of X");
    int64_t *inf = p->inferred;
    inf[0] = x->dims[0];
    inf[1] = x->dims[1];
    for (int i = 0; i < nsp; i++) {
        int64_t s = nn_win_stride(&p->wa, i), v;
        int64_t pads = p->wa.n_pads > 0 ? p->wa.pads[i] + p->wa.pads[nsp + i] : 0;
        if (x->dims[2 + i] == 0 || dab_mul_i64(x->dims[2 + i] - 1, s, &v) ||
            v > ((int64_t)1 << 62))
            return dab_err_set(err, DAB_ESHAPE, "spatial dim %d of X is empty or too large", i);
        inf[2 + i] = v - pads + p->wa.kernel[i];
        if (inf[2 + i] < 0)
            return dab_err_set(err, DAB_ESHAPE, "pads make spatial dim %d of the output "
                               "negative", i);
    }
    if (!shape)
        return dab_img_set_out(node, 0, x->dtype, x->rank, inf, err);
    int64_t dims[DAB_MAX_RANK];
    int n;
    if ((rc = dab_read_ints(shape, "input output_shape", dims, DAB_MAX_RANK, &n, err)))
        return rc;
    if (n != x->rank)
        return dab_err_set(err, DAB_ESHAPE, "input output_shape has %d values, X has rank %d", n,
                           x->rank);
    for (int d = 0; d < n; d++)
        if (dims[d] < inf[d])
            return dab_err_set(err, DAB_ESHAPE, "input output_shape[%d] = %lld is smaller than "
                               "the unpooled size %lld", d, (long long)dims[d],
                               (long long)inf[d]);
    return dab_img_set_out(node, 0, x->dtype, x->rank, dims, err);
}

int dab_img_maxunpool_compute(dab_node_t *node, dab_err_t *err)
{
    const unpool_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0], *ind = node->inputs[1];
    dab_tensor_t *y = node->outputs[0];
    const int r = y->rank;
    const size_t es = dab_dtype_size(x->dtype);
    const int64_t total = dab_tensor_numel(y), n = dab_tensor_numel(x);
    int64_t limit = 1;
    bool same = true;
    for (int d = 0; d < r; d++) {
        limit *= p->inferred[d];
        same &= p->inferred[d] == y->dims[d];
    }
    const int64_t *idx = ind->data;
    memset(y->data, 0, (size_t)total * es);
    for (int64_t i = 0; i < n; i++) {
        int64_t k = idx[i];
        if (k < 0 || k >= limit)
            return dab_err_set(err, DAB_ERANGE, "input I[%lld] = %lld is outside the unpooled "
                               "tensor's %lld elements", (long long)i, (long long)k,
                               (long long)limit);
        if (!same) { /* the same coordinates in the larger output */
            int64_t off = 0, st = 1, rem = k;
            for (int d = r - 1; d >= 0; d--) {
                off += (rem % p->inferred[d]) * st;
                rem /= p->inferred[d];
                st *= y->dims[d];
            }
            k = off;
        }
        memcpy((char *)y->data + k * (int64_t)es, (const char *)x->data + i * (int64_t)es, es);
    }
    return 0;
}

/* ---- Col2Im ---- */

typedef struct c2i_geom {
    int r;
    int64_t n, c, kprod, l;
    int64_t img[DAB_MAX_RANK], blk[DAB_MAX_RANK], nb[DAB_MAX_RANK];
    int64_t dil[DAB_MAX_RANK], str[DAB_MAX_RANK], pl[DAB_MAX_RANK];
} c2i_geom_t;

static int c2i_attrs(const dab_node_t *node, int64_t *dil, int *nd, int64_t *pads, int *np,
                     int64_t *str, int *ns, dab_err_t *err)
{
    int rc = dab_img_attr_ints(node, "dilations", 1, INT32_MAX, dil, DAB_MAX_RANK, nd, err);
    if (!rc)
        rc = dab_img_attr_ints(node, "pads", 0, INT32_MAX, pads, 2 * DAB_MAX_RANK, np, err);
    if (!rc)
        rc = dab_img_attr_ints(node, "strides", 1, INT32_MAX, str, DAB_MAX_RANK, ns, err);
    return rc;
}

int dab_img_col2im_init(dab_node_t *node, dab_err_t *err)
{
    int64_t a[2 * DAB_MAX_RANK], b[2 * DAB_MAX_RANK], c[2 * DAB_MAX_RANK];
    int na, nb, nc;
    return c2i_attrs(node, a, &na, b, &nb, c, &nc, err);
}

static int c2i_geometry(const dab_node_t *node, c2i_geom_t *g, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    int64_t dil[DAB_MAX_RANK], pads[2 * DAB_MAX_RANK], str[DAB_MAX_RANK];
    int nd, np, ns, ni, nk;
    int rc = c2i_attrs(node, dil, &nd, pads, &np, str, &ns, err);
    if (rc ||
        (rc = dab_read_ints(node->inputs[1], "input image_shape", g->img, DAB_MAX_RANK, &ni,
                            err)) ||
        (rc = dab_read_ints(node->inputs[2], "input block_shape", g->blk, DAB_MAX_RANK, &nk, err)))
        return rc;
    if (x->rank != 3)
        return dab_err_set(err, DAB_ESHAPE, "input must be [N, C * prod(block_shape), L], got "
                           "rank %d", x->rank);
    if (ni != nk || ni < 1 || ni + 2 > DAB_MAX_RANK)
        return dab_err_set(err, DAB_ESHAPE, "inputs image_shape (%d values) and block_shape (%d) "
                           "must have the same, positive length", ni, nk);
    g->r = ni;
    if ((nd >= 0 && nd != ni) || (ns >= 0 && ns != ni) || (np >= 0 && np != 2 * ni))
        return dab_err_set(err, DAB_EINVAL, "attributes dilations, strides and pads must have "
                           "%d, %d and %d values", ni, ni, 2 * ni);
    g->n = x->dims[0];
    g->kprod = 1;
    g->l = 1;
    for (int i = 0; i < ni; i++) {
        g->dil[i] = nd > 0 ? dil[i] : 1;
        g->str[i] = ns > 0 ? str[i] : 1;
        g->pl[i] = np > 0 ? pads[i] : 0;
        int64_t ph = np > 0 ? pads[ni + i] : 0;
        if (g->blk[i] < 1 || g->blk[i] > INT32_MAX || g->img[i] < 0 || g->img[i] > INT32_MAX)
            return dab_err_set(err, DAB_EINVAL, "block_shape[%d] = %lld or image_shape[%d] = "
                               "%lld is out of range", i, (long long)g->blk[i], i,
                               (long long)g->img[i]);
        int64_t span = g->img[i] + g->pl[i] + ph - (g->dil[i] * (g->blk[i] - 1) + 1);
        if (span < 0)
            return dab_err_set(err, DAB_ESHAPE, "the block of dim %d does not fit the padded "
                               "image", i);
        g->nb[i] = span / g->str[i] + 1;
        if (dab_mul_i64(g->kprod, g->blk[i], &g->kprod) || dab_mul_i64(g->l, g->nb[i], &g->l))
            return dab_err_set(err, DAB_ELIMIT, "block or image too large");
    }
    if (x->dims[1] % g->kprod)
        return dab_err_set(err, DAB_ESHAPE, "input dim 1 (%lld) is not a multiple of the block "
                           "size %lld", (long long)x->dims[1], (long long)g->kprod);
    g->c = x->dims[1] / g->kprod;
    if (x->dims[2] != g->l)
        return dab_err_set(err, DAB_ESHAPE, "input dim 2 (%lld) must be the number of blocks "
                           "(%lld)", (long long)x->dims[2], (long long)g->l);
    return 0;
}

int dab_img_col2im_reshape(dab_node_t *node, dab_err_t *err)
{
    c2i_geom_t g = {0};
    int rc = c2i_geometry(node, &g, err);
    if (rc)
        return rc;
    int64_t dims[DAB_MAX_RANK] = {g.n, g.c};
    for (int i = 0; i < g.r; i++)
        dims[2 + i] = g.img[i];
    return dab_img_set_out(node, 0, node->inputs[0]->dtype, g.r + 2, dims, err);
}

#define C2I_KERNEL(T)                                                                        \
    static void c2i_run_##T(const c2i_geom_t *g, const T *restrict x, T *restrict y, int nt) \
    {                                                                                        \
        int64_t plane = 1;                                                                   \
        for (int i = 0; i < g->r; i++)                                                       \
            plane *= g->img[i];                                                              \
        DAB_PAR_FOR(nt, int64_t, nc, g->n * g->c,                                            \
            T *yp = y + nc * plane;                                                          \
            for (int64_t i = 0; i < plane; i++)                                              \
                yp[i] = 0;                                                                   \
            for (int64_t kk = 0; kk < g->kprod; kk++) {                                      \
                const T *xr = x + (nc * g->kprod + kk) * g->l;                               \
                int64_t koff[DAB_MAX_RANK], rem = kk;                                        \
                for (int i = g->r - 1; i >= 0; i--) {                                        \
                    koff[i] = (rem % g->blk[i]) * g->dil[i] - g->pl[i];                      \
                    rem /= g->blk[i];                                                        \
                }                                                                            \
                for (int64_t l = 0; l < g->l; l++) {                                         \
                    int64_t pos = 0, lr = l, st = 1;                                         \
                    bool inside = true;                                                      \
                    for (int i = g->r - 1; i >= 0; i--) {                                    \
                        int64_t v = (lr % g->nb[i]) * g->str[i] + koff[i];                   \
                        lr /= g->nb[i];                                                      \
                        inside &= v >= 0 && v < g->img[i];                                   \
                        pos += v * st;                                                       \
                        st *= g->img[i];                                                     \
                    }                                                                        \
                    if (inside)                                                              \
                        yp[pos] += xr[l];                                                    \
                }                                                                            \
            }                                                                                \
        );                                                                                   \
    }
C2I_KERNEL(float)
C2I_KERNEL(double)

int dab_img_col2im_compute(dab_node_t *node, dab_err_t *err)
{
    c2i_geom_t g = {0};
    int rc = c2i_geometry(node, &g, err);
    if (rc)
        return rc;
    const dab_tensor_t *x = node->inputs[0];
    int nt = dab_par_threads(node->ctx, dab_tensor_numel(x) * g.r);
    if (nt > g.n * g.c)
        nt = (int)DAB_MAX(g.n * g.c, 1);
    if (x->dtype == DAB_DT_FLOAT)
        c2i_run_float(&g, x->data, node->outputs[0]->data, nt);
    else
        c2i_run_double(&g, x->data, node->outputs[0]->data, nt);
    return 0;
}
