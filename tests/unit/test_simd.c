/*
 * test_simd.c - the SIMD kernels (src/kernels/simd/) at every level this CPU has, against
 * the portable code and libm.
 *
 * Every kernel runs on random data at lengths 0..67 (all vector tails at both widths), a
 * few long lengths, and pointers offset by 0..3 floats from a 64-byte boundary, with a
 * guard after the output that must stay untouched. Tolerances:
 *   add/sub/mul/div, relu/neg/abs/sqrt, max: bitwise equal to the C expression (NaN: NaN)
 *   exp: <= 2 ulp vs expf where the result is normal; 0 below -87.34, +inf above 88.72
 *   tanh, sigmoid: <= 3 ulp vs libm (tanhf; 1 / (1 + e^-x) in double); results below
 *     FLT_MIN may flush to 0, as in the portable code
 *   erf: <= 2 ulp
 *   gelu, gelu_tanh: |err| <= 2e-7 * (1 + |x|) vs double
 *   sum/sumsq (double accumulation): 1e-12 relative to sum |x| (or x^2)
 *   softmax/logsoftmax/norm rows: 2e-6 relative + 1e-7 absolute vs double
 *   gemv: 1e-5 relative to sum |x_k b_kj| vs double
 * NaN and infinities: every elementwise kernel is fed them and must give what libm does.
 */
#include "kernels/kernels.h"
#include "kernels/simd/simd.h"
#include "ops/elementwise_int.h"
#include "test.h"

#include <float.h>
#include <stdint.h>

static uint64_t g_rng = 0x243f6a8885a308d3ull;

static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

/* uniform in [lo, hi) */
static float runi(float lo, float hi)
{
    return lo + (hi - lo) * (float)((double)(rnd() >> 11) / (double)(1ull << 53));
}

#define GUARD 16
#define MAXN 5000
static const float g_sentinel = 12345.678f;

/* 64-byte aligned buffers with room for an offset and a guard */
static float *g_in_a, *g_in_b, *g_out, *g_ref;

static void bufs_init(void)
{
    if (g_in_a)
        return;
    size_t sz = (MAXN + 64 + GUARD) * sizeof(float);
    sz = (sz + 63) / 64 * 64; /* aligned_alloc wants a multiple of the alignment */
    g_in_a = aligned_alloc(64, sz);
    g_in_b = aligned_alloc(64, sz);
    g_out = aligned_alloc(64, sz);
    g_ref = aligned_alloc(64, sz);
}

static const int64_t g_lens[] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14,
                                 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29,
                                 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
                                 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59,
                                 60, 61, 62, 63, 64, 65, 66, 67, 100, 255, 1000, 4099};
#define NLENS ((int)(sizeof g_lens / sizeof g_lens[0]))

/* distance in units in the last place between two floats of the same sign class */
static double ulps(float got, float want)
{
    if (got == want)
        return 0;
    if (isnan(got) || isnan(want))
        return isnan(got) && isnan(want) ? 0 : 1e30;
    if (isinf(want) || isinf(got))
        return 1e30;
    double u = fabs(nextafterf(want, INFINITY) - want);
    if (u == 0 || !isfinite(u))
        u = fabs(want - nextafterf(want, -INFINITY));
    return fabs((double)got - (double)want) / u;
}

static int same_bits_or_nan(float a, float b)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    return memcmp(&a, &b, sizeof a) == 0;
}

/* the levels to test: every one this CPU supports */
static int levels(const dab_simd_ops_t **out)
{
    int n = 0;
    for (int l = DAB_SIMD_AVX2; l <= DAB_SIMD_AVX512; l++) {
        const dab_simd_ops_t *s = dab_simd_ops_for((dab_simd_level_t)l);
        if (s)
            out[n++] = s;
        else
            printf("test_simd: level %s not supported here, skipped\n",
                   dab_simd_level_name((dab_simd_level_t)l));
    }
    return n;
}

