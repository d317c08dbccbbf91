/*
 * nn_conv.c - Conv and ConvTranspose (1-D, 2-D and 3-D; groups, strides, dilations,
 * explicit or automatic padding; ConvTranspose's output_padding and output_shape).
 *
 * reshape turns attributes and shapes into a dab_conv_geom_t; float32 runs on a oneDNN
 * (de)convolution cached per geometry, with constant weights packed once; float64 and
 * whatever oneDNN declines (e.g. negative ConvTranspose padding) run on the reference.
 */
#include "nn_int.h"

#include <string.h>

typedef struct conv_priv {
    int transposed;
    int64_t group;
    nn_win_attrs_t wa;
    int n_outpad, n_outshape; /* -1 when absent */
    const int64_t *outpad, *outshape;
    const void *const_w; /* W's data when W is an initializer */
    dab_act_t act;       /* fused by the graph optimizer: oneDNN post-op or applied after */
    nn_cache_t cache;
    /* decided by reshape for the following compute */
    dab_conv_geom_t geom;
    dab_dnnl_prim_t *prim; /* NULL: reference kernel */
    int empty;             /* nothing to compute */
} conv_priv_t;

typedef struct conv_key {
    dab_conv_geom_t g;
    int transposed, bias, packed, threads;
} conv_key_t;

static int conv_init(dab_node_t *node, int transposed, dab_err_t *err)
{
    conv_priv_t *p = dab_calloc(1, sizeof *p);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "no memory for the operator state");
    int rc = dab_nn_win_attrs(node, &p->wa, err);
    if (rc)
        goto fail;
    p->transposed = transposed;
    p->group = dab_attr_int(node, "group", 1);
    if (p->group < 1 || p->group > INT32_MAX) {
        rc = dab_err_set(err, DAB_EINVAL, "attribute group = %lld must be >= 1",
                         (long long)p->group);
        goto fail;
    }
    p->n_outpad = dab_attr_ints(node, "output_padding", &p->outpad);
    p->n_outshape = dab_attr_ints(node, "output_shape", &p->outshape);
    for (int i = 0; i < p->n_outpad; i++)
        if (p->outpad[i] < 0 || p->outpad[i] > INT32_MAX) {
            rc = dab_err_set(err, DAB_EINVAL, "attribute output_padding[%d] = %lld is out of range",
                             i, (long long)p->outpad[i]);
            goto fail;
        }
    for (int i = 0; i < p->n_outshape; i++)
        if (p->outshape[i] < 0 || p->outshape[i] > INT32_MAX) {
            rc = dab_err_set(err, DAB_EINVAL, "attribute output_shape[%d] = %lld is out of range",
                             i, (long long)p->outshape[i]);
            goto fail;
        }
    p->const_w = nn_const_data(node, 1);
    if ((rc = nn_fused_act(node, &p->act, err)))
        goto fail;
    node->priv = p;
    return 0;
fail:
    dab_free(p);
    return rc;
}

int dab_nn_conv_init(dab_node_t *node, dab_err_t *err)
{
    return conv_init(node, 0, err);
}

int dab_nn_convt_init(dab_node_t *node, dab_err_t *err)
{
    return conv_init(node, 1, err);
}

void dab_nn_conv_exit(dab_node_t *node)
{
    conv_priv_t *p = node->priv;
    if (!p)
        return;
    dab_nn_cache_clear(&p->cache);
    dab_free(p);
    node->priv = NULL;
}

