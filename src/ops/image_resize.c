/*
 * image_resize.c - Resize (opsets 10 to 19+) and Upsample (7 to 10): nearest, N-linear and
 * N-cubic resampling of any subset of axes.
 *
 * Every output coordinate x along an axis maps to a position x_ori in the input by the
 * coordinate_transformation_mode; the interpolation then reads a window of n input
 * positions around x_ori with weights from the mode's kernel. As in ONNX's reference,
 * the window is the n positions nearest x_ori with ties going left (so the fraction
 * r = x_ori - left is in (0, 1]), positions outside the input read the edge value, and
 * exclude_outside gives them weight 0 instead (the rest renormalized). With antialias and
 * a scale s < 1 the kernel is stretched by 1/s (wider window, weights renormalized).
 * tf_crop_and_resize writes extrapolation_value where x_ori leaves [0, in - 1].
 *
 * Because those weights factor per axis, linear and cubic resize one axis at a time
 * (in the order of least estimated work, through two ping-pong buffers in scratch), each
 * pass but the last axis's a weighted sum of whole rows that the compiler vectorizes.
 * Nearest is one N-D gather through a per-axis index table. Opsets before 11 (Upsample,
 * Resize-10) are asymmetric with ONNX Runtime's "simple" nearest rule: floor when
 * enlarging, ceil when shrinking.
 * Per-axis tables are rebuilt in scratch on each run (O(output length * window)).
 */
#include "image_int.h"

#include <math.h>

enum { RS_NEAREST, RS_LINEAR, RS_CUBIC };
enum {
    CT_HALF_PIXEL,
    CT_HALF_PIXEL_SYM,
    CT_PYTORCH_HALF_PIXEL,
    CT_ALIGN_CORNERS,
    CT_ASYMMETRIC,
    CT_TF_HALF_PIXEL_NN,
    CT_TF_CROP
};
enum { NM_PREFER_FLOOR, NM_PREFER_CEIL, NM_FLOOR, NM_CEIL };
enum { KA_STRETCH, KA_NOT_LARGER, KA_NOT_SMALLER };

typedef struct rs_axis {
    int64_t in, out;
    double scale;          /* what the coordinate transform divides by */
    double width;          /* scale * in: the unrounded output length */
    double roi_lo, roi_hi; /* tf_crop_and_resize's crop box, normalized */
    int active;            /* linear/cubic: this axis needs a pass */
    int64_t n;             /* window of one output position (linear/cubic) */
    size_t idx_off, w_off, ext_off; /* its tables in scratch (bytes) */
} rs_axis_t;

typedef struct rs_priv {
    int legacy;   /* Upsample, Resize-10 */
    int upsample; /* Upsample: scales must be >= 1 */
    int mode, ctm, nearest, keep;
    int antialias, exclude_outside;
    double cubic_a, extrap;
    int n_axes; /* -1: all axes */
    int64_t axes[DAB_MAX_RANK];
    /* decided by reshape */
    int rank;
    rs_axis_t ax[DAB_MAX_RANK];
    int n_pass, order[DAB_MAX_RANK]; /* linear/cubic: axes to resample, in order */
    size_t buf_off, buf_elems;       /* two ping-pong buffers of buf_elems each */
} rs_priv_t;

static int pick(const char *v, const char *const *names, int n, int *out)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(v, names[i])) {
            *out = i;
            return 0;
        }
    return -1;
}