/* A value from a mix: mostly uniform in [lo, hi], sometimes NaN, +-inf, +-0 or a huge one */
static float rval(float lo, float hi, int specials)
{
    if (specials && rnd() % 16 == 0) {
        static const float sp[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1e30f, -1e30f, 1e-40f};
        return sp[rnd() % (sizeof sp / sizeof sp[0])];
    }
    return runi(lo, hi);
}

static void fill(float *p, int64_t n, float lo, float hi, int specials)
{
    for (int64_t i = 0; i < n; i++)
        p[i] = rval(lo, hi, specials);
    for (int g = 0; g < GUARD; g++)
        p[n + g] = g_sentinel;
}

static int guard_ok(const float *p, int64_t n)
{
    for (int g = 0; g < GUARD; g++)
        if (p[n + g] != g_sentinel)
            return 0;
    return 1;
}

/* ---- level selection ---- */

TEST(test_level_selection)
{
    const dab_simd_ops_t *s = dab_simd();
    dab_simd_level_t l = dab_simd_level();
    CHECK((s == NULL) == (l == DAB_SIMD_NONE));
    if (s)
        CHECK(dab_simd_ops_for(l) == s);
    CHECK(dab_simd_ops_for(DAB_SIMD_NONE) == NULL);
    CHECK(!strcmp(dab_simd_level_name(DAB_SIMD_AVX512), "avx512"));
    CHECK(!strcmp(dab_simd_level_name(DAB_SIMD_NONE), "none"));
    /* main() set DABBA_SIMD=avx2 before the first call: the level must honour it */
    if (dab_simd_ops_for(DAB_SIMD_AVX2))
        CHECK_EQ_INT(l, DAB_SIMD_AVX2);
    const dab_simd_ops_t *lv[2];
    int nl = levels(lv);
    for (int i = 0; i < nl; i++)
        CHECK(!strcmp(lv[i]->name, dab_simd_level_name(lv[i]->level)));
}

/* ---- binary ---- */

static float bin_ref(int op, float x, float y)
{
    switch (op) {
    case 0: return x + y;
    case 1: return x - y;
    case 2: return x * y;
    default: return x / y;
    }
}

TEST(test_binary)
{
    bufs_init();
    const dab_simd_ops_t *lv[2];
    int nl = levels(lv);
    for (int li = 0; li < nl; li++) {
        const dab_simd_ops_t *s = lv[li];
        int (*fns[4])(void *, const void *, const void *, int64_t, int, int) = {s->add, s->sub,
                                                                              s->mul, s->div};
        int bad = 0, guards = 0;
        for (int op = 0; op < 4; op++)
            for (int li2 = 0; li2 < NLENS; li2++)
                for (int pat = 0; pat < 4; pat++) {
                    int64_t n = g_lens[li2];
                    int sa = pat & 1, sb = (pat >> 1) & 1;
                    int off = (int)(rnd() % 4);
                    float *a = g_in_a + off, *b = g_in_b + (off + 1) % 4, *o = g_out + off;
                    fill(a, n > 0 ? n : 1, -10, 10, 1);
                    fill(b, n > 0 ? n : 1, -10, 10, 1);
                    fill(o, n, 0, 1, 0);
                    int rc = fns[op](o, a, b, n, sa, sb);
                    bad += rc != 0;
                    for (int64_t i = 0; i < n; i++)
                        bad += !same_bits_or_nan(o[i], bin_ref(op, a[sa ? i : 0], b[sb ? i : 0]));
                    guards += !guard_ok(o, n);
                    /* in place (o == a), as the variadic Sum does */
                    if (sa && n > 0) {
                        memcpy(g_ref, a, (size_t)n * sizeof(float));
                        fns[op](a, a, b, n, 1, sb);
                        for (int64_t i = 0; i < n; i++)
                            bad += !same_bits_or_nan(a[i], bin_ref(op, g_ref[i], b[sb ? i : 0]));
                    }
                }
        CHECK_EQ_INT(bad, 0);
        CHECK_EQ_INT(guards, 0);
    }
}

/* ---- unary ---- */

typedef void (*un_fn)(float *, const float *, int64_t);

static float relu_ref(float x)
{
    return x < 0 ? 0.0f : x;
}
static float neg_ref(float x)
{
    return -x;
}

