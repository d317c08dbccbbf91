/*
 * index_int.h - what the files of the indexing family (index.c, index_scatter.c,
 * index_select.c, index_loss.c) share and nobody else uses: the dtype masks of the
 * table, reading untrusted index tensors, a stable index sort, and the operators'
 * entry points that index.c lists in dab_ops_index.
 */
#ifndef DAB_INDEX_INT_H
#define DAB_INDEX_INT_H

#include <stdbool.h>
#include <string.h>

#include "ops.h"

/* Dtypes whose elements are plain bytes to a data-movement op (strings are left out:
 * their elements point at bytes the input owns). */
#define DAB_IDX_DTM_MOVE (DAB_DTM_ALL | DAB_DTM(DAB_DT_FLOAT16) | DAB_DTM(DAB_DT_BFLOAT16))

/* Dtypes of the loss operators' scores. */
#define DAB_IDX_DTM_LOSS \
    (DAB_DTM_FLOATS | DAB_DTM(DAB_DT_FLOAT16) | DAB_DTM(DAB_DT_BFLOAT16))

/* Element i of an int32 or int64 tensor (the caller checked the dtype). */
static inline int64_t dab_idx_at(const dab_tensor_t *t, int64_t i)
{
    return t->dtype == DAB_DT_INT64 ? ((const int64_t *)t->data)[i]
                                    : ((const int32_t *)t->data)[i];
}

/* Input i, or NULL when absent (past n_inputs or omitted). */
static inline dab_tensor_t *dab_idx_in(const dab_node_t *node, int i)
{
    return i < node->n_inputs ? node->inputs[i] : NULL;
}

/* Output i, or NULL when absent. */
static inline dab_tensor_t *dab_idx_out(const dab_node_t *node, int i)
{
    return i < node->n_outputs ? node->outputs[i] : NULL;
}

/* ETYPE naming `what` unless t is int32 or int64. */
int dab_idx_check_int(const dab_tensor_t *t, const char *what, dab_err_t *err);

/*
 * Checks every value of the index tensor t against an axis of size dim: values in
 * [-dim, dim) are valid (negative ones count from the end). ERANGE naming `what`,
 * the value and its position otherwise.
 */
int dab_idx_check_range(const dab_tensor_t *t, const char *what, int64_t dim, dab_err_t *err);

/* Row-major strides (elements) of t into s[t->rank]. */
void dab_idx_strides(const dab_tensor_t *t, int64_t *s);

/* Product of dims[from..to). */
int64_t dab_idx_prod(const int64_t *dims, int from, int to);

/*
 * Sorts the n values of a by cmp (negative, 0, positive like strcmp), stably: equal
 * values keep their order. tmp holds n values. One thread.
 */
typedef int (*dab_idx_cmp_fn)(int64_t x, int64_t y, const void *ctx);
void dab_idx_sort(int64_t *a, int64_t *tmp, int64_t n, dab_idx_cmp_fn cmp, const void *ctx);

/*
 * Grows a per-node buffer (in the op's priv) to at least `bytes`; keeps it when big
 * enough, so steady-state runs of one shape do not touch the heap. On failure the old
 * buffer is kept and ENOMEM is returned.
 */
int dab_idx_grow(void **buf, size_t *cap, size_t bytes, dab_err_t *err);

/* memcpy of n bytes, split over ctx's threads when large. */
void dab_idx_copy(void *dst, const void *src, size_t n, const dab_exec_ctx_t *ctx);

/* ---- operator entry points (listed in index.c) ---- */

#define DAB_IDX_OP(name)                                       \
    int dab_idx_##name##_init(dab_node_t *n, dab_err_t *e);    \
    int dab_idx_##name##_reshape(dab_node_t *n, dab_err_t *e); \
    int dab_idx_##name##_compute(dab_node_t *n, dab_err_t *e);

/* index_scatter.c */
DAB_IDX_OP(gather_elements)
DAB_IDX_OP(gather_nd)
DAB_IDX_OP(scatter_elements)
DAB_IDX_OP(scatter_nd)
DAB_IDX_OP(tensor_scatter)
/* index_select.c */
DAB_IDX_OP(unique)
DAB_IDX_OP(nms)
/* index_loss.c */
DAB_IDX_OP(loss)

#undef DAB_IDX_OP

void dab_idx_unique_exit(dab_node_t *node);
void dab_idx_nms_exit(dab_node_t *node);

#endif
