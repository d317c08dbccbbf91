/*
 * simd_bench.c - a timing harness (not a test, not part of the library: everything is
 * under DAB_SIMD_BENCH) that runs the operators the SIMD kernels serve through their
 * init/reshape/compute, on one thread, and prints the median time per run. The level is
 * the process's (DABBA_SIMD), so compare runs:
 *
 *   make && cc -std=c11 -D_GNU_SOURCE -DDAB_SIMD_BENCH -O2 -Isrc -Ibuild/gen -fopenmp \
 *       src/kernels/simd/simd_bench.c bin/libdabba.a -o /tmp/simd_bench \
 *       -lprotobuf-c -ldnnl -lmicrohttpd -ljansson -lz -lm -lpthread
 *   for l in none avx2 avx512; do DABBA_SIMD=$l /tmp/simd_bench; done
 */
#ifdef DAB_SIMD_BENCH
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/simd/simd.h"
#include "ops/ops.h"

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static float *rand_buf(int64_t n, float lo, float hi)
{
    float *p = malloc((size_t)(n ? n : 1) * sizeof(float));
    uint64_t s = 0x9e3779b97f4a7c15ull ^ (uint64_t)n;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = lo + (hi - lo) * (float)((double)(s >> 11) / (double)(1ull << 53));
    }
    return p;
}

static dab_tensor_t mk(int rank, const int64_t *dims, void *data)
{
    dab_tensor_t t = {.dtype = DAB_DT_FLOAT, .rank = rank, .data = data};
    memcpy(t.dims, dims, (size_t)rank * sizeof(int64_t));
    return t;
}

/*
 * Runs op `type` on the given inputs (their data attached after init, so nothing counts
 * as a constant) and prints the median of `reps` computes.
 */
static void bench(const char *label, const char *type, int opset, const dab_attr_t *attrs,
                  int n_attrs, dab_tensor_t *ins, int n_in, int out_rank, const int64_t *out_dims,
                  int reps)
{
    dab_tensor_t *in[4], outt = mk(out_rank, out_dims, NULL), *out[1] = {&outt};
    void *data[4];
    int64_t on = 1;
    for (int d = 0; d < out_rank; d++)
        on *= out_dims[d];
    outt.data = malloc((size_t)on * sizeof(float));
    for (int i = 0; i < n_in; i++) {
        in[i] = &ins[i];
        data[i] = ins[i].data;
        if (ins[i].dtype == DAB_DT_FLOAT)
            ins[i].data = NULL;
    }
    dab_exec_ctx_t ctx = {.threads = 1};
    dab_node_t node = {.name = "b", .op_type = type, .domain = "", .opset = opset,
                       .n_inputs = n_in, .n_outputs = 1, .inputs = in, .outputs = out,
                       .n_attrs = n_attrs, .attrs = attrs, .ctx = &ctx};
    node.op = dab_op_find("", type, opset);
    dab_err_t err = {0};
    void *scratch = NULL;
    if (!node.op || (node.op->init && node.op->init(&node, &err))) {
        printf("%-34s  (cannot run: %s)\n", label, node.op ? "init failed" : "no op");
        return;
    }
    for (int i = 0; i < n_in; i++)
        ins[i].data = data[i];
    double *t = malloc((size_t)reps * sizeof(double));
    int rc = 0;
    for (int r = -3; r < reps && !rc; r++) {
        node.scratch_bytes = 0;
        rc = node.op->reshape(&node, &err);
        if (!rc && node.scratch_bytes && !scratch)
            scratch = aligned_alloc(64, (node.scratch_bytes + 63) / 64 * 64);
        node.scratch = scratch;
        double t0 = now_us();
        if (!rc)
            rc = node.op->compute(&node, &err);
        if (r >= 0)
            t[r] = now_us() - t0;
    }
    if (rc) {
        printf("%-34s  (failed: %d)\n", label, rc);
    } else {
        qsort(t, (size_t)reps, sizeof *t, cmp_d);
        printf("%-34s %9.2f us (min %.2f)\n", label, t[reps / 2], t[0]);
    }
    if (node.op->exit)
        node.op->exit(&node);
    free(t);
    free(scratch);
    free(outt.data);
}

