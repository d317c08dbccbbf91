/*
 * conv.c - reference convolution and transposed convolution (float32, float64), and the
 * geometry helpers every conv/pool kernel shares. The loops live in conv_tmpl.h.
 */
#include "../kernels.h"

#include "ref_int.h"

void dab_conv_geom_pad(dab_conv_geom_t *g)
{
    for (int d = g->nsp; d < DAB_KSP; d++) {
        g->in[d] = g->out[d] = g->k[d] = g->stride[d] = g->dil[d] = 1;
        g->pad_lo[d] = g->pad_hi[d] = 0;
    }
}

void dab_pool_geom_pad(dab_pool_geom_t *g)
{
    for (int d = g->nsp; d < DAB_KSP; d++) {
        g->in[d] = g->out[d] = g->k[d] = g->stride[d] = g->dil[d] = 1;
        g->pad_lo[d] = g->pad_hi[d] = 0;
    }
}

#define T float
#define FN(name) name##_f32
#include "conv_tmpl.h"
#undef T
#undef FN

#define T double
#define FN(name) name##_f64
#include "conv_tmpl.h"
#undef T
#undef FN

int dab_ref_conv(dab_dtype_t dt, const dab_conv_geom_t *g, const void *x, const void *w,
                 const void *b, void *y, int nt)
{
    switch (dt) {
    case DAB_DT_FLOAT: conv_f32(g, x, w, b, y, nt); return 0;
    case DAB_DT_DOUBLE: conv_f64(g, x, w, b, y, nt); return 0;
    default: return DAB_EUNSUPPORTED;
    }
}

int dab_ref_conv_transpose(dab_dtype_t dt, const dab_conv_geom_t *g, const void *x, const void *w,
                           const void *b, void *y, int nt)
{
    switch (dt) {
    case DAB_DT_FLOAT: deconv_f32(g, x, w, b, y, nt); return 0;
    case DAB_DT_DOUBLE: deconv_f64(g, x, w, b, y, nt); return 0;
    default: return DAB_EUNSUPPORTED;
    }
}
