/*
 * pool_tmpl.h - reference max pooling (and, when POOL_AVG is defined, average and
 * global pooling), instantiated by pool.c per element type: it defines T, FN(name) and
 * LOWEST (the dtype's smallest value) before including this file.
 *
 * One (image, channel) plane per iteration; windows are clipped per dimension, so a
 * tap outside the input costs nothing.
 */

static void FN(maxpool_plane)(const dab_pool_geom_t *g, const T *x, T *y, int64_t *ind, int64_t pl)
{
    const int64_t isz = g->in[0] * g->in[1] * g->in[2];
    const int64_t osz = g->out[0] * g->out[1] * g->out[2];
    {
        const T *xp = x + pl * isz;
        T *yp = y + pl * osz;
        int64_t *ip = ind ? ind + pl * osz : NULL;
        int64_t o = 0;
        for (int64_t o0 = 0; o0 < g->out[0]; o0++) {
            const int64_t s0 = o0 * g->stride[0] - g->pad_lo[0];
            for (int64_t o1 = 0; o1 < g->out[1]; o1++) {
                const int64_t s1 = o1 * g->stride[1] - g->pad_lo[1];
                for (int64_t o2 = 0; o2 < g->out[2]; o2++, o++) {
                    const int64_t s2 = o2 * g->stride[2] - g->pad_lo[2];
                    T best = LOWEST;
                    int64_t bi0 = -1, bi1 = 0, bi2 = 0;
                    for (int64_t k0 = 0; k0 < g->k[0]; k0++) {
                        const int64_t i0 = s0 + k0 * g->dil[0];
                        if (i0 < 0 || i0 >= g->in[0])
                            continue;
                        for (int64_t k1 = 0; k1 < g->k[1]; k1++) {
                            const int64_t i1 = s1 + k1 * g->dil[1];
                            if (i1 < 0 || i1 >= g->in[1])
                                continue;
                            const T *xr = xp + (i0 * g->in[1] + i1) * g->in[2];
                            for (int64_t k2 = 0; k2 < g->k[2]; k2++) {
                                const int64_t i2 = s2 + k2 * g->dil[2];
                                if (i2 < 0 || i2 >= g->in[2])
                                    continue;
                                if (bi0 < 0 || xr[i2] > best) {
                                    best = xr[i2];
                                    bi0 = i0;
                                    bi1 = i1;
                                    bi2 = i2;
                                }
                            }
                        }
                    }
                    yp[o] = best;
                    if (ip) {
                        if (bi0 < 0)
                            ip[o] = -1;
                        else if (g->storage_order)
                            ip[o] = pl * isz + bi0 + g->in[0] * (bi1 + g->in[1] * bi2);
                        else
                            ip[o] = pl * isz + (bi0 * g->in[1] + bi1) * g->in[2] + bi2;
                    }
                }
            }
        }
    }
}

static void FN(maxpool)(const dab_pool_geom_t *g, const T *x, T *y, int64_t *ind, int nt)
{
    REF_FOR(nt, pl, g->n * g->c, FN(maxpool_plane)(g, x, y, ind, pl));
}

#ifdef POOL_AVG
/* Taps of one window dimension: inside the input (*valid) and inside the padded input
 * [-pad_lo, in + pad_hi) (*padded). */
static inline void FN(taps)(int64_t start, int64_t k, int64_t dil, int64_t in, int64_t plo,
                            int64_t phi, int64_t *valid, int64_t *padded)
{
    int64_t v = 0, p = 0;
    for (int64_t t = 0; t < k; t++) {
        int64_t i = start + t * dil;
        v += i >= 0 && i < in;
        p += i >= -plo && i < in + phi;
    }
    *valid = v;
    *padded = p;
}

static void FN(avgpool_plane)(const dab_pool_geom_t *g, const T *x, T *y, int64_t pl)
{
    const int64_t isz = g->in[0] * g->in[1] * g->in[2];
    const int64_t osz = g->out[0] * g->out[1] * g->out[2];
    {
        const T *xp = x + pl * isz;
        T *yp = y + pl * osz;
        int64_t o = 0;
        for (int64_t o0 = 0; o0 < g->out[0]; o0++) {
            const int64_t s0 = o0 * g->stride[0] - g->pad_lo[0];
            int64_t v0, p0;
            FN(taps)(s0, g->k[0], g->dil[0], g->in[0], g->pad_lo[0], g->pad_hi[0], &v0, &p0);
            for (int64_t o1 = 0; o1 < g->out[1]; o1++) {
                const int64_t s1 = o1 * g->stride[1] - g->pad_lo[1];
                int64_t v1, p1;
                FN(taps)(s1, g->k[1], g->dil[1], g->in[1], g->pad_lo[1], g->pad_hi[1], &v1, &p1);
                for (int64_t o2 = 0; o2 < g->out[2]; o2++, o++) {
                    const int64_t s2 = o2 * g->stride[2] - g->pad_lo[2];
                    int64_t v2, p2;
                    FN(taps)
                    (s2, g->k[2], g->dil[2], g->in[2], g->pad_lo[2], g->pad_hi[2], &v2, &p2);
                    T sum = 0;
                    for (int64_t k0 = 0; k0 < g->k[0]; k0++) {
                        const int64_t i0 = s0 + k0 * g->dil[0];
                        if (i0 < 0 || i0 >= g->in[0])
                            continue;
                        for (int64_t k1 = 0; k1 < g->k[1]; k1++) {
                            const int64_t i1 = s1 + k1 * g->dil[1];
                            if (i1 < 0 || i1 >= g->in[1])
                                continue;
                            const T *xr = xp + (i0 * g->in[1] + i1) * g->in[2];
                            for (int64_t k2 = 0; k2 < g->k[2]; k2++) {
                                const int64_t i2 = s2 + k2 * g->dil[2];
                                if (i2 >= 0 && i2 < g->in[2])
                                    sum += xr[i2];
                            }
                        }
                    }
                    int64_t cnt = g->count_include_pad ? p0 * p1 * p2 : v0 * v1 * v2;
                    yp[o] = sum / (T)cnt;
                }
            }
        }
    }
}

static void FN(avgpool)(const dab_pool_geom_t *g, const T *x, T *y, int nt)
{
    REF_FOR(nt, pl, g->n * g->c, FN(avgpool_plane)(g, x, y, pl));
}

static void FN(global_plane)(int is_max, int64_t spatial, const T *x, T *y, int64_t pl)
{
    {
        const T *xp = x + pl * spatial;
        if (is_max) {
            T m = spatial > 0 ? xp[0] : LOWEST;
#pragma omp simd reduction(max : m)
            for (int64_t i = 0; i < spatial; i++)
                m = xp[i] > m ? xp[i] : m;
            y[pl] = m;
        } else {
            T s = 0;
#pragma omp simd reduction(+ : s)
            for (int64_t i = 0; i < spatial; i++)
                s += xp[i];
            y[pl] = s / (T)spatial;
        }
    }
}

static void FN(global)(int is_max, int64_t planes, int64_t spatial, const T *x, T *y, int nt)
{
    REF_FOR(nt, pl, planes, FN(global_plane)(is_max, spatial, x, y, pl));
}
#endif
