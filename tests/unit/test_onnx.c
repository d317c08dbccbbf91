/*
 * test_onnx.c - the ONNX loader: every storage form it must read, and the
 * malformed or hostile files it must refuse with a message, never a crash.
 */
#include <stdio.h>

#include "onnx/onnx.h"
#include "test.h"

#define MODELS "tests/data/models/"

static int load(const char *name, dab_graph_t **g, dab_err_t *e)
{
    return dab_onnx_load_file(name, g, e);
}

static void *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    rewind(f);
    void *b = malloc(*len);
    if (fread(b, 1, *len, f) != *len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

TEST(test_load_mlp)
{
    dab_graph_t *g = NULL;
    dab_err_t e = {0};
    CHECK_EQ_INT(load(MODELS "mlp.onnx", &g, &e), 0);
    if (!g)
        return;
    CHECK_EQ_INT(g->n_inputs, 1);
    CHECK_EQ_INT(g->n_outputs, 1);
    CHECK_EQ_INT(g->n_nodes, 6);
    const dab_value_t *x = &g->values[g->inputs[0]];
    CHECK(!strcmp(x->name, "x"));
    CHECK_EQ_INT(x->dtype, DAB_DT_FLOAT);
    CHECK_EQ_INT(x->rank, 2);
    CHECK_EQ_INT(x->dims[0], -1);
    CHECK(x->dim_params[0] && !strcmp(x->dim_params[0], "batch"));
    CHECK_EQ_INT(x->dims[1], 4);
    CHECK_EQ_INT(dab_graph_param_count(g), 4 * 8 + 8 + 8 * 3 + 3);
    CHECK_EQ_INT(dab_graph_opset(g, ""), 13);
    CHECK_EQ_INT(dab_graph_opset(g, "ai.onnx"), 13);
    /* topological order: the producer of every input comes first */
    for (int n = 0; n < g->n_nodes; n++)
        for (int k = 0; k < g->nodes[n].n_inputs; k++) {
            int v = g->nodes[n].inputs[k];
            CHECK(v < 0 || g->values[v].producer < n);
        }
    dab_graph_free(g);
}

TEST(test_load_constants_and_external)
{
    dab_graph_t *g = NULL;
    dab_err_t e = {0};
    CHECK_EQ_INT(load(MODELS "consts.onnx", &g, &e), 0);
    if (g) {
        /* the Constant node became a value; the initializer listed as input is a constant */
        CHECK_EQ_INT(g->n_nodes, 2);
        CHECK_EQ_INT(g->n_inputs, 1);
        int c = dab_graph_find_value(g, "c");
        CHECK(c >= 0 && g->values[c].const_data &&
              ((float *)g->values[c].const_data->data)[1] == 2.0f);
        int k = dab_graph_find_value(g, "k");
        CHECK(k >= 0 && g->values[k].const_data &&
              ((float *)g->values[k].const_data->data)[1] == 4.0f);
        dab_graph_free(g);
    }
    CHECK_EQ_INT(load(MODELS "external.onnx", &g, &e), 0);
    if (g) {
        int w = dab_graph_find_value(g, "w");
        CHECK(w >= 0 && g->values[w].const_data &&
              ((float *)g->values[w].const_data->data)[3] == 4.0f);
        dab_graph_free(g);
    }
    CHECK_EQ_INT(load(MODELS "if_subgraph.onnx", &g, &e), 0);
    if (g) {
        CHECK_EQ_INT(g->n_subgraphs, 2);
        CHECK(g->nodes[0].n_attrs == 2 && g->nodes[0].attrs[0].type == DAB_ATTR_GRAPH &&
              g->nodes[0].attrs[0].g != NULL);
        dab_graph_free(g);
    }
}

static void expect_refusal(const char *file, int code, const char *needle)
{
    dab_graph_t *g = NULL;
    dab_err_t e = {0};
    int rc = load(file, &g, &e);
    CHECK_EQ_INT(rc, code);
    CHECK(g == NULL);
    if (!strstr(e.msg, needle)) {
        fprintf(stderr, "FAIL %s: message '%s' lacks '%s'\n", file, e.msg, needle);
        t_failed++;
    } else {
        t_passed++;
    }
}

TEST(test_refusals)
{
    expect_refusal(MODELS "cycle.onnx", DAB_EFORMAT, "cycle");
    expect_refusal(MODELS "missing_input.onnx", DAB_EFORMAT, "'ghost'");
    expect_refusal(MODELS "short_raw.onnx", DAB_EFORMAT, "tensor 'w'");
    expect_refusal(MODELS "overflow_dims.onnx", DAB_ERANGE, "tensor 'w'");
    expect_refusal(MODELS "bad_dtype.onnx", DAB_EUNSUPPORTED, "data type 99");
    expect_refusal(MODELS "external_escape.onnx", DAB_EFORMAT, "leaves the model's folder");
    expect_refusal(MODELS "no_such_file.onnx", DAB_ENOTFOUND, "no_such_file");
    /* unknown operators load (inspect lists them) but cannot run */
    dab_graph_t *g = NULL;
    dab_err_t e = {0};
    CHECK_EQ_INT(load(MODELS "unknown_op.onnx", &g, &e), 0);
    if (g) {
        const dab_gnode_t *un[2];
        CHECK_EQ_INT(dab_graph_unsupported(g, un, 2), 1);
        dab_session_t *s = NULL;
        CHECK_EQ_INT(dab_session_create(g, NULL, &s, &e), DAB_EUNSUPPORTED);
        CHECK(strstr(e.msg, "FrobnicateTensor") != NULL);
        dab_graph_free(g);
    }
}

/* Every prefix and many corruptions of a valid file: refused or loaded, never a crash,
 * never a leak. */
TEST(test_truncation_and_corruption)
{
    size_t len;
    unsigned char *buf = slurp(MODELS "mlp.onnx", &len);
    CHECK(buf != NULL);
    if (!buf)
        return;
    dab_alloc_stats_t a, b;
    dab_alloc_stats(&a);
    int loaded = 0;
    for (size_t l = 0; l < len; l++) {
        dab_graph_t *g = NULL;
        dab_err_t e = {0};
        if (!dab_onnx_load_buffer(buf, l, NULL, &g, &e))
            loaded++;
        else
            CHECK(e.msg[0] != 0);
        dab_graph_free(g);
    }
    uint32_t seed = 1;
    for (int iter = 0; iter < 3000; iter++) {
        unsigned char *c = malloc(len);
        memcpy(c, buf, len);
        for (int k = 0; k < 1 + iter % 4; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % len;
            seed = seed * 1103515245u + 12345u;
            c[at] = (unsigned char)(seed >> 16);
        }
        dab_graph_t *g = NULL;
        dab_err_t e = {0};
        dab_onnx_load_buffer(c, len, NULL, &g, &e);
        dab_graph_free(g);
        free(c);
    }
    dab_alloc_stats(&b);
    CHECK_EQ_INT(b.live_bytes, a.live_bytes);
    CHECK(loaded < (int)len); /* the empty prefix at least is refused */
    free(buf);
}

/* Each allocation of a load, made to fail in turn: a clean ENOMEM and no leak. */
TEST(test_allocation_failures)
{
    dab_alloc_stats_t a, b;
    dab_alloc_stats(&a);
    int nomem = 0, ok = 0;
    for (uint64_t n = 1; n < 400; n++) {
        dab_graph_t *g = NULL;
        dab_err_t e = {0};
        dab_alloc_fail_after(n);
        int rc = load(MODELS "mlp.onnx", &g, &e);
        dab_alloc_fail_after(0);
        if (rc == 0) {
            ok++;
            dab_graph_free(g);
            break;
        }
        nomem += rc == DAB_ENOMEM;
    }
    dab_alloc_stats(&b);
    CHECK_EQ_INT(b.live_bytes, a.live_bytes);
    CHECK(nomem > 10);
    CHECK_EQ_INT(ok, 1);
}

TEST(test_tensor_files)
{
    dab_tensor_t t = {0};
    dab_err_t e = {0};
    char *name = NULL;
    CHECK_EQ_INT(dab_onnx_read_tensor_file(MODELS "mlp_x.pb", &t, &name, &e), 0);
    CHECK(name && !strcmp(name, "x"));
    CHECK_EQ_INT(t.rank, 2);
    CHECK_EQ_INT(t.dims[1], 4);
    CHECK(((float *)t.data)[0] == -1.0f);
    dab_tensor_free(&t);
    dab_free(name);
    CHECK(dab_onnx_parse_tensor("\xff\xff\xff", 3, &t, NULL, &e) != 0);
}

/* Inputs the loader fuzzer once crashed on (now refused cleanly). */
TEST(test_fuzz_regressions)
{
    dab_graph_t *g = NULL;
    dab_err_t e = {0};
    CHECK_EQ_INT(load("tests/data/fuzz-regressions/loader-omitted-output.onnx", &g, &e), 0);
    if (g) {
        dab_session_t *s = NULL;
        CHECK_EQ_INT(dab_session_create(g, NULL, &s, &e), DAB_EFORMAT);
        CHECK(strstr(e.msg, "omits its output 0") != NULL);
        CHECK(s == NULL);
        dab_graph_free(g);
    }
    /* An operator whose init fails after making its state (QuantizeLinear with an
     * output_dtype it refuses): the failed session frees that state too. */
    g = NULL;
    CHECK_EQ_INT(load("tests/data/fuzz-regressions/loader-init-fails.onnx", &g, &e), 0);
    if (g) {
        dab_alloc_stats_t before, after;
        dab_session_t *s = NULL;
        dab_alloc_stats(&before);
        CHECK(dab_session_create(g, NULL, &s, &e) != 0);
        dab_alloc_stats(&after);
        CHECK(s == NULL);
        CHECK(strstr(e.msg, "QuantizeLinear") != NULL);
        CHECK_EQ_INT(after.live_bytes, before.live_bytes);
        dab_graph_free(g);
    }
    g = NULL;
    CHECK_EQ_INT(load(MODELS "omitted_input.onnx", &g, &e), 0);
    if (g) {
        dab_session_t *s = NULL;
        CHECK_EQ_INT(dab_session_create(g, NULL, &s, &e), DAB_EFORMAT);
        CHECK(strstr(e.msg, "omits its input 0") != NULL);
        dab_graph_free(g);
    }
}

/* A TensorProto of the given data_type and 1-D dims holding `payload` (field bytes). */
static size_t tensor_proto(uint8_t *buf, int dt, int dim, const char *payload, size_t plen)
{
    size_t n = 0;
    buf[n++] = 0x08; /* dims */
    buf[n++] = (uint8_t)dim;
    buf[n++] = 0x10; /* data_type */
    buf[n++] = (uint8_t)dt;
    memcpy(buf + n, payload, plen);
    return n + plen;
}

/* The low-precision dtypes: 4- and 2-bit types are packed in raw_data and int32_data and
 * come out one byte per element; float8 int32_data holds one code per value. */
TEST(test_low_precision_tensors)
{
    uint8_t buf[64];
    dab_tensor_t t = {0};
    dab_err_t e = {0};
    /* INT4 [5] in raw_data (field 9): nibbles 7 8 9 a b */
    size_t n = tensor_proto(buf, DAB_DT_INT4, 5, "\x4a\x03\x87\xa9\x0b", 5);
    CHECK_EQ_INT(dab_onnx_parse_tensor(buf, n, &t, NULL, &e), 0);
    if (t.data) {
        const int8_t want[] = {7, -8, -7, -6, -5};
        CHECK_EQ_INT(t.dtype, DAB_DT_INT4);
        CHECK(!memcmp(t.data, want, 5));
    }
    dab_tensor_free(&t);
    n = tensor_proto(buf, DAB_DT_UINT4, 5, "\x4a\x03\x87\xa9\x0b", 5);
    CHECK_EQ_INT(dab_onnx_parse_tensor(buf, n, &t, NULL, &e), 0);
    if (t.data)
        CHECK(!memcmp(t.data, "\x07\x08\x09\x0a\x0b", 5));
    dab_tensor_free(&t);
    /* one packed byte short */
    n = tensor_proto(buf, DAB_DT_INT4, 5, "\x4a\x02\x87\xa9", 4);
    CHECK_EQ_INT(dab_onnx_parse_tensor(buf, n, &t, NULL, &e), DAB_EFORMAT);
    CHECK(strstr(e.msg, "needs 3") != NULL);
    /* INT2 [5] in int32_data (field 5, packed): bytes 0x39 0x02 */
    n = tensor_proto(buf, DAB_DT_INT2, 5, "\x2a\x02\x39\x02", 4);
    CHECK_EQ_INT(dab_onnx_parse_tensor(buf, n, &t, NULL, &e), 0);
    if (t.data) {
        const int8_t want[] = {1, -2, -1, 0, -2};
        CHECK(!memcmp(t.data, want, 5));
    }
    dab_tensor_free(&t);
    /* int32_data counts packed bytes, not elements */
    n = tensor_proto(buf, DAB_DT_UINT2, 5, "\x2a\x05\x01\x02\x03\x00\x01", 7);
    CHECK_EQ_INT(dab_onnx_parse_tensor(buf, n, &t, NULL, &e), DAB_EFORMAT);
    /* FLOAT4E2M1 [3] raw: codes 2 7 f */
    n = tensor_proto(buf, DAB_DT_FLOAT4E2M1, 3, "\x4a\x02\x72\x0f", 4);
    CHECK_EQ_INT(dab_onnx_parse_tensor(buf, n, &t, NULL, &e), 0);
    if (t.data) {
        CHECK(dab_tensor_get_f64(&t, 0) == 1.0);
        CHECK(dab_tensor_get_f64(&t, 1) == 6.0);
        CHECK(dab_tensor_get_f64(&t, 2) == -6.0);
    }
    dab_tensor_free(&t);
    /* FLOAT8E4M3FN [2] in int32_data: 0x7e 0xfe (varint 0xfe = fe 01) */
    n = tensor_proto(buf, DAB_DT_FLOAT8E4M3FN, 2, "\x2a\x03\x7e\xfe\x01", 5);
    CHECK_EQ_INT(dab_onnx_parse_tensor(buf, n, &t, NULL, &e), 0);
    if (t.data) {
        CHECK(dab_tensor_get_f64(&t, 0) == 448.0);
        CHECK(dab_tensor_get_f64(&t, 1) == -448.0);
    }
    dab_tensor_free(&t);
    /* and a data type past the known ones */
    n = tensor_proto(buf, 27, 1, "\x4a\x01\x00", 3);
    CHECK_EQ_INT(dab_onnx_parse_tensor(buf, n, &t, NULL, &e), DAB_EUNSUPPORTED);
}

/* True when node n of g has an implicit input named `name`. */
static bool reads_implicitly(const dab_graph_t *g, const dab_gnode_t *n, const char *name)
{
    for (int k = 0; k < n->n_implicit; k++)
        if (!strcmp(g->values[n->implicit[k]].name, name))
            return true;
    return false;
}

static const dab_gnode_t *node_named(const dab_graph_t *g, const char *name, int *index)
{
    for (int n = 0; n < g->n_nodes; n++)
        if (!strcmp(g->nodes[n].name, name)) {
            if (index)
                *index = n;
            return &g->nodes[n];
        }
    return NULL;
}

/* Subgraphs read enclosing values by name: the loader records them as the control-flow
 * node's implicit inputs (at every level, for names read further in), and orders the node
 * after their producers even when the file lists it first. */
TEST(test_subgraph_implicit_inputs)
{
    dab_graph_t *g = NULL;
    dab_err_t e = {0};
    CHECK_EQ_INT(load(MODELS "control/if_unsorted/model.onnx", &g, &e), 0);
    if (g) {
        int at_if = -1, at_mul = -1, at_neg = -1;
        const dab_gnode_t *n = node_named(g, "the_if", &at_if);
        node_named(g, "outer_mul", &at_mul);
        node_named(g, "outer_neg_const", &at_neg);
        CHECK(n != NULL);
        CHECK(at_if > at_mul && at_if > at_neg && at_mul >= 0 && at_neg >= 0);
        if (n) {
            /* then reads a, nw; else reads x, a, w; the cond is an ordinary input */
            CHECK_EQ_INT(n->n_implicit, 4);
            CHECK(reads_implicitly(g, n, "a") && reads_implicitly(g, n, "nw") &&
                  reads_implicitly(g, n, "x") && reads_implicitly(g, n, "w"));
        }
        dab_graph_free(g);
    }
    g = NULL;
    CHECK_EQ_INT(load(MODELS "control/nested/model.onnx", &g, &e), 0);
    if (g) {
        const dab_gnode_t *loop = node_named(g, "outer_loop", NULL);
        CHECK(loop != NULL);
        if (loop) {
            /* r and k are read three levels in, thr two, tenth by the body itself; the
             * body's own values and initializer (acc_in, two_i) are not the root's */
            CHECK_EQ_INT(loop->n_implicit, 4);
            CHECK(reads_implicitly(g, loop, "r") && reads_implicitly(g, loop, "k") &&
                  reads_implicitly(g, loop, "thr") && reads_implicitly(g, loop, "tenth"));
            const dab_graph_t *body = loop->attrs[0].g;
            const dab_gnode_t *mid = body ? node_named(body, "mid_if", NULL) : NULL;
            CHECK(mid != NULL);
            if (mid) {
                CHECK_EQ_INT(mid->n_implicit, 4);
                CHECK(reads_implicitly(body, mid, "acc_in") && reads_implicitly(body, mid, "r") &&
                      reads_implicitly(body, mid, "k") && reads_implicitly(body, mid, "thr"));
            }
        }
        dab_graph_free(g);
    }
}

TEST_LIST(T(test_load_mlp), T(test_fuzz_regressions), T(test_load_constants_and_external), T(test_refusals),
          T(test_truncation_and_corruption), T(test_allocation_failures), T(test_tensor_files),
          T(test_low_precision_tensors), T(test_subgraph_implicit_inputs))
