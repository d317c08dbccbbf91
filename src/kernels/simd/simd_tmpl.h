/*
 * simd_tmpl.h - the float32 kernels of dab_simd_ops_t written once over a small vector
 * vocabulary (V, VLOAD, VFMA, ...) that simd_avx2.c and simd_avx512.c define before
 * including this file. Each inclusion defines one table, dab_simd_ops_<level>.
 *
 * Loops run whole vectors and finish with one masked vector for the tail, so a row of any
 * length gives the same per-element arithmetic (no scalar remainder computing differently),
 * and no byte outside [p, p + n) is read or written.
 *
 * exp, tanh and sigmoid follow the portable versions in src/ops/elementwise_int.h step for
 * step, with fused multiply-adds; erf is a more accurate formulation (see v_erf). simd.h
 * states the error bounds, tests/unit/test_simd.c checks them against libm.
 */
#define K_CAT2(a, b) a##b
#define K_CAT(a, b) K_CAT2(a, b)
#define K(name) K_CAT(name, SIMD_SFX)
#define DAB_SIMD_MIN(a, b) ((a) < (b) ? (a) : (b))

/* ---- vector math ---- */

/* exp: k = round(x / ln2), r = x - k ln2 (two-part ln2), e^r by a degree-6 polynomial,
 * times 2^k applied in two factors so that k = 128 stays representable. */
/* e^r for the reduced argument of xc (already clamped to the normal range), with k,
 * the power of two left to apply, in *k_out. */
SIMD_FN V K(v_exp_reduced)(V xc, V *k_out)
{
    const V magic = VSET1(12582912.0f);
    V k = VSUB(VFMA(xc, VSET1(1.44269504088896341f), magic), magic);
    V r = VFNMA(k, VSET1(0.693359375f), xc);
    r = VFNMA(k, VSET1(-2.12194440e-4f), r);
    V p = VSET1(1.9875691500e-4f);
    p = VFMA(p, r, VSET1(1.3981999507e-3f));
    p = VFMA(p, r, VSET1(8.3334519073e-3f));
    p = VFMA(p, r, VSET1(4.1665795894e-2f));
    p = VFMA(p, r, VSET1(1.6666665459e-1f));
    p = VFMA(p, r, VSET1(5.0000001201e-1f));
    *k_out = k;
    return VADD(VFMA(VMUL(p, r), r, r), VSET1(1.0f));
}

SIMD_FN V K(v_exp)(V x)
{
    const V lo = VSET1(-87.33654f), hi = VSET1(88.72283f);
    V xc = VMIN(hi, VMAX(lo, x)); /* max/min return their second operand for a NaN x */
    V k;
    V p = K(v_exp_reduced)(xc, &k);
    VI ki = VCVTI(k);
    VI k1 = VI_SRAI1(ki);
    VI k2 = VI_SUB(ki, k1);
    V s1 = VCASTIF(VI_SLLI23(VI_ADD(k1, VI_SET1(127))));
    V s2 = VCASTIF(VI_SLLI23(VI_ADD(k2, VI_SET1(127))));
    V y = VMUL(VMUL(p, s1), s2);
    y = VSEL(VLT(x, lo), VZERO, y);
    return VSEL(VGT(x, hi), VSET1(__builtin_inff()), y); /* a NaN stays NaN throughout */
}

/*
 * exp for softmax rows, where x = v - max(v) <= 0 or NaN: the same polynomial without
 * the overflow clamp and NaN blend (VMAX(lo, x) keeps a NaN x, which then runs through
 * the polynomial as NaN); below the normal range the result is 0, as in v_exp.
 */
SIMD_FN V K(v_exp_neg)(V x)
{
    const V lo = VSET1(-87.33654f);
    V k;
    V p = K(v_exp_reduced)(VMAX(lo, x), &k);
    /* k in [-126, 0]: 2^k is one normal float */
    V s = VCASTIF(VI_SLLI23(VI_ADD(VCVTI(k), VI_SET1(127))));
    return VSEL(VLT(x, lo), VZERO, VMUL(p, s));
}

SIMD_FN V K(v_abs)(V x)
{
    return VAND(x, VCASTIF(VI_SET1(0x7fffffff)));
}

SIMD_FN V K(v_neg)(V x)
{
    return VXOR(x, VSET1(-0.0f));
}

