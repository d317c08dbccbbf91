/*
 * image_layout.c - operators that only move elements: DepthToSpace (DCR and CRD),
 * SpaceToDepth, ReverseSequence and CenterCropPad. They work on any fixed-size dtype,
 * row by row: each output row is one strided copy from one input row (or a zero fill).
 */
#include "image_int.h"

/* ---- DepthToSpace / SpaceToDepth ---- */

static int block_attr(const dab_node_t *node, int64_t *b, dab_err_t *err)
{
    const dab_attr_t *a = dab_attr_find(node, "blocksize");
    if (!a || a->type != DAB_ATTR_INT)
        return dab_err_set(err, DAB_EINVAL, "attribute blocksize is required");
    if (a->i < 1 || a->i > INT32_MAX)
        return dab_err_set(err, DAB_EINVAL, "attribute blocksize %lld is outside [1, 2^31)",
                           (long long)a->i);
    *b = a->i;
    return 0;
}

/* CRD (column, row, depth) instead of the default DCR; DepthToSpace from opset 11 */
static int d2s_crd(const dab_node_t *node, bool *crd, dab_err_t *err)
{
    const char *m = node->opset >= 11 ? dab_attr_string(node, "mode", "DCR") : "DCR";
    if (strcmp(m, "DCR") && strcmp(m, "CRD"))
        return dab_err_set(err, DAB_EINVAL, "attribute mode '%s' is not DCR or CRD", m);
    *crd = !strcmp(m, "CRD");
    return 0;
}

int dab_img_d2s_init(dab_node_t *node, dab_err_t *err)
{
    int64_t b = 1;
    bool crd = false;
    int rc = block_attr(node, &b, err);
    return rc ? rc : d2s_crd(node, &crd, err);
}

int dab_img_s2d_init(dab_node_t *node, dab_err_t *err)
{
    int64_t b = 1;
    return block_attr(node, &b, err);
}

int dab_img_d2s_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    int64_t b = 1;
    int rc = block_attr(node, &b, err);
    if (rc)
        return rc;
    if (x->rank != 4)
        return dab_err_set(err, DAB_ESHAPE, "input must be 4-D [N, C, H, W], got rank %d",
                           x->rank);
    int64_t bb, od[4];
    if (dab_mul_i64(b, b, &bb) || x->dims[1] % bb)
        return dab_err_set(err, DAB_ESHAPE, "channels %lld are not a multiple of blocksize^2",
                           (long long)x->dims[1]);
    od[0] = x->dims[0];
    od[1] = x->dims[1] / bb;
    if (dab_mul_i64(x->dims[2], b, &od[2]) || dab_mul_i64(x->dims[3], b, &od[3]))
        return dab_err_set(err, DAB_ELIMIT, "the output would be too large");
    return dab_img_set_out(node, 0, x->dtype, 4, od, err);
}

int dab_img_d2s_compute(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    dab_tensor_t *y = node->outputs[0];
    int64_t b = 1;
    bool crd = false;
    int rc = block_attr(node, &b, err);
    if (rc || (rc = d2s_crd(node, &crd, err)))
        return rc;
    const size_t es = dab_dtype_size(x->dtype);
    const int64_t n = x->dims[0], c = x->dims[1], h = x->dims[2], w = x->dims[3];
    const int64_t oc = c / (b * b), ow = w * b;
    const int64_t rows = n * oc * h * b; /* output rows [n, oc, h * b + i] */
    int nt = dab_par_threads(node->ctx, dab_tensor_numel(y));
    DAB_PAR_FOR(nt, int64_t, row, rows,
        const int64_t i = row % b, hh = (row / b) % h, co = (row / (b * h)) % oc,
                      nn = row / (b * h * oc);
        char *dst = (char *)y->data + row * ow * (int64_t)es;
        for (int64_t j = 0; j < b; j++) {
            int64_t ci = crd ? co * b * b + i * b + j : (i * b + j) * oc + co;
            const char *src = (const char *)x->data + ((nn * c + ci) * h + hh) * w * (int64_t)es;
            dab_img_copy_strided(dst + j * (int64_t)es, b, src, 1, w, es);
        }
    );
    return 0;
}

int dab_img_s2d_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    int64_t b = 1;
    int rc = block_attr(node, &b, err);
    if (rc)
        return rc;
    if (x->rank != 4)
        return dab_err_set(err, DAB_ESHAPE, "input must be 4-D [N, C, H, W], got rank %d",
                           x->rank);
    if (x->dims[2] % b || x->dims[3] % b)
        return dab_err_set(err, DAB_ESHAPE, "height %lld and width %lld must be multiples of "
                           "blocksize %lld", (long long)x->dims[2], (long long)x->dims[3],
                           (long long)b);
    int64_t od[4] = {x->dims[0], 0, x->dims[2] / b, x->dims[3] / b}, bb;
    if (dab_mul_i64(b, b, &bb) || dab_mul_i64(x->dims[1], bb, &od[1]))
        return dab_err_set(err, DAB_ELIMIT, "the output would be too large");
    return dab_img_set_out(node, 0, x->dtype, 4, od, err);
}