TEST(test_unary_exact)
{
    bufs_init();
    const dab_simd_ops_t *lv[2];
    int nl = levels(lv);
    for (int li = 0; li < nl; li++) {
        const dab_simd_ops_t *s = lv[li];
        un_fn fns[4] = {s->relu, s->neg, s->abs, s->sqrt};
        int bad = 0, guards = 0;
        for (int f = 0; f < 4; f++)
            for (int k = 0; k < NLENS; k++) {
                int64_t n = g_lens[k];
                int off = (int)(rnd() % 4);
                float *x = g_in_a + off, *o = g_out + (off + 3) % 4;
                fill(x, n, -100, 100, 1);
                fill(o, n, 0, 1, 0);
                fns[f](o, x, n);
                for (int64_t i = 0; i < n; i++) {
                    float want = f == 0   ? relu_ref(x[i])
                                 : f == 1 ? neg_ref(x[i])
                                 : f == 2 ? fabsf(x[i])
                                          : sqrtf(x[i]);
                    bad += !same_bits_or_nan(o[i], want);
                }
                guards += !guard_ok(o, n);
            }
        CHECK_EQ_INT(bad, 0);
        CHECK_EQ_INT(guards, 0);
        /* relu keeps -0 and NaN like the portable kernel */
        float x[3] = {-0.0f, NAN, -1.0f}, o[3];
        s->relu(o, x, 3);
        CHECK(signbit(o[0]) && o[0] == 0 && isnan(o[1]) && o[2] == 0 && !signbit(o[2]));
    }
}

/* What a transcendental kernel is measured against, and how. */
typedef struct un_case {
    const char *name;
    float lo, hi;          /* random inputs from [lo, hi] */
    double max_ulp;        /* ulp bound (where abs_tol is 0 or |x| < abs_from) */
    double abs_tol;        /* absolute bound for |x| >= abs_from (0: none) */
    float abs_from;
} un_case_t;

static double ref_sigmoid(float x)
{
    return 1.0 / (1.0 + exp(-(double)x));
}

static double ref_gelu(float x)
{
    return 0.5 * (double)x * (1.0 + erf((double)x / sqrt(2.0)));
}

static double ref_gelu_tanh(float x)
{
    double u = 0.79788456080286535588 * ((double)x + 0.044715 * (double)x * x * x);
    return 0.5 * (double)x * (1.0 + tanh(u));
}

static double ref_of(int f, float x)
{
    switch (f) {
    case 0: return expf(x);
    case 1: return tanhf(x);
    case 2: return ref_sigmoid(x);
    case 3: return erff(x);
    case 4: return ref_gelu(x);
    default: return ref_gelu_tanh(x);
    }
}