static int rs_parse(dab_node_t *node, rs_priv_t *p, dab_err_t *err)
{
    const bool upsample = !strcmp(node->op_type, "Upsample");
    p->upsample = upsample;
    p->legacy = upsample || node->opset < 11;
    p->n_axes = -1;
    static const char *const modes[] = {"nearest", "linear", "cubic"};
    const char *m = dab_attr_string(node, "mode", "nearest");
    if (pick(m, modes, p->legacy ? 2 : 3, &p->mode))
        return dab_err_set(err, DAB_EINVAL, "attribute mode '%s' is not %s", m,
                           p->legacy ? "nearest or linear" : "nearest, linear or cubic");
    if (p->legacy) {
        p->ctm = CT_ASYMMETRIC;
        if (upsample && node->opset < 9) {
            const float *s;
            if (dab_attr_floats(node, "scales", &s) < 0)
                return dab_err_set(err, DAB_EINVAL, "attribute scales is required");
        }
        return 0;
    }
    static const char *const ctms[] = {"half_pixel",    "half_pixel_symmetric",
                                       "pytorch_half_pixel", "align_corners",
                                       "asymmetric",    "tf_half_pixel_for_nn",
                                       "tf_crop_and_resize"};
    const char *c = dab_attr_string(node, "coordinate_transformation_mode", "half_pixel");
    if (pick(c, ctms, (int)DAB_ARRAY_LEN(ctms), &p->ctm))
        return dab_err_set(err, DAB_EINVAL, "attribute coordinate_transformation_mode '%s' is "
                           "not a known mode", c);
    static const char *const nms[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
    const char *nm = dab_attr_string(node, "nearest_mode", "round_prefer_floor");
    if (pick(nm, nms, 4, &p->nearest))
        return dab_err_set(err, DAB_EINVAL, "attribute nearest_mode '%s' is not "
                           "round_prefer_floor, round_prefer_ceil, floor or ceil", nm);
    p->cubic_a = dab_attr_float(node, "cubic_coeff_a", -0.75f);
    p->exclude_outside = dab_attr_int(node, "exclude_outside", 0) != 0;
    p->extrap = dab_attr_float(node, "extrapolation_value", 0.0f);
    if (node->opset >= 18) {
        p->antialias = dab_attr_int(node, "antialias", 0) != 0;
        static const char *const kas[] = {"stretch", "not_larger", "not_smaller"};
        const char *k = dab_attr_string(node, "keep_aspect_ratio_policy", "stretch");
        if (pick(k, kas, 3, &p->keep))
            return dab_err_set(err, DAB_EINVAL, "attribute keep_aspect_ratio_policy '%s' is "
                               "not stretch, not_larger or not_smaller", k);
        int rc = dab_img_attr_ints(node, "axes", INT32_MIN, INT32_MAX, p->axes, DAB_MAX_RANK,
                                   &p->n_axes, err);
        if (rc)
            return rc;
    }
    return 0;
}

int dab_img_resize_init(dab_node_t *node, dab_err_t *err)
{
    rs_priv_t *p = dab_calloc(1, sizeof *p);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "out of memory for the operator's state");
    int rc = rs_parse(node, p, err);
    if (rc) {
        dab_free(p);
        return rc;
    }
    node->priv = p;
    return 0;
}

/* An input that is present and not empty (Resize-11 passes "no scales" as an empty one). */
static const dab_tensor_t *rs_given(const dab_node_t *node, int i)
{
    const dab_tensor_t *t = img_in(node, i);
    return t && dab_tensor_numel(t) > 0 ? t : NULL;
}

/* The axes that scales/sizes/roi list (count values), as dims of x; rejects repeats. */
static int rs_axes(const rs_priv_t *p, int rank, int *axes, int *count, dab_err_t *err)
{
    if (p->n_axes < 0) {
        for (int d = 0; d < rank; d++)
            axes[d] = d;
        *count = rank;
        return 0;
    }
    bool seen[DAB_MAX_RANK] = {0};
    for (int i = 0; i < p->n_axes; i++) {
        int rc = dab_norm_axis(p->axes[i], rank, "attribute axes value", &axes[i], err);
        if (rc)
            return rc;
        if (seen[axes[i]])
            return dab_err_set(err, DAB_EINVAL, "attribute axes names axis %d twice", axes[i]);
        seen[axes[i]] = true;
    }
    *count = p->n_axes;
    return 0;
}

