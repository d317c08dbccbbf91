/*
 * elementwise_int.h - what the elementwise family's files share: the kernel signatures,
 * the per-dtype kernel tables that elementwise_kernels.c defines and elementwise.c
 * dispatches through, and vectorizable float32 exp/tanh used by the activations.
 *
 * A kernel handles one contiguous run of elements. Binary kernels take a flag per
 * input saying whether it advances (1) or stays on its first element (0, a value
 * broadcast along the run), so the four variants each compile to a plain loop the
 * compiler vectorizes. Tables are indexed by dab_dtype_t; a NULL entry means the
 * dtype is not implemented for that op.
 */
#ifndef DAB_ELEMENTWISE_INT_H
#define DAB_ELEMENTWISE_INT_H

#include <stdint.h>
#include <string.h>

#include "ops.h"

/* Attribute values a unary kernel may use (already defaulted by the op). */
typedef struct dab_ew_args {
    float alpha, beta, gamma;
} dab_ew_args_t;

/* o[i] = f(x[i]) for n elements; o and x do not overlap. */
typedef void (*dab_ew_un_fn)(void *o, const void *x, int64_t n, const dab_ew_args_t *args);

/*
 * o[i] = f(a[i*sa], b[i*sb]) for n elements, sa and sb being 0 or 1. o may be the same
 * pointer as a (accumulation in place). Returns nonzero when some element was invalid
 * (integer division by zero); the other elements are still written.
 */
typedef int (*dab_ew_bin_fn)(void *o, const void *a, const void *b, int64_t n, int sa, int sb);

/* o[i] = min(max(x[i], *lo), *hi), lo and hi pointing at one element of x's dtype. */
typedef void (*dab_ew_clip_fn)(void *o, const void *x, int64_t n, const void *lo,
                               const void *hi);

/* o[i] = c[i*sc] ? x[i*sx] : y[i*sy]; chosen by element size. */
typedef void (*dab_ew_where_fn)(void *o, const uint8_t *c, const void *x, const void *y,
                                int64_t n, int sc, int sx, int sy);

#define DAB_EW_TABLE(kind, name) extern const kind dab_ew_##name[DAB_DT_COUNT_]

/* binary arithmetic: output dtype = input dtype */
DAB_EW_TABLE(dab_ew_bin_fn, add);
DAB_EW_TABLE(dab_ew_bin_fn, sub);
DAB_EW_TABLE(dab_ew_bin_fn, mul);
DAB_EW_TABLE(dab_ew_bin_fn, div);
DAB_EW_TABLE(dab_ew_bin_fn, mod);  /* fmod = 0: sign of the divisor (Python) */
DAB_EW_TABLE(dab_ew_bin_fn, fmod); /* fmod = 1: sign of the dividend (C) */
DAB_EW_TABLE(dab_ew_bin_fn, max);
DAB_EW_TABLE(dab_ew_bin_fn, min);
DAB_EW_TABLE(dab_ew_bin_fn, prelu);
/* comparisons: bool output */
DAB_EW_TABLE(dab_ew_bin_fn, equal);
DAB_EW_TABLE(dab_ew_bin_fn, less);
DAB_EW_TABLE(dab_ew_bin_fn, greater);
DAB_EW_TABLE(dab_ew_bin_fn, less_equal);
DAB_EW_TABLE(dab_ew_bin_fn, greater_equal);
/* logic on bool */
DAB_EW_TABLE(dab_ew_bin_fn, and);
DAB_EW_TABLE(dab_ew_bin_fn, or);
DAB_EW_TABLE(dab_ew_bin_fn, xor);
/* bitwise on integers, BitShift on unsigned */
DAB_EW_TABLE(dab_ew_bin_fn, bitwise_and);
DAB_EW_TABLE(dab_ew_bin_fn, bitwise_or);
DAB_EW_TABLE(dab_ew_bin_fn, bitwise_xor);
DAB_EW_TABLE(dab_ew_bin_fn, shift_left);
DAB_EW_TABLE(dab_ew_bin_fn, shift_right);
/* Pow: [base dtype][exponent dtype], output = base dtype */
extern const dab_ew_bin_fn dab_ew_pow[DAB_DT_COUNT_][DAB_DT_COUNT_];