TEST(test_unary_math)
{
    bufs_init();
    const un_case_t cases[6] = {
        {"exp", -87.3f, 88.7f, 2, 0, 0},
        {"tanh", -12, 12, 3, 0, 0},
        {"sigmoid", -30, 30, 3, 0, 0},
        {"erf", -5, 5, 2, 0, 0},
        {"gelu", -8, 8, 0, 0, 0},
        {"gelu_t", -8, 8, 0, 0, 0},
    };
    const dab_simd_ops_t *lv[2];
    int nl = levels(lv);
    for (int li = 0; li < nl; li++) {
        const dab_simd_ops_t *s = lv[li];
        un_fn fns[6] = {s->exp, s->tanh, s->sigmoid, s->erf, s->gelu, s->gelu_tanh};
        for (int f = 0; f < 6; f++) {
            double worst_ulp = 0, worst_abs = 0, worst_gelu = 0;
            int guards = 0, nonfinite = 0;
            for (int rep = 0; rep < 40; rep++)
                for (int k = 0; k < NLENS; k++) {
                    int64_t n = g_lens[k];
                    int off = (int)(rnd() % 4);
                    float *x = g_in_a + off, *o = g_out + (off + 1) % 4;
                    /* half of the runs near 0, where relative error is hardest */
                    float scale = rep % 2 ? 1.0f : 0.05f;
                    fill(x, n, cases[f].lo * scale, cases[f].hi * scale, 0);
                    fill(o, n, 0, 1, 0);
                    fns[f](o, x, n);
                    guards += !guard_ok(o, n);
                    for (int64_t i = 0; i < n; i++) {
                        double want = ref_of(f, x[i]);
                        if (!isfinite(o[i])) {
                            nonfinite++;
                            continue;
                        }
                        if (f >= 4) {
                            double e = fabs(o[i] - want) / (1.0 + fabs(x[i]));
                            worst_gelu = e > worst_gelu ? e : worst_gelu;
                        } else if (cases[f].abs_tol > 0 && fabsf(x[i]) >= cases[f].abs_from) {
                            double e = fabs(o[i] - want);
                            worst_abs = e > worst_abs ? e : worst_abs;
                        } else {
                            double u = ulps(o[i], (float)want);
                            worst_ulp = u > worst_ulp ? u : worst_ulp;
                        }
                    }
                }
            printf("test_simd: %s %-7s max %.2f ulp, %.3g abs, gelu %.3g\n", s->name,
                   cases[f].name, worst_ulp, worst_abs, worst_gelu);
            CHECK(worst_ulp <= cases[f].max_ulp);
            CHECK(worst_abs <= cases[f].abs_tol);
            CHECK(worst_gelu <= 2e-7);
            CHECK_EQ_INT(guards, 0);
            CHECK_EQ_INT(nonfinite, 0);
        }
    }
}

/* NaN, infinities, zeros and range ends: what libm gives (exp: 0 below its normal range). */
TEST(test_unary_specials)
{
    static const float xs[] = {NAN,    -NAN,  INFINITY, -INFINITY, 0.0f,  -0.0f,  1e-30f,
                               -1e-30f, 88.7f, 88.73f,   89.0f,     1000,  -87.3f, -87.4f,
                               -104,   -1000, 9.0f,     -9.0f,     20.0f, -20.0f, 0.625f,
                               -0.625f, 1.0f, -1.0f,    3.9f,      -3.9f, 1e30f,  -1e30f};
    const int n = (int)(sizeof xs / sizeof xs[0]);
    float o[64];
    const dab_simd_ops_t *lv[2];
    int nl = levels(lv);
    for (int li = 0; li < nl; li++) {
        const dab_simd_ops_t *s = lv[li];
        s->exp(o, xs, n);
        for (int i = 0; i < n; i++) {
            float w = xs[i] < -87.33654f ? 0.0f : expf(xs[i]);
            if (!(ulps(o[i], w) <= 2))
                fprintf(stderr, "  exp(%g) = %g, want %g\n", xs[i], o[i], w);
            CHECK(ulps(o[i], w) <= 2);
        }
        s->tanh(o, xs, n);
        for (int i = 0; i < n; i++)
            CHECK(ulps(o[i], tanhf(xs[i])) <= 3);
        s->sigmoid(o, xs, n);
        for (int i = 0; i < n; i++) {
            float w = isnan(xs[i]) ? NAN : (float)ref_sigmoid(xs[i]);
            if (!(ulps(o[i], w) <= 3 || fabsf(o[i] - w) <= FLT_MIN))
                fprintf(stderr, "  sigmoid(%g) = %g, want %g\n", xs[i], o[i], w);
            CHECK(ulps(o[i], w) <= 3 || fabsf(o[i] - w) <= FLT_MIN);
        }
        s->erf(o, xs, n);
        for (int i = 0; i < n; i++)
            CHECK(ulps(o[i], erff(xs[i])) <= 2);
        s->gelu(o, xs, n);
        for (int i = 0; i < n; i++) {
            double w = ref_gelu(xs[i]);
            if (isnan(xs[i]) || xs[i] == -INFINITY) /* -inf * 0 */
                CHECK(isnan(o[i]) || (xs[i] == -INFINITY && o[i] == 0));
            else if (isinf(w))
                CHECK(o[i] == (float)w);
            else
                CHECK(fabs(o[i] - w) <= 2e-7 * (1 + fabs(xs[i])));
        }
        s->sqrt(o, xs, n);
        for (int i = 0; i < n; i++)
            CHECK(same_bits_or_nan(o[i], sqrtf(xs[i])));
    }
}