/* Sets out, scale and width of every axis from the scales or sizes in use. */
static int rs_geometry(dab_node_t *node, rs_priv_t *p, const dab_tensor_t *x, dab_err_t *err)
{
    const int r = x->rank;
    for (int d = 0; d < r; d++) {
        rs_axis_t *a = &p->ax[d];
        memset(a, 0, sizeof *a);
        a->in = a->out = x->dims[d];
        a->scale = 1;
        a->width = (double)a->in;
        a->roi_hi = 1;
    }
    int axes[DAB_MAX_RANK], cnt = 0;
    int rc = rs_axes(p, r, axes, &cnt, err);
    if (rc)
        return rc;

    double scales[DAB_MAX_RANK];
    int64_t sizes[DAB_MAX_RANK];
    int n_scales = -1, n_sizes = -1;
    const dab_tensor_t *ts = NULL, *tz = NULL, *troi = NULL;
    if (p->legacy && node->n_inputs < 2) { /* Upsample-7: an attribute */
        const float *s;
        n_scales = dab_attr_floats(node, "scales", &s);
        if (n_scales > DAB_MAX_RANK)
            n_scales = DAB_MAX_RANK + 1;
        for (int i = 0; i < n_scales && i < DAB_MAX_RANK; i++)
            scales[i] = s[i];
    } else if (p->legacy) {
        if (!(ts = img_in(node, 1)))
            return dab_err_set(err, DAB_EINVAL, "input scales is required");
    } else {
        troi = rs_given(node, 1);
        ts = rs_given(node, 2);
        tz = rs_given(node, 3);
        if (ts && tz)
            return dab_err_set(err, DAB_EINVAL, "inputs scales and sizes are both given; only "
                               "one may be");
        if (!ts && !tz)
            return dab_err_set(err, DAB_EINVAL, "one of the inputs scales and sizes is needed");
    }
    if (ts) {
        if (ts->dtype != DAB_DT_FLOAT && ts->dtype != DAB_DT_DOUBLE &&
            ts->dtype != DAB_DT_FLOAT16)
            return dab_err_set(err, DAB_ETYPE, "input scales must be float, got %s",
                               dab_dtype_name(ts->dtype));
        int64_t n = dab_tensor_numel(ts);
        n_scales = n > DAB_MAX_RANK ? DAB_MAX_RANK + 1 : (int)n;
        for (int i = 0; i < n_scales && i < DAB_MAX_RANK; i++)
            scales[i] = dab_tensor_get_f64(ts, i);
    }
    if (tz && (rc = dab_read_ints(tz, "input sizes", sizes, DAB_MAX_RANK, &n_sizes, err)))
        return rc;
    int want = p->legacy ? r : cnt;
    if (n_scales >= 0 && n_scales != want)
        return dab_err_set(err, DAB_ESHAPE, "scales has %d values, %d are needed", n_scales, want);
    if (n_sizes >= 0 && n_sizes != want)
        return dab_err_set(err, DAB_ESHAPE, "input sizes has %d values, %d are needed", n_sizes,
                           want);

    if (n_scales >= 0) {
        for (int i = 0; i < want; i++) {
            rs_axis_t *a = &p->ax[axes[i]];
            double s = scales[i];
            if (!(s > 0) || !isfinite(s))
                return dab_err_set(err, DAB_EINVAL, "scale %g for axis %d is not a positive "
                                   "number", s, axes[i]);
            if (p->upsample && s < 1)
                return dab_err_set(err, DAB_EINVAL, "Upsample scale %g for axis %d is below 1",
                                   s, axes[i]);
            double w = (double)a->in * s;
            if (w >= 9e15)
                return dab_err_set(err, DAB_ELIMIT, "scale %g makes axis %d too long", s,
                                   axes[i]);
            a->scale = s;
            a->width = w;
            a->out = (int64_t)floor(w);
        }
    } else {
        double agg = p->keep == KA_NOT_LARGER ? INFINITY : 0;
        for (int i = 0; i < want; i++) {
            rs_axis_t *a = &p->ax[axes[i]];
            if (sizes[i] < 0 || sizes[i] > ((int64_t)1 << 53))
                return dab_err_set(err, DAB_EINVAL, "input sizes value %lld for axis %d is out "
                                   "of range", (long long)sizes[i], axes[i]);
            if (a->in == 0) {
                if (sizes[i] != 0)
                    return dab_err_set(err, DAB_ESHAPE, "axis %d is empty and cannot be "
                                       "resized to %lld", axes[i], (long long)sizes[i]);
                continue;
            }
            a->out = sizes[i];
            a->scale = (double)sizes[i] / (double)a->in;
            a->width = (double)sizes[i];
            if (p->keep == KA_NOT_LARGER)
                agg = DAB_MIN(agg, a->scale);
            else if (p->keep == KA_NOT_SMALLER)
                agg = DAB_MAX(agg, a->scale);
        }
        if (p->keep != KA_STRETCH && want > 0 && isfinite(agg) && agg > 0) {
            for (int i = 0; i < want; i++) {
                rs_axis_t *a = &p->ax[axes[i]];
                a->scale = agg;
                a->width = agg * (double)a->in;
                if (a->width >= 9e15)
                    return dab_err_set(err, DAB_ELIMIT, "keep_aspect_ratio_policy makes axis "
                                       "%d too long", axes[i]);
                a->out = (int64_t)(a->width + 0.5);
            }
        }
    }
    if (p->ctm == CT_TF_CROP && !p->legacy) {
        if (!troi)
            return dab_err_set(err, DAB_EINVAL, "input roi is required by "
                               "coordinate_transformation_mode tf_crop_and_resize");
        if (dab_tensor_numel(troi) != 2 * (int64_t)cnt)
            return dab_err_set(err, DAB_ESHAPE, "input roi has %lld values, %d are needed",
                               (long long)dab_tensor_numel(troi), 2 * cnt);
        for (int i = 0; i < cnt; i++) {
            p->ax[axes[i]].roi_lo = dab_tensor_get_f64(troi, i);
            p->ax[axes[i]].roi_hi = dab_tensor_get_f64(troi, cnt + i);
        }
    }
    return 0;
}

