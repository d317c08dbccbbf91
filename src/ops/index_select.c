/*
 * index_select.c - selections whose output size depends on the input's values:
 * Unique and NonMaxSuppression.
 *
 * Both do their whole work in reshape (which must know the output's size) into
 * buffers kept in the node's state and grown only when an input is larger than any
 * seen before; compute then copies the answer out. Sorting is the stable merge sort
 * of index.c, so ties keep the input's order as ONNX's reference does.
 */
#include "index_int.h"

#include <math.h>

/* ------------------------------------------------------------------ */
/* Unique                                                              */
/* ------------------------------------------------------------------ */

/*
 * The input is viewed as [outer, len, inner]: `len` slices, each of outer * inner
 * elements, compared lexicographically in (outer, inner) order as numpy.unique does
 * after moving the axis to the front. Without an axis, outer = inner = 1.
 */
typedef struct uq_priv {
    bool has_axis;
    int64_t axis_attr;
    int sorted;
    void *buf; /* int64: perm, pos, grp, first, cnt, order - each [len] */
    size_t cap;
    int64_t outer, len, inner, u;
} uq_priv_t;

typedef struct uq_view {
    const dab_tensor_t *x;
    int64_t outer, len, inner;
} uq_view_t;

/* Three-way compare of elements a and b of x; floats order NaN above everything and
 * equal to itself (numpy collapses NaNs), -0.0 equal to 0.0. */
static int uq_cmp_elem(const dab_tensor_t *x, int64_t a, int64_t b)
{
#define UQ_CMP(T, LD)                                                       \
    do {                                                                    \
        const T *p_ = x->data;                                              \
        double va_ = (double)LD(p_[a]), vb_ = (double)LD(p_[b]);            \
        if (isnan(va_) || isnan(vb_))                                       \
            return isnan(va_) ? (isnan(vb_) ? 0 : 1) : -1;                  \
        return va_ < vb_ ? -1 : va_ > vb_ ? 1 : 0;                          \
    } while (0)
#define UQ_CMPI(T)                                                          \
    do {                                                                    \
        const T *p_ = x->data;                                              \
        return p_[a] < p_[b] ? -1 : p_[a] > p_[b] ? 1 : 0;                  \
    } while (0)
#define UQ_ID(v) (v)
    switch (x->dtype) {
    case DAB_DT_FLOAT: UQ_CMP(float, UQ_ID);
    case DAB_DT_DOUBLE: UQ_CMP(double, UQ_ID);
    case DAB_DT_FLOAT16: UQ_CMP(uint16_t, dab_f16_to_f32);
    case DAB_DT_BFLOAT16: UQ_CMP(uint16_t, dab_bf16_to_f32);
    case DAB_DT_INT8: UQ_CMPI(int8_t);
    case DAB_DT_INT16: UQ_CMPI(int16_t);
    case DAB_DT_INT32: UQ_CMPI(int32_t);
    case DAB_DT_INT64: UQ_CMPI(int64_t);
    case DAB_DT_UINT16: UQ_CMPI(uint16_t);
    case DAB_DT_UINT32: UQ_CMPI(uint32_t);
    case DAB_DT_UINT64: UQ_CMPI(uint64_t);
    default: UQ_CMPI(uint8_t); /* uint8, bool */
    }
#undef UQ_CMP
#undef UQ_CMPI
#undef UQ_ID
}

static int uq_cmp_slice(int64_t i, int64_t j, const void *ctx)
{
    const uq_view_t *v = ctx;
    for (int64_t o = 0; o < v->outer; o++) {
        int64_t bi = (o * v->len + i) * v->inner, bj = (o * v->len + j) * v->inner;
        for (int64_t e = 0; e < v->inner; e++) {
            int c = uq_cmp_elem(v->x, bi + e, bj + e);
            if (c)
                return c;
        }
    }
    return 0;
}

int dab_idx_unique_init(dab_node_t *node, dab_err_t *err)
{
    uq_priv_t *p = dab_calloc(1, sizeof *p);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "out of memory for the operator's state");
    const dab_attr_t *a = dab_attr_find(node, "axis");
    p->has_axis = a != NULL;
    p->axis_attr = a ? a->i : 0;
    int64_t s = dab_attr_int(node, "sorted", 1);
    if (s != 0 && s != 1) {
        dab_free(p);
        return dab_err_set(err, DAB_EINVAL, "attribute 'sorted' must be 0 or 1, got %lld",
                           (long long)s);
    }
    p->sorted = (int)s;
    node->priv = p;
    return 0;
}