/* The SIMD math agrees with the portable float versions the ops used before. */
TEST(test_unary_vs_portable)
{
    bufs_init();
    const dab_simd_ops_t *lv[2];
    int nl = levels(lv);
    const int64_t n = 4099;
    for (int li = 0; li < nl; li++) {
        const dab_simd_ops_t *s = lv[li];
        fill(g_in_a, n, -20, 20, 1);
        double worst[3] = {0, 0, 0};
        un_fn fns[3] = {s->exp, s->tanh, s->erf};
        for (int f = 0; f < 3; f++) {
            fns[f](g_out, g_in_a, n);
            for (int64_t i = 0; i < n; i++) {
                float x = g_in_a[i];
                float p = f == 0 ? dab_ew_expf(x) : f == 1 ? dab_ew_tanhf(x) : dab_ew_erff(x);
                double e = isnan(p) ? (isnan(g_out[i]) ? 0 : 1)
                           : isinf(p) ? (g_out[i] == p ? 0 : 1)
                                      : fabs(g_out[i] - p) / (fabs(p) + 1e-30);
                worst[f] = e > worst[f] ? e : worst[f];
            }
            CHECK(worst[f] <= 5e-7);
        }
    }
}

/* ---- reductions ---- */

TEST(test_reductions)
{
    bufs_init();
    const dab_simd_ops_t *lv[2];
    int nl = levels(lv);
    for (int li = 0; li < nl; li++) {
        const dab_simd_ops_t *s = lv[li];
        int bad_sum = 0, bad_sq = 0, bad_max = 0;
        for (int k = 0; k < NLENS; k++)
            for (int rep = 0; rep < 4; rep++) {
                int64_t n = g_lens[k];
                int off = (int)(rnd() % 4);
                float *x = g_in_a + off;
                fill(x, n, -1000, 1000, 0);
                double sum = 0, sabs = 0, sq = 0;
                float mx = -INFINITY;
                for (int64_t i = 0; i < n; i++) {
                    sum += x[i];
                    sabs += fabs(x[i]);
                    sq += (double)x[i] * x[i];
                    mx = x[i] > mx ? x[i] : mx;
                }
                bad_sum += !(fabs(s->sum(x, n) - sum) <= 1e-12 * sabs);
                bad_sq += !(fabs(s->sumsq(x, n) - sq) <= 1e-12 * sq);
                bad_max += s->max(x, n) != mx;
                /* a NaN anywhere wins the max; an infinity wins the sum */
                if (n > 0) {
                    int64_t at = (int64_t)(rnd() % (uint64_t)n);
                    float keep = x[at];
                    x[at] = NAN;
                    bad_max += !isnan(s->max(x, n));
                    bad_sum += !isnan(s->sum(x, n));
                    x[at] = INFINITY;
                    bad_max += s->max(x, n) != INFINITY;
                    bad_sum += s->sum(x, n) != INFINITY;
                    bad_sq += s->sumsq(x, n) != INFINITY;
                    x[at] = keep;
                }
            }
        CHECK_EQ_INT(bad_sum, 0);
        CHECK_EQ_INT(bad_sq, 0);
        CHECK_EQ_INT(bad_max, 0);
        CHECK(s->max(g_in_a, 0) == -INFINITY);
        CHECK(s->sum(g_in_a, 0) == 0);
        /* all -inf */
        float ni[5] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
        CHECK(s->max(ni, 5) == -INFINITY);
    }
}

/* ---- softmax, normalization ---- */

static int close_to(double got, double want, double rtol, double atol)
{
    if (isnan(want))
        return isnan(got);
    return fabs(got - want) <= atol + rtol * fabs(want);
}