int dab_img_s2d_compute(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    dab_tensor_t *y = node->outputs[0];
    int64_t b = 1;
    int rc = block_attr(node, &b, err);
    if (rc)
        return rc;
    const size_t es = dab_dtype_size(x->dtype);
    const int64_t n = x->dims[0], c = x->dims[1], h = x->dims[2], w = x->dims[3];
    const int64_t oc = c * b * b, oh = h / b, ow = w / b;
    const int64_t rows = n * oc * oh; /* output rows [n, (i * b + j) * c + ci, hh] */
    int nt = dab_par_threads(node->ctx, dab_tensor_numel(y));
    DAB_PAR_FOR(nt, int64_t, row, rows,
        const int64_t hh = row % oh, co = (row / oh) % oc, nn = row / (oh * oc);
        const int64_t ci = co % c, ij = co / c, i = ij / b, j = ij % b;
        const char *src =
            (const char *)x->data + (((nn * c + ci) * h + hh * b + i) * w + j) * (int64_t)es;
        dab_img_copy_strided((char *)y->data + row * ow * (int64_t)es, 1, src, b, ow, es);
    );
    return 0;
}

/* ---- ReverseSequence ---- */

static int revseq_axes(const dab_node_t *node, int *batch, int *time, dab_err_t *err)
{
    int64_t b = dab_attr_int(node, "batch_axis", 1), t = dab_attr_int(node, "time_axis", 0);
    if ((b != 0 && b != 1) || (t != 0 && t != 1) || b == t)
        return dab_err_set(err, DAB_EINVAL, "attributes batch_axis %lld and time_axis %lld must "
                           "be 0 and 1 in some order", (long long)b, (long long)t);
    *batch = (int)b;
    *time = (int)t;
    return 0;
}

int dab_img_revseq_init(dab_node_t *node, dab_err_t *err)
{
    int b = 1, t = 0;
    return revseq_axes(node, &b, &t, err);
}

int dab_img_revseq_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0], *lens = node->inputs[1];
    int b = 1, t = 0;
    int rc = revseq_axes(node, &b, &t, err);
    if (rc)
        return rc;
    if (x->rank < 2)
        return dab_err_set(err, DAB_ESHAPE, "input must have rank 2 or more, got %d", x->rank);
    if (lens->dtype != DAB_DT_INT64 && lens->dtype != DAB_DT_INT32)
        return dab_err_set(err, DAB_ETYPE, "input sequence_lens must be int64, got %s",
                           dab_dtype_name(lens->dtype));
    if (lens->rank != 1 || lens->dims[0] != x->dims[b])
        return dab_err_set(err, DAB_ESHAPE, "input sequence_lens must hold one length per batch "
                           "entry (%lld)", (long long)x->dims[b]);
    for (int64_t i = 0; i < lens->dims[0]; i++) {
        int64_t v = dab_tensor_get_i64(lens, i);
        if (v < 0 || v > x->dims[t])
            return dab_err_set(err, DAB_EINVAL, "input sequence_lens[%lld] = %lld is outside "
                               "[0, %lld]", (long long)i, (long long)v, (long long)x->dims[t]);
    }
    return dab_img_set_out(node, 0, x->dtype, x->rank, x->dims, err);
}

int dab_img_revseq_compute(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0], *lens = node->inputs[1];
    int b = 1, t = 0;
    int rc = revseq_axes(node, &b, &t, err);
    if (rc)
        return rc;
    const size_t es = dab_dtype_size(x->dtype);
    int64_t inner = 1;
    for (int d = 2; d < x->rank; d++)
        inner *= x->dims[d];
    const int64_t d1 = x->dims[1], slabs = x->dims[0] * d1;
    const size_t bytes = (size_t)inner * es;
    int nt = dab_par_threads(node->ctx, dab_tensor_numel(x));
    DAB_PAR_FOR(nt, int64_t, s, slabs,
        const int64_t i0 = s / d1, i1 = s % d1;
        const int64_t bi = b == 0 ? i0 : i1, ti = t == 0 ? i0 : i1;
        const int64_t len = dab_tensor_get_i64(lens, bi);
        const int64_t ts = ti < len ? len - 1 - ti : ti;
        const int64_t src = t == 0 ? ts * d1 + i1 : i0 * d1 + ts;
        memcpy((char *)node->outputs[0]->data + s * (int64_t)bytes,
               (const char *)x->data + src * (int64_t)bytes, bytes);
    );
    return 0;
}