/* bytes rounded up to a cache line, added to *total with overflow checks */
static int rs_reserve(size_t *total, size_t count, size_t esize, size_t *off)
{
    size_t b;
    if (dab_mul_size(count, esize, &b) || b > SIZE_MAX / 2 - *total - 64)
        return DAB_ELIMIT;
    *off = *total;
    *total += DAB_ALIGN_UP(b, 64);
    return 0;
}

/* Estimated work of the passes in order ord: each pass writes its output once per tap,
 * and a pass along the last dim gathers single elements instead of streaming rows. */
static double rs_plan_cost(const rs_priv_t *p, const dab_tensor_t *x, const int *ord)
{
    double cur[DAB_MAX_RANK], cost = 0;
    for (int d = 0; d < x->rank; d++)
        cur[d] = (double)x->dims[d];
    for (int i = 0; i < p->n_pass; i++) {
        const rs_axis_t *a = &p->ax[ord[i]];
        cur[ord[i]] = (double)a->out;
        double n = 1;
        for (int d = 0; d < x->rank; d++)
            n *= cur[d];
        cost += n * (double)a->n * (ord[i] == x->rank - 1 ? 3 : 1);
    }
    return cost;
}

/* Orders the passes by least estimated work (all orders of up to 4 axes, else the most
 * shrinking axis first, which keeps the intermediate results small). */
static void rs_plan_order(rs_priv_t *p, const dab_tensor_t *x)
{
    const int n = p->n_pass;
    if (n > 4) {
        for (int i = 1; i < n; i++) {
            int d = p->order[i], k = i;
            double g = (double)p->ax[d].out / (double)DAB_MAX(p->ax[d].in, 1);
            while (k > 0) {
                const rs_axis_t *b = &p->ax[p->order[k - 1]];
                if ((double)b->out / (double)DAB_MAX(b->in, 1) <= g)
                    break;
                p->order[k] = p->order[k - 1];
                k--;
            }
            p->order[k] = d;
        }
        return;
    }
    int best[4], cand[4];
    double best_cost = INFINITY;
    int total = 1;
    for (int i = 0; i < n; i++)
        total *= n;
    for (int code = 0; code < total; code++) {
        unsigned used = 0;
        int c = code;
        bool ok = true;
        for (int i = 0; i < n; i++, c /= n) {
            ok &= !(used & (1u << (c % n)));
            used |= 1u << (c % n);
            cand[i] = p->order[c % n];
        }
        if (!ok)
            continue;
        double cost = rs_plan_cost(p, x, cand);
        if (cost < best_cost) {
            best_cost = cost;
            memcpy(best, cand, sizeof(int) * (size_t)n);
        }
    }
    if (n > 0)
        memcpy(p->order, best, sizeof(int) * (size_t)n);
}

