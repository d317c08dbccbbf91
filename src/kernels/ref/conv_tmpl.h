/*
 * conv_tmpl.h - the reference convolution and transposed convolution, instantiated by
 * conv.c once per element type: it defines T (element type) and FN(name) (suffixing)
 * before including this file.
 *
 * Both work one (image, output channel) plane per iteration (planes are independent, so
 * they split across threads without synchronization) and accumulate one kernel tap at a
 * time over a clipped output range, which keeps the inner loop free of bounds checks
 * and contiguous for stride 1.
 */

/* Output plane pl = (image, output channel). */
static void FN(conv_plane)(const dab_conv_geom_t *g, const T *x, const T *w, const T *b, T *y,
                           int64_t pl)
{
    const int64_t icg = g->c_in / g->group, ocg = g->c_out / g->group;
    const int64_t isz = g->in[0] * g->in[1] * g->in[2];
    const int64_t osz = g->out[0] * g->out[1] * g->out[2];
    const int64_t ksz = g->k[0] * g->k[1] * g->k[2];
    {
        const int64_t ni = pl / g->c_out, oc = pl % g->c_out, gi = oc / ocg;
        T *yp = y + pl * osz;
        const T bias = b ? b[oc] : (T)0;
        for (int64_t i = 0; i < osz; i++)
            yp[i] = bias;
        for (int64_t icl = 0; icl < icg; icl++) {
            const T *xp = x + (ni * g->c_in + gi * icg + icl) * isz;
            const T *wp = w + (oc * icg + icl) * ksz;
            for (int64_t k0 = 0; k0 < g->k[0]; k0++) {
                const int64_t off0 = k0 * g->dil[0] - g->pad_lo[0];
                int64_t lo0, hi0;
                ref_span(g->out[0], g->in[0], g->stride[0], off0, &lo0, &hi0);
                for (int64_t k1 = 0; k1 < g->k[1]; k1++) {
                    const int64_t off1 = k1 * g->dil[1] - g->pad_lo[1];
                    int64_t lo1, hi1;
                    ref_span(g->out[1], g->in[1], g->stride[1], off1, &lo1, &hi1);
                    for (int64_t k2 = 0; k2 < g->k[2]; k2++) {
                        const int64_t off2 = k2 * g->dil[2] - g->pad_lo[2];
                        const int64_t s2 = g->stride[2];
                        int64_t lo2, hi2;
                        ref_span(g->out[2], g->in[2], s2, off2, &lo2, &hi2);
                        const T wv = wp[(k0 * g->k[1] + k1) * g->k[2] + k2];
                        for (int64_t o0 = lo0; o0 < hi0; o0++) {
                            const int64_t i0 = o0 * g->stride[0] + off0;
                            for (int64_t o1 = lo1; o1 < hi1; o1++) {
                                const int64_t i1 = o1 * g->stride[1] + off1;
                                T *yr = yp + (o0 * g->out[1] + o1) * g->out[2];
                                const T *xr = xp + (i0 * g->in[1] + i1) * g->in[2];
                                if (s2 == 1) {
                                    for (int64_t o2 = lo2; o2 < hi2; o2++)
                                        yr[o2] += wv * xr[o2 + off2];
                                } else {
                                    for (int64_t o2 = lo2; o2 < hi2; o2++)
                                        yr[o2] += wv * xr[o2 * s2 + off2];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/* Output plane pl = (image, output channel): scatters every input tap into it. */
static void FN(deconv_plane)(const dab_conv_geom_t *g, const T *x, const T *w, const T *b, T *y,
                             int64_t pl)
{
    const int64_t icg = g->c_in / g->group, ocg = g->c_out / g->group;
    const int64_t isz = g->in[0] * g->in[1] * g->in[2];
    const int64_t osz = g->out[0] * g->out[1] * g->out[2];
    const int64_t ksz = g->k[0] * g->k[1] * g->k[2];
    {
        const int64_t ni = pl / g->c_out, oc = pl % g->c_out;
        const int64_t gi = oc / ocg, ocl = oc % ocg;
        T *yp = y + pl * osz;
        const T bias = b ? b[oc] : (T)0;
        for (int64_t i = 0; i < osz; i++)
            yp[i] = bias;
        for (int64_t icl = 0; icl < icg; icl++) {
            const int64_t ic = gi * icg + icl;
            const T *xp = x + (ni * g->c_in + ic) * isz;
            const T *wp = w + (ic * ocg + ocl) * ksz;
            for (int64_t k0 = 0; k0 < g->k[0]; k0++) {
                const int64_t off0 = k0 * g->dil[0] - g->pad_lo[0];
                int64_t lo0, hi0;
                ref_span(g->in[0], g->out[0], g->stride[0], off0, &lo0, &hi0);
                for (int64_t k1 = 0; k1 < g->k[1]; k1++) {
                    const int64_t off1 = k1 * g->dil[1] - g->pad_lo[1];
                    int64_t lo1, hi1;
                    ref_span(g->in[1], g->out[1], g->stride[1], off1, &lo1, &hi1);
                    for (int64_t k2 = 0; k2 < g->k[2]; k2++) {
                        const int64_t off2 = k2 * g->dil[2] - g->pad_lo[2];
                        const int64_t s2 = g->stride[2];
                        int64_t lo2, hi2;
                        ref_span(g->in[2], g->out[2], s2, off2, &lo2, &hi2);
                        const T wv = wp[(k0 * g->k[1] + k1) * g->k[2] + k2];
                        for (int64_t i0 = lo0; i0 < hi0; i0++) {
                            const int64_t o0 = i0 * g->stride[0] + off0;
                            for (int64_t i1 = lo1; i1 < hi1; i1++) {
                                const int64_t o1 = i1 * g->stride[1] + off1;
                                T *yr = yp + (o0 * g->out[1] + o1) * g->out[2];
                                const T *xr = xp + (i0 * g->in[1] + i1) * g->in[2];
                                for (int64_t i2 = lo2; i2 < hi2; i2++)
                                    yr[i2 * s2 + off2] += wv * xr[i2];
                            }
                        }
                    }
                }
            }
        }
    }
}

static void FN(conv)(const dab_conv_geom_t *g, const T *x, const T *w, const T *b, T *y, int nt)
{
    REF_FOR(nt, pl, g->n * g->c_out, FN(conv_plane)(g, x, w, b, y, pl));
}

static void FN(deconv)(const dab_conv_geom_t *g, const T *x, const T *w, const T *b, T *y, int nt)
{
    REF_FOR(nt, pl, g->n * g->c_out, FN(deconv_plane)(g, x, w, b, y, pl));
}