/* ---- CenterCropPad ---- */

int dab_img_ccpad_init(dab_node_t *node, dab_err_t *err)
{
    int64_t axes[DAB_MAX_RANK];
    int n;
    return dab_img_attr_ints(node, "axes", INT32_MIN, INT32_MAX, axes, DAB_MAX_RANK, &n, err);
}

/* Per dim: the box of min(in, out) elements read from in at src0, written at dst0. */
static int ccpad_geometry(const dab_node_t *node, int64_t *out, int64_t *src0, int64_t *dst0,
                          dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    const int r = x->rank;
    int64_t axes_attr[DAB_MAX_RANK], shape[DAB_MAX_RANK];
    int na, ns;
    int rc = dab_img_attr_ints(node, "axes", INT32_MIN, INT32_MAX, axes_attr, DAB_MAX_RANK, &na,
                               err);
    if (rc || (rc = dab_read_ints(node->inputs[1], "input shape", shape, DAB_MAX_RANK, &ns, err)))
        return rc;
    int want = na >= 0 ? na : r;
    if (ns != want)
        return dab_err_set(err, DAB_ESHAPE, "input shape has %d values, %d are needed", ns, want);
    for (int d = 0; d < r; d++)
        out[d] = x->dims[d];
    bool seen[DAB_MAX_RANK] = {0};
    for (int i = 0; i < want; i++) {
        int a = i;
        if (na >= 0 && (rc = dab_norm_axis(axes_attr[i], r, "attribute axes value", &a, err)))
            return rc;
        if (seen[a])
            return dab_err_set(err, DAB_EINVAL, "attribute axes names axis %d twice", a);
        seen[a] = true;
        if (shape[i] < 0)
            return dab_err_set(err, DAB_EINVAL, "input shape value %lld is negative",
                               (long long)shape[i]);
        out[a] = shape[i];
    }
    for (int d = 0; d < r; d++) {
        int64_t in = x->dims[d];
        src0[d] = in > out[d] ? (in - out[d]) / 2 : 0;
        dst0[d] = out[d] > in ? (out[d] - in) / 2 : 0;
    }
    return 0;
}

int dab_img_ccpad_reshape(dab_node_t *node, dab_err_t *err)
{
    int64_t out[DAB_MAX_RANK], s0[DAB_MAX_RANK], d0[DAB_MAX_RANK];
    int rc = ccpad_geometry(node, out, s0, d0, err);
    if (rc)
        return rc;
    const dab_tensor_t *x = node->inputs[0];
    return dab_img_set_out(node, 0, x->dtype, x->rank, out, err);
}

int dab_img_ccpad_compute(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    dab_tensor_t *y = node->outputs[0];
    int64_t out[DAB_MAX_RANK], s0[DAB_MAX_RANK], d0[DAB_MAX_RANK], cnt[DAB_MAX_RANK];
    int rc = ccpad_geometry(node, out, s0, d0, err);
    if (rc)
        return rc;
    const int r = x->rank;
    const size_t es = dab_dtype_size(x->dtype);
    const int64_t total = dab_tensor_numel(y);
    bool pads = false, empty = false;
    for (int d = 0; d < r; d++) {
        cnt[d] = DAB_MIN(x->dims[d], out[d]);
        pads |= out[d] > x->dims[d];
        empty |= cnt[d] == 0;
    }
    if (pads || empty)
        memset(y->data, 0, (size_t)total * es);
    if (empty || total == 0)
        return 0;
    if (r == 0) {
        memcpy(y->data, x->data, es);
        return 0;
    }
    int64_t is[DAB_MAX_RANK], os[DAB_MAX_RANK], sx = 1, sy = 1;
    for (int d = r - 1; d >= 0; d--) {
        is[d] = sx;
        os[d] = sy;
        sx *= x->dims[d];
        sy *= out[d];
    }
    int64_t rows = 1;
    for (int d = 0; d + 1 < r; d++)
        rows *= cnt[d];
    const size_t run = (size_t)cnt[r - 1] * es;
    int nt = dab_par_threads(node->ctx, rows * cnt[r - 1]);
    DAB_PAR_FOR(nt, int64_t, row, rows,
        int64_t si = s0[r - 1], di = d0[r - 1], rem = row;
        for (int d = r - 2; d >= 0; d--) {
            int64_t k = rem % cnt[d];
            rem /= cnt[d];
            si += (s0[d] + k) * is[d];
            di += (d0[d] + k) * os[d];
        }
        memcpy((char *)y->data + di * (int64_t)es, (const char *)x->data + si * (int64_t)es, run);
    );
    return 0;
}
