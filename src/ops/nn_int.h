/*
 * nn_int.h - what the neural-network operator files (nn.c, nn_gemm.c, nn_conv.c,
 * nn_pool.c, nn_norm.c) share: the per-node cache of oneDNN primitives, the window
 * attribute parsing of Conv/ConvTranspose/pools, and each file's entry points for the
 * table in nn.c.
 */
#ifndef DAB_OPS_NN_INT_H
#define DAB_OPS_NN_INT_H

#include "../kernels/kernels.h"
#include "ops.h"

/* ---- per-node primitive cache ----
 * A node sees a handful of input shapes in practice (fixed shapes, or a few batch sizes);
 * the last NN_CACHE_N geometries keep their primitive, least recently used goes first.
 * Owned by the node's priv; used by the one thread running the session. */
#define NN_CACHE_N 8
#define NN_KEY_BYTES 512

typedef struct nn_cache_entry {
    int used; /* 0: free slot */
    size_t key_len;
    unsigned char key[NN_KEY_BYTES];
    uint64_t last_use;
    dab_dnnl_prim_t *prim; /* NULL: oneDNN cannot do this geometry, use the reference */
} nn_cache_entry_t;

typedef struct nn_cache {
    nn_cache_entry_t e[NN_CACHE_N];
    uint64_t tick;
} nn_cache_t;

/* The entry for key, or NULL. key_len <= NN_KEY_BYTES. */
nn_cache_entry_t *dab_nn_cache_find(nn_cache_t *c, const void *key, size_t key_len);

/* A slot for key (the least recently used one, its primitive freed), marked used with
 * prim NULL; the caller stores the primitive it builds. */
nn_cache_entry_t *dab_nn_cache_insert(nn_cache_t *c, const void *key, size_t key_len);

/* Makes e's primitive share packed constant weights with another cached one that chose
 * the same layout, so a node keeps one packed copy for all its shapes. */
void dab_nn_cache_share(nn_cache_t *c, nn_cache_entry_t *e);

/* Frees every cached primitive. */
void dab_nn_cache_clear(nn_cache_t *c);

/* ---- window attributes (Conv, ConvTranspose, MaxPool, AveragePool) ---- */
enum { NN_PAD_NOTSET, NN_PAD_SAME_UPPER, NN_PAD_SAME_LOWER, NN_PAD_VALID };

typedef struct nn_win_attrs {
    int auto_pad;
    /* list attributes as counts and pointers into the model's attributes (-1: absent) */
    int n_kernel, n_strides, n_dilations, n_pads;
    const int64_t *kernel, *strides, *dilations, *pads;
} nn_win_attrs_t;

/* Reads auto_pad, kernel_shape, strides, dilations and pads, checking values
 * (kernel/strides/dilations in [1, 2^31), pads in [0, 2^31)). */
int dab_nn_win_attrs(const dab_node_t *node, nn_win_attrs_t *wa, dab_err_t *err);

/* Checks the lists' lengths against nsp spatial dims (pads: 2 * nsp). */
int dab_nn_win_check_rank(const nn_win_attrs_t *wa, int nsp, dab_err_t *err);

/* Stride/dilation/kernel of dim i with defaults. */
static inline int64_t nn_win_stride(const nn_win_attrs_t *wa, int i)
{
    return wa->n_strides > 0 ? wa->strides[i] : 1;
}
static inline int64_t nn_win_dil(const nn_win_attrs_t *wa, int i)
{
    return wa->n_dilations > 0 ? wa->dilations[i] : 1;
}

/*
 * Output size and pads of one spatial dim of Conv or a pool: in, kernel k, stride s,
 * dilation d; explicit pads (plo, phi) unless auto_pad says otherwise; ceil_mode for
 * pools (the last window must start inside the input or its left padding).
 * Writes *out and the effective pads. ESHAPE when the window does not fit.
 */
int dab_nn_win_out(int auto_pad, int64_t in, int64_t k, int64_t s, int64_t d, int64_t plo,
                   int64_t phi, int ceil_mode, int64_t *out, int64_t *pad_lo, int64_t *pad_hi,
                   int dim, dab_err_t *err);

/* The input's data is constant for the session: it had data at init (an initializer). */
static inline const void *nn_const_data(const dab_node_t *node, int i)
{
    return i < node->n_inputs && node->inputs[i] ? node->inputs[i]->data : NULL;
}

/* The activation the graph optimizer fused into this node (DAB_ATTR_FUSED_*), or none. */
static inline int nn_fused_act(const dab_node_t *node, dab_act_t *act, dab_err_t *err)
{
    int64_t kind = dab_attr_int(node, DAB_ATTR_FUSED_ACT, DAB_ACT_NONE);
    if (kind < DAB_ACT_NONE || kind > DAB_ACT_HARDSWISH)
        return dab_err_set(err, DAB_EINVAL, "attribute %s = %lld is not an activation",
                           DAB_ATTR_FUSED_ACT, (long long)kind);
    act->kind = (int)kind;
    act->alpha = dab_attr_float(node, DAB_ATTR_FUSED_ALPHA, 0.0f);
    act->beta = dab_attr_float(node, DAB_ATTR_FUSED_BETA, 0.0f);
    return 0;
}

/* OpenMP team for a oneDNN convolution or pooling doing `macs` multiply-adds: 1 below ~2M,
 * where waking a second thread (and its share of the reorders) costs more than it saves
 * (digits_cnn at batch 32: 93 µs on two threads at a 256k threshold, 76 µs at 2M). */
static inline int nn_dnnl_threads(const dab_exec_ctx_t *ctx, int64_t macs)
{
    return dab_par_threads(ctx, macs / 64);
}

/* The same for matrix products: a batch-1 product streams its whole weight matrix, which
 * two cores read faster than one from about 256k multiply-adds on. */
static inline int nn_dnnl_threads_gemm(const dab_exec_ctx_t *ctx, int64_t macs)
{
    return dab_par_threads(ctx, macs / 8);
}

/* ---- operators (defined in nn_*.c, listed in nn.c) ---- */
int dab_nn_matmul_init(dab_node_t *node, dab_err_t *err);
int dab_nn_gemm_init(dab_node_t *node, dab_err_t *err);
int dab_nn_mm_reshape(dab_node_t *node, dab_err_t *err);
int dab_nn_mm_compute(dab_node_t *node, dab_err_t *err);
void dab_nn_mm_exit(dab_node_t *node);

int dab_nn_conv_init(dab_node_t *node, dab_err_t *err);
int dab_nn_convt_init(dab_node_t *node, dab_err_t *err);
int dab_nn_conv_reshape(dab_node_t *node, dab_err_t *err);
int dab_nn_conv_compute(dab_node_t *node, dab_err_t *err);
void dab_nn_conv_exit(dab_node_t *node);

int dab_nn_maxpool_init(dab_node_t *node, dab_err_t *err);
int dab_nn_avgpool_init(dab_node_t *node, dab_err_t *err);
int dab_nn_pool_reshape(dab_node_t *node, dab_err_t *err);
int dab_nn_pool_compute(dab_node_t *node, dab_err_t *err);
void dab_nn_pool_exit(dab_node_t *node);
int dab_nn_global_reshape(dab_node_t *node, dab_err_t *err);
int dab_nn_global_max_compute(dab_node_t *node, dab_err_t *err);
int dab_nn_global_avg_compute(dab_node_t *node, dab_err_t *err);

int dab_nn_bn_init(dab_node_t *node, dab_err_t *err);
int dab_nn_bn_reshape(dab_node_t *node, dab_err_t *err);
int dab_nn_bn_compute(dab_node_t *node, dab_err_t *err);

#endif