int dab_img_resize_reshape(dab_node_t *node, dab_err_t *err)
{
    rs_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0];
    int rc = rs_geometry(node, p, x, err);
    if (rc)
        return rc;
    const int r = x->rank;
    p->rank = r;
    int64_t od[DAB_MAX_RANK];
    for (int d = 0; d < r; d++)
        od[d] = p->ax[d].out;
    if ((rc = dab_img_set_out(node, 0, x->dtype, r, od, err)))
        return rc;
    if (p->mode != RS_NEAREST && x->dtype != DAB_DT_FLOAT && x->dtype != DAB_DT_DOUBLE)
        return dab_err_set(err, DAB_EUNSUPPORTED, "mode %s is implemented for float and double "
                           "data, not %s", p->mode == RS_LINEAR ? "linear" : "cubic",
                           dab_dtype_name(x->dtype));
    p->n_pass = 0;
    p->buf_elems = 0;
    if (dab_tensor_numel(node->outputs[0]) == 0)
        return 0;

    size_t total = 0;
    if (p->mode == RS_NEAREST) {
        for (int d = 0; d < r; d++)
            if (rs_reserve(&total, (size_t)p->ax[d].out, sizeof(int64_t), &p->ax[d].idx_off))
                return dab_err_set(err, DAB_ELIMIT, "the index tables do not fit in memory");
        node->scratch_bytes = total;
        return 0;
    }

    /* linear / cubic: which axes move, their windows, and the order of the passes */
    for (int d = 0; d < r; d++) {
        rs_axis_t *a = &p->ax[d];
        a->active = !(a->in == a->out && a->scale == 1 && (p->ctm != CT_TF_CROP || p->legacy));
        if (!a->active)
            continue;
        double s = p->antialias && a->scale < 1 ? a->scale : 1;
        double half = p->mode == RS_LINEAR ? 1 : 2; /* the kernel's support, unscaled */
        double n = 2 - 2 * (floor(-half / s) + 1);
        if (n > (double)(1 << 24) || n > 8 * (double)a->in + 8)
            return dab_err_set(err, DAB_ELIMIT, "the antialiasing window of axis %d (%g "
                               "positions) is too large", d, n);
        a->n = (int64_t)n;
        size_t taps;
        if (dab_mul_size((size_t)a->out, (size_t)a->n, &taps) ||
            rs_reserve(&total, taps, sizeof(int64_t), &a->idx_off) ||
            rs_reserve(&total, taps, sizeof(double), &a->w_off) ||
            rs_reserve(&total, (size_t)a->out, 1, &a->ext_off))
            return dab_err_set(err, DAB_ELIMIT, "the weight tables of axis %d do not fit in "
                               "memory", d);
        p->order[p->n_pass++] = d;
    }
    rs_plan_order(p, x);
    /* intermediate results of all passes but the last */
    int64_t cur[DAB_MAX_RANK];
    for (int d = 0; d < r; d++)
        cur[d] = x->dims[d];
    size_t biggest = 0;
    for (int i = 0; i + 1 < p->n_pass; i++) {
        cur[p->order[i]] = p->ax[p->order[i]].out;
        size_t n = 1;
        for (int d = 0; d < r; d++)
            if (dab_mul_size(n, (size_t)cur[d], &n))
                return dab_err_set(err, DAB_ELIMIT, "intermediate result too large");
        biggest = DAB_MAX(biggest, n);
    }
    p->buf_elems = biggest;
    size_t es = dab_dtype_size(x->dtype);
    size_t one; /* each buffer starts on a cache line */
    if (biggest && (dab_mul_size(biggest, es, &one) || one > SIZE_MAX / 4 ||
                    rs_reserve(&total, 2 * DAB_ALIGN_UP(one, 64), 1, &p->buf_off)))
        return dab_err_set(err, DAB_ELIMIT, "intermediate result too large");
    node->scratch_bytes = total;
    return 0;
}

