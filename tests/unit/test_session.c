/*
 * test_session.c - running graphs: correct numbers, input checking, the memory
 * plan (one arena, reused for smaller shapes) and no heap allocation in steady
 * state, proven with the counting allocator. Control flow (If, Loop, Scan) runs the
 * models of tools/make_control_flow_models.py against numpy's answers.
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

/* ---- control flow ---- */

#define CONTROL MODELS "control/"

static const char *const g_control_cases[] = {
    "if_outer",  "if_unsorted", "if_const_cond", "loop",  "loop_while",
    "loop_for",  "scan9_axes",  "scan8_lens",    "nested",
};

/* got matches want: same dtype and shape; integers and bools exactly, floats within
 * rtol 1e-4 and atol 1e-5. */
static bool close_enough(const dab_tensor_t *got, const dab_tensor_t *want)
{
    if (!got || got->dtype != want->dtype || !dab_shape_equal(got, want))
        return false;
    for (int64_t i = 0; i < dab_tensor_numel(want); i++) {
        if (!dab_dtype_is_float(want->dtype)) {
            if (dab_tensor_get_i64(got, i) != dab_tensor_get_i64(want, i))
                return false;
            continue;
        }
        double x = dab_tensor_get_f64(got, i), y = dab_tensor_get_f64(want, i);
        if (fabs(x - y) > 1e-5 + 1e-4 * fabs(y))
            return false;
    }
    return true;
}

/* One test_data_set of a case: inputs and expected outputs read from its .pb files. */
typedef struct data_set {
    int n_in, n_out;
    dab_tensor_t in[8], out[8];
} data_set_t;

static bool read_set(const char *name, int set, data_set_t *d)
{
    char path[512];
    dab_err_t e = {0};
    memset(d, 0, sizeof *d);
    for (int io = 0; io < 2; io++)
        for (int k = 0; k < 8; k++) {
            snprintf(path, sizeof path, CONTROL "%s/test_data_set_%d/%s_%d.pb", name, set,
                     io ? "output" : "input", k);
            FILE *f = fopen(path, "rb");
            if (!f)
                break;
            fclose(f);
            dab_tensor_t *t = io ? &d->out[d->n_out++] : &d->in[d->n_in++];
            if (dab_onnx_read_tensor_file(path, t, NULL, &e)) {
                fprintf(stderr, "%s: %s\n", path, e.msg);
                return false;
            }
        }
    return d->n_out > 0;
}

static void free_set(data_set_t *d)
{
    for (int k = 0; k < 8; k++) {
        dab_tensor_free(&d->in[k]);
        dab_tensor_free(&d->out[k]);
    }
}

/* Runs every data set of case `name` at `level`, each twice (the second run reuses the
 * plans), and checks the outputs. */
static void run_case(const char *name, dab_opt_level_t level)
{
    char path[512];
    dab_err_t e = {0};
    snprintf(path, sizeof path, CONTROL "%s/model.onnx", name);
    dab_graph_t *g = load(path);
    CHECK(g != NULL);
    if (!g)
        return;
    CHECK_EQ_INT(dab_graph_optimize(g, level, &e), 0);
    dab_session_t *s = NULL;
    dab_session_opts_t so = {.threads = 1, .max_value_bytes = 1 << 20};
    CHECK_EQ_INT(dab_session_create(g, &so, &s, &e), 0);
    for (int set = 0; s; set++) {
        data_set_t d;
        if (!read_set(name, set, &d)) {
            free_set(&d);
            CHECK(set > 0);
            break;
        }
        const dab_tensor_t *feed[8] = {0}, *out[8] = {0};
        for (int k = 0; k < d.n_in; k++)
            feed[k] = &d.in[k];
        CHECK_EQ_INT(d.n_in, g->n_inputs);
        CHECK_EQ_INT(d.n_out, g->n_outputs);
        for (int run = 0; run < 2 && d.n_out == g->n_outputs; run++) {
            int rc = dab_session_run(s, feed, out, &e);
            CHECK_EQ_INT(rc, 0);
            if (rc) {
                fprintf(stderr, "%s set %d: %s\n", name, set, e.msg);
                break;
            }
            for (int k = 0; k < d.n_out; k++) {
                bool ok = close_enough(out[k], &d.out[k]);
                CHECK(ok);
                if (!ok)
                    fprintf(stderr, "%s (%s) set %d run %d: output %d differs\n", name,
                            dab_opt_level_name(level), set, run, k);
            }
        }
        free_set(&d);
    }
    if (!s)
        fprintf(stderr, "%s: %s\n", name, e.msg);
    dab_session_free(s);
    dab_graph_free(g);
}