/* max(0, x) returns its second operand for a NaN x and for x = -0: both pass through, as
 * in the portable x < 0 ? 0 : x. */
SIMD_FN V K(v_relu)(V x)
{
    return VMAX(VZERO, x);
}

SIMD_FN V K(v_sqrt)(V x)
{
    return VSQRT(x);
}

/* tanh: an odd polynomial below |x| = 0.625, 1 - 2 / (e^(2|x|) + 1) above. */
SIMD_FN V K(v_tanh)(V x)
{
    V ax = K(v_abs)(x);
    V z = VMUL(x, x);
    V s = VSET1(-5.70498872745e-3f);
    s = VFMA(s, z, VSET1(2.06390887954e-2f));
    s = VFMA(s, z, VSET1(-5.37397155531e-2f));
    s = VFMA(s, z, VSET1(1.33314422036e-1f));
    s = VFMA(s, z, VSET1(-3.33332819422e-1f));
    V small = VFMA(VMUL(s, z), x, x);
    V axc = VMIN(ax, VSET1(9.0f));
    V e = K(v_exp)(VADD(axc, axc));
    V big = VSUB(VSET1(1.0f), VDIV(VSET1(2.0f), VADD(e, VSET1(1.0f))));
    big = VSEL(VLT(x, VZERO), K(v_neg)(big), big);
    V y = VSEL(VLT(ax, VSET1(0.625f)), small, big);
    return VSEL(VISNAN(x), x, y);
}

/* sigmoid from e^-|x|, which cannot overflow. */
SIMD_FN V K(v_sigmoid)(V x)
{
    V e = K(v_exp_neg)(K(v_neg)(K(v_abs)(x)));
    V d = VADD(VSET1(1.0f), e);
    return VDIV(VSEL(VGE(x, VZERO), VSET1(1.0f), e), d);
}

/*
 * erf, within 2 ulp of libm's erff (the portable dab_ew_erff is within 1.5e-7 absolute):
 *   |x| < 1: erf(x) = x + x R(x^2), R(z) = 2/sqrt(pi) (1 - z/3 + z^2/10 - ...) - 1 by its
 *            Taylor series to z^10 (truncation < 2e-8); the last step is one FMA, so the
 *            result carries a single rounding on top of R's small error.
 *   |x| >= 1: erf(x) = 1 - e^(-x^2) P(t), t = 1 / (1 + x/2), P a degree-7 least-squares
 *            fit of erfc(x) e^(x^2) on [1, 4] (relative error 3e-8 with float
 *            coefficients); beyond 4 erf rounds to 1.
 */
#define ERF_T(n, fact) ((float)(1.12837916709551257 / ((fact) * (2.0 * (n) + 1.0))))
SIMD_FN V K(v_erf)(V x)
{
    V ax = K(v_abs)(x);
    V z = VMUL(x, x);
    V s = VSET1(ERF_T(10, 3628800.0));
    s = VFMA(s, z, VSET1(-ERF_T(9, 362880.0)));
    s = VFMA(s, z, VSET1(ERF_T(8, 40320.0)));
    s = VFMA(s, z, VSET1(-ERF_T(7, 5040.0)));
    s = VFMA(s, z, VSET1(ERF_T(6, 720.0)));
    s = VFMA(s, z, VSET1(-ERF_T(5, 120.0)));
    s = VFMA(s, z, VSET1(ERF_T(4, 24.0)));
    s = VFMA(s, z, VSET1(-ERF_T(3, 6.0)));
    s = VFMA(s, z, VSET1(ERF_T(2, 2.0)));
    s = VFMA(s, z, VSET1(-ERF_T(1, 1.0)));
    s = VFMA(s, z, VSET1(0.12837916709551257f));
    V small = VFMA(x, s, x);
    V axc = VMIN(ax, VSET1(4.0f));
    V t = VDIV(VSET1(1.0f), VFMA(VSET1(0.5f), axc, VSET1(1.0f)));
    V p = VSET1(0.11928058415651321f);
    p = VFMA(p, t, VSET1(-0.4710496962070465f));
    p = VFMA(p, t, VSET1(0.5631666779518127f));
    p = VFMA(p, t, VSET1(-0.10361757129430771f));
    p = VFMA(p, t, VSET1(0.3478435277938843f));
    p = VFMA(p, t, VSET1(0.2596667408943176f));
    p = VFMA(p, t, VSET1(0.2849169969558716f));
    p = VFMA(p, t, VSET1(-0.00015454307140316814f));
    V big = VFNMA(p, K(v_exp_neg)(K(v_neg)(VMUL(axc, axc))), VSET1(1.0f));
    big = VSEL(VLT(x, VZERO), K(v_neg)(big), big);
    V y = VSEL(VLT(ax, VSET1(1.0f)), small, big);
    return VSEL(VISNAN(x), x, y);
}
#undef ERF_T