/* ---- coordinates and weights ---- */

/* Where output position j of axis a reads in the input; *outside for tf_crop_and_resize
 * positions outside the input. */
static double rs_coord(const rs_priv_t *p, const rs_axis_t *a, int64_t j, bool *outside)
{
    const double x = (double)j, s = a->scale, in = (double)a->in;
    *outside = false;
    switch (p->ctm) {
    case CT_HALF_PIXEL:
        return (x + 0.5) / s - 0.5;
    case CT_HALF_PIXEL_SYM: {
        double adj = a->width > 0 ? (double)a->out / a->width : 1;
        return in / 2 * (1 - adj) + (x + 0.5) / s - 0.5;
    }
    case CT_PYTORCH_HALF_PIXEL:
        return a->out > 1 ? (x + 0.5) / s - 0.5 : 0;
    case CT_ALIGN_CORNERS:
        return a->width == 1 ? 0 : x * (in - 1) / (a->width - 1);
    case CT_TF_HALF_PIXEL_NN:
        return (x + 0.5) / s;
    case CT_TF_CROP: {
        double span = a->roi_hi - a->roi_lo, v;
        if (a->width == 1)
            v = span * (in - 1) / 2;
        else
            v = x * span * (in - 1) / (a->width - 1);
        v += a->roi_lo * (in - 1);
        *outside = !(v >= 0 && v <= in - 1);
        return v;
    }
    default:
        return x / s;
    }
}

/* The input position output j of axis a copies (nearest); -1 for extrapolation. */
static int64_t rs_nearest_index(const rs_priv_t *p, const rs_axis_t *a, int64_t j)
{
    bool out;
    double x = rs_coord(p, a, j, &out);
    if (out)
        return -1;
    double hi = (double)a->in;
    x = x < -2 ? -2 : x > hi + 1 ? hi + 1 : x; /* keeps the conversion defined */
    double fl = floor(x), k;
    if (p->legacy)
        k = a->scale < 1 ? ceil(x) : fl;
    else if (x == fl)
        k = x;
    else {
        double r = x - fl;
        switch (p->nearest) {
        case NM_PREFER_FLOOR: k = r <= 0.5 ? fl : fl + 1; break;
        case NM_PREFER_CEIL: k = r < 0.5 ? fl : fl + 1; break;
        case NM_FLOOR: k = fl; break;
        default: k = fl + 1; break;
        }
    }
    int64_t i = (int64_t)k;
    return i < 0 ? 0 : i >= a->in ? a->in - 1 : i;
}

static double rs_kernel(const rs_priv_t *p, double d)
{
    d = fabs(d);
    if (p->mode == RS_LINEAR)
        return d < 1 ? 1 - d : 0;
    const double A = p->cubic_a;
    if (d <= 1)
        return ((A + 2) * d - (A + 3)) * d * d + 1;
    if (d < 2)
        return ((A * d - 5 * A) * d + 8 * A) * d - 4 * A;
    return 0;
}

/* Window (clamped indices) and weights of output j of axis a; returns false when j
 * extrapolates. */
static bool rs_taps(const rs_priv_t *p, const rs_axis_t *a, int64_t j, int64_t *idx, double *w)
{
    bool out;
    double x = rs_coord(p, a, j, &out);
    if (out)
        return false;
    const int64_t n = a->n, half = n / 2;
    /* far outside, only the fraction matters: the window is clamped to the edge below */
    double fl = floor(x), lim = (double)(a->in + n + 2);
    if (fl < -lim)
        x = -lim + (x - fl);
    else if (fl > lim)
        x = lim + (x - fl);
    fl = floor(x);
    double left = x == fl ? x - 1 : fl, r = x - left; /* r in (0, 1] */
    int64_t start = (int64_t)left + 1 - half;
    if (start < -half)
        start = -half;
    if (start > a->in - half)
        start = a->in - half;
    const bool aa = p->antialias && a->scale < 1;
    const double s = aa ? a->scale : 1;
    double sum = 0;
    for (int64_t k = 0; k < n; k++) {
        double c = rs_kernel(p, ((double)(1 - half + k) - r) * s);
        int64_t pos = start + k;
        if (p->exclude_outside && (pos < 0 || pos >= a->in))
            c = 0;
        idx[k] = pos < 0 ? 0 : pos >= a->in ? a->in - 1 : pos;
        w[k] = c;
        sum += c;
    }
    if ((aa || p->exclude_outside) && sum != 0)
        for (int64_t k = 0; k < n; k++)
            w[k] /= sum;
    return true;
}

