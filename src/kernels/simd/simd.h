/*
 * simd.h - hand-vectorized float32 kernels (AVX2+FMA and AVX-512), one table of them per
 * instruction-set level, the level picked once per process from CPUID.
 *
 * The operators (elementwise.c, reduce.c, reduce_softmax.c, transformer_norm.c,
 * nn_gemm.c) ask dab_simd() for the active table and use it where the dtype is float32
 * and the data contiguous; a NULL table (no AVX2, or DABBA_SIMD=none) means "keep the
 * portable C path", which stays the reference the tests compare against.
 *
 * The level: DABBA_SIMD=none|avx2|avx512 in the environment forces one (a level the CPU
 * lacks falls back to the best it has below it; other values are ignored); otherwise AVX-512 (F, BW, VL, DQ) when present,
 * else AVX2 with FMA, else none. The kernel files are compiled for a baseline x86-64 with
 * per-function target attributes, so the binary runs on CPUs without AVX-512 or AVX2.
 *
 * Accuracy (measured and enforced by tests/unit/test_simd.c against libm):
 *   add/sub/mul/div, relu, neg, abs, sqrt, max: exact, bitwise equal to the portable code
 *   exp: <= 1 ulp measured (2 enforced) on [-87.33, 88.72]; 0 below (no denormals), +inf
 *        above, NaN passes through (the portable dab_ew_expf's behaviour)
 *   tanh, sigmoid: <= 2 ulp measured (3 enforced); results below FLT_MIN flush to 0
 *   erf: <= 1 ulp measured (2 enforced) - tighter than the portable dab_ew_erff, whose
 *        Abramowitz-Stegun tail is good to 1.5e-7 absolute; gelu and gelu_tanh follow
 *        from erf and tanh (within 2e-7 * (1 + |x|) of a double reference)
 *   sum, sum of squares: accumulated in double (like the portable path); softmax and
 *        normalization rows within a few ulp of a double reference
 *   gemv: float FMA accumulation in a different order from the portable loop
 *
 * Every kernel is reentrant and may be called from any thread; none allocates.
 */
#ifndef DAB_SIMD_H
#define DAB_SIMD_H

#include <stdint.h>

typedef enum dab_simd_level {
    DAB_SIMD_NONE = 0,
    DAB_SIMD_AVX2 = 1,   /* AVX2 + FMA, 8 lanes */
    DAB_SIMD_AVX512 = 2, /* AVX-512 F/BW/VL/DQ, 16 lanes */
} dab_simd_level_t;

/* One level's kernels. n may be 0; pointers need no particular alignment. */
typedef struct dab_simd_ops {
    dab_simd_level_t level;
    const char *name;
    /*
     * o[i] = a[i*sa] op b[i*sb] for n floats, sa and sb 0 or 1 (0: a broadcast value).
     * o may equal a. Always returns 0. The signature is the elementwise family's
     * dab_ew_bin_fn, so these slot into its dispatch as they are.
     */
    int (*add)(void *o, const void *a, const void *b, int64_t n, int sa, int sb);
    int (*sub)(void *o, const void *a, const void *b, int64_t n, int sa, int sb);
    int (*mul)(void *o, const void *a, const void *b, int64_t n, int sa, int sb);
    int (*div)(void *o, const void *a, const void *b, int64_t n, int sa, int sb);
    /* o[i] = f(x[i]); o and x do not overlap (or are equal). */
    void (*relu)(float *o, const float *x, int64_t n);
    void (*neg)(float *o, const float *x, int64_t n);
    void (*abs)(float *o, const float *x, int64_t n);
    void (*sqrt)(float *o, const float *x, int64_t n);
    void (*exp)(float *o, const float *x, int64_t n);
    void (*sigmoid)(float *o, const float *x, int64_t n);
    void (*tanh)(float *o, const float *x, int64_t n);
    void (*erf)(float *o, const float *x, int64_t n);
    void (*gelu)(float *o, const float *x, int64_t n); /* 0.5 x (1 + erf(x / sqrt 2)) */
    /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), Gelu's approximate = "tanh" */
    void (*gelu_tanh)(float *o, const float *x, int64_t n);
    /* Reductions of n contiguous floats. sum/sumsq in double; max: NaN if any element is
     * NaN, -inf for n == 0. */
    double (*sum)(const float *x, int64_t n);
    double (*sumsq)(const float *x, int64_t n);
    float (*max)(const float *x, int64_t n);
    /* One row of n >= 1: y = softmax(x) or log_softmax(x); y may equal x. */
    void (*softmax)(const float *x, float *y, int64_t n);
    void (*logsoftmax)(const float *x, float *y, int64_t n);
    /*
     * One normalization row of n >= 1: y = (x - mean) * inv * sc + bi (bi may be NULL), or
     * with rms, mean = 0 and var the mean square; inv = 1 / sqrt(var + eps). Returns mean
     * and inv through the pointers.
     */
    void (*norm_row)(int rms, const float *x, float *y, int64_t n, const float *sc,
                     const float *bi, double eps, double *mean_out, double *inv_out);
    /*
     * gemv column block [j0, j1): y[j] = alpha * sum_k x[k] * B(k, j) (+ y[j] when
     * accumulate). gemv_rows: B(k, j) = b[k * b_rs + j]; gemv_dots: b[j * b_cs + k].
     */
    void (*gemv_rows)(int64_t j0, int64_t j1, int64_t k, const float *x, const float *b,
                      int64_t b_rs, float alpha, int accumulate, float *y);
    void (*gemv_dots)(int64_t j0, int64_t j1, int64_t k, const float *x, const float *b,
                      int64_t b_cs, float alpha, int accumulate, float *y);
} dab_simd_ops_t;

/*
 * The active table, or NULL when the portable code should run. The level is chosen on the
 * first call (CPUID and DABBA_SIMD) and never changes. Any thread.
 */
const dab_simd_ops_t *dab_simd(void);

/* The active level (DAB_SIMD_NONE when dab_simd() is NULL). Any thread. */
dab_simd_level_t dab_simd_level(void);

/* The table of one level when this CPU supports it, else NULL (for tests and benchmarks;
 * DAB_SIMD_NONE always gives NULL). Any thread. */
const dab_simd_ops_t *dab_simd_ops_for(dab_simd_level_t level);

/* "none", "avx2" or "avx512". */
const char *dab_simd_level_name(dab_simd_level_t level);

/*
 * float32 gemv y = alpha * x B (+ y), the same contract as dab_gemv_f32 (kernels.h): with
 * B contiguous along k (a transposed weight) the active level's gemv_dots runs, split over
 * nt OpenMP threads in column blocks; otherwise (no level, or B contiguous along j, where
 * the SIMD kernel measured no faster) it calls dab_gemv_f32.
 */
void dab_simd_gemv_f32(int64_t n, int64_t k, const float *x, const float *b, int64_t b_rs,
                       int64_t b_cs, float alpha, int accumulate, float *y, int nt);

#endif
