/*
 * quant_conv.c - integer convolutions: ConvInteger (int32 out) and QLinearConv
 * (requantized to int8 / uint8, optional int32 bias), 1-D to 3-D with groups, strides,
 * dilations and explicit or automatic padding (the window attributes and output sizing
 * are Conv's, from nn_int.h).
 *
 * A reference kernel: compute first subtracts each output channel's weight zero point
 * into int32 weights in scratch, then every output element sums
 * (x - x_zero_point) * w' over its window in wrapping 32-bit arithmetic (ONNX
 * accumulates in int32). Padding contributes nothing, as if padded with x's zero point.
 */
#include "nn_int.h"
#include "quant_int.h"

#include <string.h>

typedef struct qconv_priv {
    bool qlinear; /* QLinearConv: inputs x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B */
    int64_t group;
    nn_win_attrs_t wa;
    dab_conv_geom_t g; /* from the last reshape */
} qconv_priv_t;

/* Input positions of the two operators. */
typedef struct qconv_io {
    const dab_tensor_t *x, *w, *zx, *zw, *sx, *sw, *sy, *zy, *bias;
} qconv_io_t;

static void qconv_inputs(const dab_node_t *node, bool qlinear, qconv_io_t *io)
{
    memset(io, 0, sizeof *io);
    io->x = node->inputs[0];
    if (qlinear) {
        io->sx = node->inputs[1];
        io->zx = node->inputs[2];
        io->w = node->inputs[3];
        io->sw = node->inputs[4];
        io->zw = node->inputs[5];
        io->sy = node->inputs[6];
        io->zy = node->inputs[7];
        io->bias = dab_q_in(node, 8);
    } else {
        io->w = node->inputs[1];
        io->zx = dab_q_in(node, 2);
        io->zw = dab_q_in(node, 3);
    }
}

int dab_q_conv_init(dab_node_t *node, dab_err_t *err)
{
    qconv_priv_t *p = dab_calloc(1, sizeof *p);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "out of memory for the operator's state");
    node->priv = p;
    p->qlinear = !strcmp(node->op_type, "QLinearConv");
    p->group = dab_attr_int(node, "group", 1);
    if (p->group < 1 || p->group > INT32_MAX)
        return dab_err_set(err, DAB_EINVAL, "attribute group = %lld must be >= 1",
                           (long long)p->group);
    return dab_nn_win_attrs(node, &p->wa, err);
}

/* Checks a per-output-channel parameter: one value or c_out of them. */
static int per_channel(const dab_tensor_t *t, int64_t c_out, const char *what, dab_err_t *err)
{
    if (dab_q_is_single(t) || (t->rank == 1 && t->dims[0] == c_out))
        return 0;
    char s[96];
    return dab_err_set(err, DAB_ESHAPE, "%s %s must be a scalar or hold %lld values", what,
                       dab_shape_str(t, s, sizeof s), (long long)c_out);
}