/* If reading outer values (branch outputs of different shapes), Loop with carried values,
 * a growing carried value and scan outputs (with and without trip count or condition),
 * Scan with reversed directions and other axes (opset 16, and opset 8 with
 * sequence_lens), and a Loop holding an If holding an If that reads the root graph:
 * numpy's numbers, unoptimized and optimized. */
TEST(test_control_flow_numbers)
{
    for (size_t i = 0; i < DAB_ARRAY_LEN(g_control_cases); i++) {
        run_case(g_control_cases[i], DAB_OPT_NONE);
        run_case(g_control_cases[i], DAB_OPT_ALL);
    }
}

/* Bodies and branches get their sessions once: repeating a run with the same inputs
 * allocates nothing, loop-carried values that grow and scan outputs included. */
TEST(test_control_flow_steady_state)
{
    static const char *const cases[] = {"if_outer", "loop", "scan9_axes", "scan8_lens",
                                        "nested"};
    for (size_t c = 0; c < DAB_ARRAY_LEN(cases); c++) {
        char path[512];
        dab_err_t e = {0};
        snprintf(path, sizeof path, CONTROL "%s/model.onnx", cases[c]);
        dab_graph_t *g = load(path);
        data_set_t d;
        bool have = read_set(cases[c], 0, &d);
        CHECK(g && have);
        dab_session_t *s = NULL;
        dab_session_opts_t so = {.threads = 1};
        if (g && have && !dab_session_create(g, &so, &s, &e)) {
            const dab_tensor_t *feed[8] = {0}, *out[8] = {0};
            for (int k = 0; k < d.n_in; k++)
                feed[k] = &d.in[k];
            CHECK_EQ_INT(dab_session_run(s, feed, out, &e), 0);
            CHECK_EQ_INT(dab_session_run(s, feed, out, &e), 0);
            dab_alloc_stats_t a, b;
            dab_alloc_stats(&a);
            CHECK_EQ_INT(dab_session_run(s, feed, out, &e), 0);
            dab_alloc_stats(&b);
            CHECK_EQ_INT(b.calls - a.calls, 0);
            CHECK(close_enough(out[0], &d.out[0]));
        }
        free_set(&d);
        dab_session_free(s);
        dab_graph_free(g);
    }
}

/* Run-time errors inside control flow name the node (and the body's node) at fault; a
 * Loop that never ends is stopped by max_value_bytes before its scan output exhausts
 * memory; and the session stays usable after each error. */
