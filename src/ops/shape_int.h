/*
 * shape_int.h - what the files of the shape / data-movement operator family
 * (shape.c, shape_copy.c, shape_cast.c, shape_pad.c) share: the strided copy
 * engine every data-movement op reduces to, the dtype conversion used by Cast
 * and friends, small input helpers, and the operators' entry points that
 * shape.c lists in dab_ops_shape. Nothing here is used outside src/ops/shape*.c.
 */
#ifndef DAB_SHAPE_INT_H
#define DAB_SHAPE_INT_H

#include "ops.h"

/* Dtypes whose elements are plain bytes to a data-movement op (no strings: their
 * elements point at bytes the input owns). */
#define DAB_DTM_MOVE (DAB_DTM_ALL | DAB_DTM(DAB_DT_FLOAT16) | DAB_DTM(DAB_DT_BFLOAT16))

/* Dtypes Cast converts between. */
#define DAB_DTM_CAST (DAB_DTM_MOVE | DAB_DTM_LOWP)

/* ---- the strided copy engine (shape_copy.c) ---- */

#define DAB_COPY_MAX_RANK (2 * DAB_MAX_RANK)

/*
 * A copy of an n-D box of elements: for every index (i0..i{rank-1}) < dims,
 * dst[sum i*dstr] = src[sum i*sstr]. Strides are in elements; source strides may
 * be 0 (broadcast) or negative (reversed slices). Destination positions must not
 * repeat. Dims are listed outermost first.
 */
typedef struct dab_copy_plan {
    int rank;
    size_t esize;
    int64_t dims[DAB_COPY_MAX_RANK];
    int64_t sstr[DAB_COPY_MAX_RANK];
    int64_t dstr[DAB_COPY_MAX_RANK];
} dab_copy_plan_t;

/* Starts an empty (rank 0: one element) plan for elements of esize bytes. */
void dab_copy_plan_init(dab_copy_plan_t *p, size_t esize);

/* Appends an inner dim. The caller keeps rank <= DAB_COPY_MAX_RANK. */
void dab_copy_plan_add(dab_copy_plan_t *p, int64_t dim, int64_t sstr, int64_t dstr);

/*
 * Runs the plan from src (the element at index 0) to dst: merges dims that stay
 * contiguous, copies contiguous runs with memcpy, transposes in cache blocks when
 * the inner dims are swapped, and splits the work over ctx's threads.
 */
void dab_copy_run(const dab_copy_plan_t *p, void *dst, const void *src,
                  const dab_exec_ctx_t *ctx);

/* memcpy of n bytes split over ctx's threads when large. n may be 0 (pointers then unused). */
void dab_copy_bytes(void *dst, const void *src, size_t n, const dab_exec_ctx_t *ctx);

/* Fills n elements of esize bytes at dst with the element at val. */
void dab_fill_elems(void *dst, const void *val, size_t esize, int64_t n,
                    const dab_exec_ctx_t *ctx);

/* ---- dtype conversion (shape_cast.c) ---- */

/* True when dab_cast_elems converts from sdt to ddt. */
bool dab_cast_supported(dab_dtype_t sdt, dab_dtype_t ddt);

/* Converts n elements (one thread). Floats to integers truncate toward zero and
 * saturate (NaN gives 0); anything to bool is `!= 0`. Pairs must be supported. */
void dab_cast_elems(dab_dtype_t sdt, const void *src, dab_dtype_t ddt, void *dst, int64_t n);

/* ---- helpers ---- */

/* Input i, or NULL when absent (past n_inputs or omitted). */
static inline dab_tensor_t *dab_shp_in(const dab_node_t *node, int i)
{
    return i < node->n_inputs ? node->inputs[i] : NULL;
}

/* Output i, or NULL when absent. */
static inline dab_tensor_t *dab_shp_out(const dab_node_t *node, int i)
{
    return i < node->n_outputs ? node->outputs[i] : NULL;
}

/* Checks dims (non-negative, size fits) and sets output k's dtype and shape; a missing
 * output is skipped. */
int dab_shp_set_out(dab_node_t *node, int k, dab_dtype_t dt, int rank, const int64_t *dims,
                    dab_err_t *err);

/* Row-major strides (elements) of t into s[t->rank]. */
void dab_shp_strides(const dab_tensor_t *t, int64_t *s);

/* ---- operator entry points (listed in shape.c) ---- */

#define DAB_SHP_OP(name)                                   \
    int dab_shp_##name##_init(dab_node_t *n, dab_err_t *e);    \
    int dab_shp_##name##_reshape(dab_node_t *n, dab_err_t *e); \
    int dab_shp_##name##_compute(dab_node_t *n, dab_err_t *e);

DAB_SHP_OP(transpose)
DAB_SHP_OP(expand)
DAB_SHP_OP(tile)
DAB_SHP_OP(slice)
DAB_SHP_OP(concat)
DAB_SHP_OP(split)
DAB_SHP_OP(gather)
DAB_SHP_OP(pad)
DAB_SHP_OP(cast)
DAB_SHP_OP(castlike)

#undef DAB_SHP_OP

#endif
