/*
 * pool.c - reference pooling kernels: max pooling for every numeric dtype ONNX's MaxPool
 * takes (and the other integer widths for free), average and global pooling for
 * float32/float64. The loops live in pool_tmpl.h.
 */
#include "../kernels.h"

#include <float.h>
#include <math.h>

#include "ref_int.h"

#define POOL_AVG
#define T float
#define FN(name) name##_f32
#define LOWEST (-INFINITY)
#include "pool_tmpl.h"
#undef T
#undef FN
#undef LOWEST

#define T double
#define FN(name) name##_f64
#define LOWEST (-(double)INFINITY)
#include "pool_tmpl.h"
#undef T
#undef FN
#undef LOWEST
#undef POOL_AVG

#define T int8_t
#define FN(name) name##_i8
#define LOWEST INT8_MIN
#include "pool_tmpl.h"
#undef T
#undef FN
#undef LOWEST

#define T uint8_t
#define FN(name) name##_u8
#define LOWEST 0
#include "pool_tmpl.h"
#undef T
#undef FN
#undef LOWEST

#define T int16_t
#define FN(name) name##_i16
#define LOWEST INT16_MIN
#include "pool_tmpl.h"
#undef T
#undef FN
#undef LOWEST

#define T uint16_t
#define FN(name) name##_u16
#define LOWEST 0
#include "pool_tmpl.h"
#undef T
#undef FN
#undef LOWEST

#define T int32_t
#define FN(name) name##_i32
#define LOWEST INT32_MIN
#include "pool_tmpl.h"
#undef T
#undef FN
#undef LOWEST

#define T uint32_t
#define FN(name) name##_u32
#define LOWEST 0
#include "pool_tmpl.h"
#undef T
#undef FN
#undef LOWEST

#define T int64_t
#define FN(name) name##_i64
#define LOWEST INT64_MIN
#include "pool_tmpl.h"
#undef T
#undef FN
#undef LOWEST

#define T uint64_t
#define FN(name) name##_u64
#define LOWEST 0
#include "pool_tmpl.h"
#undef T
#undef FN
#undef LOWEST

int dab_ref_maxpool(dab_dtype_t dt, const dab_pool_geom_t *g, const void *x, void *y,
                    int64_t *indices, int nt)
{
    switch (dt) {
    case DAB_DT_FLOAT: maxpool_f32(g, x, y, indices, nt); return 0;
    case DAB_DT_DOUBLE: maxpool_f64(g, x, y, indices, nt); return 0;
    case DAB_DT_INT8: maxpool_i8(g, x, y, indices, nt); return 0;
    case DAB_DT_UINT8: maxpool_u8(g, x, y, indices, nt); return 0;
    case DAB_DT_INT16: maxpool_i16(g, x, y, indices, nt); return 0;
    case DAB_DT_UINT16: maxpool_u16(g, x, y, indices, nt); return 0;
    case DAB_DT_INT32: maxpool_i32(g, x, y, indices, nt); return 0;
    case DAB_DT_UINT32: maxpool_u32(g, x, y, indices, nt); return 0;
    case DAB_DT_INT64: maxpool_i64(g, x, y, indices, nt); return 0;
    case DAB_DT_UINT64: maxpool_u64(g, x, y, indices, nt); return 0;
    default: return DAB_EUNSUPPORTED;
    }
}

int dab_ref_avgpool(dab_dtype_t dt, const dab_pool_geom_t *g, const void *x, void *y, int nt)
{
    switch (dt) {
    case DAB_DT_FLOAT: avgpool_f32(g, x, y, nt); return 0;
    case DAB_DT_DOUBLE: avgpool_f64(g, x, y, nt); return 0;
    default: return DAB_EUNSUPPORTED;
    }
}

int dab_ref_global_pool(dab_dtype_t dt, int is_max, int64_t planes, int64_t spatial, const void *x,
                        void *y, int nt)
{
    switch (dt) {
    case DAB_DT_FLOAT: global_f32(is_max, planes, spatial, x, y, nt); return 0;
    case DAB_DT_DOUBLE: global_f64(is_max, planes, spatial, x, y, nt); return 0;
    default: return DAB_EUNSUPPORTED;
    }
}