void dab_idx_unique_exit(dab_node_t *node)
{
    uq_priv_t *p = node->priv;
    if (p)
        dab_free(p->buf);
    dab_op_free_priv(node);
}

int dab_idx_unique_reshape(dab_node_t *node, dab_err_t *err)
{
    uq_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0];
    int axis = -1, rc;
    if (p->has_axis && (rc = dab_norm_axis(p->axis_attr, x->rank, "attribute 'axis'", &axis, err)))
        return rc;
    p->outer = axis < 0 ? 1 : dab_idx_prod(x->dims, 0, axis);
    p->len = axis < 0 ? dab_tensor_numel(x) : x->dims[axis];
    p->inner = axis < 0 ? 1 : dab_idx_prod(x->dims, axis + 1, x->rank);
    int64_t n = p->len;
    size_t bytes;
    if (dab_mul_size((size_t)n, 6 * sizeof(int64_t), &bytes))
        return dab_err_set(err, DAB_ELIMIT, "input 'X' has too many slices (%lld)",
                           (long long)n);
    if ((rc = dab_idx_grow(&p->buf, &p->cap, bytes, err)))
        return rc;
    int64_t *perm = p->buf, *pos = perm + n, *grp = pos + n, *first = grp + n, *cnt = first + n,
            *order = cnt + n;
    uq_view_t v = {x, p->outer, p->len, p->inner};
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    /* an empty slice makes every slice equal: one group, the first */
    if (p->outer * p->inner > 0)
        dab_idx_sort(perm, pos, n, uq_cmp_slice, &v);
    /* groups in sorted order; the sort is stable, so a group's first member is its
     * first occurrence */
    int64_t u = 0;
    for (int64_t i = 0; i < n; i++) {
        if (i == 0 || (p->outer * p->inner > 0 && uq_cmp_slice(perm[i - 1], perm[i], &v))) {
            first[u] = perm[i];
            cnt[u] = 0;
            u++;
        }
        grp[perm[i]] = u - 1;
        cnt[u - 1]++;
    }
    /* output order: sorted groups as they are, or groups by first occurrence */
    if (p->sorted) {
        for (int64_t g = 0; g < u; g++)
            order[g] = pos[g] = g;
    } else {
        int64_t k = 0;
        for (int64_t i = 0; i < n; i++)
            if (first[grp[i]] == i) {
                order[k] = grp[i];
                pos[grp[i]] = k++;
            }
    }
    p->u = u;
    int64_t dims[DAB_MAX_RANK];
    if (axis < 0) {
        dab_tensor_set_shape(node->outputs[0], x->dtype, 1, &u);
    } else {
        memcpy(dims, x->dims, sizeof dims);
        dims[axis] = u;
        dab_tensor_set_shape(node->outputs[0], x->dtype, x->rank, dims);
    }
    for (int k = 1; k <= 3; k++) {
        dab_tensor_t *o = dab_idx_out(node, k);
        if (o)
            dab_tensor_set_shape(o, DAB_DT_INT64, 1, k == 2 ? &n : &u);
    }
    return 0;
}

int dab_idx_unique_compute(dab_node_t *node, dab_err_t *err)
{
    uq_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0];
    int64_t n = p->len, u = p->u;
    const int64_t *grp = (const int64_t *)p->buf + 2 * n, *pos = (const int64_t *)p->buf + n;
    const int64_t *first = grp + n, *cnt = first + n, *order = cnt + n;
    size_t row = (size_t)p->inner * dab_dtype_size(x->dtype);
    const char *src = x->data;
    char *dst = node->outputs[0]->data;
    for (int64_t o = 0; o < p->outer && row; o++)
        for (int64_t k = 0; k < u; k++)
            memcpy(dst + (size_t)(o * u + k) * row,
                   src + (size_t)(o * n + first[order[k]]) * row, row);
    dab_tensor_t *oi = dab_idx_out(node, 1), *oinv = dab_idx_out(node, 2),
                 *ocnt = dab_idx_out(node, 3);
    for (int64_t k = 0; k < u; k++) {
        if (oi)
            ((int64_t *)oi->data)[k] = first[order[k]];
        if (ocnt)
            ((int64_t *)ocnt->data)[k] = cnt[order[k]];
    }
    for (int64_t i = 0; oinv && i < n; i++)
        ((int64_t *)oinv->data)[i] = pos[grp[i]];
    return 0;
}

