/*
 * nn_pool.c - MaxPool (with its optional Indices output), AveragePool, GlobalMaxPool and
 * GlobalAveragePool over 1-D, 2-D and 3-D inputs.
 *
 * Output sizing follows ONNX (explicit pads with floor or ceil_mode, where the last
 * window must start inside the input or its left padding; SAME_UPPER/SAME_LOWER/VALID).
 * float32 without Indices runs on oneDNN pooling cached per geometry, unless oneDNN's
 * averaging would differ (count_include_pad over a ceil_mode extension); everything else
 * (Indices, int8/uint8, float64) runs on the reference kernels.
 */
#include "nn_int.h"

#include <string.h>

typedef struct pool_priv {
    int is_max;
    nn_win_attrs_t wa;
    int ceil_mode, count_include_pad, storage_order;
    nn_cache_t cache;
    /* decided by reshape for the following compute */
    dab_pool_geom_t geom;
    dab_dnnl_prim_t *prim; /* NULL: reference kernel */
    int empty;
} pool_priv_t;

typedef struct pool_key {
    dab_pool_geom_t g;
    int is_max, threads;
} pool_key_t;

static int flag_attr(const dab_node_t *node, const char *name, int *out, dab_err_t *err)
{
    int64_t v = dab_attr_int(node, name, 0);
    if (v != 0 && v != 1)
        return dab_err_set(err, DAB_EINVAL, "attribute %s must be 0 or 1, got %lld", name,
                           (long long)v);
    *out = (int)v;
    return 0;
}

static int pool_init(dab_node_t *node, int is_max, dab_err_t *err)
{
    pool_priv_t *p = dab_calloc(1, sizeof *p);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "no memory for the operator state");
    p->is_max = is_max;
    int rc = dab_nn_win_attrs(node, &p->wa, err);
    if (!rc && p->wa.n_kernel <= 0)
        rc = dab_err_set(err, DAB_EINVAL, "attribute kernel_shape is required");
    if (!rc)
        rc = flag_attr(node, "ceil_mode", &p->ceil_mode, err);
    if (!rc)
        rc = flag_attr(node, "count_include_pad", &p->count_include_pad, err);
    if (!rc)
        rc = flag_attr(node, "storage_order", &p->storage_order, err);
    if (rc) {
        dab_free(p);
        return rc;
    }
    node->priv = p;
    return 0;
}

int dab_nn_maxpool_init(dab_node_t *node, dab_err_t *err)
{
    return pool_init(node, 1, err);
}

int dab_nn_avgpool_init(dab_node_t *node, dab_err_t *err)
{
    return pool_init(node, 0, err);
}

void dab_nn_pool_exit(dab_node_t *node)
{
    pool_priv_t *p = node->priv;
    if (!p)
        return;
    dab_nn_cache_clear(&p->cache);
    dab_free(p);
    node->priv = NULL;
}

static dab_tensor_t *indices_out(const dab_node_t *node)
{
    return node->n_outputs > 1 ? node->outputs[1] : NULL;
}