/* ---- kernels ---- */

/* one output row of the gather in elements of type T */
#define RS_ROW(T)                                                                            \
    do {                                                                                     \
        T *d_ = (T *)dst;                                                                    \
        const T *s_ = (const T *)src;                                                        \
        T e_;                                                                                \
        memcpy(&e_, extrap, sizeof e_);                                                      \
        for (int64_t j = 0; j < w; j++) {                                                    \
            int64_t k = last ? last[j] : 0;                                                  \
            d_[j] = k < 0 ? e_ : s_[k];                                                      \
        }                                                                                    \
    } while (0)

/* Nearest: out[j...] = x[idx_0[j_0], ..., idx_{r-1}[j_{r-1}]], or the extrapolation value.
 * Elements are 1, 2, 4 or 8 bytes (the dtypes the table admits). */
static void rs_gather(const rs_priv_t *p, const dab_tensor_t *x, dab_tensor_t *y,
                      int64_t *const *idx, const void *extrap, int nt)
{
    const int r = p->rank;
    const size_t es = dab_dtype_size(x->dtype);
    int64_t is[DAB_MAX_RANK];
    int64_t st = 1;
    for (int d = r - 1; d >= 0; d--) {
        is[d] = st;
        st *= x->dims[d];
    }
    const int64_t w = r ? p->ax[r - 1].out : 1;
    const int64_t rows = w ? dab_tensor_numel(y) / w : 0;
    const int64_t *last = r ? idx[r - 1] : NULL;
    DAB_PAR_FOR(nt, int64_t, row, rows,
        int64_t base = 0, rem = row;
        bool ext = false;
        for (int d = r - 2; d >= 0; d--) {
            int64_t k = idx[d][rem % p->ax[d].out];
            rem /= p->ax[d].out;
            ext |= k < 0;
            base += k * is[d];
        }
        char *dst = (char *)y->data + row * w * (int64_t)es;
        const char *src = (const char *)x->data + base * (int64_t)es;
        if (ext)
            for (int64_t j = 0; j < w; j++)
                memcpy(dst + j * (int64_t)es, extrap, es);
        else
            switch (es) {
            case 1: RS_ROW(uint8_t); break;
            case 2: RS_ROW(uint16_t); break;
            case 4: RS_ROW(uint32_t); break;
            default: RS_ROW(uint64_t); break;
            }
    );
}
#undef RS_ROW

/* One linear/cubic pass along an axis: src [outer, nin, inner] -> dst [outer, nout, inner].
 * Along the last axis (inner == 1) each output gathers n single elements; otherwise it is
 * a weighted sum of n rows of inner elements. */