/* ConvTranspose output size and pads of spatial dim i. */
static int convt_dim(const conv_priv_t *p, int nsp, int i, dab_conv_geom_t *g, dab_err_t *err)
{
    const nn_win_attrs_t *wa = &p->wa;
    const int64_t in = g->in[i], s = g->stride[i];
    const int64_t kd = (g->k[i] - 1) * g->dil[i] + 1;
    const int64_t op = p->n_outpad > 0 ? p->outpad[i] : 0;
    int64_t out, pl, ph;
    int same = wa->auto_pad == NN_PAD_SAME_UPPER || wa->auto_pad == NN_PAD_SAME_LOWER;
    if (p->n_outshape > 0 || same) {
        if (p->n_outshape > 0)
            out = p->outshape[p->n_outshape == nsp ? i : i + 2];
        else
            out = in * s;
        /* total is negative when the output is larger than the kernel reaches: halves
         * round down (floor), as ONNX's reference does, so the unreached end is zeros */
        int64_t total = s * (in - 1) + op + kd - out;
        int64_t half = total >= 0 ? total / 2 : -((-total + 1) / 2);
        if (wa->auto_pad == NN_PAD_SAME_UPPER) {
            pl = half;
            ph = total - half;
        } else {
            pl = total - half;
            ph = half;
        }
    } else {
        pl = wa->auto_pad != NN_PAD_VALID && wa->n_pads > 0 ? wa->pads[i] : 0;
        ph = wa->auto_pad != NN_PAD_VALID && wa->n_pads > 0 ? wa->pads[nsp + i] : 0;
        out = s * (in - 1) + op + kd - pl - ph;
        if (out < 0)
            return dab_err_set(err, DAB_ESHAPE,
                               "spatial dim %d: pads %lld+%lld exceed the full output %lld", i,
                               (long long)pl, (long long)ph, (long long)(out + pl + ph));
    }
    g->out[i] = out;
    g->pad_lo[i] = pl;
    g->pad_hi[i] = ph;
    return 0;
}

int dab_nn_conv_reshape(dab_node_t *node, dab_err_t *err)
{
    conv_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0], *w = node->inputs[1];
    const dab_tensor_t *b = node->n_inputs > 2 ? node->inputs[2] : NULL;
    dab_tensor_t *y = node->outputs[0];
    if (x->rank < 3)
        return dab_err_set(err, DAB_ESHAPE, "input X must be [N, C, spatial...], got rank %d",
                           x->rank);
    const int nsp = x->rank - 2;
    if (nsp > DAB_KSP)
        return dab_err_set(err, DAB_EUNSUPPORTED, "%d spatial dims (at most %d are supported)", nsp,
                           DAB_KSP);
    if (w->rank != x->rank)
        return dab_err_set(err, DAB_ESHAPE, "weights W have rank %d, X has rank %d", w->rank,
                           x->rank);
    if (w->dtype != x->dtype || (b && b->dtype != x->dtype))
        return dab_err_set(err, DAB_ETYPE, "W and B must have X's dtype %s",
                           dab_dtype_name(x->dtype));
    int rc = dab_nn_win_check_rank(&p->wa, nsp, err);
    if (rc)
        return rc;
    if (p->transposed && p->n_outpad > 0 && p->n_outpad != nsp)
        return dab_err_set(err, DAB_EINVAL,
                           "attribute output_padding has %d values for %d spatial dims",
                           p->n_outpad, nsp);
    if (p->transposed && p->n_outshape > 0 && p->n_outshape != nsp && p->n_outshape != nsp + 2)
        return dab_err_set(err, DAB_EINVAL,
                           "attribute output_shape has %d values for %d spatial dims",
                           p->n_outshape, nsp);

    dab_conv_geom_t *g = &p->geom;
    memset(g, 0, sizeof *g);
    g->nsp = nsp;
    g->n = x->dims[0];
    g->group = p->group;
    g->c_in = x->dims[1];
    if (!p->transposed) {
        g->c_out = w->dims[0];
        if (w->dims[1] * p->group != g->c_in || g->c_out % p->group)
            return dab_err_set(
                err, DAB_ESHAPE,
                "W [%lld, %lld, ...] does not fit X with %lld channels and group %lld",
                (long long)w->dims[0], (long long)w->dims[1], (long long)g->c_in,
                (long long)p->group);
    } else {
        if (w->dims[0] != g->c_in || g->c_in % p->group)
            return dab_err_set(
                err, DAB_ESHAPE,
                "W [%lld, %lld, ...] does not fit X with %lld channels and group %lld",
                (long long)w->dims[0], (long long)w->dims[1], (long long)g->c_in,
                (long long)p->group);
        if (dab_mul_i64(w->dims[1], p->group, &g->c_out))
            return dab_err_set(err, DAB_ERANGE, "output channels overflow");
    }
    if (b && (b->rank != 1 || b->dims[0] != g->c_out))
        return dab_err_set(err, DAB_ESHAPE, "bias B must be [%lld], got rank %d with %lld values",
                           (long long)g->c_out, b->rank, (long long)dab_tensor_numel(b));
    for (int i = 0; i < nsp; i++) {
        g->in[i] = x->dims[2 + i];
        g->k[i] = w->dims[2 + i];
        if (p->wa.n_kernel > 0 && p->wa.kernel[i] != g->k[i])
            return dab_err_set(err, DAB_ESHAPE, "attribute kernel_shape[%d] = %lld but W has %lld",
                               i, (long long)p->wa.kernel[i], (long long)g->k[i]);
        if (g->k[i] > INT32_MAX)
            return dab_err_set(err, DAB_ELIMIT, "kernel dim %d is too large", i);
        g->stride[i] = nn_win_stride(&p->wa, i);
        g->dil[i] = nn_win_dil(&p->wa, i);
        if (p->transposed) {
            rc = convt_dim(p, nsp, i, g, err);
        } else {
            int64_t pl = p->wa.n_pads > 0 ? p->wa.pads[i] : 0;
            int64_t ph = p->wa.n_pads > 0 ? p->wa.pads[nsp + i] : 0;
            rc = dab_nn_win_out(p->wa.auto_pad, g->in[i], g->k[i], g->stride[i], g->dil[i], pl, ph,
                                0, &g->out[i], &g->pad_lo[i], &g->pad_hi[i], i, err);
        }
        if (rc)
            return rc;
    }
    dab_conv_geom_pad(g);
    g->act = p->act;
    int64_t dims[DAB_MAX_RANK];
    dims[0] = g->n;
    dims[1] = g->c_out;
    for (int i = 0; i < nsp; i++)
        dims[2 + i] = g->out[i];
    size_t bytes;
    if ((rc = dab_shape_check("output Y", x->dtype, x->rank, dims, 0, &bytes, err)))
        return rc;
    dab_tensor_set_shape(y, x->dtype, x->rank, dims);

    node->scratch_bytes = 0;
    p->prim = NULL;
    p->empty = dab_tensor_numel(y) == 0;
    if (p->empty || x->dtype != DAB_DT_FLOAT || dab_tensor_numel(x) == 0 ||
        dab_tensor_numel(w) == 0)
        return 0;

    conv_key_t key;
    memset(&key, 0, sizeof key);
    key.g = *g;
    key.transposed = p->transposed;
    key.bias = b != NULL;
    const float *cw = p->const_w && w->data == p->const_w ? p->const_w : NULL;
    key.packed = cw != NULL;
    int64_t macs = dab_tensor_numel(p->transposed ? x : y) * (p->transposed ? g->c_out : g->c_in) /
                   g->group * g->k[0] * g->k[1] * g->k[2];
    key.threads = nn_dnnl_threads(node->ctx, macs);
    nn_cache_entry_t *e = dab_nn_cache_find(&p->cache, &key, sizeof key);
    if (!e) {
        e = dab_nn_cache_insert(&p->cache, &key, sizeof key);
        dab_err_t derr;
        rc = dab_dnnl_conv_create(g, p->transposed, b != NULL, cw, key.threads, &e->prim, &derr);
        if (rc && rc != DAB_EUNSUPPORTED) {
            e->used = 0;
            *err = derr;
            return rc;
        }
        dab_nn_cache_share(&p->cache, e);
    }
    if (e->prim) {
        p->prim = e->prim;
        node->scratch_bytes = dab_dnnl_prim_scratch_bytes(e->prim);
    }
    return 0;
}