int dab_nn_pool_reshape(dab_node_t *node, dab_err_t *err)
{
    pool_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0];
    dab_tensor_t *y = node->outputs[0], *ind = indices_out(node);
    if (x->rank < 3)
        return dab_err_set(err, DAB_ESHAPE, "input X must be [N, C, spatial...], got rank %d",
                           x->rank);
    const int nsp = x->rank - 2;
    if (nsp > DAB_KSP)
        return dab_err_set(err, DAB_EUNSUPPORTED, "%d spatial dims (at most %d are supported)", nsp,
                           DAB_KSP);
    int rc = dab_nn_win_check_rank(&p->wa, nsp, err);
    if (rc)
        return rc;
    dab_pool_geom_t *g = &p->geom;
    memset(g, 0, sizeof *g);
    g->nsp = nsp;
    g->n = x->dims[0];
    g->c = x->dims[1];
    g->count_include_pad = p->is_max ? 0 : p->count_include_pad;
    g->storage_order = p->storage_order;
    int64_t dims[DAB_MAX_RANK];
    dims[0] = g->n;
    dims[1] = g->c;
    for (int i = 0; i < nsp; i++) {
        g->in[i] = x->dims[2 + i];
        g->k[i] = p->wa.kernel[i];
        g->stride[i] = nn_win_stride(&p->wa, i);
        g->dil[i] = nn_win_dil(&p->wa, i);
        int64_t pl = p->wa.n_pads > 0 ? p->wa.pads[i] : 0;
        int64_t ph = p->wa.n_pads > 0 ? p->wa.pads[nsp + i] : 0;
        rc = dab_nn_win_out(p->wa.auto_pad, g->in[i], g->k[i], g->stride[i], g->dil[i], pl, ph,
                            p->ceil_mode, &g->out[i], &g->pad_lo[i], &g->pad_hi[i], i, err);
        if (rc)
            return rc;
        dims[2 + i] = g->out[i];
    }
    dab_pool_geom_pad(g);
    size_t bytes;
    if ((rc = dab_shape_check("output Y", x->dtype, x->rank, dims, 0, &bytes, err)))
        return rc;
    dab_tensor_set_shape(y, x->dtype, x->rank, dims);
    if (ind)
        dab_tensor_set_shape(ind, DAB_DT_INT64, x->rank, dims);

    node->scratch_bytes = 0;
    p->prim = NULL;
    p->empty = dab_tensor_numel(y) == 0;
    if (p->empty || ind || x->dtype != DAB_DT_FLOAT || dab_tensor_numel(x) == 0)
        return 0;
    pool_key_t key;
    memset(&key, 0, sizeof key);
    key.g = *g;
    key.is_max = p->is_max;
    key.threads = nn_dnnl_threads(node->ctx, dab_tensor_numel(y) * g->k[0] * g->k[1] * g->k[2]);
    nn_cache_entry_t *e = dab_nn_cache_find(&p->cache, &key, sizeof key);
    if (!e) {
        e = dab_nn_cache_insert(&p->cache, &key, sizeof key);
        dab_err_t derr;
        rc = dab_dnnl_pool_create(g, p->is_max, key.threads, &e->prim, &derr);
        if (rc && rc != DAB_EUNSUPPORTED) {
            e->used = 0;
            *err = derr;
            return rc;
        }
    }
    if (e->prim) {
        p->prim = e->prim;
        node->scratch_bytes = dab_dnnl_prim_scratch_bytes(e->prim);
    }
    return 0;
}

int dab_nn_pool_compute(dab_node_t *node, dab_err_t *err)
{
    pool_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0];
    dab_tensor_t *y = node->outputs[0], *ind = indices_out(node);
    if (p->empty)
        return 0;
    if (p->prim)
        return dab_dnnl_prim_run(p->prim, x->data, NULL, NULL, y->data, node->scratch, err);
    const dab_pool_geom_t *g = &p->geom;
    int nt = dab_par_threads(node->ctx, dab_tensor_numel(y) * g->k[0] * g->k[1] * g->k[2]);
    int rc = p->is_max ? dab_ref_maxpool(x->dtype, g, x->data, y->data,
                                         ind ? (int64_t *)ind->data : NULL, nt)
                       : dab_ref_avgpool(x->dtype, g, x->data, y->data, nt);
    if (rc)
        return dab_err_set(err, rc, "dtype %s is not supported", dab_dtype_name(x->dtype));
    return 0;
}

/* ---- global pools ---- */

int dab_nn_global_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    if (x->rank < 2)
        return dab_err_set(err, DAB_ESHAPE, "input X must be [N, C, spatial...], got rank %d",
                           x->rank);
    int64_t dims[DAB_MAX_RANK];
    dims[0] = x->dims[0];
    dims[1] = x->dims[1];
    for (int i = 2; i < x->rank; i++)
        dims[i] = 1;
    dab_tensor_set_shape(node->outputs[0], x->dtype, x->rank, dims);
    return 0;
}

static int global_compute(dab_node_t *node, int is_max, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    dab_tensor_t *y = node->outputs[0];
    int64_t planes = x->dims[0] * x->dims[1];
    if (planes == 0)
        return 0;
    int64_t spatial = dab_tensor_numel(x) / planes;
    int nt = dab_par_threads(node->ctx, dab_tensor_numel(x));
    int rc = dab_ref_global_pool(x->dtype, is_max, planes, spatial, x->data, y->data, nt);
    if (rc)
        return dab_err_set(err, rc, "dtype %s is not supported", dab_dtype_name(x->dtype));
    return 0;
}

int dab_nn_global_max_compute(dab_node_t *node, dab_err_t *err)
{
    return global_compute(node, 1, err);
}

int dab_nn_global_avg_compute(dab_node_t *node, dab_err_t *err)
{
    return global_compute(node, 0, err);
}