TEST(test_softmax)
{
    bufs_init();
    const dab_simd_ops_t *lv[2];
    int nl = levels(lv);
    for (int li = 0; li < nl; li++) {
        const dab_simd_ops_t *s = lv[li];
        int bad = 0, guards = 0;
        for (int k = 1; k < NLENS; k++)
            for (int log = 0; log < 2; log++) {
                int64_t n = g_lens[k];
                int off = (int)(rnd() % 4);
                float *x = g_in_a + off, *y = g_out + (off + 2) % 4;
                float spread = (k % 3 == 0) ? 60.0f : 8.0f;
                fill(x, n, -spread, spread, 0);
                fill(y, n, 0, 1, 0);
                (log ? s->logsoftmax : s->softmax)(x, y, n);
                double m = -INFINITY, z = 0;
                for (int64_t i = 0; i < n; i++)
                    m = x[i] > m ? x[i] : m;
                for (int64_t i = 0; i < n; i++)
                    z += exp(x[i] - m);
                for (int64_t i = 0; i < n; i++) {
                    double w = log ? (x[i] - m) - log1p(z - 1) : exp(x[i] - m) / z;
                    bad += !close_to(y[i], w, 2e-6, log ? 1e-5 : 1e-7);
                }
                guards += !guard_ok(y, n);
            }
        CHECK_EQ_INT(bad, 0);
        CHECK_EQ_INT(guards, 0);
        /* in place, and a row with a NaN or +inf gives NaN everywhere, like the C path */
        float r[5] = {1, 2, 3, 4, 5};
        s->softmax(r, r, 5);
        double z = 0;
        for (int i = 0; i < 5; i++)
            z += exp(i - 4.0);
        CHECK(close_to(r[4], 1 / z, 2e-6, 1e-7));
        float q[5] = {1, NAN, 3, 4, 5};
        s->softmax(q, q, 5);
        CHECK(isnan(q[0]) && isnan(q[4]));
        float big[3] = {-INFINITY, 0, 1};
        s->softmax(big, big, 3);
        CHECK(big[0] == 0 && close_to(big[2], 1 / (1 + exp(-1.0)), 2e-6, 0));
    }
}

TEST(test_norm_rows)
{
    bufs_init();
    const dab_simd_ops_t *lv[2];
    int nl = levels(lv);
    float *sc = g_ref, *bi = g_in_b;
    for (int li = 0; li < nl; li++) {
        const dab_simd_ops_t *s = lv[li];
        int bad = 0, guards = 0;
        for (int k = 1; k < NLENS; k++)
            for (int mode = 0; mode < 3; mode++) { /* 0 LayerNorm+bias, 1 no bias, 2 RMS */
                int64_t n = g_lens[k];
                int off = (int)(rnd() % 4);
                float *x = g_in_a + off, *y = g_out + (off + 1) % 4;
                fill(x, n, -3, 5, 0);
                fill(sc, n, 0.5f, 2, 0);
                fill(bi, n, -1, 1, 0);
                fill(y, n, 0, 1, 0);
                const double eps = 1e-5;
                double mean_got, inv_got;
                s->norm_row(mode == 2, x, y, n, sc, mode == 0 ? bi : NULL, eps, &mean_got,
                            &inv_got);
                double mean = 0, var = 0;
                if (mode != 2) {
                    for (int64_t i = 0; i < n; i++)
                        mean += x[i];
                    mean /= (double)n;
                }
                for (int64_t i = 0; i < n; i++)
                    var += (x[i] - mean) * (x[i] - mean);
                var /= (double)n;
                double inv = 1 / sqrt(var + eps);
                bad += !close_to(mean_got, mean, 1e-6, 1e-6);
                bad += !close_to(inv_got, inv, 2e-6, 0);
                for (int64_t i = 0; i < n; i++) {
                    double w = (x[i] - mean) * inv * sc[i] + (mode == 0 ? bi[i] : 0);
                    bad += !close_to(y[i], w, 2e-6, 2e-6);
                }
                guards += !guard_ok(y, n);
            }
        CHECK_EQ_INT(bad, 0);
        CHECK_EQ_INT(guards, 0);
    }
}

/* ---- gemv ---- */