/* ------------------------------------------------------------------ */
/* NonMaxSuppression                                                   */
/* ------------------------------------------------------------------ */

/*
 * Per (batch, class): boxes scoring above score_threshold, by score descending (ties:
 * lower index first), are taken greedily unless their IoU with a box already taken
 * exceeds iou_threshold, up to max_output_boxes_per_class. IoU is computed in float;
 * a box of zero area overlaps nothing.
 */
typedef struct nms_priv {
    int center; /* center_point_box: [xc, yc, w, h] instead of two corners */
    void *buf;  /* int64: selected triples, then candidates, sort space, taken */
    size_t cap;
    int64_t nsel;
} nms_priv_t;

typedef struct nms_box {
    float x0, y0, x1, y1, area;
} nms_box_t;

int dab_idx_nms_init(dab_node_t *node, dab_err_t *err)
{
    int64_t c = dab_attr_int(node, "center_point_box", 0);
    if (c != 0 && c != 1)
        return dab_err_set(err, DAB_EINVAL, "attribute 'center_point_box' must be 0 or 1, got "
                           "%lld", (long long)c);
    nms_priv_t *p = dab_calloc(1, sizeof *p);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "out of memory for the operator's state");
    p->center = (int)c;
    node->priv = p;
    return 0;
}

void dab_idx_nms_exit(dab_node_t *node)
{
    nms_priv_t *p = node->priv;
    if (p)
        dab_free(p->buf);
    dab_op_free_priv(node);
}

static nms_box_t nms_box(const float *b, int center)
{
    nms_box_t r;
    if (center) {
        float hw = b[2] / 2, hh = b[3] / 2;
        r.x0 = b[0] - hw;
        r.x1 = b[0] + hw;
        r.y0 = b[1] - hh;
        r.y1 = b[1] + hh;
    } else {
        /* [y1, x1, y2, x2], either diagonal */
        r.y0 = fminf(b[0], b[2]);
        r.y1 = fmaxf(b[0], b[2]);
        r.x0 = fminf(b[1], b[3]);
        r.x1 = fmaxf(b[1], b[3]);
    }
    r.area = (r.x1 - r.x0) * (r.y1 - r.y0);
    return r;
}

static bool nms_suppresses(const nms_box_t *a, const nms_box_t *b, float iou_threshold)
{
    if (!(a->area > 0) || !(b->area > 0))
        return false;
    float w = fminf(a->x1, b->x1) - fmaxf(a->x0, b->x0);
    float h = fminf(a->y1, b->y1) - fmaxf(a->y0, b->y0);
    if (!(w > 0) || !(h > 0))
        return false;
    float inter = w * h;
    return inter / (a->area + b->area - inter) > iou_threshold;
}

typedef struct nms_sort_ctx {
    const float *scores;
} nms_sort_ctx_t;

static int nms_cmp(int64_t i, int64_t j, const void *ctx)
{
    const float *s = ((const nms_sort_ctx_t *)ctx)->scores;
    return s[i] > s[j] ? -1 : s[i] < s[j] ? 1 : 0;
}

/* Checks optional input i (absent: NULL) holds one value of dtype dt. */
static int nms_scalar(const dab_node_t *node, int i, const char *what, dab_dtype_t dt,
                      const dab_tensor_t **out, dab_err_t *err)
{
    const dab_tensor_t *t = dab_idx_in(node, i);
    *out = t;
    if (!t)
        return 0;
    if (t->dtype != dt)
        return dab_err_set(err, DAB_ETYPE, "input '%s' must be %s, got %s", what,
                           dab_dtype_name(dt), dab_dtype_name(t->dtype));
    if (dab_tensor_numel(t) != 1)
        return dab_err_set(err, DAB_ESHAPE, "input '%s' must hold one value, it has %lld", what,
                           (long long)dab_tensor_numel(t));
    return 0;
}

