/*
 * gemm.c - reference matrix products: the batched, broadcasting matmul every dtype goes
 * through when oneDNN is not used (float64, integers, fallbacks), and the float32 gemv
 * that serves M == 1 (batch-1 Linear/MatMul layers) faster than a general GEMM call.
 *
 * Integer products wrap modulo 2^bits: they are computed in the unsigned type of the
 * same width, as ONNX runtimes do, without signed-overflow undefined behaviour.
 */
#include "../kernels.h"

#include "ref_int.h"

#include <string.h>

/* Element offset of batch index `bi` (flat over g->batch) for an operand's batch strides. */
static int64_t batch_offset(const dab_matmul_geom_t *g, const int64_t *bstride, int64_t bi)
{
    int64_t off = 0;
    for (int d = g->batch_rank - 1; d >= 0; d--) {
        int64_t dim = g->batch[d];
        off += (bi % dim) * bstride[d];
        bi /= dim;
    }
    return off;
}

/*
 * One output row c[0..n) = alpha * A(i, :) x B (+ c when acc). T is the element type,
 * U the type arithmetic is done in (T itself for floats, unsigned for integers).
 * B(k, j) contiguous along j is the vectorizable case; otherwise dot products along k.
 */
#define DEF_ROW(T, U, SUF)                                                                         \
    static void row_##SUF(const dab_matmul_geom_t *g, const T *a, const T *b, T *c)                \
    {                                                                                              \
        const int64_t n = g->n, k = g->k;                                                          \
        const U alpha = (U)(T)g->alpha;                                                            \
        if (g->b_cs == 1) {                                                                        \
            if (!g->accumulate)                                                                    \
                memset(c, 0, (size_t)n * sizeof(T));                                               \
            for (int64_t kk = 0; kk < k; kk++) {                                                   \
                const U av = alpha * (U)a[kk * g->a_cs];                                           \
                const T *br = b + kk * g->b_rs;                                                    \
                for (int64_t j = 0; j < n; j++)                                                    \
                    c[j] = (T)((U)c[j] + av * (U)br[j]);                                           \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        for (int64_t j = 0; j < n; j++) {                                                          \
            const T *bc = b + j * g->b_cs;                                                         \
            U s = 0;                                                                               \
            for (int64_t kk = 0; kk < k; kk++)                                                     \
                s += (U)a[kk * g->a_cs] * (U)bc[kk * g->b_rs];                                     \
            c[j] = g->accumulate ? (T)((U)c[j] + alpha * s) : (T)(alpha * s);                      \
        }                                                                                          \
    }                                                                                              \
    static void mrow_##SUF(const dab_matmul_geom_t *g, const T *a, const T *b, T *c, int64_t r)    \
    {                                                                                              \
        int64_t bi = r / g->m, i = r % g->m;                                                       \
        row_##SUF(g, a + batch_offset(g, g->a_bstride, bi) + i * g->a_rs,                          \
                  b + batch_offset(g, g->b_bstride, bi), c + r * g->n);                            \
    }                                                                                              \
    static void matmul_##SUF(const dab_matmul_geom_t *g, const T *a, const T *b, T *c, int nt)     \
    {                                                                                              \
        int64_t nb = 1;                                                                            \
        for (int d = 0; d < g->batch_rank; d++)                                                    \
            nb *= g->batch[d];                                                                     \
        REF_FOR(nt, r, nb * g->m, mrow_##SUF(g, a, b, c, r));                                      \
    }

DEF_ROW(float, float, f32)
DEF_ROW(double, double, f64)
DEF_ROW(int8_t, uint32_t, i8)
DEF_ROW(uint8_t, uint32_t, u8)
DEF_ROW(int16_t, uint32_t, i16)
DEF_ROW(uint16_t, uint32_t, u16)
DEF_ROW(int32_t, uint32_t, i32)
DEF_ROW(uint32_t, uint32_t, u32)
DEF_ROW(int64_t, uint64_t, i64)
DEF_ROW(uint64_t, uint64_t, u64)

int dab_ref_matmul(dab_dtype_t dt, const dab_matmul_geom_t *g, const void *a, const void *b,
                   void *c, int nt)
{
    switch (dt) {
    case DAB_DT_FLOAT: matmul_f32(g, a, b, c, nt); return 0;
    case DAB_DT_DOUBLE: matmul_f64(g, a, b, c, nt); return 0;
    case DAB_DT_INT8: matmul_i8(g, a, b, c, nt); return 0;
    case DAB_DT_UINT8: matmul_u8(g, a, b, c, nt); return 0;
    case DAB_DT_INT16: matmul_i16(g, a, b, c, nt); return 0;
    case DAB_DT_UINT16: matmul_u16(g, a, b, c, nt); return 0;
    case DAB_DT_INT32: matmul_i32(g, a, b, c, nt); return 0;
    case DAB_DT_UINT32: matmul_u32(g, a, b, c, nt); return 0;
    case DAB_DT_INT64: matmul_i64(g, a, b, c, nt); return 0;
    case DAB_DT_UINT64: matmul_u64(g, a, b, c, nt); return 0;
    default: return DAB_EUNSUPPORTED;
    }
}

/* ---- float32 gemv ---- */

/* Columns [j0, j1) of y += alpha * x B for B contiguous along j: four rows of B per pass
 * over the y block, which stays in L1. */
static void gemv_rows(int64_t j0, int64_t j1, int64_t k, const float *x, const float *b,
                      int64_t b_rs, float alpha, float *y)
{
    int64_t kk = 0;
    for (; kk + 4 <= k; kk += 4) {
        const float x0 = alpha * x[kk], x1 = alpha * x[kk + 1];
        const float x2 = alpha * x[kk + 2], x3 = alpha * x[kk + 3];
        const float *b0 = b + kk * b_rs, *b1 = b0 + b_rs, *b2 = b1 + b_rs, *b3 = b2 + b_rs;
#pragma omp simd
        for (int64_t j = j0; j < j1; j++)
            y[j] += x0 * b0[j] + x1 * b1[j] + x2 * b2[j] + x3 * b3[j];
    }
    for (; kk < k; kk++) {
        const float x0 = alpha * x[kk];
        const float *b0 = b + kk * b_rs;
#pragma omp simd
        for (int64_t j = j0; j < j1; j++)
            y[j] += x0 * b0[j];
    }
}

/* y[j] (j in [j0, j1)) = dot(x, B(:, j)) for B contiguous along k (a [n, k] weight). */
static void gemv_dots(int64_t j0, int64_t j1, int64_t k, const float *x, const float *b,
                      int64_t b_cs, float alpha, int accumulate, float *y)
{
    int64_t j = j0;
    for (; j + 4 <= j1; j += 4) {
        const float *w0 = b + j * b_cs, *w1 = w0 + b_cs, *w2 = w1 + b_cs, *w3 = w2 + b_cs;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
        for (int64_t kk = 0; kk < k; kk++) {
            s0 += x[kk] * w0[kk];
            s1 += x[kk] * w1[kk];
            s2 += x[kk] * w2[kk];
            s3 += x[kk] * w3[kk];
        }
        float r[4] = {s0, s1, s2, s3};
        for (int t = 0; t < 4; t++)
            y[j + t] = accumulate ? y[j + t] + alpha * r[t] : alpha * r[t];
    }
    for (; j < j1; j++) {
        const float *w0 = b + j * b_cs;
        float s0 = 0;
#pragma omp simd reduction(+ : s0)
        for (int64_t kk = 0; kk < k; kk++)
            s0 += x[kk] * w0[kk];
        y[j] = accumulate ? y[j] + alpha * s0 : alpha * s0;
    }
}

void dab_gemv_f32(int64_t n, int64_t k, const float *x, const float *b, int64_t b_rs, int64_t b_cs,
                  float alpha, int accumulate, float *y, int nt)
{
    if (n <= 0)
        return;
    /* Blocks of columns: at most 1024 (y block in L1), at least one per thread. */
    int64_t per = (n + nt - 1) / nt;
    per = (per + 15) / 16 * 16;
    int64_t blk = DAB_MIN(per, (int64_t)1024);
    int64_t nblk = (n + blk - 1) / blk;
    if (nblk < nt)
        nt = (int)nblk;
    const int rows = b_cs == 1;
    if (nt <= 1) { /* no OpenMP region at all: its fork costs more than a small gemv */
        if (rows) {
            if (!accumulate)
                memset(y, 0, (size_t)n * sizeof(float));
            for (int64_t j0 = 0; j0 < n; j0 += blk)
                gemv_rows(j0, DAB_MIN(n, j0 + blk), k, x, b, b_rs, alpha, y);
        } else {
            gemv_dots(0, n, k, x, b, b_cs, alpha, accumulate, y);
        }
        return;
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t bi = 0; bi < nblk; bi++) {
        int64_t j0 = bi * blk, j1 = DAB_MIN(n, j0 + blk);
        if (rows) {
            if (!accumulate)
                memset(y + j0, 0, (size_t)(j1 - j0) * sizeof(float));
            gemv_rows(j0, j1, k, x, b, b_rs, alpha, y);
        } else {
            gemv_dots(j0, j1, k, x, b, b_cs, alpha, accumulate, y);
        }
    }
}
