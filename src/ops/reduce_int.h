/*
 * reduce_int.h - what the files of the reduction family (reduce.c, reduce_arg.c,
 * reduce_softmax.c) share and nobody else uses: the callbacks their table rows in
 * reduce.c point at, the column tile width, and a vectorizable float exp.
 */
#ifndef DAB_REDUCE_INT_H
#define DAB_REDUCE_INT_H

#include <math.h>
#include <string.h>

#include "ops.h"

/*
 * Column tile: where a kernel walks several rows at once it keeps per-column
 * state (running max, sum, best index) for this many columns on the stack, so
 * compute needs no heap and no scratch whatever the tensor's width.
 */
#define DAB_RED_TILE 256

/*
 * Horizontal reductions of a contiguous run keep this many independent partial
 * results. Each lane is its own accumulator, so float sums need no reassociation
 * to vectorize; 32 is enough to fill the vector units and, unlike 16, is not
 * fully unrolled by gcc into scalars that then fail to re-vectorize for max/min.
 */
#define DAB_RED_LANES 32

/* a * b + c, fused where the target has FMA (then gcc inlines fmaf as one instruction). */
#ifdef __FMA__
#define DAB_RED_FMAF(a, b, c) fmaf(a, b, c)
#else
#define DAB_RED_FMAF(a, b, c) ((a) * (b) + (c))
#endif

/* The operator callbacks of ArgMax / ArgMin (reduce_arg.c); contracts as in ops.h. */
int dab_reduce_arg_init(dab_node_t *node, dab_err_t *err);
int dab_reduce_arg_reshape(dab_node_t *node, dab_err_t *err);
int dab_reduce_arg_compute(dab_node_t *node, dab_err_t *err);

/* The operator callbacks of Softmax / LogSoftmax / Hardmax (reduce_softmax.c); contracts as
 * in ops.h. */
int dab_reduce_softmax_init(dab_node_t *node, dab_err_t *err);
int dab_reduce_softmax_reshape(dab_node_t *node, dab_err_t *err);
int dab_reduce_softmax_compute(dab_node_t *node, dab_err_t *err);

static inline float dab_red_bits_f32(uint32_t i)
{
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
}

static inline int32_t dab_red_f32_bits(float f)
{
    int32_t i;
    memcpy(&i, &f, sizeof i);
    return i;
}

/*
 * exp(x) for float, written so that gcc vectorizes loops calling it (libm's expf
 * is only vectorized under -ffast-math). exp(x) = 2^n * e^r with n = round(x/ln2)
 * and |r| <= ln2/2; e^r by its Taylor series to degree 7 (truncation < 1e-8
 * relative), so the result is within a couple of ulp of expf. 2^n is applied as
 * two factors so that n in [-150, 128] stays representable: results underflow
 * gracefully to denormals and 0 and overflow to +inf; NaN propagates.
 */
static inline float dab_expf_fast(float x)
{
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    x = x < -104.0f ? -104.0f : x;
    x = x > 89.0f ? 89.0f : x;
    float t = x * 1.44269504088896341f + magic;
    float fn = t - magic;
    int32_t n = dab_red_f32_bits(t) - dab_red_f32_bits(magic);
    float r = x - fn * 0.693359375f;     /* ln2 split: the high part is exact in */
    r = r - fn * -2.12194440e-4f;        /* few bits so fn * hi has no rounding */
    float p = 1.0f / 5040.0f;
    p = DAB_RED_FMAF(p, r, 1.0f / 720.0f);
    p = DAB_RED_FMAF(p, r, 1.0f / 120.0f);
    p = DAB_RED_FMAF(p, r, 1.0f / 24.0f);
    p = DAB_RED_FMAF(p, r, 1.0f / 6.0f);
    p = DAB_RED_FMAF(p, r, 0.5f);
    p = DAB_RED_FMAF(p, r, 1.0f);
    p = DAB_RED_FMAF(p, r, 1.0f);
    int32_t n1 = n / 2;
    int32_t n2 = n - n1;
    float s1 = dab_red_bits_f32((uint32_t)(n1 + 127) << 23);
    float s2 = dab_red_bits_f32((uint32_t)(n2 + 127) << 23);
    return p * s1 * s2;
}

#endif
