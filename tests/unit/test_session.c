/*
 * test_session.c - running graphs: correct numbers, input checking, the memory
 * plan (one arena, reused for smaller shapes) and no heap allocation in steady
 * state, proven with the counting allocator.
 */
#include "onnx/onnx.h"
#include "test.h"

#define MODELS "tests/data/models/"

static dab_graph_t *load(const char *path)
{
    dab_graph_t *g = NULL;
    dab_err_t e = {0};
    if (dab_onnx_load_file(path, &g, &e))
        fprintf(stderr, "load %s: %s\n", path, e.msg);
    return g;
}

TEST(test_mlp_numbers_and_no_steady_state_allocation)
{
    dab_graph_t *g = load(MODELS "mlp.onnx");
    CHECK(g != NULL);
    if (!g)
        return;
    dab_tensor_t x = {0}, want = {0};
    dab_err_t e = {0};
    CHECK_EQ_INT(dab_onnx_read_tensor_file(MODELS "mlp_x.pb", &x, NULL, &e), 0);
    CHECK_EQ_INT(dab_onnx_read_tensor_file(MODELS "mlp_y.pb", &want, NULL, &e), 0);
    dab_session_t *s = NULL;
    dab_session_opts_t so = {.threads = 1};
    CHECK_EQ_INT(dab_session_create(g, &so, &s, &e), 0);
    if (!s) {
        fprintf(stderr, "session: %s\n", e.msg);
        return;
    }
    const dab_tensor_t *feed[1] = {&x};
    const dab_tensor_t *out[1] = {0};
    for (int run = 0; run < 2; run++) {
        CHECK_EQ_INT(dab_session_run(s, feed, out, &e), 0);
        CHECK(out[0] && dab_shape_equal(out[0], &want));
        for (int64_t i = 0; out[0] && i < dab_tensor_numel(&want); i++)
            CHECK_NEAR(((float *)out[0]->data)[i], ((float *)want.data)[i],
                       1e-6 + 1e-5 * fabs(((float *)want.data)[i]));
    }
    CHECK(dab_session_arena_bytes(s) > 0);
    dab_alloc_stats_t a, b;
    dab_alloc_stats(&a);
    for (int run = 0; run < 100; run++)
        dab_session_run(s, feed, out, &e);
    dab_alloc_stats(&b);
    CHECK_EQ_INT(b.calls - a.calls, 0);
    CHECK_EQ_INT(b.live_bytes, a.live_bytes);

    /* A smaller batch runs inside the same arena: still no allocation. */
    size_t arena = dab_session_arena_bytes(s);
    dab_tensor_t x1 = x;
    x1.dims[0] = 1;
    feed[0] = &x1;
    dab_alloc_stats(&a);
    CHECK_EQ_INT(dab_session_run(s, feed, out, &e), 0);
    dab_alloc_stats(&b);
    CHECK_EQ_INT(b.calls - a.calls, 0);
    CHECK_EQ_INT(dab_session_arena_bytes(s), arena);
    CHECK_EQ_INT(out[0]->dims[0], 1);
    CHECK_NEAR(((float *)out[0]->data)[2], ((float *)want.data)[2], 1e-5);

    /* A larger batch re-plans once, then is steady again. */
    dab_tensor_t big = {0};
    int64_t dims[2] = {64, 4};
    CHECK_EQ_INT(dab_tensor_alloc(&big, DAB_DT_FLOAT, 2, dims, &e), 0);
    feed[0] = &big;
    CHECK_EQ_INT(dab_session_run(s, feed, out, &e), 0);
    CHECK_EQ_INT(dab_session_run(s, feed, out, &e), 0);
    CHECK(dab_session_arena_bytes(s) > arena);
    dab_alloc_stats(&a);
    CHECK_EQ_INT(dab_session_run(s, feed, out, &e), 0);
    dab_alloc_stats(&b);
    CHECK_EQ_INT(b.calls - a.calls, 0);
    dab_tensor_free(&big);
    dab_tensor_free(&x);
    dab_tensor_free(&want);
    dab_session_free(s);
    dab_graph_free(g);
}

