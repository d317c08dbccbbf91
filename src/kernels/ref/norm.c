/*
 * norm.c - reference per-channel kernels behind BatchNormalization: the affine map the
 * folded statistics give, and per-channel moments for training mode.
 */
#include "../kernels.h"

#include "ref_int.h"

#define DEF_NORM(T, SUF)                                                                           \
    static void affine_pl_##SUF(int64_t c, int64_t sp, int per_elem, const T *x,                   \
                                const double *scale, const double *shift, T *y, int64_t pl)        \
    {                                                                                              \
        {                                                                                          \
            const int64_t ch = pl % c;                                                             \
            const T *xp = x + pl * sp;                                                             \
            T *yp = y + pl * sp;                                                                   \
            if (per_elem) {                                                                        \
                const double *a = scale + ch * sp, *b = shift + ch * sp;                           \
                for (int64_t i = 0; i < sp; i++)                                                   \
                    yp[i] = (T)(xp[i] * a[i] + b[i]);                                              \
            } else {                                                                               \
                const T a = (T)scale[ch], b = (T)shift[ch];                                        \
                for (int64_t i = 0; i < sp; i++)                                                   \
                    yp[i] = xp[i] * a + b;                                                         \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    static void affine_##SUF(int64_t n, int64_t c, int64_t sp, int per_elem, const T *x,           \
                             const double *scale, const double *shift, T *y, int nt)               \
    {                                                                                              \
        REF_FOR(nt, pl, n *c, affine_pl_##SUF(c, sp, per_elem, x, scale, shift, y, pl));           \
    }                                                                                              \
    static void moments_ch_##SUF(int64_t n, int64_t c, int64_t sp, const T *x, double *mean,       \
                                 double *var, int64_t ch)                                          \
    {                                                                                              \
        {                                                                                          \
            double s = 0, cnt = (double)(n * sp);                                                  \
            for (int64_t ni = 0; ni < n; ni++) {                                                   \
                const T *xp = x + (ni * c + ch) * sp;                                              \
                for (int64_t i = 0; i < sp; i++)                                                   \
                    s += xp[i];                                                                    \
            }                                                                                      \
            double m = cnt > 0 ? s / cnt : 0, q = 0;                                               \
            for (int64_t ni = 0; ni < n; ni++) {                                                   \
                const T *xp = x + (ni * c + ch) * sp;                                              \
                for (int64_t i = 0; i < sp; i++)                                                   \
                    q += (xp[i] - m) * (xp[i] - m);                                                \
            }                                                                                      \
            mean[ch] = m;                                                                          \
            var[ch] = cnt > 0 ? q / cnt : 0;                                                       \
        }                                                                                          \
    }                                                                                              \
    static void moments_##SUF(int64_t n, int64_t c, int64_t sp, const T *x, double *mean,          \
                              double *var, int nt)                                                 \
    {                                                                                              \
        REF_FOR(nt, ch, c, moments_ch_##SUF(n, c, sp, x, mean, var, ch));                          \
    }

DEF_NORM(float, f32)
DEF_NORM(double, f64)

int dab_ref_channel_affine(dab_dtype_t dt, int64_t n, int64_t c, int64_t spatial, int per_elem,
                           const void *x, const double *scale, const double *shift, void *y, int nt)
{
    switch (dt) {
    case DAB_DT_FLOAT: affine_f32(n, c, spatial, per_elem, x, scale, shift, y, nt); return 0;
    case DAB_DT_DOUBLE: affine_f64(n, c, spatial, per_elem, x, scale, shift, y, nt); return 0;
    default: return DAB_EUNSUPPORTED;
    }
}

int dab_ref_channel_moments(dab_dtype_t dt, int64_t n, int64_t c, int64_t spatial, const void *x,
                            double *mean, double *var, int nt)
{
    switch (dt) {
    case DAB_DT_FLOAT: moments_f32(n, c, spatial, x, mean, var, nt); return 0;
    case DAB_DT_DOUBLE: moments_f64(n, c, spatial, x, mean, var, nt); return 0;
    default: return DAB_EUNSUPPORTED;
    }
}
