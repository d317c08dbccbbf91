/*
 * image_int.h - what the files of the image and signal family share and nobody else
 * uses: the entry points that image.c's table lists (resampling in image_resize.c,
 * grids in image_grid.c, normalizations in image_norm.c, windowed ops in image_pool.c,
 * rearrangements in image_layout.c) and small helpers defined in image.c.
 */
#ifndef DAB_IMAGE_INT_H
#define DAB_IMAGE_INT_H

#include <string.h>

#include "ops.h"

/* Dtypes whose elements are plain bytes to a rearranging op (no strings, no complex). */
#define IMG_DTM_MOVE (DAB_DTM_ALL | DAB_DTM(DAB_DT_FLOAT16) | DAB_DTM(DAB_DT_BFLOAT16))

/* Input i, or NULL when absent (past n_inputs or omitted). */
static inline dab_tensor_t *img_in(const dab_node_t *node, int i)
{
    return i < node->n_inputs ? node->inputs[i] : NULL;
}

/* Checks dims (non-negative, rank, byte size fits) and sets output k's dtype and shape;
 * an absent output is skipped. ESHAPE/ELIMIT/EUNSUPPORTED with the output named. */
int dab_img_set_out(dab_node_t *node, int k, dab_dtype_t dt, int rank, const int64_t *dims,
                    dab_err_t *err);

/* Stores v converted to dt (C conversion; floats to integers truncate and saturate, NaN
 * gives 0) at dst, which has room for one element of dt. */
void dab_img_put_f64(dab_dtype_t dt, void *dst, double v);

/* Copies n elements of esize bytes from src[i * sstride] to dst[i * dstride] (strides in
 * elements). One thread. */
void dab_img_copy_strided(void *dst, int64_t dstride, const void *src, int64_t sstride,
                          int64_t n, size_t esize);

/* Reads an INTS attribute of at most max values checking each against [lo, hi]; *n = -1
 * when absent. EINVAL naming the attribute otherwise. */
int dab_img_attr_ints(const dab_node_t *node, const char *name, int64_t lo, int64_t hi,
                      int64_t *vals, int max, int *n, dab_err_t *err);

/* ---- operator entry points (listed in image.c); contracts as in ops.h ---- */

#define IMG_OP(name)                                            \
    int dab_img_##name##_init(dab_node_t *n, dab_err_t *e);    \
    int dab_img_##name##_reshape(dab_node_t *n, dab_err_t *e); \
    int dab_img_##name##_compute(dab_node_t *n, dab_err_t *e);

/* image_resize.c */
IMG_OP(resize)
/* image_grid.c */
IMG_OP(gridsample)
IMG_OP(affinegrid)
/* image_norm.c */
IMG_OP(instnorm)
IMG_OP(groupnorm)
IMG_OP(lpnorm)
IMG_OP(mvn)
IMG_OP(lrn)
/* image_pool.c */
IMG_OP(lppool)
IMG_OP(maxunpool)
IMG_OP(col2im)
/* image_layout.c */
IMG_OP(d2s)
IMG_OP(s2d)
IMG_OP(revseq)
IMG_OP(ccpad)

#undef IMG_OP

#endif
