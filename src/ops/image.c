/*
 * image.c - the image and signal operator family: its table (resampling, sampling grids,
 * normalizations over images, windowed ops, spatial rearrangements) and the small helpers
 * its files share. The operators live in image_resize.c, image_grid.c, image_norm.c,
 * image_pool.c and image_layout.c.
 */
#include "image_int.h"

#include <math.h>
#include <stdio.h>

int dab_img_set_out(dab_node_t *node, int k, dab_dtype_t dt, int rank, const int64_t *dims,
                    dab_err_t *err)
{
    dab_tensor_t *o = k < node->n_outputs ? node->outputs[k] : NULL;
    if (!o)
        return 0;
    if (rank > DAB_MAX_RANK)
        return dab_err_set(err, DAB_EUNSUPPORTED, "output %d would have rank %d, more than %d",
                           k, rank, DAB_MAX_RANK);
    char what[32];
    snprintf(what, sizeof what, "output %d", k);
    size_t bytes;
    int rc = dab_shape_check(what, dt, rank, dims, 0, &bytes, err);
    if (rc)
        return rc;
    dab_tensor_set_shape(o, dt, rank, dims);
    return 0;
}

/* v as an integer of [lo, hi]: truncated, saturated, NaN gives 0 */
static int64_t sat_i64(double v, double lo, double hi)
{
    if (v != v)
        return 0;
    if (v <= lo)
        return (int64_t)lo;
    if (v >= hi)
        return (int64_t)hi;
    return (int64_t)v;
}

void dab_img_put_f64(dab_dtype_t dt, void *dst, double v)
{
    switch (dt) {
    case DAB_DT_FLOAT: *(float *)dst = (float)v; break;
    case DAB_DT_DOUBLE: *(double *)dst = v; break;
    case DAB_DT_FLOAT16: *(uint16_t *)dst = dab_f32_to_f16((float)v); break;
    case DAB_DT_BFLOAT16: *(uint16_t *)dst = dab_f32_to_bf16((float)v); break;
    case DAB_DT_BOOL: *(uint8_t *)dst = v != 0; break;
    case DAB_DT_INT8: *(int8_t *)dst = (int8_t)sat_i64(v, INT8_MIN, INT8_MAX); break;
    case DAB_DT_UINT8: *(uint8_t *)dst = (uint8_t)sat_i64(v, 0, UINT8_MAX); break;
    case DAB_DT_INT16: *(int16_t *)dst = (int16_t)sat_i64(v, INT16_MIN, INT16_MAX); break;
    case DAB_DT_UINT16: *(uint16_t *)dst = (uint16_t)sat_i64(v, 0, UINT16_MAX); break;
    case DAB_DT_INT32: *(int32_t *)dst = (int32_t)sat_i64(v, INT32_MIN, INT32_MAX); break;
    case DAB_DT_UINT32: *(uint32_t *)dst = (uint32_t)sat_i64(v, 0, UINT32_MAX); break;
    case DAB_DT_INT64: *(int64_t *)dst = sat_i64(v, -9.2e18, 9.2e18); break;
    case DAB_DT_UINT64:
        *(uint64_t *)dst = v >= 18446744073709551615.0 ? UINT64_MAX : v > 0 ? (uint64_t)v : 0;
        break;
    default: break;
    }
}

void dab_img_copy_strided(void *dst, int64_t dstride, const void *src, int64_t sstride,
                          int64_t n, size_t esize)
{
#define IMG_COPY(T)                                                                          \
    do {                                                                                     \
        T *d_ = dst;                                                                         \
        const T *s_ = src;                                                                   \
        for (int64_t i = 0; i < n; i++)                                                      \
            d_[i * dstride] = s_[i * sstride];                                               \
    } while (0)
    switch (esize) {
    case 1: IMG_COPY(uint8_t); break;
    case 2: IMG_COPY(uint16_t); break;
    case 4: IMG_COPY(uint32_t); break;
    case 8: IMG_COPY(uint64_t); break;
    default:
        for (int64_t i = 0; i < n; i++)
            memcpy((char *)dst + i * dstride * (int64_t)esize,
                   (const char *)src + i * sstride * (int64_t)esize, esize);
    }
#undef IMG_COPY
}

int dab_img_attr_ints(const dab_node_t *node, const char *name, int64_t lo, int64_t hi,
                      int64_t *vals, int max, int *n, dab_err_t *err)
{
    const dab_attr_t *a = dab_attr_find(node, name);
    *n = -1;
    if (!a)
        return 0;
    if (a->type != DAB_ATTR_INTS)
        return dab_err_set(err, DAB_EINVAL, "attribute %s must be a list of ints", name);
    if (a->n > max)
        return dab_err_set(err, DAB_EINVAL, "attribute %s has %d values, at most %d are allowed",
                           name, a->n, max);
    for (int i = 0; i < a->n; i++) {
        if (a->ints[i] < lo || a->ints[i] > hi)
            return dab_err_set(err, DAB_EINVAL,
                               "attribute %s[%d] = %lld is out of range [%lld, %lld]", name, i,
                               (long long)a->ints[i], (long long)lo, (long long)hi);
        vals[i] = a->ints[i];
    }
    *n = a->n;
    return 0;
}

/* ---- the table ---- */

#define T_FLOATS DAB_DTM_FLOATS
#define T_MOVE IMG_DTM_MOVE
#define IMG_ROW(name, since, until, dt, nin_lo, nin_hi, fn)                                  \
    {"", name, since, until, dt, 0, nin_lo, nin_hi, 1, 1, dab_img_##fn##_init,               \
     dab_img_##fn##_reshape, dab_img_##fn##_compute, dab_op_free_priv}

const dab_op_def_t dab_ops_image[] = {
    IMG_ROW("Upsample", 7, 8, T_MOVE, 1, 1, resize),
    IMG_ROW("Upsample", 9, 0, T_MOVE, 2, 2, resize),
    IMG_ROW("Resize", 10, 10, T_MOVE, 2, 2, resize),
    IMG_ROW("Resize", 11, 0, T_MOVE, 1, 4, resize),
    IMG_ROW("GridSample", 16, 0, T_FLOATS, 2, 2, gridsample),
    IMG_ROW("AffineGrid", 20, 0, T_FLOATS, 2, 2, affinegrid),
    IMG_ROW("InstanceNormalization", 1, 0, T_FLOATS, 3, 3, instnorm),
    IMG_ROW("GroupNormalization", 18, 0, T_FLOATS, 3, 3, groupnorm),
    IMG_ROW("LpNormalization", 1, 0, T_FLOATS, 1, 1, lpnorm),
    IMG_ROW("MeanVarianceNormalization", 9, 0, T_FLOATS, 1, 1, mvn),
    IMG_ROW("LRN", 1, 0, T_FLOATS, 1, 1, lrn),
    IMG_ROW("LpPool", 1, 0, T_FLOATS, 1, 1, lppool),
    IMG_ROW("MaxUnpool", 9, 0, T_MOVE, 2, 3, maxunpool),
    IMG_ROW("Col2Im", 18, 0, T_FLOATS, 3, 3, col2im),
    IMG_ROW("DepthToSpace", 1, 0, T_MOVE, 1, 1, d2s),
    IMG_ROW("SpaceToDepth", 1, 0, T_MOVE, 1, 1, s2d),
    IMG_ROW("ReverseSequence", 10, 0, T_MOVE, 2, 2, revseq),
    IMG_ROW("CenterCropPad", 18, 0, T_MOVE, 2, 2, ccpad),
    {0},
};