SIMD_FN V K(v_gelu)(V x)
{
    V e = K(v_erf)(VMUL(x, VSET1(0.70710678118654752440f)));
    return VMUL(VMUL(VSET1(0.5f), x), VADD(VSET1(1.0f), e));
}

/* GELU with the tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
SIMD_FN V K(v_gelu_tanh)(V x)
{
    V x3 = VMUL(VMUL(x, x), x);
    V u = VMUL(VSET1(0.79788456080286535588f), VFMA(VSET1(0.044715f), x3, x));
    return VMUL(VMUL(VSET1(0.5f), x), VADD(VSET1(1.0f), K(v_tanh)(u)));
}

/* ---- unary kernels ---- */

#define SIMD_UNARY(NAME)                                                                   \
    SIMD_FN void K(un_##NAME)(float *o, const float *x, int64_t n)                         \
    {                                                                                      \
        int64_t i = 0;                                                                     \
        for (; i + 2 * W <= n; i += 2 * W) {                                               \
            V a = VLOAD(x + i), b = VLOAD(x + i + W);                                      \
            VSTORE(o + i, K(v_##NAME)(a));                                                 \
            VSTORE(o + i + W, K(v_##NAME)(b));                                             \
        }                                                                                  \
        for (; i < n; i += W) {                                                            \
            int64_t m = n - i;                                                             \
            if (m >= W)                                                                    \
                VSTORE(o + i, K(v_##NAME)(VLOAD(x + i)));                                  \
            else                                                                           \
                VSTOREN(o + i, m, K(v_##NAME)(VLOADN(x + i, m)));                          \
        }                                                                                  \
    }

SIMD_UNARY(relu)
SIMD_UNARY(neg)
SIMD_UNARY(abs)
SIMD_UNARY(sqrt)
SIMD_UNARY(exp)
SIMD_UNARY(sigmoid)
SIMD_UNARY(tanh)
SIMD_UNARY(erf)
SIMD_UNARY(gelu)
SIMD_UNARY(gelu_tanh)

/* ---- binary kernels ---- */

/* One loop per broadcast pattern; A and B are V-producing expressions of i. */
#define SIMD_BIN_LOOP(OP, A, AN, B, BN)                                                    \
    do {                                                                                   \
        int64_t i = 0;                                                                     \
        for (; i + W <= n; i += W)                                                         \
            VSTORE(o + i, OP(A, B));                                                       \
        if (i < n) {                                                                       \
            int64_t m = n - i;                                                             \
            VSTOREN(o + i, m, OP(AN, BN));                                                 \
        }                                                                                  \
    } while (0)

#define SIMD_BINARY(NAME, OP)                                                              \
    SIMD_FN int K(bin_##NAME)(void *o_, const void *a_, const void *b_, int64_t n, int sa, \
                              int sb)                                                      \
    {                                                                                      \
        float *o = o_;                                                                     \
        const float *a = a_, *b = b_;                                                      \
        if (n <= 0)                                                                        \
            return 0;                                                                      \
        if (sa && sb) {                                                                    \
            SIMD_BIN_LOOP(OP, VLOAD(a + i), VLOADN(a + i, m), VLOAD(b + i),                \
                          VLOADN(b + i, m));                                               \
        } else if (sa) {                                                                   \
            const V vb = VSET1(b[0]);                                                      \
            SIMD_BIN_LOOP(OP, VLOAD(a + i), VLOADN(a + i, m), vb, vb);                     \
        } else if (sb) {                                                                   \
            const V va = VSET1(a[0]);                                                      \
            SIMD_BIN_LOOP(OP, va, va, VLOAD(b + i), VLOADN(b + i, m));                     \
        } else {                                                                           \
            const V r = OP(VSET1(a[0]), VSET1(b[0]));                                      \
            SIMD_BIN_LOOP(K_FIRST, r, r, r, r);                                            \
        }                                                                                  \
        return 0;                                                                          \
    }
#define K_FIRST(a, b) (a)

SIMD_BINARY(add, VADD)
SIMD_BINARY(sub, VSUB)
SIMD_BINARY(mul, VMUL)
SIMD_BINARY(div, VDIV)

/* ---- reductions ---- */

/* Sum (sq = 0) or sum of squares (sq = 1) in double: each vector's halves are widened. */
SIMD_FN double K(red_sum_any)(const float *x, int64_t n, int sq)
{
    VD a0 = VD_ZERO, a1 = VD_ZERO, a2 = VD_ZERO, a3 = VD_ZERO;
    int64_t i = 0;
    if (sq) {
        for (; i + 2 * W <= n; i += 2 * W) {
            V u = VLOAD(x + i), v = VLOAD(x + i + W);
            VD u0 = VCVT_LO(u), u1 = VCVT_HI(u), v0 = VCVT_LO(v), v1 = VCVT_HI(v);
            a0 = VD_FMA(u0, u0, a0);
            a1 = VD_FMA(u1, u1, a1);
            a2 = VD_FMA(v0, v0, a2);
            a3 = VD_FMA(v1, v1, a3);
        }
        if (i + W <= n) {
            V u = VLOAD(x + i);
            VD u0 = VCVT_LO(u), u1 = VCVT_HI(u);
            a0 = VD_FMA(u0, u0, a0);
            a1 = VD_FMA(u1, u1, a1);
            i += W;
        }
        if (i < n) {
            V u = VLOADN(x + i, n - i);
            VD u0 = VCVT_LO(u), u1 = VCVT_HI(u);
            a2 = VD_FMA(u0, u0, a2);
            a3 = VD_FMA(u1, u1, a3);
        }
    } else {
        for (; i + 2 * W <= n; i += 2 * W) {
            V u = VLOAD(x + i), v = VLOAD(x + i + W);
            a0 = VD_ADD(a0, VCVT_LO(u));
            a1 = VD_ADD(a1, VCVT_HI(u));
            a2 = VD_ADD(a2, VCVT_LO(v));
            a3 = VD_ADD(a3, VCVT_HI(v));
        }
        if (i + W <= n) {
            V u = VLOAD(x + i);
            a0 = VD_ADD(a0, VCVT_LO(u));
            a1 = VD_ADD(a1, VCVT_HI(u));
            i += W;
        }
        if (i < n) {
            V u = VLOADN(x + i, n - i);
            a2 = VD_ADD(a2, VCVT_LO(u));
            a3 = VD_ADD(a3, VCVT_HI(u));
        }
    }
    return VD_HADD(VD_ADD(VD_ADD(a0, a1), VD_ADD(a2, a3)));
}

SIMD_FN double K(red_sum)(const float *x, int64_t n)
{
    return K(red_sum_any)(x, n, 0);
}

SIMD_FN double K(red_sumsq)(const float *x, int64_t n)
{
    return K(red_sum_any)(x, n, 1);
}

/* Max with NaN tracked apart (VMAX drops NaNs one way or the other). */
SIMD_FN float K(red_max)(const float *x, int64_t n)
{
    const V ninf = VSET1(-__builtin_inff());
    V m0 = ninf, m1 = ninf;
    VM nan = VM_NONE;
    int64_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
        V u = VLOAD(x + i), v = VLOAD(x + i + W);
        nan = VM_OR(nan, VM_OR(VISNAN(u), VISNAN(v)));
        m0 = VMAX(m0, u);
        m1 = VMAX(m1, v);
    }
    for (; i < n; i += W) {
        V u = n - i >= W ? VLOAD(x + i) : VLOADN_FILL(x + i, n - i, ninf);
        nan = VM_OR(nan, VISNAN(u));
        m0 = VMAX(m0, u);
    }
    if (VM_ANY(nan))
        return __builtin_nanf("");
    return VHMAX(VMAX(m0, m1));
}

/* Max of a row for softmax: NaNs need no care there (they reach every output anyway). */
SIMD_FN float K(row_max)(const float *x, int64_t n)
{
    const V ninf = VSET1(-__builtin_inff());
    V m0 = ninf, m1 = ninf;
    int64_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
        m0 = VMAX(m0, VLOAD(x + i));
        m1 = VMAX(m1, VLOAD(x + i + W));
    }
    for (; i < n; i += W)
        m0 = VMAX(m0, n - i >= W ? VLOAD(x + i) : VLOADN_FILL(x + i, n - i, ninf));
    return VHMAX(VMAX(m0, m1));
}

/* ---- Softmax / LogSoftmax rows ---- */

/* sum of e^(x - m), storing the exponentials in y when y is not NULL */
SIMD_FN float K(row_expsum)(const float *x, float *y, int64_t n, float m)
{
    const V vm = VSET1(m);
    V s0 = VZERO, s1 = VZERO;
    int64_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
        V e0 = K(v_exp_neg)(VSUB(VLOAD(x + i), vm));
        V e1 = K(v_exp_neg)(VSUB(VLOAD(x + i + W), vm));
        if (y) {
            VSTORE(y + i, e0);
            VSTORE(y + i + W, e1);
        }
        s0 = VADD(s0, e0);
        s1 = VADD(s1, e1);
    }
    for (; i < n; i += W) {
        int64_t r = n - i;
        if (r >= W) {
            V e = K(v_exp_neg)(VSUB(VLOAD(x + i), vm));
            if (y)
                VSTORE(y + i, e);
            s0 = VADD(s0, e);
        } else {
            V e = VMASKZ(r, K(v_exp_neg)(VSUB(VLOADN(x + i, r), vm)));
            if (y)
                VSTOREN(y + i, r, e);
            s1 = VADD(s1, e);
        }
    }
    return VHADD(VADD(s0, s1));
}

SIMD_FN void K(row_softmax)(const float *x, float *y, int64_t n)
{
    float m = K(row_max)(x, n);
    const V inv = VSET1(1.0f / K(row_expsum)(x, y, n, m));
    int64_t i = 0;
    for (; i + W <= n; i += W)
        VSTORE(y + i, VMUL(VLOAD(y + i), inv));
    if (i < n)
        VSTOREN(y + i, n - i, VMUL(VLOADN(y + i, n - i), inv));
}

SIMD_FN void K(row_logsoftmax)(const float *x, float *y, int64_t n)
{
    float m = K(row_max)(x, n);
    const V vm = VSET1(m), ls = VSET1(logf(K(row_expsum)(x, NULL, n, m)));
    int64_t i = 0;
    for (; i + W <= n; i += W)
        VSTORE(y + i, VSUB(VSUB(VLOAD(x + i), vm), ls));
    if (i < n)
        VSTOREN(y + i, n - i, VSUB(VSUB(VLOADN(x + i, n - i), vm), ls));
}

/* ---- LayerNorm / RMSNorm rows ---- */

/* sum of (x - c)^2 (sq) or of x - c, in float over four vector accumulators: rows are
 * short enough (and the portable path sums in float lanes too) that double buys nothing
 * worth the widening here */
SIMD_FN float K(row_dev)(const float *x, int64_t n, float c, int sq)
{
    const V vc = VSET1(c);
    V a0 = VZERO, a1 = VZERO, a2 = VZERO, a3 = VZERO;
    int64_t i = 0;
    if (sq) {
        for (; i + 4 * W <= n; i += 4 * W) {
            V d0 = VSUB(VLOAD(x + i), vc), d1 = VSUB(VLOAD(x + i + W), vc);
            V d2 = VSUB(VLOAD(x + i + 2 * W), vc), d3 = VSUB(VLOAD(x + i + 3 * W), vc);
            a0 = VFMA(d0, d0, a0);
            a1 = VFMA(d1, d1, a1);
            a2 = VFMA(d2, d2, a2);
            a3 = VFMA(d3, d3, a3);
        }
        for (; i < n; i += W) {
            V d = n - i >= W ? VSUB(VLOAD(x + i), vc)
                             : VMASKZ(n - i, VSUB(VLOADN(x + i, n - i), vc));
            a0 = VFMA(d, d, a0);
        }
    } else {
        for (; i + 4 * W <= n; i += 4 * W) {
            a0 = VADD(a0, VSUB(VLOAD(x + i), vc));
            a1 = VADD(a1, VSUB(VLOAD(x + i + W), vc));
            a2 = VADD(a2, VSUB(VLOAD(x + i + 2 * W), vc));
            a3 = VADD(a3, VSUB(VLOAD(x + i + 3 * W), vc));
        }
        for (; i < n; i += W)
            a0 = VADD(a0, n - i >= W ? VSUB(VLOAD(x + i), vc)
                                     : VMASKZ(n - i, VSUB(VLOADN(x + i, n - i), vc)));
    }
    return VHADD(VADD(VADD(a0, a1), VADD(a2, a3)));
}

SIMD_FN void K(norm_row)(int rms, const float *x, float *y, int64_t n, const float *sc,
                         const float *bi, double eps, double *mean_out, double *inv_out)
{
    float mean = rms ? 0.0f : K(row_dev)(x, n, 0.0f, 0) / (float)n;
    float var = K(row_dev)(x, n, mean, 1) / (float)n;
    float inv = 1.0f / (float)sqrt((double)var + eps);
    const V vm = VSET1(mean), vi = VSET1(inv);
    int64_t i = 0;
    if (bi) {
        for (; i + W <= n; i += W)
            VSTORE(y + i, VFMA(VMUL(VSUB(VLOAD(x + i), vm), vi), VLOAD(sc + i), VLOAD(bi + i)));
        if (i < n) {
            int64_t r = n - i;
            VSTOREN(y + i, r,
                    VFMA(VMUL(VSUB(VLOADN(x + i, r), vm), vi), VLOADN(sc + i, r),
                         VLOADN(bi + i, r)));
        }
    } else {
        for (; i + W <= n; i += W)
            VSTORE(y + i, VMUL(VMUL(VSUB(VLOAD(x + i), vm), vi), VLOAD(sc + i)));
        if (i < n) {
            int64_t r = n - i;
            VSTOREN(y + i, r, VMUL(VMUL(VSUB(VLOADN(x + i, r), vm), vi), VLOADN(sc + i, r)));
        }
    }
    *mean_out = mean;
    *inv_out = inv;
}

/* ---- gemv ---- */

/* y[j0, j1) += x0 b0 + ... + x7 b7 over R rows (R = 8, 4 or 1) of B starting at bp */
#define GEMV_PASS(R)                                                                       \
    do {                                                                                   \
        V xv[8];                                                                           \
        const float *br[8];                                                                \
        for (int r = 0; r < (R); r++) {                                                    \
            xv[r] = VSET1(alpha * x[kk + r]);                                              \
            br[r] = b + (kk + r) * b_rs;                                                   \
        }                                                                                  \
        int64_t j = j0;                                                                    \
        for (; j + W <= j1; j += W) {                                                      \
            V acc = VLOAD(y + j);                                                          \
            for (int r = 0; r < (R); r++)                                                  \
                acc = VFMA(xv[r], VLOAD(br[r] + j), acc);                                  \
            VSTORE(y + j, acc);                                                            \
        }                                                                                  \
        if (j < j1) {                                                                      \
            int64_t m = j1 - j;                                                            \
            V acc = VLOADN(y + j, m);                                                      \
            for (int r = 0; r < (R); r++)                                                  \
                acc = VFMA(xv[r], VLOADN(br[r] + j, m), acc);                              \
            VSTOREN(y + j, m, acc);                                                        \
        }                                                                                  \
    } while (0)

/*
 * B contiguous along j: y[j0, j1) (at most 1024 columns at a time, so it stays in L1) is
 * updated by eight rows of B per sweep; eight sequential streams suit the prefetchers
 * better than register-blocked columns walking down all k rows. alpha scales x (like the
 * portable loop), so y starts as the addend.
 */
SIMD_FN void K(gemv_rows)(int64_t c0, int64_t c1, int64_t k, const float *x, const float *b,
                          int64_t b_rs, float alpha, int accumulate, float *y)
{
    for (int64_t j0 = c0; j0 < c1; j0 += 1024) {
        const int64_t j1 = DAB_SIMD_MIN(c1, j0 + 1024);
        if (!accumulate)
            memset(y + j0, 0, (size_t)(j1 - j0) * sizeof(float));
        int64_t kk = 0;
        for (; kk + 8 <= k; kk += 8)
            GEMV_PASS(8);
        for (; kk + 4 <= k; kk += 4)
            GEMV_PASS(4);
        for (; kk < k; kk++)
            GEMV_PASS(1);
    }
}
#undef GEMV_PASS

/* B contiguous along k (a [n, k] weight): four dot products at a time, two accumulators
 * each so that eight FMA chains are in flight. */
SIMD_FN void K(gemv_dots)(int64_t j0, int64_t j1, int64_t k, const float *x, const float *b,
                          int64_t b_cs, float alpha, int accumulate, float *y)
{
    int64_t j = j0;
    for (; j + 4 <= j1; j += 4) {
        const float *w0 = b + j * b_cs, *w1 = w0 + b_cs, *w2 = w1 + b_cs, *w3 = w2 + b_cs;
        V s0 = VZERO, s1 = VZERO, s2 = VZERO, s3 = VZERO;
        V t0 = VZERO, t1 = VZERO, t2 = VZERO, t3 = VZERO;
        int64_t kk = 0;
        for (; kk + 2 * W <= k; kk += 2 * W) {
            V xa = VLOAD(x + kk), xb = VLOAD(x + kk + W);
            s0 = VFMA(xa, VLOAD(w0 + kk), s0);
            s1 = VFMA(xa, VLOAD(w1 + kk), s1);
            s2 = VFMA(xa, VLOAD(w2 + kk), s2);
            s3 = VFMA(xa, VLOAD(w3 + kk), s3);
            t0 = VFMA(xb, VLOAD(w0 + kk + W), t0);
            t1 = VFMA(xb, VLOAD(w1 + kk + W), t1);
            t2 = VFMA(xb, VLOAD(w2 + kk + W), t2);
            t3 = VFMA(xb, VLOAD(w3 + kk + W), t3);
        }
        for (; kk < k; kk += W) {
            int64_t m = k - kk;
            if (m >= W) {
                V xa = VLOAD(x + kk);
                s0 = VFMA(xa, VLOAD(w0 + kk), s0);
                s1 = VFMA(xa, VLOAD(w1 + kk), s1);
                s2 = VFMA(xa, VLOAD(w2 + kk), s2);
                s3 = VFMA(xa, VLOAD(w3 + kk), s3);
            } else {
                V xa = VLOADN(x + kk, m);
                t0 = VFMA(xa, VLOADN(w0 + kk, m), t0);
                t1 = VFMA(xa, VLOADN(w1 + kk, m), t1);
                t2 = VFMA(xa, VLOADN(w2 + kk, m), t2);
                t3 = VFMA(xa, VLOADN(w3 + kk, m), t3);
            }
        }
        float r[4] = {VHADD(VADD(s0, t0)), VHADD(VADD(s1, t1)), VHADD(VADD(s2, t2)),
                      VHADD(VADD(s3, t3))};
        for (int q = 0; q < 4; q++)
            y[j + q] = accumulate ? y[j + q] + alpha * r[q] : alpha * r[q];
    }
    for (; j < j1; j++) {
        const float *w0 = b + j * b_cs;
        V s0 = VZERO, t0 = VZERO;
        int64_t kk = 0;
        for (; kk + W <= k; kk += W)
            s0 = VFMA(VLOAD(x + kk), VLOAD(w0 + kk), s0);
        if (kk < k)
            t0 = VFMA(VLOADN(x + kk, k - kk), VLOADN(w0 + kk, k - kk), t0);
        float r = VHADD(VADD(s0, t0));
        y[j] = accumulate ? y[j] + alpha * r : alpha * r;
    }
}

/* ---- the table ---- */

const dab_simd_ops_t K(dab_simd_ops) = {
    .level = SIMD_LEVEL,
    .name = SIMD_NAME,
    .add = K(bin_add),
    .sub = K(bin_sub),
    .mul = K(bin_mul),
    .div = K(bin_div),
    .relu = K(un_relu),
    .neg = K(un_neg),
    .abs = K(un_abs),
    .sqrt = K(un_sqrt),
    .exp = K(un_exp),
    .sigmoid = K(un_sigmoid),
    .tanh = K(un_tanh),
    .erf = K(un_erf),
    .gelu = K(un_gelu),
    .gelu_tanh = K(un_gelu_tanh),
    .sum = K(red_sum),
    .sumsq = K(red_sumsq),
    .max = K(red_max),
    .softmax = K(row_softmax),
    .logsoftmax = K(row_logsoftmax),
    .norm_row = K(norm_row),
    .gemv_rows = K(gemv_rows),
    .gemv_dots = K(gemv_dots),
};