TEST(test_gemv)
{
    const dab_simd_ops_t *lv[2];
    int nl = levels(lv);
    static const int64_t sizes[][2] = {{0, 5},    {1, 1},    {1, 17},   {7, 3},    {16, 16},
                                       {17, 33},  {63, 65},  {128, 1},  {129, 40}, {300, 77},
                                       {1000, 9}, {257, 513}, {3, 1000}, {5, 0}};
    for (int li = 0; li < nl; li++) {
        const dab_simd_ops_t *s = lv[li];
        int bad = 0, guards = 0;
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
            for (int form = 0; form < 2; form++)
                for (int acc = 0; acc < 2; acc++) {
                    int64_t n = sizes[si][0], k = sizes[si][1];
                    int off = (int)(rnd() % 4);
                    float *x = malloc((size_t)(k + 4 + GUARD) * sizeof(float));
                    float *b = malloc((size_t)(n * k + 4) * sizeof(float));
                    float *y = malloc((size_t)(n + 4 + GUARD) * sizeof(float));
                    float *y0 = malloc((size_t)(n + 1) * sizeof(float));
                    fill(x + off, k, -1, 1, 0);
                    for (int64_t i = 0; i < n * k; i++)
                        b[off + i] = runi(-1, 1);
                    fill(y + off, n, -1, 1, 0);
                    memcpy(y0, y + off, (size_t)n * sizeof(float));
                    const float alpha = 0.75f;
                    /* form 0: B [k, n] row-major; form 1: B [n, k] (transposed) */
                    int64_t b_rs = form ? 1 : n, b_cs = form ? k : 1;
                    if (form)
                        s->gemv_dots(0, n, k, x + off, b + off, b_cs, alpha, acc, y + off);
                    else
                        s->gemv_rows(0, n, k, x + off, b + off, b_rs, alpha, acc, y + off);
                    for (int64_t j = 0; j < n; j++) {
                        double w = 0, mag = 0;
                        for (int64_t kk = 0; kk < k; kk++) {
                            double t = (double)x[off + kk] * b[off + kk * b_rs + j * b_cs];
                            w += t;
                            mag += fabs(t);
                        }
                        w = alpha * w + (acc ? y0[j] : 0);
                        bad += !(fabs(y[off + j] - w) <= 1e-5 * (mag + 1));
                    }
                    guards += !guard_ok(y + off, n);
                    free(x), free(b), free(y), free(y0);
                }
        CHECK_EQ_INT(bad, 0);
        CHECK_EQ_INT(guards, 0);
    }
    /* the threaded driver matches the portable gemv */
    int64_t n = 1000, k = 300;
    float *x = malloc((size_t)k * sizeof(float)), *b = malloc((size_t)(n * k) * sizeof(float));
    float *y1 = malloc((size_t)n * sizeof(float)), *y2 = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < k; i++)
        x[i] = runi(-1, 1);
    for (int64_t i = 0; i < n * k; i++)
        b[i] = runi(-1, 1);
    for (int form = 0; form < 2; form++)
        for (int nt = 1; nt <= 3; nt++) {
            int64_t b_rs = form ? 1 : n, b_cs = form ? k : 1;
            dab_gemv_f32(n, k, x, b, b_rs, b_cs, 1.0f, 0, y1, 1);
            dab_simd_gemv_f32(n, k, x, b, b_rs, b_cs, 1.0f, 0, y2, nt);
            int bad = 0;
            for (int64_t j = 0; j < n; j++)
                bad += !(fabsf(y1[j] - y2[j]) <= 1e-4f);
            CHECK_EQ_INT(bad, 0);
        }
    free(x), free(b), free(y1), free(y2);
}

static void set_level_env(void)
{
    setenv("DABBA_SIMD", "avx2", 1);
}

TEST(test_setup)
{
    set_level_env();
}

TEST_LIST(T(test_setup), T(test_level_selection), T(test_binary), T(test_unary_exact),
          T(test_unary_math), T(test_unary_specials), T(test_unary_vs_portable),
          T(test_reductions), T(test_softmax), T(test_norm_rows), T(test_gemv))