int dab_idx_nms_reshape(dab_node_t *node, dab_err_t *err)
{
    nms_priv_t *p = node->priv;
    const dab_tensor_t *boxes = node->inputs[0], *scores = node->inputs[1];
    if (scores->dtype != DAB_DT_FLOAT)
        return dab_err_set(err, DAB_ETYPE, "input 'scores' must be float, got %s",
                           dab_dtype_name(scores->dtype));
    if (boxes->rank != 3 || boxes->dims[2] != 4)
        return dab_err_set(err, DAB_ESHAPE, "input 'boxes' must be [batch, boxes, 4]");
    if (scores->rank != 3 || scores->dims[0] != boxes->dims[0] ||
        scores->dims[2] != boxes->dims[1])
        return dab_err_set(err, DAB_ESHAPE,
                           "input 'scores' must be [%lld, classes, %lld] to match 'boxes'",
                           (long long)boxes->dims[0], (long long)boxes->dims[1]);
    const dab_tensor_t *tmax, *tiou, *tsth;
    int rc;
    if ((rc = nms_scalar(node, 2, "max_output_boxes_per_class", DAB_DT_INT64, &tmax, err)) ||
        (rc = nms_scalar(node, 3, "iou_threshold", DAB_DT_FLOAT, &tiou, err)) ||
        (rc = nms_scalar(node, 4, "score_threshold", DAB_DT_FLOAT, &tsth, err)))
        return rc;
    /* absent or 0 (or negative) max_output_boxes_per_class selects nothing */
    int64_t max_out = tmax ? *(const int64_t *)tmax->data : 0;
    float iou = tiou ? *(const float *)tiou->data : 0.0f;
    bool has_sth = tsth != NULL;
    float sth = tsth ? *(const float *)tsth->data : 0.0f;
    if (!(iou >= 0 && iou <= 1))
        return dab_err_set(err, DAB_ERANGE, "input 'iou_threshold' %g is not in [0, 1]",
                           (double)iou);
    int64_t nb = boxes->dims[0], nc = scores->dims[1], n = boxes->dims[1];
    int64_t per_class = max_out > 0 ? DAB_MIN(max_out, n) : 0;
    /* selected triples: at most nb * nc * per_class of them, then 3 arrays of n */
    int64_t max_sel;
    size_t bytes, work;
    if (dab_mul_i64(nb * nc, per_class, &max_sel) ||
        dab_mul_size((size_t)max_sel, 3 * sizeof(int64_t), &bytes) ||
        dab_mul_size((size_t)n, 3 * sizeof(int64_t), &work) || bytes + work < bytes)
        return dab_err_set(err, DAB_ELIMIT, "too many boxes to select from");
    if ((rc = dab_idx_grow(&p->buf, &p->cap, bytes + work, err)))
        return rc;
    int64_t *sel = p->buf, *cand = sel + 3 * max_sel, *tmp = cand + n, *taken = tmp + n;
    const float *bx = boxes->data, *sc = scores->data;
    int64_t nsel = 0;
    for (int64_t b = 0; b < nb && per_class > 0; b++) {
        const float *bb = bx + b * n * 4;
        for (int64_t c = 0; c < nc; c++) {
            const float *s = sc + (b * nc + c) * n;
            int64_t m = 0;
            for (int64_t i = 0; i < n; i++)
                if (!has_sth || s[i] > sth)
                    cand[m++] = i;
            nms_sort_ctx_t ctx = {s};
            dab_idx_sort(cand, tmp, m, nms_cmp, &ctx);
            int64_t nt = 0;
            for (int64_t i = 0; i < m && nt < per_class; i++) {
                nms_box_t cb = nms_box(bb + cand[i] * 4, p->center);
                bool keep = true;
                for (int64_t j = 0; j < nt && keep; j++) {
                    nms_box_t tb = nms_box(bb + taken[j] * 4, p->center);
                    keep = !nms_suppresses(&cb, &tb, iou);
                }
                if (!keep)
                    continue;
                taken[nt++] = cand[i];
                sel[3 * nsel] = b;
                sel[3 * nsel + 1] = c;
                sel[3 * nsel + 2] = cand[i];
                nsel++;
            }
        }
    }
    p->nsel = nsel;
    int64_t dims[2] = {nsel, 3};
    dab_tensor_set_shape(node->outputs[0], DAB_DT_INT64, 2, dims);
    return 0;
}

int dab_idx_nms_compute(dab_node_t *node, dab_err_t *err)
{
    nms_priv_t *p = node->priv;
    if (p->nsel)
        memcpy(node->outputs[0]->data, p->buf, (size_t)p->nsel * 3 * sizeof(int64_t));
    return 0;
}
