/*
 * nn.c - the neural-network operator family: its table (Gemm, MatMul, Conv,
 * ConvTranspose, the pools, BatchNormalization), and what its files share: the per-node
 * oneDNN primitive cache and the window-attribute rules of Conv and the pools.
 * The operators themselves live in nn_gemm.c, nn_conv.c, nn_pool.c and nn_norm.c.
 */
#include "nn_int.h"

#include <string.h>

/* ---- primitive cache ---- */

nn_cache_entry_t *dab_nn_cache_find(nn_cache_t *c, const void *key, size_t key_len)
{
    for (int i = 0; i < NN_CACHE_N; i++) {
        nn_cache_entry_t *e = &c->e[i];
        if (e->used && e->key_len == key_len && !memcmp(e->key, key, key_len)) {
            e->last_use = ++c->tick;
            return e;
        }
    }
    return NULL;
}

nn_cache_entry_t *dab_nn_cache_insert(nn_cache_t *c, const void *key, size_t key_len)
{
    nn_cache_entry_t *victim = &c->e[0];
    for (int i = 0; i < NN_CACHE_N; i++) {
        nn_cache_entry_t *e = &c->e[i];
        if (!e->used) {
            victim = e;
            break;
        }
        if (e->last_use < victim->last_use)
            victim = e;
    }
    dab_dnnl_prim_free(victim->prim);
    victim->prim = NULL;
    victim->used = 1;
    victim->key_len = key_len;
    memcpy(victim->key, key, key_len);
    victim->last_use = ++c->tick;
    return victim;
}

void dab_nn_cache_share(nn_cache_t *c, nn_cache_entry_t *e)
{
    for (int i = 0; e->prim && i < NN_CACHE_N; i++)
        if (&c->e[i] != e && c->e[i].used && c->e[i].prim &&
            dab_dnnl_prim_share_weights(e->prim, c->e[i].prim))
            return;
}

void dab_nn_cache_clear(nn_cache_t *c)
{
    for (int i = 0; i < NN_CACHE_N; i++) {
        dab_dnnl_prim_free(c->e[i].prim);
        c->e[i].prim = NULL;
        c->e[i].used = 0;
    }
}

/* ---- window attributes ---- */

static int read_list(const dab_node_t *node, const char *name, int64_t min, int *n,
                     const int64_t **vals, dab_err_t *err)
{
    const dab_attr_t *a = dab_attr_find(node, name);
    if (!a) {
        *n = -1;
        *vals = NULL;
        return 0;
    }
    if (a->type != DAB_ATTR_INTS)
        return dab_err_set(err, DAB_EINVAL, "attribute %s must be a list of ints", name);
    for (int i = 0; i < a->n; i++)
        if (a->ints[i] < min || a->ints[i] > INT32_MAX)
            return dab_err_set(err, DAB_EINVAL,
                               "attribute %s[%d] = %lld is out of range [%lld, %d]", name, i,
                               (long long)a->ints[i], (long long)min, INT32_MAX);
    *n = a->n;
    *vals = a->ints;
    return 0;
}

int dab_nn_win_attrs(const dab_node_t *node, nn_win_attrs_t *wa, dab_err_t *err)
{
    memset(wa, 0, sizeof *wa);
    const char *ap = dab_attr_string(node, "auto_pad", "NOTSET");
    if (!strcmp(ap, "NOTSET") || !*ap)
        wa->auto_pad = NN_PAD_NOTSET;
    else if (!strcmp(ap, "SAME_UPPER"))
        wa->auto_pad = NN_PAD_SAME_UPPER;
    else if (!strcmp(ap, "SAME_LOWER"))
        wa->auto_pad = NN_PAD_SAME_LOWER;
    else if (!strcmp(ap, "VALID"))
        wa->auto_pad = NN_PAD_VALID;
    else
        return dab_err_set(err, DAB_EINVAL,
                           "attribute auto_pad '%s' is not NOTSET, SAME_UPPER, SAME_LOWER or VALID",
                           ap);
    int rc;
    if ((rc = read_list(node, "kernel_shape", 1, &wa->n_kernel, &wa->kernel, err)) ||
        (rc = read_list(node, "strides", 1, &wa->n_strides, &wa->strides, err)) ||
        (rc = read_list(node, "dilations", 1, &wa->n_dilations, &wa->dilations, err)) ||
        (rc = read_list(node, "pads", 0, &wa->n_pads, &wa->pads, err)))
        return rc;
    return 0;
}

int dab_nn_win_check_rank(const nn_win_attrs_t *wa, int nsp, dab_err_t *err)
{
    struct {
        const char *name;
        int n, want;
    } l[] = {{"kernel_shape", wa->n_kernel, nsp},
             {"strides", wa->n_strides, nsp},
             {"dilations", wa->n_dilations, nsp},
             {"pads", wa->n_pads, 2 * nsp}};
    for (size_t i = 0; i < DAB_ARRAY_LEN(l); i++)
        if (l[i].n >= 0 && l[i].n != l[i].want && !(l[i].n == 0 && i > 0))
            return dab_err_set(err, DAB_EINVAL,
                               "attribute %s has %d values, the input has %d spatial dims "
                               "(expected %d)",
                               l[i].name, l[i].n, nsp, l[i].want);
    return 0;
}

