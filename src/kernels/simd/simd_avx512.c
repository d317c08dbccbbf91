/*
 * simd_avx512.c - the AVX-512 (F, BW, VL, DQ) instance of simd_tmpl.h: 16 float lanes,
 * tails through mask registers. Every function carries the target attribute, so this
 * file builds without -mavx512f and only runs once simd.c has seen the CPU support it.
 */
#include "simd_int.h"

#ifdef DAB_SIMD_X86
#include <immintrin.h>
#include <math.h>
#include <string.h>

#define SIMD_FN static __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define SIMD_SFX _avx512
#define SIMD_LEVEL DAB_SIMD_AVX512
#define SIMD_NAME "avx512"
#define W 16

typedef __m512 V;
typedef __m512i VI;
typedef __m512d VD;
typedef __mmask16 VM;

#define VTMASK(n) ((__mmask16)((1u << (unsigned)(n)) - 1u)) /* n < 16 */
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VLOADN(p, n) _mm512_maskz_loadu_ps(VTMASK(n), p)
#define VLOADN_FILL(p, n, f) _mm512_mask_loadu_ps(f, VTMASK(n), p)
#define VSTOREN(p, n, v) _mm512_mask_storeu_ps(p, VTMASK(n), v)
#define VMASKZ(n, v) _mm512_maskz_mov_ps(VTMASK(n), v)
#define VSET1(f) _mm512_set1_ps(f)
#define VZERO _mm512_setzero_ps()
#define VADD _mm512_add_ps
#define VSUB _mm512_sub_ps
#define VMUL _mm512_mul_ps
#define VDIV _mm512_div_ps
#define VMAX _mm512_max_ps
#define VMIN _mm512_min_ps
#define VSQRT _mm512_sqrt_ps
#define VFMA _mm512_fmadd_ps
#define VFNMA _mm512_fnmadd_ps
#define VAND _mm512_and_ps
#define VXOR _mm512_xor_ps
#define VLT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ)
#define VGT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ)
#define VGE(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ)
#define VISNAN(a) _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q)
#define VSEL(m, a, b) _mm512_mask_blend_ps(m, b, a)
#define VM_NONE ((VM)0)
#define VM_OR(a, b) ((VM)((a) | (b)))
#define VM_ANY(m) ((m) != 0)
#define VCVTI _mm512_cvtps_epi32
#define VI_SRAI1(v) _mm512_srai_epi32(v, 1)
#define VI_SUB _mm512_sub_epi32
#define VI_ADD _mm512_add_epi32
#define VI_SET1 _mm512_set1_epi32
#define VI_SLLI23(v) _mm512_slli_epi32(v, 23)
#define VCASTIF _mm512_castsi512_ps
#define VHADD _mm512_reduce_add_ps
#define VHMAX _mm512_reduce_max_ps
#define VD_ZERO _mm512_setzero_pd()
#define VD_ADD _mm512_add_pd
#define VD_FMA _mm512_fmadd_pd
#define VCVT_LO(v) _mm512_cvtps_pd(_mm512_castps512_ps256(v))
#define VCVT_HI(v) _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1))
#define VD_HADD _mm512_reduce_add_pd

#include "simd_tmpl.h"
#endif
