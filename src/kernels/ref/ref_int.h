/*
 * ref_int.h - helpers shared by the reference kernels in this folder only.
 */
#ifndef DAB_KERNELS_REF_INT_H
#define DAB_KERNELS_REF_INT_H

#include <stdint.h>

/*
 * Positions p in [0, count) with 0 <= p * s + off < bound (s >= 1), as the half-open
 * range [*lo, *hi); empty when *hi <= *lo. Used to clip a kernel tap's output (or input)
 * positions to the valid region so inner loops carry no bounds checks.
 */
static inline void ref_span(int64_t count, int64_t bound, int64_t s, int64_t off, int64_t *lo,
                            int64_t *hi)
{
    int64_t l = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t top = bound - 1 - off; /* p * s <= top */
    int64_t h = top < 0 ? 0 : top / s + 1;
    if (h > count)
        h = count;
    *lo = l;
    *hi = h;
}

/*
 * Runs `call` for each i in [0, n): on an OpenMP team of `nt` threads when nt > 1,
 * otherwise as a plain loop. An OpenMP region costs microseconds even when disabled by
 * an if() clause (libgomp still builds a team), which batch-1 latency cannot afford.
 * The thread count must be in a variable named nt.
 */
/* clang-format off */
#define REF_FOR(nt, i, n, call)                                            \
    do {                                                                   \
        const int64_t ref_n_ = (n);                                        \
        if ((nt) > 1) {                                                    \
            _Pragma("omp parallel for num_threads(nt) schedule(static)")   \
            for (int64_t i = 0; i < ref_n_; i++)                           \
                call;                                                      \
        } else {                                                           \
            for (int64_t i = 0; i < ref_n_; i++)                           \
                call;                                                      \
        }                                                                  \
    } while (0)
/* clang-format on */

#endif