int dab_nn_win_out(int auto_pad, int64_t in, int64_t k, int64_t s, int64_t d, int64_t plo,
                   int64_t phi, int ceil_mode, int64_t *out, int64_t *pad_lo, int64_t *pad_hi,
                   int dim, dab_err_t *err)
{
    const int64_t kd = (k - 1) * d + 1;
    int64_t o;
    switch (auto_pad) {
    case NN_PAD_SAME_UPPER:
    case NN_PAD_SAME_LOWER: {
        o = (in + s - 1) / s;
        int64_t total = (o - 1) * s + kd - in;
        if (total < 0)
            total = 0;
        plo = auto_pad == NN_PAD_SAME_UPPER ? total / 2 : total - total / 2;
        phi = total - plo;
        break;
    }
    case NN_PAD_VALID:
        plo = phi = 0;
        /* fall through */
    default: {
        int64_t span = in + plo + phi - kd;
        if (span < 0)
            return dab_err_set(err, DAB_ESHAPE,
                               "spatial dim %d: the window (%lld with dilation) is larger than "
                               "the padded input (%lld)",
                               dim, (long long)kd, (long long)(in + plo + phi));
        o = span / s + 1;
        if (ceil_mode) {
            o = (span + s - 1) / s + 1;
            /* the last window must start inside the input or its left padding */
            if ((o - 1) * s >= in + plo)
                o--;
        }
        break;
    }
    }
    *out = o;
    *pad_lo = plo;
    *pad_hi = phi;
    return 0;
}

/* ---- the table ---- */

#define T_FLOATS DAB_DTM_FLOATS
#define T_GEMM (DAB_DTM_FLOATS | DAB_DTM_INTS)
#define T_MAXPOOL (DAB_DTM_FLOATS | DAB_DTM(DAB_DT_INT8) | DAB_DTM(DAB_DT_UINT8))

const dab_op_def_t dab_ops_nn[] = {
    {"", "Gemm", 1, 10, T_GEMM, 0, 3, 3, 1, 1, dab_nn_gemm_init, dab_nn_mm_reshape,
     dab_nn_mm_compute, dab_nn_mm_exit},
    {"", "Gemm", 11, 0, T_GEMM, 0, 2, 3, 1, 1, dab_nn_gemm_init, dab_nn_mm_reshape,
     dab_nn_mm_compute, dab_nn_mm_exit},
    {"", "MatMul", 1, 0, T_GEMM, 0, 2, 2, 1, 1, dab_nn_matmul_init, dab_nn_mm_reshape,
     dab_nn_mm_compute, dab_nn_mm_exit},
    {"", "Conv", 1, 0, T_FLOATS, 0, 2, 3, 1, 1, dab_nn_conv_init, dab_nn_conv_reshape,
     dab_nn_conv_compute, dab_nn_conv_exit},
    {"", "ConvTranspose", 1, 0, T_FLOATS, 0, 2, 3, 1, 1, dab_nn_convt_init, dab_nn_conv_reshape,
     dab_nn_conv_compute, dab_nn_conv_exit},
    {"", "MaxPool", 1, 7, T_MAXPOOL, 0, 1, 1, 1, 1, dab_nn_maxpool_init, dab_nn_pool_reshape,
     dab_nn_pool_compute, dab_nn_pool_exit},
    {"", "MaxPool", 8, 0, T_MAXPOOL, 0, 1, 1, 1, 2, dab_nn_maxpool_init, dab_nn_pool_reshape,
     dab_nn_pool_compute, dab_nn_pool_exit},
    {"", "AveragePool", 1, 0, T_FLOATS, 0, 1, 1, 1, 1, dab_nn_avgpool_init, dab_nn_pool_reshape,
     dab_nn_pool_compute, dab_nn_pool_exit},
    {"", "GlobalMaxPool", 1, 0, T_FLOATS, 0, 1, 1, 1, 1, NULL, dab_nn_global_reshape,
     dab_nn_global_max_compute, NULL},
    {"", "GlobalAveragePool", 1, 0, T_FLOATS, 0, 1, 1, 1, 1, NULL, dab_nn_global_reshape,
     dab_nn_global_avg_compute, NULL},
    {"", "BatchNormalization", 1, 13, T_FLOATS, 0, 5, 5, 1, 5, dab_nn_bn_init, dab_nn_bn_reshape,
     dab_nn_bn_compute, dab_op_free_priv},
    {"", "BatchNormalization", 14, 0, T_FLOATS, 0, 5, 5, 1, 3, dab_nn_bn_init, dab_nn_bn_reshape,
     dab_nn_bn_compute, dab_op_free_priv},
    {0},
};
