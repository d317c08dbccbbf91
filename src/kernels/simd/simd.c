/*
 * simd.c - picks the SIMD level once per process (CPUID, DABBA_SIMD) and hands out the
 * matching kernel table; also the threaded driver of the SIMD gemv. Built for the baseline
 * ISA like the level files: nothing here executes an instruction the CPU may lack.
 */
#include "simd_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../../base/base.h"
#include "../kernels.h"

static pthread_once_t g_simd_once = PTHREAD_ONCE_INIT;
static const dab_simd_ops_t *g_simd_ops; /* written once under g_simd_once, then read-only */

static int cpu_has(dab_simd_level_t level)
{
#ifdef DAB_SIMD_X86
    __builtin_cpu_init();
    switch (level) {
    case DAB_SIMD_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case DAB_SIMD_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("fma");
    default: return 0;
    }
#else
    (void)level;
    return 0;
#endif
}

const dab_simd_ops_t *dab_simd_ops_for(dab_simd_level_t level)
{
#ifdef DAB_SIMD_X86
    if (!cpu_has(level))
        return NULL;
    if (level == DAB_SIMD_AVX2)
        return &dab_simd_ops_avx2;
    if (level == DAB_SIMD_AVX512)
        return &dab_simd_ops_avx512;
#endif
    (void)level;
    return NULL;
}

static void simd_choose(void)
{
    dab_simd_level_t want = DAB_SIMD_AVX512;
    const char *env = getenv("DABBA_SIMD");
    if (env && !strcmp(env, "none"))
        want = DAB_SIMD_NONE;
    else if (env && !strcmp(env, "avx2"))
        want = DAB_SIMD_AVX2;
    /* the best level at or below the one asked for that the CPU has */
    for (int l = want; l > DAB_SIMD_NONE && !g_simd_ops; l--)
        g_simd_ops = dab_simd_ops_for((dab_simd_level_t)l);
}

const dab_simd_ops_t *dab_simd(void)
{
    pthread_once(&g_simd_once, simd_choose);
    return g_simd_ops;
}

dab_simd_level_t dab_simd_level(void)
{
    const dab_simd_ops_t *s = dab_simd();
    return s ? s->level : DAB_SIMD_NONE;
}

const char *dab_simd_level_name(dab_simd_level_t level)
{
    switch (level) {
    case DAB_SIMD_AVX2: return "avx2";
    case DAB_SIMD_AVX512: return "avx512";
    default: return "none";
    }
}

void dab_simd_gemv_f32(int64_t n, int64_t k, const float *x, const float *b, int64_t b_rs,
                       int64_t b_cs, float alpha, int accumulate, float *y, int nt)
{
    const dab_simd_ops_t *s = dab_simd();
    /* Only the dot-product form (B contiguous along k) is switched on: gemv_rows measured
     * no better than the portable loop, which -march=native already vectorizes and which
     * is bound by memory bandwidth from 512x512 up (simd_bench.c); it stays tested. */
    if (!s || b_rs != 1 || b_cs == 1) {
        dab_gemv_f32(n, k, x, b, b_rs, b_cs, alpha, accumulate, y, nt);
        return;
    }
    if (n <= 0)
        return;
    /* column blocks of a multiple of 4 (the kernel's dot-product group), one per thread */
    if (nt < 1)
        nt = 1;
    int64_t per = ((n + nt - 1) / nt + 3) / 4 * 4;
    int64_t nblk = (n + per - 1) / per;
    if (nblk < nt)
        nt = (int)nblk;
    if (nt <= 1) { /* no OpenMP region at all: its fork costs more than a small gemv */
        s->gemv_dots(0, n, k, x, b, b_cs, alpha, accumulate, y);
        return;
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t bi = 0; bi < nblk; bi++) {
        int64_t j0 = bi * per, j1 = DAB_MIN(n, j0 + per);
        s->gemv_dots(j0, j1, k, x, b, b_cs, alpha, accumulate, y);
    }
}
