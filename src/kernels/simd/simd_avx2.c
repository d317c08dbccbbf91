/*
 * simd_avx2.c - the AVX2 + FMA instance of simd_tmpl.h: 8 float lanes, tails through
 * maskload/maskstore. Every function carries the target attribute, so this file builds
 * without -mavx2 and only runs once simd.c has seen the CPU support it.
 */
#include "simd_int.h"

#ifdef DAB_SIMD_X86
#include <immintrin.h>
#include <math.h>
#include <string.h>

#define SIMD_FN static __attribute__((target("avx2,fma")))
#define SIMD_SFX _avx2
#define SIMD_LEVEL DAB_SIMD_AVX2
#define SIMD_NAME "avx2"
#define W 8

typedef __m256 V;
typedef __m256i VI;
typedef __m256d VD;
typedef __m256 VM; /* all-ones lanes where true */

/* lanes [0, n) set, n < 8 */
SIMD_FN __m256i vtmask(int64_t n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

SIMD_FN __m256 vloadn_fill(const float *p, int64_t n, __m256 fill)
{
    __m256i m = vtmask(n);
    return _mm256_blendv_ps(fill, _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
}

SIMD_FN float vhadd(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

SIMD_FN float vhmax(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

SIMD_FN double vdhadd(__m256d v)
{
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
}

#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VLOADN(p, n) _mm256_maskload_ps(p, vtmask(n))
#define VLOADN_FILL(p, n, f) vloadn_fill(p, n, f)
#define VSTOREN(p, n, v) _mm256_maskstore_ps(p, vtmask(n), v)
#define VMASKZ(n, v) _mm256_and_ps(v, _mm256_castsi256_ps(vtmask(n)))
#define VSET1(f) _mm256_set1_ps(f)
#define VZERO _mm256_setzero_ps()
#define VADD _mm256_add_ps
#define VSUB _mm256_sub_ps
#define VMUL _mm256_mul_ps
#define VDIV _mm256_div_ps
#define VMAX _mm256_max_ps
#define VMIN _mm256_min_ps
#define VSQRT _mm256_sqrt_ps
#define VFMA _mm256_fmadd_ps
#define VFNMA _mm256_fnmadd_ps
#define VAND _mm256_and_ps
#define VXOR _mm256_xor_ps
#define VLT(a, b) _mm256_cmp_ps(a, b, _CMP_LT_OQ)
#define VGT(a, b) _mm256_cmp_ps(a, b, _CMP_GT_OQ)
#define VGE(a, b) _mm256_cmp_ps(a, b, _CMP_GE_OQ)
#define VISNAN(a) _mm256_cmp_ps(a, a, _CMP_UNORD_Q)
#define VSEL(m, a, b) _mm256_blendv_ps(b, a, m)
#define VM_NONE _mm256_setzero_ps()
#define VM_OR _mm256_or_ps
#define VM_ANY(m) (_mm256_movemask_ps(m) != 0)
#define VCVTI _mm256_cvtps_epi32
#define VI_SRAI1(v) _mm256_srai_epi32(v, 1)
#define VI_SUB _mm256_sub_epi32
#define VI_ADD _mm256_add_epi32
#define VI_SET1 _mm256_set1_epi32
#define VI_SLLI23(v) _mm256_slli_epi32(v, 23)
#define VCASTIF _mm256_castsi256_ps
#define VHADD vhadd
#define VHMAX vhmax
#define VD_ZERO _mm256_setzero_pd()
#define VD_ADD _mm256_add_pd
#define VD_FMA _mm256_fmadd_pd
#define VCVT_LO(v) _mm256_cvtps_pd(_mm256_castps256_ps128(v))
#define VCVT_HI(v) _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))
#define VD_HADD vdhadd

#include "simd_tmpl.h"
#endif