#define RS_PASS(T)                                                                           \
    static void rs_pass_##T(const T *restrict src, T *restrict dst, int64_t outer,           \
                            int64_t nin, int64_t nout, int64_t inner, int64_t n,             \
                            const int64_t *idx, const double *wt, const uint8_t *ext,        \
                            T extrap, int nt)                                                \
    {                                                                                        \
        if (inner == 1) {                                                                    \
            DAB_PAR_FOR(nt, int64_t, o, outer,                                               \
                const T *xs = src + o * nin;                                                 \
                T *restrict y = dst + o * nout;                                              \
                for (int64_t j = 0; j < nout; j++) {                                         \
                    const int64_t *ix = idx + j * n;                                         \
                    const double *wj = wt + j * n;                                           \
                    double acc = 0;                                                          \
                    if (ext[j]) {                                                            \
                        y[j] = extrap;                                                       \
                        continue;                                                            \
                    }                                                                        \
                    for (int64_t k = 0; k < n; k++)                                          \
                        acc += wj[k] * (double)xs[ix[k]];                                    \
                    y[j] = (T)acc;                                                           \
                }                                                                            \
            );                                                                               \
            return;                                                                          \
        }                                                                                    \
        DAB_PAR_FOR(nt, int64_t, t, outer * nout,                                            \
            const int64_t o = t / nout, j = t % nout;                                        \
            T *restrict y = dst + t * inner;                                                 \
            const T *xs = src + o * nin * inner;                                             \
            const int64_t *ix = idx + j * n;                                                 \
            const double *wj = wt + j * n;                                                   \
            if (ext[j]) {                                                                    \
                for (int64_t i = 0; i < inner; i++)                                          \
                    y[i] = extrap;                                                           \
                continue;                                                                    \
            }                                                                                \
            const T w0 = (T)wj[0];                                                           \
            const T *restrict x0 = xs + ix[0] * inner;                                       \
            for (int64_t i = 0; i < inner; i++)                                              \
                y[i] = w0 * x0[i];                                                           \
            for (int64_t k = 1; k < n; k++) {                                                \
                if (wj[k] == 0)                                                              \
                    continue;                                                                \
                const T wk = (T)wj[k];                                                       \
                const T *restrict xk = xs + ix[k] * inner;                                   \
                for (int64_t i = 0; i < inner; i++)                                          \
                    y[i] += wk * xk[i];                                                      \
            }                                                                                \
        );                                                                                   \
    }
RS_PASS(float)
RS_PASS(double)

int dab_img_resize_compute(dab_node_t *node, dab_err_t *err)
{
    rs_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0];
    dab_tensor_t *y = node->outputs[0];
    const int r = p->rank;
    const int64_t total = dab_tensor_numel(y);
    if (total == 0)
        return 0;
    char *scr = node->scratch;
    const size_t es = dab_dtype_size(x->dtype);
    int nt = dab_par_threads(node->ctx, total * (p->mode == RS_CUBIC ? 16 : 4));

    if (p->mode == RS_NEAREST) {
        int64_t *idx[DAB_MAX_RANK];
        for (int d = 0; d < r; d++) {
            idx[d] = (int64_t *)(scr + p->ax[d].idx_off);
            for (int64_t j = 0; j < p->ax[d].out; j++)
                idx[d][j] = rs_nearest_index(p, &p->ax[d], j);
        }
        _Alignas(16) unsigned char extrap[16] = {0};
        dab_img_put_f64(x->dtype, extrap, p->extrap);
        rs_gather(p, x, y, idx, extrap, nt);
        return 0;
    }

    if (p->n_pass == 0) {
        memcpy(y->data, x->data, (size_t)total * es);
        return 0;
    }
    int64_t cur[DAB_MAX_RANK];
    for (int d = 0; d < r; d++)
        cur[d] = x->dims[d];
    const void *src = x->data;
    char *bufs[2] = {scr + p->buf_off, scr + p->buf_off + DAB_ALIGN_UP(p->buf_elems * es, 64)};
    for (int i = 0; i < p->n_pass; i++) {
        const int d = p->order[i];
        const rs_axis_t *a = &p->ax[d];
        int64_t *idx = (int64_t *)(scr + a->idx_off);
        double *w = (double *)(scr + a->w_off);
        uint8_t *ext = (uint8_t *)(scr + a->ext_off);
        for (int64_t j = 0; j < a->out; j++)
            ext[j] = !rs_taps(p, a, j, idx + j * a->n, w + j * a->n);
        int64_t outer = 1, inner = 1;
        for (int e = 0; e < d; e++)
            outer *= cur[e];
        for (int e = d + 1; e < r; e++)
            inner *= cur[e];
        void *dst = i + 1 == p->n_pass ? y->data : bufs[i & 1];
        if (x->dtype == DAB_DT_FLOAT)
            rs_pass_float(src, dst, outer, a->in, a->out, inner, a->n, idx, w, ext,
                          (float)p->extrap, nt);
        else
            rs_pass_double(src, dst, outer, a->in, a->out, inner, a->n, idx, w, ext, p->extrap,
                           nt);
        cur[d] = a->out;
        src = dst;
    }
    (void)err;
    return 0;
}