TEST(test_control_flow_errors)
{
    dab_err_t e = {0};
    dab_graph_t *g = load(MODELS "cf_loop_unbounded.onnx");
    dab_session_t *s = NULL;
    dab_session_opts_t so = {.threads = 1, .max_value_bytes = 64 << 10};
    const dab_tensor_t *out[8];
    if (g && !dab_session_create(g, &so, &s, &e)) {
        dab_alloc_stats_t a, b;
        dab_alloc_stats(&a);
        CHECK_EQ_INT(dab_session_run(s, NULL, out, &e), DAB_ELIMIT);
        dab_alloc_stats(&b);
        CHECK(strstr(e.msg, "endless_loop") && strstr(e.msg, "scan output 0") &&
              strstr(e.msg, "iteration 64"));
        /* what the Loop keeps (its scan output's buffer) is bounded by the limit */
        CHECK(b.live_bytes - a.live_bytes <= (128u << 10));
        CHECK_EQ_INT(dab_session_run(s, NULL, out, &e), DAB_ELIMIT);
    }
    dab_session_free(s);
    dab_graph_free(g);

    /* Scan inputs that disagree on their length; an If cond of two values. The graphs'
     * inputs are declared with fixed shapes: forget them, so the ops see what the model
     * declares nothing against. */
    data_set_t d;
    g = load(CONTROL "scan9_axes/model.onnx");
    for (int i = 0; g && i < g->n_inputs; i++)
        g->values[g->inputs[i]].rank = -1;
    s = NULL;
    if (g && read_set("scan9_axes", 0, &d) && !dab_session_create(g, &so, &s, &e)) {
        const dab_tensor_t *feed[4] = {&d.in[0], &d.in[1], &d.in[2], &d.in[3]};
        dab_tensor_t x2 = d.in[2];
        x2.dims[1] = 3; /* 3x3 of the 3x4 data */
        feed[2] = &x2;
        CHECK_EQ_INT(dab_session_run(s, feed, out, &e), DAB_ESHAPE);
        CHECK(strstr(e.msg, "the_scan") && strstr(e.msg, "scan input 1"));
        feed[2] = &d.in[2];
        /* elements of 2 against 3 inside the body: the Scan, the iteration and the
         * body's node ('ab', the Mul) are named */
        dab_tensor_t x1 = d.in[1];
        x1.dims[1] = 2;
        feed[1] = &x1;
        CHECK_EQ_INT(dab_session_run(s, feed, out, &e), DAB_ESHAPE);
        CHECK(strstr(e.msg, "node 'the_scan' (Scan): body, iteration 0: node 'ab' (Mul)") !=
              NULL);
        feed[1] = &d.in[1];
        CHECK_EQ_INT(dab_session_run(s, feed, out, &e), 0);
        CHECK(close_enough(out[1], &d.out[1]));
    }
    free_set(&d);
    dab_session_free(s);
    dab_graph_free(g);

    g = load(CONTROL "if_outer/model.onnx");
    for (int i = 0; g && i < g->n_inputs; i++)
        g->values[g->inputs[i]].rank = -1;
    s = NULL;
    if (g && read_set("if_outer", 0, &d) && !dab_session_create(g, &so, &s, &e)) {
        uint8_t two[2] = {1, 0};
        dab_tensor_t cond = {.dtype = DAB_DT_BOOL, .rank = 1, .dims = {2}, .data = two};
        const dab_tensor_t *feed[2] = {&d.in[0], &cond};
        CHECK_EQ_INT(dab_session_run(s, feed, out, &e), DAB_ESHAPE);
        CHECK(strstr(e.msg, "the_if") && strstr(e.msg, "cond"));
    }
    free_set(&d);
    dab_session_free(s);
    dab_graph_free(g);

    /* A Loop cond of two values. */
    g = load(CONTROL "loop/model.onnx");
    for (int i = 0; g && i < g->n_inputs; i++)
        g->values[g->inputs[i]].rank = -1;
    s = NULL;
    if (g && read_set("loop", 0, &d) && !dab_session_create(g, &so, &s, &e)) {
        uint8_t conds[2] = {1, 1};
        dab_tensor_t c2 = {.dtype = DAB_DT_BOOL, .rank = 1, .dims = {2}, .data = conds};
        const dab_tensor_t *feed[3] = {&d.in[0], &d.in[1], &c2};
        CHECK_EQ_INT(dab_session_run(s, feed, out, &e), DAB_ESHAPE);
        CHECK(strstr(e.msg, "the_loop") && strstr(e.msg, "cond"));
        feed[2] = &d.in[2];
        CHECK_EQ_INT(dab_session_run(s, feed, out, &e), 0);
        CHECK(close_enough(out[0], &d.out[0]));
    }
    free_set(&d);
    dab_session_free(s);
    dab_graph_free(g);
}

/* Nesting: 32 levels load and run (the innermost branch reads the root's input); 33 are
 * refused by the loader, 80 before protobuf-c unpacks the file; a branch reading a name
 * nothing defines is refused, naming the node and the name. */
