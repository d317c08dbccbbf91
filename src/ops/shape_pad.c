/*
 * shape_pad.c - Pad: constant, reflect, edge and wrap padding, with pads as an
 * attribute (opset 1-10) or inputs (11+, with an axes input from 18). Negative
 * pads crop the input first; the kept part (the "core") is then padded.
 *
 * The core is copied into place with the strided copy engine. The borders are
 * then filled one dim at a time from the innermost outwards: once dims > d are
 * complete, each border position along d is a contiguous slab (all of dims > d)
 * that is either the constant or a memcpy of the slab it mirrors inside the core.
 */
#include "shape_int.h"

#include <string.h>

enum { PAD_CONSTANT, PAD_REFLECT, PAD_EDGE, PAD_WRAP };

static int pad_mode(const dab_node_t *node, int *mode, dab_err_t *err)
{
    const char *m = dab_attr_string(node, "mode", "constant");
    if (!strcmp(m, "constant"))
        *mode = PAD_CONSTANT;
    else if (!strcmp(m, "reflect"))
        *mode = PAD_REFLECT;
    else if (!strcmp(m, "edge"))
        *mode = PAD_EDGE;
    else if (!strcmp(m, "wrap"))
        *mode = PAD_WRAP;
    else
        return dab_err_set(err, DAB_EINVAL, "attribute mode '%s' is not constant, reflect, edge "
                           "or wrap", m);
    return 0;
}

int dab_shp_pad_init(dab_node_t *node, dab_err_t *err)
{
    int mode;
    int rc = pad_mode(node, &mode, err);
    if (rc)
        return rc;
    if (node->opset < 11) {
        const int64_t *v;
        if (dab_attr_ints(node, node->opset < 2 ? "paddings" : "pads", &v) < 0)
            return dab_err_set(err, DAB_EINVAL, "attribute %s is required",
                               node->opset < 2 ? "paddings" : "pads");
    }
    return 0;
}

/* The geometry of one Pad: per dim, the padded begin/end (>= 0) around a core of
 * cnt elements read from the input at in0. */
typedef struct pad_geom {
    int mode;
    int64_t pb[DAB_MAX_RANK], pe[DAB_MAX_RANK];
    int64_t in0[DAB_MAX_RANK], cnt[DAB_MAX_RANK], out[DAB_MAX_RANK];
} pad_geom_t;

static int pad_geometry(const dab_node_t *node, const dab_tensor_t *in, pad_geom_t *g,
                        dab_err_t *err)
{
    int rc = pad_mode(node, &g->mode, err);
    if (rc)
        return rc;
    int r = in->rank;
    int64_t pads[2 * DAB_MAX_RANK], axes[DAB_MAX_RANK];
    int np, na = -1;
    if (node->opset < 11) {
        const int64_t *v;
        np = dab_attr_ints(node, node->opset < 2 ? "paddings" : "pads", &v);
        if (np != 2 * r)
            return dab_err_set(err, DAB_ESHAPE, "attribute pads has %d values, rank %d needs %d",
                               np, r, 2 * r);
        memcpy(pads, v, sizeof(int64_t) * (size_t)np);
    } else {
        rc = dab_read_ints(node->inputs[1], "input 'pads'", pads, 2 * DAB_MAX_RANK, &np, err);
        if (rc)
            return rc;
        const dab_tensor_t *ta = dab_shp_in(node, 3);
        if (ta && node->opset >= 18) {
            rc = dab_read_ints(ta, "input 'axes'", axes, DAB_MAX_RANK, &na, err);
            if (rc)
                return rc;
        }
        int want = na >= 0 ? 2 * na : 2 * r;
        if (np != want)
            return dab_err_set(err, DAB_ESHAPE, "input 'pads' has %d values, %d are needed", np,
                               want);
    }
    int64_t b[DAB_MAX_RANK] = {0}, e[DAB_MAX_RANK] = {0};
    bool seen[DAB_MAX_RANK] = {0};
    int nax = np / 2;
    for (int i = 0; i < nax; i++) {
        int a = i;
        if (na >= 0) {
            rc = dab_norm_axis(axes[i], r, "input 'axes' value", &a, err);
            if (rc)
                return rc;
            if (seen[a])
                return dab_err_set(err, DAB_EINVAL, "input 'axes' names axis %d twice", a);
            seen[a] = true;
        }
        b[a] = pads[i];
        e[a] = pads[i + nax];
    }
    bool empty_core = false, any_pad = false;
    for (int d = 0; d < r; d++) {
        int64_t dim = in->dims[d];
        /* |pads| beyond any real dim would overflow below; they are errors anyway */
        if (b[d] < -dim || e[d] < -dim || b[d] > ((int64_t)1 << 48) || e[d] > ((int64_t)1 << 48))
            return dab_err_set(err, DAB_EINVAL, "pads %lld, %lld are out of range for dim %d of "
                               "size %lld", (long long)b[d], (long long)e[d], d, (long long)dim);
        int64_t cnt = dim + DAB_MIN(b[d], 0) + DAB_MIN(e[d], 0);
        if (cnt < 0)
            return dab_err_set(err, DAB_EINVAL, "pads %lld, %lld crop more than dim %d of size "
                               "%lld", (long long)b[d], (long long)e[d], d, (long long)dim);
        g->pb[d] = DAB_MAX(b[d], 0);
        g->pe[d] = DAB_MAX(e[d], 0);
        g->in0[d] = DAB_MAX(-b[d], 0);
        g->cnt[d] = cnt;
        g->out[d] = cnt + g->pb[d] + g->pe[d];
        empty_core |= cnt == 0;
        any_pad |= g->pb[d] > 0 || g->pe[d] > 0;
    }
    if (g->mode != PAD_CONSTANT && empty_core && any_pad) {
        bool out_empty = false;
        for (int d = 0; d < r; d++)
            out_empty |= g->out[d] == 0;
        if (!out_empty)
            return dab_err_set(err, DAB_EINVAL, "cannot pad an empty tensor in mode '%s'",
                               dab_attr_string(node, "mode", "constant"));
    }
    return 0;
}