/* unary */
DAB_EW_TABLE(dab_ew_un_fn, abs);
DAB_EW_TABLE(dab_ew_un_fn, neg);
DAB_EW_TABLE(dab_ew_un_fn, sign);
DAB_EW_TABLE(dab_ew_un_fn, relu);
DAB_EW_TABLE(dab_ew_un_fn, not);
DAB_EW_TABLE(dab_ew_un_fn, sqrt);
DAB_EW_TABLE(dab_ew_un_fn, exp);
DAB_EW_TABLE(dab_ew_un_fn, log);
DAB_EW_TABLE(dab_ew_un_fn, reciprocal);
DAB_EW_TABLE(dab_ew_un_fn, floor);
DAB_EW_TABLE(dab_ew_un_fn, ceil);
DAB_EW_TABLE(dab_ew_un_fn, round);
DAB_EW_TABLE(dab_ew_un_fn, sigmoid);
DAB_EW_TABLE(dab_ew_un_fn, tanh);
DAB_EW_TABLE(dab_ew_un_fn, erf);
DAB_EW_TABLE(dab_ew_un_fn, leaky_relu);
DAB_EW_TABLE(dab_ew_un_fn, hard_sigmoid);
DAB_EW_TABLE(dab_ew_un_fn, hard_swish);
DAB_EW_TABLE(dab_ew_un_fn, elu);
DAB_EW_TABLE(dab_ew_un_fn, selu);
DAB_EW_TABLE(dab_ew_un_fn, celu);
DAB_EW_TABLE(dab_ew_un_fn, softplus);
DAB_EW_TABLE(dab_ew_un_fn, softsign);
DAB_EW_TABLE(dab_ew_un_fn, gelu);
DAB_EW_TABLE(dab_ew_un_fn, gelu_tanh);
DAB_EW_TABLE(dab_ew_un_fn, thresholded_relu);
DAB_EW_TABLE(dab_ew_un_fn, mish);
DAB_EW_TABLE(dab_ew_un_fn, swish);
DAB_EW_TABLE(dab_ew_un_fn, shrink); /* lambd in alpha, bias in beta */
DAB_EW_TABLE(dab_ew_un_fn, sin);
DAB_EW_TABLE(dab_ew_un_fn, cos);
DAB_EW_TABLE(dab_ew_un_fn, tan);
DAB_EW_TABLE(dab_ew_un_fn, asin);
DAB_EW_TABLE(dab_ew_un_fn, acos);
DAB_EW_TABLE(dab_ew_un_fn, atan);
DAB_EW_TABLE(dab_ew_un_fn, sinh);
DAB_EW_TABLE(dab_ew_un_fn, cosh);
DAB_EW_TABLE(dab_ew_un_fn, asinh);
DAB_EW_TABLE(dab_ew_un_fn, acosh);
DAB_EW_TABLE(dab_ew_un_fn, atanh);
DAB_EW_TABLE(dab_ew_un_fn, bitwise_not);
/* bool output: IsNaN; IsInf with detect_negative in alpha, detect_positive in beta */
DAB_EW_TABLE(dab_ew_un_fn, isnan);
DAB_EW_TABLE(dab_ew_un_fn, isinf);

DAB_EW_TABLE(dab_ew_clip_fn, clip);

/* Where by element size: index 1, 2, 4 or 8 (others NULL). */
extern const dab_ew_where_fn dab_ew_where[9];

/*
 * exp for float32 written so that loops over it vectorize (glibc's expf does not
 * without -ffast-math): Cody-Waite range reduction by ln 2 and a degree-6 polynomial,
 * about 1 ulp on normal results. NaN gives NaN, large inputs +inf, inputs whose exp is
 * below FLT_MIN give 0.
 */
static inline float dab_ew_expf(float x)
{
    /* clamp (a NaN becomes the low bound here and is restored below) */
    float xc = x > -87.33654f ? x : -87.33654f;
    xc = xc < 88.72283f ? xc : 88.72283f;
    /* k = round(x / ln2) by the 1.5*2^23 trick (exact, round to nearest) */
    float k = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* scale by 2^k in two halves so k = 128 does not overflow the exponent field */
    int32_t ki = (int32_t)k;
    int32_t k1 = ki / 2, k2 = ki - k1;
    uint32_t b1 = (uint32_t)(k1 + 127) << 23, b2 = (uint32_t)(k2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    float y = p * s1 * s2;
    y = x < -87.33654f ? 0.0f : y;
    y = x > 88.72283f ? __builtin_inff() : y;
    return x != x ? x : y;
}

/* tanh for float32, vectorizable: an odd polynomial near 0, 1 - 2/(e^2|x| + 1) elsewhere. */
static inline float dab_ew_tanhf(float x)
{
    float ax = x < 0 ? -x : x;
    float z = x * x;
    float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
                    1.33314422036e-1f) * z - 3.33332819422e-1f) * z * x + x;
    float axc = ax < 9.0f ? ax : 9.0f; /* tanh(9) is 1 in float */
    float big = 1.0f - 2.0f / (dab_ew_expf(2.0f * axc) + 1.0f);
    big = x < 0 ? -big : big;
    float y = ax < 0.625f ? small : big;
    return x != x ? x : y;
}

/*
 * erf for float32, vectorizable (GELU's erf is hot in transformers): the Taylor series
 * up to x^21 below |x| = 1 (error under 1e-8 there), and Abramowitz & Stegun 7.1.26
 * (absolute error under 1.5e-7, where erf >= 0.84) above.
 */
static inline float dab_ew_erff(float x)
{
    float ax = x < 0 ? -x : x;
    float z = x * x;
    /* 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1)) */
    float s = 1.0f / (3628800.0f * 21.0f);
    s = s * z - 1.0f / (362880.0f * 19.0f);
    s = s * z + 1.0f / (40320.0f * 17.0f);
    s = s * z - 1.0f / (5040.0f * 15.0f);
    s = s * z + 1.0f / (720.0f * 13.0f);
    s = s * z - 1.0f / (120.0f * 11.0f);
    s = s * z + 1.0f / (24.0f * 9.0f);
    s = s * z - 1.0f / (6.0f * 7.0f);
    s = s * z + 1.0f / (2.0f * 5.0f);
    s = s * z - 1.0f / 3.0f;
    s = s * z + 1.0f;
    float small = 1.12837916709551257f * x * s;
    float axc = ax < 10.0f ? ax : 10.0f;
    float t = 1.0f / (1.0f + 0.3275911f * axc);
    float p = 1.061405429f;
    p = p * t - 1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t - 0.284496736f;
    p = p * t + 0.254829592f;
    float big = 1.0f - p * t * dab_ew_expf(-axc * axc);
    big = x < 0 ? -big : big;
    float y = ax < 1.0f ? small : big;
    return x != x ? x : y;
}

#endif