int dab_nn_conv_compute(dab_node_t *node, dab_err_t *err)
{
    conv_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0], *w = node->inputs[1];
    const dab_tensor_t *b = node->n_inputs > 2 ? node->inputs[2] : NULL;
    dab_tensor_t *y = node->outputs[0];
    if (p->empty)
        return 0;
    const void *bd = b ? b->data : NULL;
    if (p->prim)
        return dab_dnnl_prim_run(p->prim, x->data, w->data, bd, y->data, node->scratch, err);
    const dab_conv_geom_t *g = &p->geom;
    int64_t work = dab_tensor_numel(y) * (g->c_in / g->group) * g->k[0] * g->k[1] * g->k[2];
    if (p->transposed)
        work = dab_tensor_numel(x) * (g->c_out / g->group) * g->k[0] * g->k[1] * g->k[2];
    int nt = dab_par_threads(node->ctx, work);
    int rc = p->transposed ? dab_ref_conv_transpose(x->dtype, g, x->data, w->data, bd, y->data, nt)
                           : dab_ref_conv(x->dtype, g, x->data, w->data, bd, y->data, nt);
    if (!rc)
        rc = dab_act_apply(&p->act, y->dtype, y->data, dab_tensor_numel(y), nt);
    if (rc)
        return dab_err_set(err, rc, "dtype %s is not supported", dab_dtype_name(x->dtype));
    return 0;
}
