/*
 * test_kernels.c - the neural-network kernels and operators.
 *
 * The reference kernels (src/kernels/ref/) are the oracle: a few known answers pin them
 * to ONNX semantics, then the fast paths (oneDNN matmul/conv/deconv/pooling, the float32
 * gemv) are compared against them on random geometries (odd sizes, groups, strides,
 * dilations, asymmetric pads, batch > 1, broadcast batches, transposes) with a relative
 * plus absolute tolerance. Operator-level tests drive Gemm/MatMul/Conv/pools through
 * their reshape/compute like a session does and prove, with the counting allocator, that
 * a run hitting the primitive cache does not touch the heap.
 */
#include "kernels/kernels.h"
#include "ops/ops.h"
#include "test.h"

#include <omp.h>

/* ---- helpers ---- */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

/* Uniform integer in [lo, hi]. */
static int64_t rint_in(int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1));
}

static float rfloat(void)
{
    return (float)((double)(rnd() >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}

static float *rand_buf(int64_t n)
{
    float *p = dab_malloc_aligned((size_t)(n > 0 ? n : 1) * sizeof(float), 64);
    for (int64_t i = 0; i < n; i++)
        p[i] = rfloat();
    return p;
}

static float *copy_buf(const float *src, int64_t n)
{
    float *p = dab_malloc_aligned((size_t)(n > 0 ? n : 1) * sizeof(float), 64);
    memcpy(p, src, (size_t)n * sizeof(float));
    return p;
}

/* Counts elements outside |got - want| <= atol + rtol * |want|; reports the first. */
static int64_t mismatches(const char *what, const float *got, const float *want, int64_t n,
                          double atol, double rtol)
{
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double g = got[i], w = want[i];
        int ok =
            fabs(g - w) <= atol + rtol * fabs(w) || (isnan(g) && isnan(w)) || (isinf(g) && g == w);
        if (!ok && bad++ == 0)
            fprintf(stderr, "  %s: element %lld: got %.9g, want %.9g\n", what, (long long)i, g, w);
    }
    return bad;
}

static void *scratch_for(size_t bytes)
{
    return dab_malloc_aligned(bytes ? bytes : 64, 64);
}

/* ---- known answers for the reference kernels ---- */

TEST(test_ref_conv_known)
{
    /* 3x3 input 1..9, 2x2 kernel of ones, bias 0.5: sums of each 2x2 block. */
    float x[9], w[4] = {1, 1, 1, 1}, b[1] = {0.5f}, y[4];
    for (int i = 0; i < 9; i++)
        x[i] = (float)(i + 1);
    dab_conv_geom_t g = {.nsp = 2,
                         .n = 1,
                         .c_in = 1,
                         .c_out = 1,
                         .group = 1,
                         .in = {3, 3},
                         .out = {2, 2},
                         .k = {2, 2},
                         .stride = {1, 1},
                         .dil = {1, 1}};
    dab_conv_geom_pad(&g);
    CHECK_EQ_INT(dab_ref_conv(DAB_DT_FLOAT, &g, x, w, b, y, 1), 0);
    CHECK_NEAR(y[0], 12.5, 1e-6);
    CHECK_NEAR(y[1], 16.5, 1e-6);
    CHECK_NEAR(y[2], 24.5, 1e-6);
    CHECK_NEAR(y[3], 28.5, 1e-6);

    /* Transposed: 1x1 input [2] with 1-D kernel [1, 2, 3], stride 2, pads 1/0 -> [4, 6]. */
    float xt[1] = {2}, wt[3] = {1, 2, 3}, yt[2];
    dab_conv_geom_t gt = {.nsp = 1,
                          .n = 1,
                          .c_in = 1,
                          .c_out = 1,
                          .group = 1,
                          .in = {1},
                          .out = {2},
                          .k = {3},
                          .stride = {2},
                          .dil = {1},
                          .pad_lo = {1}};
    dab_conv_geom_pad(&gt);
    CHECK_EQ_INT(dab_ref_conv_transpose(DAB_DT_FLOAT, &gt, xt, wt, NULL, yt, 1), 0);
    CHECK_NEAR(yt[0], 4, 1e-6);
    CHECK_NEAR(yt[1], 6, 1e-6);
    CHECK_EQ_INT(dab_ref_conv(DAB_DT_INT32, &g, x, w, b, y, 1), DAB_EUNSUPPORTED);
}

TEST(test_ref_pool_known)
{
    /* ONNX's maxpool_with_argmax_2d_precomputed_strides: 5x5 of 1..25, k 2, s 2. */
    float x[25], y[4];
    int64_t ind[4];
    for (int i = 0; i < 25; i++)
        x[i] = (float)(i + 1);
    dab_pool_geom_t g = {.nsp = 2,
                         .n = 1,
                         .c = 1,
                         .in = {5, 5},
                         .out = {2, 2},
                         .k = {2, 2},
                         .stride = {2, 2},
                         .dil = {1, 1},
                         .storage_order = 1};
    dab_pool_geom_pad(&g);
    CHECK_EQ_INT(dab_ref_maxpool(DAB_DT_FLOAT, &g, x, y, ind, 1), 0);
    const float wy[4] = {7, 9, 17, 19};
    const int64_t wi_col[4] = {6, 16, 8, 18}, wi_row[4] = {6, 8, 16, 18};
    for (int i = 0; i < 4; i++) {
        CHECK_NEAR(y[i], wy[i], 0);
        CHECK_EQ_INT(ind[i], wi_col[i]);
    }
    g.storage_order = 0;
    CHECK_EQ_INT(dab_ref_maxpool(DAB_DT_FLOAT, &g, x, y, ind, 1), 0);
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT(ind[i], wi_row[i]);

    /* uint8 max pooling with padding: the padded taps never win. */
    uint8_t xu[4] = {3, 200, 7, 1}, yu[1];
    dab_pool_geom_t gu = {.nsp = 2,
                          .n = 1,
                          .c = 1,
                          .in = {2, 2},
                          .out = {1, 1},
                          .k = {3, 3},
                          .stride = {1, 1},
                          .dil = {1, 1},
                          .pad_lo = {1, 1},
                          .pad_hi = {0, 0}};
    dab_pool_geom_pad(&gu);
    CHECK_EQ_INT(dab_ref_maxpool(DAB_DT_UINT8, &gu, xu, yu, NULL, 1), 0);
    CHECK_EQ_INT(yu[0], 200);

    /* count_include_pad counts the model's pads but not a ceil_mode extension:
     * 1-D input [1, 2, 3], k 2, s 2, pads 1/0, ceil -> windows [-1,0] and [1,2]. */
    float xa[3] = {1, 2, 3}, ya[2];
    dab_pool_geom_t ga = {.nsp = 1,
                          .n = 1,
                          .c = 1,
                          .in = {3},
                          .out = {2},
                          .k = {2},
                          .stride = {2},
                          .dil = {1},
                          .pad_lo = {1},
                          .pad_hi = {0},
                          .count_include_pad = 1};
    dab_pool_geom_pad(&ga);
    CHECK_EQ_INT(dab_ref_avgpool(DAB_DT_FLOAT, &ga, xa, ya, 1), 0);
    CHECK_NEAR(ya[0], 0.5, 1e-6);
    CHECK_NEAR(ya[1], 2.5, 1e-6);
    /* ceil extension: k 2, s 2 over [1, 2, 3] with no pads -> [1.5, 3] (last window has
     * one tap inside, not counted past the input even with count_include_pad). */
    dab_pool_geom_t gc = ga;
    gc.pad_lo[0] = 0;
    CHECK_EQ_INT(dab_ref_avgpool(DAB_DT_FLOAT, &gc, xa, ya, 1), 0);
    CHECK_NEAR(ya[0], 1.5, 1e-6);
    CHECK_NEAR(ya[1], 3.0, 1e-6);
}

TEST(test_ref_matmul_known)
{
    /* int32 wraps modulo 2^32 instead of overflowing. */
    int32_t a[2] = {INT32_MAX, 2}, b[2] = {2, 1}, c[1];
    dab_matmul_geom_t g = {
        .m = 1, .n = 1, .k = 2, .a_rs = 2, .a_cs = 1, .b_rs = 1, .b_cs = 1, .alpha = 1};
    CHECK_EQ_INT(dab_ref_matmul(DAB_DT_INT32, &g, a, b, c, 1), 0);
    CHECK_EQ_INT(c[0], (int32_t)((uint32_t)INT32_MAX * 2u + 2u));
    /* float64, transposed B (dot-product path), accumulate with alpha. */
    double da[3] = {1, 2, 3}, db[6] = {1, 0, 0, 0, 1, 1}, dc[2] = {10, 20};
    dab_matmul_geom_t gd = {.m = 1,
                            .n = 2,
                            .k = 3,
                            .a_rs = 3,
                            .a_cs = 1,
                            .b_rs = 1,
                            .b_cs = 3,
                            .alpha = 2,
                            .accumulate = 1};
    CHECK_EQ_INT(dab_ref_matmul(DAB_DT_DOUBLE, &gd, da, db, dc, 1), 0);
    CHECK_NEAR(dc[0], 12, 1e-12);
    CHECK_NEAR(dc[1], 30, 1e-12);
}

/* ---- oneDNN and gemv against the reference ---- */

/* A random batched matmul geometry; returns element counts of A, B, C. */
static void rand_matmul(dab_matmul_geom_t *g, int64_t *na, int64_t *nb, int64_t *nc,
                        int allow_bcast_b)
{
    memset(g, 0, sizeof *g);
    g->batch_rank = (int)rint_in(0, 3);
    int big = rint_in(0, 3) == 0;
    g->m = big ? rint_in(40, 130) : rint_in(1, 37);
    g->n = big ? rint_in(40, 130) : rint_in(1, 37);
    g->k = big ? rint_in(40, 200) : rint_in(1, 37);
    int ta = (int)rint_in(0, 1), tb = (int)rint_in(0, 1);
    g->a_rs = ta ? 1 : g->k;
    g->a_cs = ta ? g->m : 1;
    g->b_rs = tb ? 1 : g->n;
    g->b_cs = tb ? g->k : 1;
    int64_t sa = g->m * g->k, sb = g->k * g->n, sc = g->m * g->n;
    for (int d = g->batch_rank - 1; d >= 0; d--) {
        g->batch[d] = rint_in(1, 3);
        int bcast = (int)rint_in(0, 2); /* 0: none, 1: A broadcast, 2: B broadcast */
        if (!allow_bcast_b && bcast == 2)
            bcast = 0;
        g->a_bstride[d] = bcast == 1 || g->batch[d] == 1 ? 0 : sa;
        g->b_bstride[d] = bcast == 2 || g->batch[d] == 1 ? 0 : sb;
        sa *= bcast == 1 ? 1 : g->batch[d];
        sb *= bcast == 2 ? 1 : g->batch[d];
        sc *= g->batch[d];
    }
    const double alphas[] = {1.0, 0.5, -1.25};
    g->alpha = alphas[rint_in(0, 2)];
    g->accumulate = (int)rint_in(0, 1);
    *na = sa, *nb = sb, *nc = sc;
}

TEST(test_dnnl_matmul_vs_ref)
{
    int ran = 0;
    for (int it = 0; it < 60; it++) {
        dab_matmul_geom_t g;
        int64_t na, nb, nc;
        rand_matmul(&g, &na, &nb, &nc, 1);
        int b_const = 1;
        for (int d = 0; d < g.batch_rank; d++)
            b_const &= g.b_bstride[d] == 0;
        int use_const = b_const && rint_in(0, 1);
        int use_bias = g.alpha == 1.0 && !g.accumulate && rint_in(0, 2) == 0;
        float *a = rand_buf(na), *b = rand_buf(nb), *c0 = rand_buf(nc), *bias = rand_buf(g.n);
        float *want = copy_buf(c0, nc), *got = copy_buf(c0, nc);
        dab_matmul_geom_t gr = g;
        if (use_bias) { /* the reference adds the bias as a pre-filled accumulator */
            for (int64_t i = 0; i < nc; i++)
                want[i] = bias[i % g.n];
            gr.accumulate = 1;
        }
        CHECK_EQ_INT(dab_ref_matmul(DAB_DT_FLOAT, &gr, a, b, want, 1), 0);
        dab_dnnl_prim_t *p = NULL;
        dab_err_t e = {0};
        int rc =
            dab_dnnl_matmul_create(&g, use_bias, use_const ? b : NULL, (int)rint_in(1, 2), &p, &e);
        CHECK_EQ_INT(rc, 0);
        if (rc) {
            fprintf(stderr, "  matmul create: %s\n", e.msg);
        } else {
            void *s = scratch_for(dab_dnnl_prim_scratch_bytes(p));
            CHECK_EQ_INT(dab_dnnl_prim_run(p, a, b, bias, got, s, &e), 0);
            CHECK_EQ_INT(mismatches("matmul", got, want, nc, 1e-4, 1e-4), 0);
            if (use_const) {
                /* Other weights at another pointer must be used (repacked), and then the
                 * constant again. */
                float *b2 = rand_buf(nb), *want2 = copy_buf(c0, nc), *got2 = copy_buf(c0, nc);
                if (use_bias)
                    for (int64_t i = 0; i < nc; i++)
                        want2[i] = bias[i % g.n];
                CHECK_EQ_INT(dab_ref_matmul(DAB_DT_FLOAT, &gr, a, b2, want2, 1), 0);
                CHECK_EQ_INT(dab_dnnl_prim_run(p, a, b2, bias, got2, s, &e), 0);
                CHECK_EQ_INT(mismatches("matmul repacked", got2, want2, nc, 1e-4, 1e-4), 0);
                memcpy(got, c0, (size_t)nc * sizeof(float));
                CHECK_EQ_INT(dab_dnnl_prim_run(p, a, b, bias, got, s, &e), 0);
                CHECK_EQ_INT(mismatches("matmul const again", got, want, nc, 1e-4, 1e-4), 0);
                dab_free(b2), dab_free(want2), dab_free(got2);
            }
            dab_free(s);
            ran++;
        }
        dab_dnnl_prim_free(p);
        dab_free(a), dab_free(b), dab_free(c0), dab_free(bias), dab_free(want), dab_free(got);
    }
    CHECK(ran > 50);
}

TEST(test_dnnl_shared_weights)
{
    /* Two shapes of one node share one packed copy of a constant B; a run with other
     * weights repacks the shared buffer, and both primitives notice. */
    const int64_t n = 70, k = 90;
    float *b = rand_buf(k * n), *b2 = rand_buf(k * n), *a = rand_buf(9 * k);
    float *y = rand_buf(9 * n), *want = rand_buf(9 * n);
    dab_matmul_geom_t g1 = {
        .m = 5, .n = n, .k = k, .a_rs = k, .a_cs = 1, .b_rs = 1, .b_cs = k, .alpha = 1};
    dab_matmul_geom_t g2 = g1;
    g2.m = 9;
    dab_dnnl_prim_t *p1 = NULL, *p2 = NULL;
    dab_err_t e = {0};
    CHECK_EQ_INT(dab_dnnl_matmul_create(&g1, 0, b, 1, &p1, &e), 0);
    CHECK_EQ_INT(dab_dnnl_matmul_create(&g2, 0, b, 2, &p2, &e), 0);
    if (!p1 || !p2)
        return;
    dab_alloc_stats_t s0, s1;
    dab_alloc_stats(&s0);
    int shared = dab_dnnl_prim_share_weights(p2, p1);
    dab_alloc_stats(&s1);
    CHECK(shared); /* oneDNN packs B the same way for 5 and 9 rows */
    if (shared)    /* p2's own copy went away */
        CHECK(s1.live_bytes < s0.live_bytes);
    CHECK_EQ_INT(dab_dnnl_prim_share_weights(p2, p1), 0); /* already shared */
    void *s =
        scratch_for(DAB_MAX(dab_dnnl_prim_scratch_bytes(p1), dab_dnnl_prim_scratch_bytes(p2)));
    const float *bs[4] = {b, b2, b, b};
    dab_dnnl_prim_t *ps[4] = {p1, p2, p1, p2};
    for (int step = 0; step < 4; step++) {
        dab_matmul_geom_t *g = ps[step] == p1 ? &g1 : &g2;
        CHECK_EQ_INT(dab_ref_matmul(DAB_DT_FLOAT, g, a, bs[step], want, 1), 0);
        CHECK_EQ_INT(dab_dnnl_prim_run(ps[step], a, bs[step], NULL, y, s, &e), 0);
        CHECK_EQ_INT(mismatches("shared", y, want, g->m * n, 1e-4, 1e-4), 0);
    }
    dab_dnnl_prim_free(p1); /* the survivor still owns the buffer */
    CHECK_EQ_INT(dab_dnnl_prim_run(p2, a, b, NULL, y, s, &e), 0);
    CHECK_EQ_INT(dab_ref_matmul(DAB_DT_FLOAT, &g2, a, b, want, 1), 0);
    CHECK_EQ_INT(mismatches("shared after free", y, want, 9 * n, 1e-4, 1e-4), 0);
    dab_dnnl_prim_free(p2);
    dab_free(s), dab_free(a), dab_free(b), dab_free(b2), dab_free(y), dab_free(want);
}

TEST(test_gemv_vs_ref)
{
    for (int it = 0; it < 40; it++) {
        int64_t n = rint_in(1, 3000), k = rint_in(1, 300);
        if (it < 4)
            n = rint_in(1, 5), k = rint_in(1, 5);
        int tb = (int)rint_in(0, 1), acc = (int)rint_in(0, 1);
        float alpha = rint_in(0, 1) ? 1.0f : -0.75f;
        dab_matmul_geom_t g = {.m = 1,
                               .n = n,
                               .k = k,
                               .a_rs = k,
                               .a_cs = 1,
                               .b_rs = tb ? 1 : n,
                               .b_cs = tb ? k : 1,
                               .alpha = alpha,
                               .accumulate = acc};
        float *x = rand_buf(k), *b = rand_buf(n * k), *y0 = rand_buf(n);
        float *want = copy_buf(y0, n), *got = copy_buf(y0, n);
        CHECK_EQ_INT(dab_ref_matmul(DAB_DT_FLOAT, &g, x, b, want, 1), 0);
        for (int nt = 1; nt <= 2; nt++) {
            memcpy(got, y0, (size_t)n * sizeof(float));
            dab_gemv_f32(n, k, x, b, g.b_rs, g.b_cs, alpha, acc, got, nt);
            CHECK_EQ_INT(mismatches("gemv", got, want, n, 1e-4, 1e-4), 0);
        }
        dab_free(x), dab_free(b), dab_free(y0), dab_free(want), dab_free(got);
    }
}

/* A random (transposed) convolution geometry; element counts of X, W, Y. */
static void rand_conv(dab_conv_geom_t *g, int transposed, int64_t *nx, int64_t *nw, int64_t *ny)
{
    memset(g, 0, sizeof *g);
    g->nsp = (int)rint_in(1, 3);
    g->n = rint_in(1, 3);
    int depthwise = rint_in(0, 4) == 0;
    g->group = depthwise ? rint_in(2, 6) : rint_in(1, 3);
    int64_t icg = depthwise ? 1 : rint_in(1, 5), ocg = depthwise ? rint_in(1, 2) : rint_in(1, 5);
    if (rint_in(0, 5) == 0 && !transposed) /* some wider layers for the blocked kernels */
        icg = rint_in(8, 20), ocg = rint_in(16, 40), g->group = 1;
    g->c_in = g->group * icg;
    g->c_out = g->group * ocg;
    int64_t ksz = 1, isz = 1, osz = 1;
    for (int i = 0; i < g->nsp; i++) {
        int64_t maxin = g->nsp == 1 ? 23 : g->nsp == 2 ? 13 : 7;
        g->k[i] = rint_in(1, g->nsp == 1 ? 5 : 3);
        g->stride[i] = rint_in(1, 3);
        g->dil[i] = rint_in(1, 2);
        g->pad_lo[i] = rint_in(0, 2);
        g->pad_hi[i] = rint_in(0, 2);
        int64_t kd = (g->k[i] - 1) * g->dil[i] + 1;
        if (!transposed) {
            g->in[i] = rint_in(DAB_MAX(1, kd - g->pad_lo[i] - g->pad_hi[i]), maxin + kd);
            g->out[i] = (g->in[i] + g->pad_lo[i] + g->pad_hi[i] - kd) / g->stride[i] + 1;
        } else {
            g->in[i] = rint_in(1, maxin);
            int64_t op = rint_in(0, DAB_MIN(g->pad_hi[i], DAB_MAX(g->stride[i], g->dil[i]) - 1));
            int64_t full = (g->in[i] - 1) * g->stride[i] + kd;
            if (g->pad_lo[i] + g->pad_hi[i] >= full)
                g->pad_lo[i] = g->pad_hi[i] = 0, op = 0;
            g->out[i] = full - g->pad_lo[i] - g->pad_hi[i] + op;
        }
        ksz *= g->k[i];
        isz *= g->in[i];
        osz *= g->out[i];
    }
    dab_conv_geom_pad(g);
    *nx = g->n * g->c_in * isz;
    *ny = g->n * g->c_out * osz;
    *nw = g->c_out * icg * ksz;
}

static void conv_vs_ref(int transposed)
{
    int ran = 0;
    for (int it = 0; it < 60; it++) {
        dab_conv_geom_t g;
        int64_t nx, nw, ny;
        rand_conv(&g, transposed, &nx, &nw, &ny);
        int use_bias = (int)rint_in(0, 1), use_const = (int)rint_in(0, 1);
        float *x = rand_buf(nx), *w = rand_buf(nw), *b = rand_buf(g.c_out);
        float *want = rand_buf(ny), *got = rand_buf(ny);
        int rc = transposed
                     ? dab_ref_conv_transpose(DAB_DT_FLOAT, &g, x, w, use_bias ? b : NULL, want, 1)
                     : dab_ref_conv(DAB_DT_FLOAT, &g, x, w, use_bias ? b : NULL, want, 1);
        CHECK_EQ_INT(rc, 0);
        /* the parallel reference agrees with the serial one */
        rc = transposed
                 ? dab_ref_conv_transpose(DAB_DT_FLOAT, &g, x, w, use_bias ? b : NULL, got, 2)
                 : dab_ref_conv(DAB_DT_FLOAT, &g, x, w, use_bias ? b : NULL, got, 2);
        CHECK_EQ_INT(mismatches("ref nt=2", got, want, ny, 0, 0), 0);
        dab_dnnl_prim_t *p = NULL;
        dab_err_t e = {0};
        rc = dab_dnnl_conv_create(&g, transposed, use_bias, use_const ? w : NULL,
                                  (int)rint_in(1, 2), &p, &e);
        CHECK_EQ_INT(rc, 0);
        if (rc) {
            fprintf(stderr, "  conv create (transposed %d, nsp %d, group %lld): %s\n", transposed,
                    g.nsp, (long long)g.group, e.msg);
        } else {
            void *s = scratch_for(dab_dnnl_prim_scratch_bytes(p));
            for (int rep = 0; rep < 2; rep++) { /* a second run re-binds the same memories */
                memset(got, 0, (size_t)ny * sizeof(float));
                CHECK_EQ_INT(dab_dnnl_prim_run(p, x, w, use_bias ? b : NULL, got, s, &e), 0);
                CHECK_EQ_INT(mismatches(transposed ? "deconv" : "conv", got, want, ny, 1e-4, 1e-4),
                             0);
            }
            dab_free(s);
            ran++;
        }
        dab_dnnl_prim_free(p);
        dab_free(x), dab_free(w), dab_free(b), dab_free(want), dab_free(got);
    }
    CHECK(ran >= 55);
}

TEST(test_dnnl_conv_vs_ref)
{
    conv_vs_ref(0);
}

TEST(test_dnnl_deconv_vs_ref)
{
    conv_vs_ref(1);
}

TEST(test_dnnl_deconv_negative_pad_declined)
{
    /* output_padding beyond the end pad: oneDNN cannot express it, the caller must be told
     * to use the reference (EUNSUPPORTED), not get a wrong primitive. */
    dab_conv_geom_t g = {.nsp = 1,
                         .n = 1,
                         .c_in = 1,
                         .c_out = 1,
                         .group = 1,
                         .in = {3},
                         .k = {3},
                         .stride = {2},
                         .dil = {1}};
    g.out[0] = (3 - 1) * 2 + 3 + 1; /* output_padding 1, no pads */
    dab_conv_geom_pad(&g);
    dab_dnnl_prim_t *p = NULL;
    dab_err_t e = {0};
    CHECK_EQ_INT(dab_dnnl_conv_create(&g, 1, 0, NULL, 1, &p, &e), DAB_EUNSUPPORTED);
    CHECK(p == NULL);
    CHECK(strstr(e.msg, "padding") != NULL);
}

TEST(test_dnnl_pool_vs_ref)
{
    int ran = 0, declined = 0;
    for (int it = 0; it < 80; it++) {
        dab_pool_geom_t g;
        memset(&g, 0, sizeof g);
        g.nsp = (int)rint_in(1, 3);
        g.n = rint_in(1, 2);
        g.c = rint_in(1, 5);
        int is_max = (int)rint_in(0, 1), ceil_mode = (int)rint_in(0, 1);
        g.count_include_pad = is_max ? 0 : (int)rint_in(0, 1);
        int64_t isz = 1, osz = 1;
        for (int i = 0; i < g.nsp; i++) {
            g.k[i] = rint_in(1, 4);
            g.stride[i] = rint_in(1, 3);
            g.dil[i] = rint_in(1, 2);
            g.pad_lo[i] = rint_in(0, g.k[i] - 1);
            g.pad_hi[i] = rint_in(0, g.k[i] - 1);
            int64_t kd = (g.k[i] - 1) * g.dil[i] + 1;
            g.in[i] = rint_in(kd, kd + (g.nsp == 3 ? 6 : 14));
            int64_t span = g.in[i] + g.pad_lo[i] + g.pad_hi[i] - kd;
            g.out[i] = span / g.stride[i] + 1;
            if (ceil_mode) {
                g.out[i] = (span + g.stride[i] - 1) / g.stride[i] + 1;
                if ((g.out[i] - 1) * g.stride[i] >= g.in[i] + g.pad_lo[i])
                    g.out[i]--;
            }
            isz *= g.in[i];
            osz *= g.out[i];
        }
        dab_pool_geom_pad(&g);
        int64_t nx = g.n * g.c * isz, ny = g.n * g.c * osz;
        float *x = rand_buf(nx), *want = rand_buf(ny), *got = rand_buf(ny);
        int64_t *ind = dab_malloc((size_t)ny * sizeof(int64_t));
        int rc = is_max ? dab_ref_maxpool(DAB_DT_FLOAT, &g, x, want, ind, 1)
                        : dab_ref_avgpool(DAB_DT_FLOAT, &g, x, want, 1);
        CHECK_EQ_INT(rc, 0);
        if (is_max) /* each index points at its maximum */
            for (int64_t i = 0; i < ny; i++)
                if (ind[i] < 0 || ind[i] >= nx || x[ind[i]] != want[i]) {
                    CHECK(!"maxpool index does not point at the maximum");
                    break;
                }
        dab_dnnl_prim_t *p = NULL;
        dab_err_t e = {0};
        rc = dab_dnnl_pool_create(&g, is_max, (int)rint_in(1, 2), &p, &e);
        /* oneDNN declines some paddings (e.g. a ceil_mode extension as wide as the
         * kernel, or one count_include_pad would count): the operator then uses the
         * reference, so a decline is fine but must say so. */
        if (rc == DAB_EUNSUPPORTED) {
            declined++;
        } else {
            CHECK_EQ_INT(rc, 0);
            if (!rc) {
                void *s = scratch_for(dab_dnnl_prim_scratch_bytes(p));
                CHECK_EQ_INT(dab_dnnl_prim_run(p, x, NULL, NULL, got, s, &e), 0);
                CHECK_EQ_INT(mismatches(is_max ? "maxpool" : "avgpool", got, want, ny, 1e-5, 1e-5),
                             0);
                dab_free(s);
                ran++;
            }
        }
        dab_dnnl_prim_free(p);
        dab_free(x), dab_free(want), dab_free(got), dab_free(ind);
    }
    CHECK(ran >= 60);
    CHECK(ran + declined == 80);
}

/* ---- operators driven like a session ---- */

typedef struct op_run {
    dab_node_t node;
    dab_tensor_t *in[5];
    dab_tensor_t *out[3];
    dab_exec_ctx_t ctx;
    void *scratch;
    size_t scratch_cap;
} op_run_t;

static int op_open(op_run_t *r, const char *type, int opset, const dab_attr_t *attrs, int n_attrs,
                   dab_tensor_t **ins, int n_in, dab_tensor_t **outs, int n_out, dab_err_t *e)
{
    memset(r, 0, sizeof *r);
    r->ctx.threads = 2;
    for (int i = 0; i < n_in; i++)
        r->in[i] = ins[i];
    for (int i = 0; i < n_out; i++)
        r->out[i] = outs[i];
    r->node.name = "n";
    r->node.op_type = type;
    r->node.domain = "";
    r->node.opset = opset;
    r->node.n_inputs = n_in;
    r->node.n_outputs = n_out;
    r->node.inputs = r->in;
    r->node.outputs = r->out;
    r->node.n_attrs = n_attrs;
    r->node.attrs = attrs;
    r->node.ctx = &r->ctx;
    r->node.op = dab_op_find("", type, opset);
    if (!r->node.op)
        return dab_err_set(e, DAB_ENOTFOUND, "no %s at opset %d", type, opset);
    return r->node.op->init ? r->node.op->init(&r->node, e) : 0;
}

/* reshape + compute; outputs must already have data big enough. */
static int op_step(op_run_t *r, dab_err_t *e)
{
    r->node.scratch_bytes = 0;
    int rc = r->node.op->reshape(&r->node, e);
    if (rc)
        return rc;
    if (r->node.scratch_bytes > r->scratch_cap) {
        dab_free(r->scratch);
        r->scratch = dab_malloc_aligned(r->node.scratch_bytes, 64);
        r->scratch_cap = r->node.scratch_bytes;
    }
    r->node.scratch = r->scratch;
    return r->node.op->compute(&r->node, e);
}

static void op_close(op_run_t *r)
{
    if (r->node.op && r->node.op->exit)
        r->node.op->exit(&r->node);
    dab_free(r->scratch);
}

static dab_tensor_t mk(int rank, const int64_t *dims, float *data)
{
    dab_tensor_t t = {.dtype = DAB_DT_FLOAT, .rank = rank, .data = data};
    memcpy(t.dims, dims, (size_t)rank * sizeof(int64_t));
    return t;
}

TEST(test_op_matmul_gemm_steady_state)
{
    omp_set_num_threads(2);
    /* MatMul [2,3,40] x const [40,33]: batch folds into M, oneDNN with packed B. Then a
     * batch-1 row [1,40] (gemv), then the first shape again (cache hit). */
    int64_t ad[3] = {2, 3, 40}, bd[2] = {40, 33}, yd[3] = {2, 3, 33};
    float *a = rand_buf(240), *b = rand_buf(40 * 33), *y = rand_buf(200), *want = rand_buf(200);
    dab_tensor_t ta = mk(3, ad, a), tb = mk(2, bd, b), ty = mk(3, yd, y);
    dab_tensor_t tb_init = tb; /* the initializer as init sees it */
    dab_tensor_t *ins[2] = {&ta, &tb_init}, *outs[1] = {&ty};
    op_run_t r;
    dab_err_t e = {0};
    CHECK_EQ_INT(op_open(&r, "MatMul", 13, NULL, 0, ins, 2, outs, 1, &e), 0);
    ta.rank = -1; /* a non-constant input is unknown at init */
    ta = mk(3, ad, a);
    dab_matmul_geom_t g = {
        .m = 6, .n = 33, .k = 40, .a_rs = 40, .a_cs = 1, .b_rs = 33, .b_cs = 1, .alpha = 1};
    CHECK_EQ_INT(dab_ref_matmul(DAB_DT_FLOAT, &g, a, b, want, 1), 0);
    CHECK_EQ_INT(op_step(&r, &e), 0);
    CHECK_EQ_INT(ty.rank, 3);
    CHECK_EQ_INT(ty.dims[2], 33);
    CHECK_EQ_INT(mismatches("MatMul", y, want, 198, 1e-4, 1e-4), 0);

    int64_t a1d[2] = {1, 40};
    ta = mk(2, a1d, a);
    CHECK_EQ_INT(op_step(&r, &e), 0);
    CHECK_EQ_INT(ty.rank, 2);
    CHECK_EQ_INT(mismatches("MatMul gemv", y, want, 33, 1e-4, 1e-4), 0);

    ta = mk(3, ad, a);
    dab_alloc_stats_t s0, s1;
    dab_alloc_stats(&s0);
    for (int i = 0; i < 10; i++)
        CHECK_EQ_INT(op_step(&r, &e), 0);
    dab_alloc_stats(&s1);
    CHECK_EQ_INT(s1.calls - s0.calls, 0);
    CHECK_EQ_INT(mismatches("MatMul cached", y, want, 198, 1e-4, 1e-4), 0);
    op_close(&r);

    /* Gemm transB with a row-vector C, alpha = beta = 1 (oneDNN bias), then a full C with
     * alpha/beta (pre-filled beta*C, oneDNN sum), checked against the reference. */
    int64_t gad[2] = {5, 40}, gbd[2] = {33, 40}, gcd[1] = {33}, gyd[2] = {5, 33};
    float *c = rand_buf(33 * 5);
    dab_tensor_t ga = mk(2, gad, a), gb = mk(2, gbd, b), gc = mk(1, gcd, c), gy = mk(2, gyd, y);
    dab_tensor_t *gins[3] = {&ga, &gb, &gc}, *gouts[1] = {&gy};
    dab_attr_t attrs[3] = {{.name = "transB", .type = DAB_ATTR_INT, .i = 1},
                           {.name = "alpha", .type = DAB_ATTR_FLOAT, .f = 1.0f},
                           {.name = "beta", .type = DAB_ATTR_FLOAT, .f = 1.0f}};
    for (int variant = 0; variant < 2; variant++) {
        if (variant == 1) {
            attrs[1].f = 0.5f;
            attrs[2].f = -2.0f;
            int64_t cd2[2] = {5, 33};
            gc = mk(2, cd2, c);
        }
        CHECK_EQ_INT(op_open(&r, "Gemm", 13, attrs, 3, gins, 3, gouts, 1, &e), 0);
        dab_matmul_geom_t gg = {.m = 5,
                                .n = 33,
                                .k = 40,
                                .a_rs = 40,
                                .a_cs = 1,
                                .b_rs = 1,
                                .b_cs = 40,
                                .alpha = attrs[1].f,
                                .accumulate = 1};
        for (int64_t i = 0; i < 5 * 33; i++)
            want[i] = attrs[2].f * (variant == 0 ? c[i % 33] : c[i]);
        CHECK_EQ_INT(dab_ref_matmul(DAB_DT_FLOAT, &gg, a, b, want, 1), 0);
        for (int rep = 0; rep < 2; rep++) {
            CHECK_EQ_INT(op_step(&r, &e), 0);
            CHECK_EQ_INT(mismatches("Gemm", y, want, 5 * 33, 1e-4, 1e-4), 0);
        }
        op_close(&r);
    }
    dab_free(a), dab_free(b), dab_free(c), dab_free(y), dab_free(want);
}

TEST(test_op_conv_pool_steady_state)
{
    omp_set_num_threads(2);
    /* Conv 2-D, 16->24 channels, 3x3, stride 2, SAME_UPPER, constant W and B. */
    int64_t xd[4] = {2, 16, 11, 9}, wd[4] = {24, 16, 3, 3}, bd[1] = {24}, yd[4] = {2, 24, 6, 5};
    int64_t nx = 2 * 16 * 11 * 9, nw = 24 * 16 * 9, ny = 2 * 24 * 6 * 5;
    float *x = rand_buf(nx), *w = rand_buf(nw), *b = rand_buf(24), *y = rand_buf(ny);
    float *want = rand_buf(ny);
    dab_tensor_t tx = mk(4, xd, x), tw = mk(4, wd, w), tb = mk(1, bd, b), ty = mk(4, yd, y);
    dab_tensor_t *ins[3] = {&tx, &tw, &tb}, *outs[1] = {&ty};
    const int64_t strides[2] = {2, 2};
    dab_attr_t attrs[2] = {{.name = "auto_pad", .type = DAB_ATTR_STRING, .s = "SAME_UPPER"},
                           {.name = "strides", .type = DAB_ATTR_INTS, .n = 2, .ints = strides}};
    op_run_t r;
    dab_err_t e = {0};
    CHECK_EQ_INT(op_open(&r, "Conv", 11, attrs, 2, ins, 3, outs, 1, &e), 0);
    /* out = ceil(11/2) = 6, ceil(9/2) = 5; total pads (out-1)*2+3-in = 2 and 2 */
    dab_conv_geom_t g = {.nsp = 2,
                         .n = 2,
                         .c_in = 16,
                         .c_out = 24,
                         .group = 1,
                         .in = {11, 9},
                         .out = {6, 5},
                         .k = {3, 3},
                         .stride = {2, 2},
                         .dil = {1, 1},
                         .pad_lo = {1, 1},
                         .pad_hi = {1, 1}};
    dab_conv_geom_pad(&g);
    CHECK_EQ_INT(dab_ref_conv(DAB_DT_FLOAT, &g, x, w, b, want, 1), 0);
    CHECK_EQ_INT(op_step(&r, &e), 0);
    CHECK_EQ_INT(ty.dims[2], 6);
    CHECK_EQ_INT(ty.dims[3], 5);
    CHECK_EQ_INT(mismatches("Conv", y, want, ny, 1e-4, 1e-4), 0);
    dab_alloc_stats_t s0, s1;
    dab_alloc_stats(&s0);
    for (int i = 0; i < 10; i++)
        CHECK_EQ_INT(op_step(&r, &e), 0);
    dab_alloc_stats(&s1);
    CHECK_EQ_INT(s1.calls - s0.calls, 0);
    CHECK_EQ_INT(mismatches("Conv cached", y, want, ny, 1e-4, 1e-4), 0);
    op_close(&r);

    /* MaxPool ceil_mode on the conv output, with and without Indices (reference vs oneDNN
     * paths agree). */
    const int64_t ks[2] = {2, 2};
    dab_attr_t pattrs[3] = {{.name = "kernel_shape", .type = DAB_ATTR_INTS, .n = 2, .ints = ks},
                            {.name = "strides", .type = DAB_ATTR_INTS, .n = 2, .ints = strides},
                            {.name = "ceil_mode", .type = DAB_ATTR_INT, .i = 1}};
    int64_t pd[4] = {2, 24, 3, 3};
    float *p1 = rand_buf(2 * 24 * 9), *p2 = rand_buf(2 * 24 * 9);
    int64_t *ind = dab_malloc(2 * 24 * 9 * sizeof(int64_t));
    dab_tensor_t tp1 = mk(4, pd, p1), tp2 = mk(4, pd, p2), ti = mk(4, pd, NULL);
    ti.data = ind;
    dab_tensor_t *pins[1] = {&ty}, *pouts1[1] = {&tp1}, *pouts2[2] = {&tp2, &ti};
    op_run_t r1, r2;
    CHECK_EQ_INT(op_open(&r1, "MaxPool", 12, pattrs, 3, pins, 1, pouts1, 1, &e), 0);
    CHECK_EQ_INT(op_open(&r2, "MaxPool", 12, pattrs, 3, pins, 1, pouts2, 2, &e), 0);
    CHECK_EQ_INT(op_step(&r1, &e), 0);
    CHECK_EQ_INT(op_step(&r2, &e), 0);
    CHECK_EQ_INT(tp1.dims[2], 3);
    CHECK_EQ_INT(ti.dtype, DAB_DT_INT64);
    CHECK_EQ_INT(mismatches("MaxPool", p1, p2, 2 * 24 * 9, 0, 0), 0);
    for (int64_t i = 0; i < 2 * 24 * 9; i++)
        if (y[ind[i]] != p2[i]) {
            CHECK(!"MaxPool Indices do not point at the maxima");
            break;
        }
    op_close(&r1);
    op_close(&r2);
    dab_free(x), dab_free(w), dab_free(b), dab_free(y), dab_free(want);
    dab_free(p1), dab_free(p2), dab_free(ind);
}

TEST(test_op_batchnorm)
{
    /* opset 7 with spatial=0: statistics per (channel, position), X [2, 3, 2]. */
    int64_t xd[3] = {2, 3, 2}, pd[2] = {3, 2};
    float *x = rand_buf(12), *sc = rand_buf(6), *bi = rand_buf(6), *mean = rand_buf(6);
    float *var = rand_buf(6), *y = rand_buf(12);
    for (int i = 0; i < 6; i++)
        var[i] = fabsf(var[i]) + 0.1f;
    dab_tensor_t tx = mk(3, xd, x), ts = mk(2, pd, sc), tb = mk(2, pd, bi), tm = mk(2, pd, mean);
    dab_tensor_t tv = mk(2, pd, var), ty = mk(3, xd, y);
    dab_tensor_t *ins[5] = {&tx, &ts, &tb, &tm, &tv}, *outs[1] = {&ty};
    dab_attr_t attrs[2] = {{.name = "spatial", .type = DAB_ATTR_INT, .i = 0},
                           {.name = "epsilon", .type = DAB_ATTR_FLOAT, .f = 0.01f}};
    op_run_t r;
    dab_err_t e = {0};
    CHECK_EQ_INT(op_open(&r, "BatchNormalization", 7, attrs, 2, ins, 5, outs, 1, &e), 0);
    CHECK_EQ_INT(op_step(&r, &e), 0);
    for (int ni = 0; ni < 2; ni++)
        for (int p = 0; p < 6; p++) {
            int i = ni * 6 + p;
            double want = (x[i] - mean[p]) / sqrt(var[p] + 0.01f) * sc[p] + bi[p];
            CHECK_NEAR(y[i], want, 1e-5 + 1e-5 * fabs(want));
        }
    op_close(&r);

    /* the same statistics per channel only (spatial=1) do not fit [3, 2] params */
    attrs[0].i = 1;
    CHECK_EQ_INT(op_open(&r, "BatchNormalization", 7, attrs, 2, ins, 5, outs, 1, &e), 0);
    CHECK_EQ_INT(op_step(&r, &e), DAB_ESHAPE);
    op_close(&r);

    /* opset 15 training mode: batch statistics and running outputs */
    int64_t cd[1] = {3};
    float rm[3], rv[3];
    dab_tensor_t ts1 = mk(1, cd, sc), tb1 = mk(1, cd, bi), tm1 = mk(1, cd, mean);
    dab_tensor_t tv1 = mk(1, cd, var), trm = mk(1, cd, rm), trv = mk(1, cd, rv);
    dab_tensor_t *ins1[5] = {&tx, &ts1, &tb1, &tm1, &tv1}, *outs3[3] = {&ty, &trm, &trv};
    dab_attr_t tattrs[2] = {{.name = "training_mode", .type = DAB_ATTR_INT, .i = 1},
                            {.name = "momentum", .type = DAB_ATTR_FLOAT, .f = 0.75f}};
    CHECK_EQ_INT(op_open(&r, "BatchNormalization", 15, tattrs, 2, ins1, 5, outs3, 3, &e), 0);
    CHECK_EQ_INT(op_step(&r, &e), 0);
    for (int c = 0; c < 3; c++) {
        double m = 0, v = 0;
        for (int ni = 0; ni < 2; ni++)
            for (int s = 0; s < 2; s++)
                m += x[(ni * 3 + c) * 2 + s] / 4.0;
        for (int ni = 0; ni < 2; ni++)
            for (int s = 0; s < 2; s++)
                v += pow(x[(ni * 3 + c) * 2 + s] - m, 2) / 4.0;
        CHECK_NEAR(rm[c], mean[c] * 0.75 + m * 0.25, 1e-5);
        CHECK_NEAR(rv[c], var[c] * 0.75 + v * 0.25, 1e-5);
        double want = (x[c * 2] - m) / sqrt(v + 1e-5f) * sc[c] + bi[c];
        CHECK_NEAR(y[c * 2], want, 1e-4 + 1e-4 * fabs(want));
    }
    op_close(&r);
    dab_free(x), dab_free(sc), dab_free(bi), dab_free(mean), dab_free(var), dab_free(y);
}

TEST(test_op_errors)
{
    dab_err_t e = {0};
    op_run_t r;
    int64_t xd[4] = {1, 4, 5, 5}, wd[4] = {2, 3, 3, 3};
    float buf[128] = {0};
    dab_tensor_t tx = mk(4, xd, buf), tw = mk(4, wd, buf), ty = mk(4, xd, buf);
    dab_tensor_t *ins[2] = {&tx, &tw}, *outs[1] = {&ty};

    dab_attr_t bad_group = {.name = "group", .type = DAB_ATTR_INT, .i = 0};
    CHECK_EQ_INT(op_open(&r, "Conv", 11, &bad_group, 1, ins, 2, outs, 1, &e), DAB_EINVAL);
    CHECK(strstr(e.msg, "group") != NULL);

    /* W's input channels (3) do not match X's 4 */
    CHECK_EQ_INT(op_open(&r, "Conv", 11, NULL, 0, ins, 2, outs, 1, &e), 0);
    CHECK_EQ_INT(op_step(&r, &e), DAB_ESHAPE);
    op_close(&r);

    const int64_t neg[4] = {-1, 0, 0, 0};
    dab_attr_t bad_pads = {.name = "pads", .type = DAB_ATTR_INTS, .n = 4, .ints = neg};
    CHECK_EQ_INT(op_open(&r, "Conv", 11, &bad_pads, 1, ins, 2, outs, 1, &e), DAB_EINVAL);
    CHECK(strstr(e.msg, "pads") != NULL);

    dab_attr_t bad_ap = {.name = "auto_pad", .type = DAB_ATTR_STRING, .s = "SAME"};
    CHECK_EQ_INT(op_open(&r, "MaxPool", 12, &bad_ap, 1, ins, 1, outs, 1, &e), DAB_EINVAL);
    CHECK_EQ_INT(op_open(&r, "MaxPool", 12, NULL, 0, ins, 1, outs, 1, &e), DAB_EINVAL);
    CHECK(strstr(e.msg, "kernel_shape") != NULL);

    /* a 7x7 window over a 5x5 input without padding */
    const int64_t k7[2] = {7, 7};
    dab_attr_t big = {.name = "kernel_shape", .type = DAB_ATTR_INTS, .n = 2, .ints = k7};
    CHECK_EQ_INT(op_open(&r, "AveragePool", 19, &big, 1, ins, 1, outs, 1, &e), 0);
    CHECK_EQ_INT(op_step(&r, &e), DAB_ESHAPE);
    op_close(&r);

    /* Gemm C that does not broadcast to [M, N] */
    int64_t ad[2] = {2, 3}, bd[2] = {3, 4}, cd[2] = {3, 4};
    dab_tensor_t ga = mk(2, ad, buf), gb = mk(2, bd, buf), gc = mk(2, cd, buf);
    dab_tensor_t *gins[3] = {&ga, &gb, &gc};
    CHECK_EQ_INT(op_open(&r, "Gemm", 13, NULL, 0, gins, 3, outs, 1, &e), 0);
    CHECK_EQ_INT(op_step(&r, &e), DAB_ESHAPE);
    op_close(&r);

    /* MatMul inner dims differ */
    int64_t md[2] = {4, 4};
    dab_tensor_t mb = mk(2, md, buf);
    dab_tensor_t *mins[2] = {&ga, &mb};
    CHECK_EQ_INT(op_open(&r, "MatMul", 13, NULL, 0, mins, 2, outs, 1, &e), 0);
    CHECK_EQ_INT(op_step(&r, &e), DAB_ESHAPE);
    op_close(&r);
}

TEST_LIST(T(test_ref_conv_known), T(test_ref_pool_known), T(test_ref_matmul_known),
          T(test_dnnl_matmul_vs_ref), T(test_dnnl_shared_weights), T(test_gemv_vs_ref),
          T(test_dnnl_conv_vs_ref), T(test_dnnl_deconv_vs_ref),
          T(test_dnnl_deconv_negative_pad_declined), T(test_dnnl_pool_vs_ref),
          T(test_op_matmul_gemm_steady_state), T(test_op_conv_pool_steady_state),
          T(test_op_batchnorm), T(test_op_errors))