TEST(test_control_flow_nesting_limits)
{
    dab_err_t e = {0};
    dab_graph_t *g = load(MODELS "cf_nest32.onnx");
    dab_session_t *s = NULL;
    CHECK(g != NULL);
    if (g && !dab_session_create(g, NULL, &s, &e)) {
        uint8_t c = 1;
        float x = 2.5f;
        dab_tensor_t ct = {.dtype = DAB_DT_BOOL, .rank = 0, .data = &c};
        dab_tensor_t xt = {.dtype = DAB_DT_FLOAT, .rank = 1, .dims = {1}, .data = &x};
        const dab_tensor_t *feed[2] = {&ct, &xt}, *out[1];
        CHECK_EQ_INT(dab_session_run(s, feed, out, &e), 0);
        CHECK(out[0]->rank == 1 && ((float *)out[0]->data)[0] == 2.5f);
        c = 0;
        CHECK_EQ_INT(dab_session_run(s, feed, out, &e), 0);
        CHECK(((float *)out[0]->data)[0] == -2.5f);
    }
    dab_session_free(s);
    dab_graph_free(g);

    static const struct {
        const char *file;
        int code;
        const char *needle;
    } bad[] = {
        {MODELS "cf_nest33.onnx", DAB_ELIMIT, "deeper than 32 levels"},
        {MODELS "cf_nest80.onnx", DAB_ELIMIT, "nests graphs or types deeper"},
        {MODELS "cf_bad_outer.onnx", DAB_EFORMAT, "'ghost'"},
    };
    for (size_t i = 0; i < DAB_ARRAY_LEN(bad); i++) {
        g = NULL;
        int rc = dab_onnx_load_file(bad[i].file, &g, &e);
        CHECK_EQ_INT(rc, bad[i].code);
        CHECK(g == NULL);
        if (!strstr(e.msg, bad[i].needle)) {
            fprintf(stderr, "FAIL %s: message '%s' lacks '%s'\n", bad[i].file, e.msg,
                    bad[i].needle);
            t_failed++;
        }
    }
    CHECK(strstr(e.msg, "haunted_if") != NULL);
}

/* Each allocation of creating and running a session over nested control flow, made to
 * fail in turn: a clean error, no leak, no crash. */
TEST(test_control_flow_allocation_failures)
{
    dab_graph_t *g = load(CONTROL "nested/model.onnx");
    data_set_t d;
    bool have = read_set("nested", 0, &d);
    CHECK(g && have);
    dab_alloc_stats_t a, b;
    dab_alloc_stats(&a);
    int failed = 0, ok = 0;
    for (uint64_t n = 1; g && have && n < 2000 && !ok; n++) {
        dab_err_t e = {0};
        dab_session_t *s = NULL;
        const dab_tensor_t *feed[2] = {&d.in[0], &d.in[1]}, *out[2];
        dab_session_opts_t so = {.threads = 1};
        dab_alloc_fail_after(n);
        int rc = dab_session_create(g, &so, &s, &e);
        if (!rc)
            rc = dab_session_run(s, feed, out, &e);
        dab_alloc_fail_after(0);
        if (!rc) {
            ok = close_enough(out[0], &d.out[0]) && close_enough(out[1], &d.out[1]);
            CHECK(ok);
        } else {
            failed += rc == DAB_ENOMEM;
        }
        dab_session_free(s);
    }
    dab_alloc_stats(&b);
    CHECK_EQ_INT(b.live_bytes, a.live_bytes);
    CHECK(failed > 20);
    CHECK_EQ_INT(ok, 1);
    free_set(&d);
    dab_graph_free(g);
}

TEST_LIST(T(test_mlp_numbers_and_no_steady_state_allocation), T(test_input_checks),
          T(test_constants_external_and_errors), T(test_batch_changes_with_scratch),
          T(test_control_flow_numbers), T(test_control_flow_steady_state),
          T(test_control_flow_errors), T(test_control_flow_nesting_limits),
          T(test_control_flow_allocation_failures))