static int qconv_reshape(dab_node_t *node, dab_err_t *err)
{
    qconv_priv_t *p = node->priv;
    qconv_io_t io;
    qconv_inputs(node, p->qlinear, &io);
    const dab_tensor_t *x = io.x, *w = io.w;
    if (x->rank < 3)
        return dab_err_set(err, DAB_ESHAPE, "input x must be [N, C, spatial...], got rank %d",
                           x->rank);
    const int nsp = x->rank - 2;
    if (nsp > DAB_KSP)
        return dab_err_set(err, DAB_EUNSUPPORTED, "%d spatial dims (at most %d are supported)",
                           nsp, DAB_KSP);
    if (w->rank != x->rank)
        return dab_err_set(err, DAB_ESHAPE, "weights w have rank %d, x has rank %d", w->rank,
                           x->rank);
    if (!(DAB_DTM_Q8 & DAB_DTM(w->dtype)))
        return dab_err_set(err, DAB_ETYPE, "w must be int8 or uint8, got %s",
                           dab_dtype_name(w->dtype));
    if (io.zx && (io.zx->dtype != x->dtype || !dab_q_is_single(io.zx)))
        return dab_err_set(err, io.zx->dtype != x->dtype ? DAB_ETYPE : DAB_ESHAPE,
                           "x's zero point must be one %s value", dab_dtype_name(x->dtype));
    if (io.zw && io.zw->dtype != w->dtype)
        return dab_err_set(err, DAB_ETYPE, "w's zero point is %s but w is %s",
                           dab_dtype_name(io.zw->dtype), dab_dtype_name(w->dtype));
    int rc = dab_nn_win_check_rank(&p->wa, nsp, err);
    if (rc)
        return rc;
    dab_conv_geom_t *g = &p->g;
    memset(g, 0, sizeof *g);
    g->nsp = nsp;
    g->n = x->dims[0];
    g->group = p->group;
    g->c_in = x->dims[1];
    g->c_out = w->dims[0];
    if (w->dims[1] * p->group != g->c_in || g->c_out % p->group)
        return dab_err_set(err, DAB_ESHAPE,
                           "w [%lld, %lld, ...] does not fit x with %lld channels and group %lld",
                           (long long)w->dims[0], (long long)w->dims[1], (long long)g->c_in,
                           (long long)p->group);
    for (int i = 0; i < nsp; i++) {
        g->in[i] = x->dims[2 + i];
        g->k[i] = w->dims[2 + i];
        if (p->wa.n_kernel > 0 && p->wa.kernel[i] != g->k[i])
            return dab_err_set(err, DAB_ESHAPE, "attribute kernel_shape[%d] = %lld but w has %lld",
                               i, (long long)p->wa.kernel[i], (long long)g->k[i]);
        if (g->k[i] > INT32_MAX)
            return dab_err_set(err, DAB_ELIMIT, "kernel dim %d is too large", i);
        g->stride[i] = nn_win_stride(&p->wa, i);
        g->dil[i] = nn_win_dil(&p->wa, i);
        int64_t pl = p->wa.n_pads > 0 ? p->wa.pads[i] : 0;
        int64_t ph = p->wa.n_pads > 0 ? p->wa.pads[nsp + i] : 0;
        rc = dab_nn_win_out(p->wa.auto_pad, g->in[i], g->k[i], g->stride[i], g->dil[i], pl, ph, 0,
                            &g->out[i], &g->pad_lo[i], &g->pad_hi[i], i, err);
        if (rc)
            return rc;
    }
    dab_conv_geom_pad(g);
    if (io.zw && (rc = per_channel(io.zw, g->c_out, "w's zero point", err)))
        return rc;
    dab_dtype_t ydt = DAB_DT_INT32;
    if (p->qlinear) {
        if (io.sx->dtype != DAB_DT_FLOAT || io.sw->dtype != DAB_DT_FLOAT ||
            io.sy->dtype != DAB_DT_FLOAT)
            return dab_err_set(err, DAB_ETYPE, "x_scale, w_scale and y_scale must be float");
        if (!(DAB_DTM_Q8 & DAB_DTM(io.zy->dtype)))
            return dab_err_set(err, DAB_ETYPE, "y_zero_point must be int8 or uint8, got %s",
                               dab_dtype_name(io.zy->dtype));
        if (!dab_q_is_single(io.sx) || !dab_q_is_single(io.sy) || !dab_q_is_single(io.zy))
            return dab_err_set(err, DAB_ESHAPE,
                               "x_scale, y_scale and y_zero_point must be scalars");
        if ((rc = per_channel(io.sw, g->c_out, "w_scale", err)))
            return rc;
        if (io.bias && (io.bias->dtype != DAB_DT_INT32 || io.bias->rank != 1 ||
                        io.bias->dims[0] != g->c_out))
            return dab_err_set(err, DAB_ESHAPE, "bias B must be int32 [%lld]",
                               (long long)g->c_out);
        ydt = io.zy->dtype;
    }
    int64_t dims[DAB_MAX_RANK];
    dims[0] = g->n;
    dims[1] = g->c_out;
    for (int i = 0; i < nsp; i++)
        dims[2 + i] = g->out[i];
    if ((rc = dab_shape_check("output y", ydt, x->rank, dims, 0, NULL, err)))
        return rc;
    dab_tensor_set_shape(node->outputs[0], ydt, x->rank, dims);
    /* scratch: the weights less their zero points, as int32 */
    size_t wn = (size_t)dab_tensor_numel(w), bytes;
    if (dab_mul_size(wn, sizeof(int32_t), &bytes))
        return dab_err_set(err, DAB_ERANGE, "weights w are too large");
    node->scratch_bytes = bytes;
    return 0;
}

int dab_q_convint_reshape(dab_node_t *node, dab_err_t *err)
{
    return qconv_reshape(node, err);
}

int dab_q_qlconv_reshape(dab_node_t *node, dab_err_t *err)
{
    return qconv_reshape(node, err);
}