TEST(test_input_checks)
{
    dab_graph_t *g = load(MODELS "mlp.onnx");
    if (!g)
        return;
    dab_err_t e = {0};
    dab_session_t *s = NULL;
    CHECK_EQ_INT(dab_session_create(g, NULL, &s, &e), 0);
    if (!s)
        return;
    dab_tensor_t x = {0};
    int64_t dims[2] = {2, 5};
    dab_tensor_alloc(&x, DAB_DT_FLOAT, 2, dims, &e);
    const dab_tensor_t *feed[1] = {&x};
    const dab_tensor_t *out[1];
    CHECK_EQ_INT(dab_session_run(s, feed, out, &e), DAB_ESHAPE);
    CHECK(strstr(e.msg, "'x'") && strstr(e.msg, "axis 1"));
    x.dtype = DAB_DT_INT32;
    CHECK_EQ_INT(dab_session_run(s, feed, out, &e), DAB_ETYPE);
    x.dtype = DAB_DT_FLOAT;
    x.rank = 1;
    CHECK_EQ_INT(dab_session_run(s, feed, out, &e), DAB_ESHAPE);
    feed[0] = NULL;
    CHECK_EQ_INT(dab_session_run(s, feed, out, &e), DAB_EINVAL);
    CHECK(strstr(e.msg, "missing") != NULL);
    dab_tensor_free(&x);
    dab_session_free(s);
    dab_graph_free(g);
}

TEST(test_constants_external_and_errors)
{
    dab_err_t e = {0};
    const dab_tensor_t *out[1];
    float xs[4] = {1, 1, 1, 1};
    dab_tensor_t x = {.dtype = DAB_DT_FLOAT, .rank = 1, .dims = {2}, .data = xs};
    const dab_tensor_t *feed[1] = {&x};

    dab_graph_t *g = load(MODELS "consts.onnx");
    dab_session_t *s = NULL;
    if (g && !dab_session_create(g, NULL, &s, &e)) {
        CHECK_EQ_INT(dab_session_run(s, feed, out, &e), 0);
        CHECK(((float *)out[0]->data)[0] == 6.0f && ((float *)out[0]->data)[1] == 12.0f);
    }
    dab_session_free(s);
    dab_graph_free(g);

    x.dims[0] = 4;
    g = load(MODELS "external.onnx");
    s = NULL;
    if (g && !dab_session_create(g, NULL, &s, &e)) {
        CHECK_EQ_INT(dab_session_run(s, feed, out, &e), 0);
        CHECK(((float *)out[0]->data)[3] == 5.0f);
    }
    dab_session_free(s);
    dab_graph_free(g);

    x.dims[0] = 3;
    g = load(MODELS "gather_oob.onnx");
    s = NULL;
    if (g && !dab_session_create(g, NULL, &s, &e)) {
        int rc = dab_session_run(s, feed, out, &e);
        CHECK(rc != 0);
        CHECK(strstr(e.msg, "gather") != NULL);
    }
    dab_session_free(s);
    dab_graph_free(g);
}

/* Growing and shrinking batches through a CNN whose oneDNN kernels need scratch: several
 * nodes outgrowing the plan in one run must each get room of their own (a regression:
 * the shared scratch region once grew on paper before the arena did). */
TEST(test_batch_changes_with_scratch)
{
    dab_graph_t *g = load("examples/repository/digits_cnn/1/model.onnx");
    if (!g)
        return;
    dab_err_t e = {0};
    dab_session_t *s = NULL;
    dab_session_opts_t so = {.threads = 1};
    CHECK_EQ_INT(dab_session_create(g, &so, &s, &e), 0);
    const int batches[] = {1, 2, 3, 1024, 7, 1024, 1};
    float first[10] = {0};
    for (size_t i = 0; s && i < sizeof batches / sizeof batches[0]; i++) {
        dab_tensor_t x = {0};
        int64_t d[4] = {batches[i], 1, 8, 8};
        CHECK_EQ_INT(dab_tensor_alloc(&x, DAB_DT_FLOAT, 4, d, &e), 0);
        for (int64_t k = 0; k < dab_tensor_numel(&x); k++)
            ((float *)x.data)[k] = (float)((k * 7) % 17) / 16.0f;
        const dab_tensor_t *feed[1] = {&x};
        const dab_tensor_t *out[1] = {0};
        CHECK_EQ_INT(dab_session_run(s, feed, out, &e), 0);
        CHECK(out[0] && out[0]->dims[0] == batches[i]);
        /* row 0 is the same image in every batch: the same answer */
        for (int c = 0; out[0] && c < 10; c++) {
            if (i == 0)
                first[c] = ((float *)out[0]->data)[c];
            else
                CHECK_NEAR(((float *)out[0]->data)[c], first[c], 1e-5);
        }
        dab_tensor_free(&x);
    }
    dab_session_free(s);
    dab_graph_free(g);
}

TEST_LIST(T(test_mlp_numbers_and_no_steady_state_allocation), T(test_input_checks),
          T(test_constants_external_and_errors), T(test_batch_changes_with_scratch))
