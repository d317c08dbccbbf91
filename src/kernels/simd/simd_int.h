/*
 * simd_int.h - what the SIMD kernel files share: the per-level tables that
 * simd_avx2.c and simd_avx512.c define (from simd_tmpl.h) and simd.c chooses between.
 */
#ifndef DAB_SIMD_INT_H
#define DAB_SIMD_INT_H

#include "simd.h"

#if defined(__x86_64__) || defined(__i386__)
#define DAB_SIMD_X86 1
extern const dab_simd_ops_t dab_simd_ops_avx2;
extern const dab_simd_ops_t dab_simd_ops_avx512;
#endif

#endif