/* Sum over output element (b, oc, o0, o1, o2)'s window. wq: oc's weights [cin_g][k...]. */
static uint32_t qconv_window(const dab_conv_geom_t *g, dab_dtype_t xdt, const void *xb,
                             int64_t cin_g, int32_t zx, const int32_t *wq, int64_t o0,
                             int64_t o1, int64_t o2)
{
    const int64_t kvol = g->k[0] * g->k[1] * g->k[2];
    const int64_t plane = g->in[0] * g->in[1] * g->in[2];
    uint32_t acc = 0;
    for (int64_t k0 = 0; k0 < g->k[0]; k0++) {
        int64_t i0 = o0 * g->stride[0] - g->pad_lo[0] + k0 * g->dil[0];
        if (i0 < 0 || i0 >= g->in[0])
            continue;
        for (int64_t k1 = 0; k1 < g->k[1]; k1++) {
            int64_t i1 = o1 * g->stride[1] - g->pad_lo[1] + k1 * g->dil[1];
            if (i1 < 0 || i1 >= g->in[1])
                continue;
            for (int64_t k2 = 0; k2 < g->k[2]; k2++) {
                int64_t i2 = o2 * g->stride[2] - g->pad_lo[2] + k2 * g->dil[2];
                if (i2 < 0 || i2 >= g->in[2])
                    continue;
                int64_t xo = (i0 * g->in[1] + i1) * g->in[2] + i2;
                int64_t wo = (k0 * g->k[1] + k1) * g->k[2] + k2;
                for (int64_t c = 0; c < cin_g; c++) {
                    int64_t xi = c * plane + xo;
                    int32_t xv = xdt == DAB_DT_UINT8 ? ((const uint8_t *)xb)[xi]
                                                     : ((const int8_t *)xb)[xi];
                    acc += (uint32_t)((xv - zx) * wq[c * kvol + wo]);
                }
            }
        }
    }
    return acc;
}

int dab_q_conv_compute(dab_node_t *node, dab_err_t *err)
{
    const qconv_priv_t *p = node->priv;
    const dab_conv_geom_t *g = &p->g;
    qconv_io_t io;
    qconv_inputs(node, p->qlinear, &io);
    dab_tensor_t *y = node->outputs[0];
    if (dab_tensor_numel(y) == 0)
        return 0;
    const int64_t cout_g = g->c_out / g->group, cin_g = g->c_in / g->group;
    const int64_t kvol = g->k[0] * g->k[1] * g->k[2];
    const int64_t wper = cin_g * kvol; /* weights of one output channel */
    int32_t *wq = node->scratch;
    for (int64_t oc = 0; oc < g->c_out; oc++) {
        int32_t zw = io.zw ? dab_q_geti(io.zw, dab_q_is_single(io.zw) ? 0 : oc) : 0;
        for (int64_t i = 0; i < wper; i++)
            wq[oc * wper + i] = dab_q_geti(io.w, oc * wper + i) - zw;
    }
    const int32_t zx = io.zx ? dab_q_geti(io.zx, 0) : 0;
    const int64_t plane_in = g->in[0] * g->in[1] * g->in[2];
    const int64_t plane_out = g->out[0] * g->out[1] * g->out[2];
    const size_t xes = dab_dtype_size(io.x->dtype);
    int32_t lo = 0, hi = 0, zy = 0;
    float sx = 0, sy = 0;
    if (p->qlinear) {
        dab_q_int_range(y->dtype, &lo, &hi);
        zy = dab_q_geti(io.zy, 0);
        sx = dab_q_getf(io.sx, 0);
        sy = dab_q_getf(io.sy, 0);
    }
    int64_t items = g->n * g->c_out;
    int nt = dab_par_threads(node->ctx, dab_q_work(items * plane_out, wper));
    DAB_PAR_FOR(nt, int64_t, it, items,
        int64_t b = it / g->c_out, oc = it % g->c_out, grp = oc / cout_g;
        const char *xb = (const char *)io.x->data +
                         (size_t)((b * g->c_in + grp * cin_g) * plane_in) * xes;
        const int32_t *wo = wq + oc * wper;
        uint32_t bias = io.bias ? (uint32_t)((const int32_t *)io.bias->data)[oc] : 0;
        double mult = 0;
        if (p->qlinear)
            mult = dab_q_mult(DAB_DT_FLOAT, sx,
                              dab_q_getf(io.sw, dab_q_is_single(io.sw) ? 0 : oc), sy);
        int64_t yo = it * plane_out;
        for (int64_t o0 = 0; o0 < g->out[0]; o0++)
            for (int64_t o1 = 0; o1 < g->out[1]; o1++)
                for (int64_t o2 = 0; o2 < g->out[2]; o2++, yo++) {
                    uint32_t acc = bias + qconv_window(g, io.x->dtype, xb, cin_g, zx, wo,
                                                       o0, o1, o2);
                    if (p->qlinear)
                        dab_q_put8(y->dtype, y->data, yo,
                                   dab_q_requant((int32_t)acc, mult, zy, lo, hi));
                    else
                        ((int32_t *)y->data)[yo] = (int32_t)acc;
                }
    );
    return 0;
}