int dab_shp_pad_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *in = node->inputs[0];
    pad_geom_t g;
    int rc = pad_geometry(node, in, &g, err);
    if (rc)
        return rc;
    const dab_tensor_t *cv = node->opset >= 11 ? dab_shp_in(node, 2) : NULL;
    if (cv && cv->dtype != in->dtype)
        return dab_err_set(err, DAB_ETYPE, "input 'constant_value' is %s but the data is %s",
                           dab_dtype_name(cv->dtype), dab_dtype_name(in->dtype));
    if (cv && dab_tensor_numel(cv) > 1)
        return dab_err_set(err, DAB_ESHAPE, "input 'constant_value' must hold one value, it has "
                           "%lld", (long long)dab_tensor_numel(cv));
    return dab_shp_set_out(node, 0, in->dtype, in->rank, g.out, err);
}

/* Where border position j (0 <= j < out) along a dim reads from, relative to the core's
 * first position, for a core of n elements. */
static int64_t pad_source(int mode, int64_t x, int64_t n)
{
    switch (mode) {
    case PAD_EDGE:
        return x < 0 ? 0 : x >= n ? n - 1 : x;
    case PAD_WRAP:
        return ((x % n) + n) % n;
    default: {
        if (n == 1)
            return 0;
        int64_t period = 2 * (n - 1), m = ((x % period) + period) % period;
        return m >= n ? period - m : m;
    }
    }
}

int dab_shp_pad_compute(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *in = node->inputs[0];
    dab_tensor_t *out = node->outputs[0];
    pad_geom_t g;
    int rc = pad_geometry(node, in, &g, err);
    if (rc)
        return rc;
    int r = in->rank;
    size_t es = dab_dtype_size(in->dtype);
    int64_t total = dab_tensor_numel(out);
    if (total == 0)
        return 0;

    /* the constant, in the data's dtype */
    _Alignas(16) unsigned char value[16] = {0};
    if (g.mode == PAD_CONSTANT) {
        if (node->opset < 11) {
            float v = dab_attr_float(node, "value", 0.0f);
            dab_cast_elems(DAB_DT_FLOAT, &v, in->dtype, value, 1);
        } else {
            const dab_tensor_t *cv = dab_shp_in(node, 2);
            if (cv && dab_tensor_numel(cv) == 1)
                memcpy(value, cv->data, es);
        }
    }

    int64_t is[DAB_MAX_RANK], os[DAB_MAX_RANK];
    dab_shp_strides(in, is);
    dab_shp_strides(out, os);
    int64_t soff = 0, doff = 0, core = 1;
    dab_copy_plan_t p;
    dab_copy_plan_init(&p, es);
    for (int d = 0; d < r; d++) {
        soff += g.in0[d] * is[d];
        doff += g.pb[d] * os[d];
        core *= g.cnt[d];
        dab_copy_plan_add(&p, g.cnt[d], is[d], os[d]);
    }
    char *dst = out->data;
    if (core > 0)
        dab_copy_run(&p, dst + doff * (int64_t)es, (const char *)in->data + soff * (int64_t)es,
                     node->ctx);
    else if (g.mode == PAD_CONSTANT) {
        dab_fill_elems(dst, value, es, total, node->ctx);
        return 0;
    }

    /* borders, innermost dim first */
    for (int d = r - 1; d >= 0; d--) {
        if (g.pb[d] == 0 && g.pe[d] == 0)
            continue;
        int64_t inner = os[d]; /* elements of one slab: all of dims > d */
        int64_t nouter = 1;
        for (int e = 0; e < d; e++)
            nouter *= g.cnt[e];
        int64_t nborder = g.pb[d] + g.pe[d];
        int nt = dab_par_threads(node->ctx, nouter * nborder * inner);
        if (nt > nouter)
            nt = (int)nouter;
        DAB_PAR_FOR(nt, int64_t, o, nouter,
            int64_t base = 0, rem = o;
            for (int e = d - 1; e >= 0; e--) {
                base += (g.pb[e] + rem % g.cnt[e]) * os[e];
                rem /= g.cnt[e];
            }
            char *row = dst + base * (int64_t)es;
            if (g.mode == PAD_CONSTANT) {
                /* the slabs before and after the core are two contiguous blocks */
                dab_fill_elems(row, value, es, g.pb[d] * inner, NULL);
                dab_fill_elems(row + (g.pb[d] + g.cnt[d]) * inner * (int64_t)es, value, es,
                               g.pe[d] * inner, NULL);
                continue;
            }
            for (int64_t k = 0; k < nborder; k++) {
                int64_t j = k < g.pb[d] ? k : g.pb[d] + g.cnt[d] + (k - g.pb[d]);
                int64_t src = g.pb[d] + pad_source(g.mode, j - g.pb[d], g.cnt[d]);
                memcpy(row + j * inner * (int64_t)es, row + src * inner * (int64_t)es,
                       (size_t)(inner * (int64_t)es));
            }
        );
    }
    return 0;
}