int main(void)
{
    printf("level: %s (single thread, median)\n", dab_simd_level_name(dab_simd_level()));
    const int64_t R = 64, C = 768, N = R * C;
    int64_t d2[2] = {R, C}, d1[1] = {C}, d0[1] = {1};
    float *a = rand_buf(N, -4, 4), *b = rand_buf(N, 0.5f, 4), *v = rand_buf(C, -1, 1);
    float one = 1.5f;

    dab_tensor_t bin[2] = {mk(2, d2, a), mk(2, d2, b)};
    bench("Add [64,768]+[64,768]", "Add", 14, NULL, 0, bin, 2, 2, d2, 400);
    bench("Mul [64,768]*[64,768]", "Mul", 14, NULL, 0, bin, 2, 2, d2, 400);
    bench("Div [64,768]/[64,768]", "Div", 14, NULL, 0, bin, 2, 2, d2, 400);
    dab_tensor_t row[2] = {mk(2, d2, a), mk(1, d1, v)};
    bench("Add [64,768]+[768] (bias)", "Add", 14, NULL, 0, row, 2, 2, d2, 400);
    dab_tensor_t sc[2] = {mk(2, d2, a), mk(0, d0, &one)};
    bench("Mul [64,768]*scalar", "Mul", 14, NULL, 0, sc, 2, 2, d2, 400);

    static const char *un[] = {"Relu", "Neg", "Abs", "Sqrt", "Exp", "Sigmoid", "Tanh", "Erf",
                               "Gelu"};
    for (size_t i = 0; i < sizeof un / sizeof un[0]; i++) {
        char label[64];
        snprintf(label, sizeof label, "%s [64,768]", un[i]);
        dab_tensor_t x[1] = {mk(2, d2, !strcmp(un[i], "Sqrt") ? b : a)};
        bench(label, un[i], !strcmp(un[i], "Gelu") ? 20 : 13, NULL, 0, x, 1, 2, d2, 400);
    }

    dab_attr_t approx = {.name = "approximate", .type = DAB_ATTR_STRING, .s = "tanh", .s_len = 4};
    dab_tensor_t gx[1] = {mk(2, d2, a)};
    bench("Gelu tanh [64,768]", "Gelu", 20, &approx, 1, gx, 1, 2, d2, 400);

    int64_t axis = -1, d_r[2] = {R, 1};
    dab_tensor_t ax = {.dtype = DAB_DT_INT64, .rank = 1, .dims = {1}, .data = &axis};
    static const char *red[] = {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceSumSquare",
                                "ReduceL2"};
    for (size_t i = 0; i < sizeof red / sizeof red[0]; i++) {
        char label[64];
        snprintf(label, sizeof label, "%s [64,768] axis -1", red[i]);
        dab_tensor_t x[2] = {mk(2, d2, a), ax};
        bench(label, red[i], 18, NULL, 0, x, 2, 2, d_r, 400);
    }

    dab_attr_t axis_attr = {.name = "axis", .type = DAB_ATTR_INT, .i = -1};
    dab_tensor_t sx[1] = {mk(2, d2, a)};
    bench("Softmax [64,768]", "Softmax", 13, &axis_attr, 1, sx, 1, 2, d2, 400);
    bench("LogSoftmax [64,768]", "LogSoftmax", 13, &axis_attr, 1, sx, 1, 2, d2, 400);
    int64_t d_att[2] = {768, 128};
    float *att = rand_buf(768 * 128, -8, 8);
    dab_tensor_t sa[1] = {mk(2, d_att, att)};
    bench("Softmax [768,128]", "Softmax", 13, &axis_attr, 1, sa, 1, 2, d_att, 400);

    float *g = rand_buf(C, 0.5f, 1.5f), *be = rand_buf(C, -0.5f, 0.5f);
    dab_tensor_t ln[3] = {mk(2, d2, a), mk(1, d1, g), mk(1, d1, be)};
    bench("LayerNorm [64,768]", "LayerNormalization", 17, &axis_attr, 1, ln, 3, 2, d2, 400);
    bench("RMSNorm [64,768]", "RMSNormalization", 23, &axis_attr, 1, ln, 2, 2, d2, 400);

    static const int64_t mm[][2] = {{256, 256}, {768, 768}, {768, 3072}, {3072, 768}};
    for (size_t i = 0; i < sizeof mm / sizeof mm[0]; i++) {
        int64_t k = mm[i][0], n = mm[i][1];
        int64_t da[2] = {1, k}, db[2] = {k, n}, dbt[2] = {n, k}, dy[2] = {1, n};
        float *x = rand_buf(k, -1, 1), *w = rand_buf(k * n, -1, 1);
        char label[64];
        snprintf(label, sizeof label, "MatMul [1,%lld]x[%lld,%lld]", (long long)k, (long long)k,
                 (long long)n);
        dab_tensor_t mi[2] = {mk(2, da, x), mk(2, db, w)};
        bench(label, "MatMul", 13, NULL, 0, mi, 2, 2, dy, 200);
        dab_attr_t tb = {.name = "transB", .type = DAB_ATTR_INT, .i = 1};
        snprintf(label, sizeof label, "Gemm [1,%lld]x[%lld,%lld]^T", (long long)k, (long long)n,
                 (long long)k);
        dab_tensor_t gi[2] = {mk(2, da, x), mk(2, dbt, w)};
        bench(label, "Gemm", 13, &tb, 1, gi, 2, 2, dy, 200);
        free(x);
        free(w);
    }
    free(a), free(b), free(v), free(att), free(g), free(be);
    return 0;
}
#endif
