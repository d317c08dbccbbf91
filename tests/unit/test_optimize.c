/*
 * test_optimize.c - graph optimizations: each pass must fire on a small graph built
 * here (node counts and op types after optimizing) and the optimized graph must give
 * the unoptimized one's outputs (rtol 1e-5, atol 1e-6) on the same inputs. Hostile
 * cases: an enormous constant is not folded, values a caller owns are never aliased
 * into outputs, patterns whose intermediates are read elsewhere are not fused.
 */
#include <stdarg.h>

#include "graph/graph.h"
#include "graph/optimize_int.h"
#include "onnx/onnx.h"
#include "test.h"

#define MODELS "tests/data/models/"

/* ---- building graphs ---- */

static dab_graph_t *g_new(int opset)
{
    dab_graph_t *g = dab_graph_new("t");
    g->inputs = dab_malloc(16 * sizeof *g->inputs);
    g->outputs = dab_malloc(16 * sizeof *g->outputs);
    g->opsets = dab_calloc(1, sizeof *g->opsets);
    g->opsets[0].domain = dab_strdup("");
    g->opsets[0].version = opset;
    g->n_opsets = 1;
    return g;
}

static int g_input(dab_graph_t *g, const char *name, int rank, const int64_t *dims)
{
    int v = dab_graph_value(g, name);
    dab_value_t *val = &g->values[v];
    val->dtype = DAB_DT_FLOAT;
    val->rank = rank;
    for (int d = 0; d < rank; d++)
        val->dims[d] = dims[d];
    val->is_input = true;
    g->inputs[g->n_inputs++] = v;
    return v;
}

static void g_output(dab_graph_t *g, const char *name)
{
    int v = dab_graph_value(g, name);
    g->values[v].is_output = true;
    g->outputs[g->n_outputs++] = v;
}

static int g_const(dab_graph_t *g, const char *name, dab_dtype_t dt, int rank,
                   const int64_t *dims, const void *data)
{
    dab_tensor_t *t = dab_calloc(1, sizeof *t);
    dab_graph_own(g, t);
    t->dtype = dt;
    t->rank = rank;
    for (int d = 0; d < rank; d++)
        t->dims[d] = dims[d];
    size_t bytes = dab_tensor_bytes(t);
    t->data = dab_malloc(bytes + 1);
    dab_graph_own(g, t->data);
    memcpy(t->data, data, bytes);
    int v = dab_graph_value(g, name);
    g->values[v].const_data = t;
    g->values[v].dtype = dt;
    g->values[v].rank = rank;
    for (int d = 0; d < rank; d++)
        g->values[v].dims[d] = dims[d];
    return v;
}

static int g_constf(dab_graph_t *g, const char *name, int64_t n, const float *data)
{
    int64_t dims[1] = {n};
    return g_const(g, name, DAB_DT_FLOAT, 1, dims, data);
}

/* A node reading and writing values by name ("" = omitted); outputs then inputs,
 * terminated by NULL: node(g, "Add", "y", NULL, "a", "b", NULL). */
static int g_node(dab_graph_t *g, const char *op, ...)
{
    va_list ap;
    const char *outs[8], *ins[8];
    int n_out = 0, n_in = 0;
    va_start(ap, op);
    for (const char *s; (s = va_arg(ap, const char *));)
        outs[n_out++] = s;
    for (const char *s; (s = va_arg(ap, const char *));)
        ins[n_in++] = s;
    va_end(ap);
    int n = dab_graph_add_node(g);
    dab_gnode_t *node = &g->nodes[n];
    node->name = dab_strdup(outs[0]);
    node->op_type = dab_strdup(op);
    node->domain = dab_strdup("");
    node->inputs = dab_malloc(8 * sizeof(int));
    node->outputs = dab_malloc(8 * sizeof(int));
    node->attrs = dab_calloc(8, sizeof(dab_attr_t));
    for (int k = 0; k < n_in; k++) {
        int v = ins[k][0] ? dab_graph_value(g, ins[k]) : -1;
        g->nodes[n].inputs[g->nodes[n].n_inputs++] = v;
    }
    for (int k = 0; k < n_out; k++) {
        int v = dab_graph_value(g, outs[k]);
        g->nodes[n].outputs[g->nodes[n].n_outputs++] = v;
    }
    return n;
}

static void a_int(dab_graph_t *g, int n, const char *name, int64_t v)
{
    dab_attr_t *a = &g->nodes[n].attrs[g->nodes[n].n_attrs++];
    a->name = name;
    a->type = DAB_ATTR_INT;
    a->i = v;
}

static void a_float(dab_graph_t *g, int n, const char *name, float v)
{
    dab_attr_t *a = &g->nodes[n].attrs[g->nodes[n].n_attrs++];
    a->name = name;
    a->type = DAB_ATTR_FLOAT;
    a->f = v;
}

static void a_ints(dab_graph_t *g, int n, const char *name, int count, const int64_t *v)
{
    dab_attr_t *a = &g->nodes[n].attrs[g->nodes[n].n_attrs++];
    a->name = name;
    a->type = DAB_ATTR_INTS;
    a->n = count;
    a->ints = v;
}

static int count_op(const dab_graph_t *g, const char *op)
{
    int c = 0;
    for (int n = 0; n < g->n_nodes; n++)
        c += !strcmp(g->nodes[n].op_type, op);
    return c;
}

/* ---- running and comparing ---- */

static uint64_t g_seed = 7;

static void fill(dab_tensor_t *t)
{
    for (int64_t i = 0; i < dab_tensor_numel(t); i++) {
        g_seed = g_seed * 6364136223846793005ull + 1442695040888963407ull;
        ((float *)t->data)[i] = (float)((double)(g_seed >> 11) / (double)(1ull << 53) * 4 - 2);
    }
}

/* A pass compare() runs after dab_graph_optimize (one not in any level yet), or NULL. */
static int (*t_extra_pass)(dab_graph_t *g, dab_err_t *err);

/* Builds the graph twice, optimizes one copy at `level`, runs both on the same random
 * inputs (shapes from the declarations) and checks every output. Returns the optimized
 * graph for the caller to inspect (free it), or NULL. */
static dab_graph_t *compare(void (*build)(dab_graph_t *g), int opset, dab_opt_level_t level)
{
    dab_graph_t *ref = g_new(opset), *opt = g_new(opset);
    dab_err_t e = {0};
    build(ref);
    build(opt);
    CHECK_EQ_INT(dab_graph_finalize(ref, &e), 0);
    CHECK_EQ_INT(dab_graph_finalize(opt, &e), 0);
    int rc = dab_graph_optimize(opt, level, &e);
    if (!rc && t_extra_pass && (rc = t_extra_pass(opt, &e)) >= 0)
        rc = dab_opt_dead(opt, &e) < 0 ? -1 : 0;
    CHECK_EQ_INT(rc, 0);
    if (rc)
        fprintf(stderr, "optimize: %s\n", e.msg);
    dab_tensor_t ins[8] = {{0}};
    const dab_tensor_t *feed[8] = {0}, *out_ref[8] = {0}, *out_opt[8] = {0};
    for (int i = 0; i < ref->n_inputs; i++) {
        const dab_value_t *v = &ref->values[ref->inputs[i]];
        dab_tensor_alloc(&ins[i], DAB_DT_FLOAT, v->rank, v->dims, &e);
        fill(&ins[i]);
        feed[i] = &ins[i];
    }
    dab_session_t *sr = NULL, *so = NULL;
    dab_session_opts_t sopt = {.threads = 1};
    CHECK_EQ_INT(dab_session_create(ref, &sopt, &sr, &e), 0);
    CHECK_EQ_INT(dab_session_create(opt, &sopt, &so, &e), 0);
    if (!sr || !so) {
        fprintf(stderr, "session: %s\n", e.msg);
        goto done;
    }
    /* Twice: the first run plans, the second runs inside the arena (views included). */
    for (int run = 0; run < 2; run++) {
        CHECK_EQ_INT(dab_session_run(sr, feed, out_ref, &e), 0);
        rc = dab_session_run(so, feed, out_opt, &e);
        CHECK_EQ_INT(rc, 0);
        if (rc) {
            fprintf(stderr, "run: %s\n", e.msg);
            goto done;
        }
        CHECK_EQ_INT(opt->n_outputs, ref->n_outputs);
        for (int i = 0; i < ref->n_outputs; i++) {
            CHECK(!strcmp(opt->values[opt->outputs[i]].name, ref->values[ref->outputs[i]].name));
            const dab_tensor_t *a = out_ref[i], *b = out_opt[i];
            CHECK(dab_shape_equal(a, b));
            CHECK_EQ_INT(a->dtype, b->dtype);
            if (!dab_shape_equal(a, b) || a->dtype != DAB_DT_FLOAT)
                continue;
            int bad = 0;
            for (int64_t k = 0; k < dab_tensor_numel(a); k++) {
                float x = ((float *)a->data)[k], y = ((float *)b->data)[k];
                if (!(fabsf(x - y) <= 1e-6f + 1e-5f * fabsf(x)) && bad++ < 3)
                    fprintf(stderr, "  output %d [%lld]: %.9g vs %.9g\n", i, (long long)k, x,
                            y);
            }
            CHECK_EQ_INT(bad, 0);
        }
    }
    /* Views must not let a caller's input show through an output. */
    for (int i = 0; i < opt->n_outputs; i++)
        for (int k = 0; k < opt->n_inputs; k++)
            CHECK(out_opt[i]->data != ins[k].data);
done:
    dab_session_free(sr);
    dab_session_free(so);
    for (int i = 0; i < 8; i++)
        dab_tensor_free(&ins[i]);
    dab_graph_free(ref);
    return opt;
}

/* ---- constant folding ---- */

static void build_fold(dab_graph_t *g)
{
    static const float c1[4] = {1, 2, 3, 4}, c2[4] = {0.5f, -1, 2, 0.25f};
    static const int64_t sh[2] = {2, 2};
    int64_t dims[2] = {2, 2};
    g_input(g, "x", 2, dims);
    g_constf(g, "c1", 4, c1);
    g_constf(g, "c2", 4, c2);
    g_const(g, "shape", DAB_DT_INT64, 1, (int64_t[]){2}, sh);
    g_node(g, "Mul", "t", NULL, "c1", "c2", NULL);
    g_node(g, "Add", "u", NULL, "t", "c1", NULL);
    g_node(g, "Reshape", "u2", NULL, "u", "shape", NULL);
    g_node(g, "Add", "y", NULL, "x", "u2", NULL);
    g_output(g, "y");
}

TEST(test_fold_constants)
{
    dab_graph_t *g = compare(build_fold, 17, DAB_OPT_BASIC);
    CHECK_EQ_INT(g->n_nodes, 1);
    CHECK_EQ_INT(count_op(g, "Add"), 1);
    int u2 = dab_graph_find_value(g, "u2");
    CHECK(u2 >= 0 && g->values[u2].const_data && g->values[u2].const_data->rank == 2);
    dab_graph_free(g);
    g = compare(build_fold, 17, DAB_OPT_NONE);
    CHECK_EQ_INT(g->n_nodes, 4);
    dab_graph_free(g);
}

/* A graph output computed from constants only becomes a constant and keeps its name. */
static void build_fold_output(dab_graph_t *g)
{
    static const float c1[4] = {1, 2, 3, 4};
    int64_t dims[1] = {4};
    g_input(g, "x", 1, dims);
    g_constf(g, "c1", 4, c1);
    g_node(g, "Neg", "k", NULL, "c1", NULL);
    g_node(g, "Mul", "y", NULL, "x", "k", NULL);
    g_output(g, "k");
    g_output(g, "y");
}

TEST(test_fold_graph_output)
{
    dab_graph_t *g = compare(build_fold_output, 17, DAB_OPT_ALL);
    CHECK_EQ_INT(g->n_nodes, 1);
    CHECK(!strcmp(g->values[g->outputs[0]].name, "k"));
    CHECK(g->values[g->outputs[0]].const_data != NULL);
    dab_graph_free(g);
}

/* A constant of 4 GiB is not made at load: the node stays to fail (or not) at run time. */
TEST(test_fold_refuses_enormous)
{
    dab_graph_t *g = g_new(17);
    dab_err_t e = {0};
    static const int64_t shape[2] = {1 << 20, 1 << 10};
    g_const(g, "shape", DAB_DT_INT64, 1, (int64_t[]){2}, shape);
    g_node(g, "ConstantOfShape", "big", NULL, "shape", NULL);
    g_output(g, "big");
    CHECK_EQ_INT(dab_graph_finalize(g, &e), 0);
    dab_alloc_stats_t a0, a1;
    dab_alloc_stats(&a0);
    CHECK_EQ_INT(dab_graph_optimize(g, DAB_OPT_ALL, &e), 0);
    dab_alloc_stats(&a1);
    CHECK_EQ_INT(g->n_nodes, 1);
    CHECK(g->values[g->outputs[0]].const_data == NULL);
    CHECK(a1.calls - a0.calls < 1000);
    dab_graph_free(g);
}

/* A default initializer the caller may override is not a constant. */
static void build_fold_default(dab_graph_t *g)
{
    static const float c1[4] = {1, 2, 3, 4};
    int64_t dims[1] = {4};
    g_input(g, "x", 1, dims);
    int v = g_constf(g, "bias", 4, c1);
    g->values[v].is_input = true;
    g->inputs[g->n_inputs++] = v;
    g_node(g, "Neg", "nb", NULL, "bias", NULL);
    g_node(g, "Add", "y", NULL, "x", "nb", NULL);
    g_output(g, "y");
}

TEST(test_fold_keeps_overridable_defaults)
{
    dab_graph_t *g = compare(build_fold_default, 17, DAB_OPT_ALL);
    CHECK_EQ_INT(g->n_nodes, 2);
    dab_graph_free(g);
}

/* ---- dead nodes and common subexpressions ---- */

static void build_dead_cse(dab_graph_t *g)
{
    static const float c[3] = {1, 2, 3};
    int64_t dims[2] = {2, 3};
    g_input(g, "x", 2, dims);
    g_constf(g, "c", 3, c);
    g_constf(g, "c_copy", 3, c);
    g_node(g, "Relu", "unused", NULL, "x", NULL);
    g_node(g, "Sigmoid", "unused2", NULL, "unused", NULL);
    g_node(g, "Mul", "a", NULL, "x", "c", NULL);
    g_node(g, "Mul", "b", NULL, "x", "c_copy", NULL); /* equal constant: same node */
    int t1 = g_node(g, "Transpose", "t1", NULL, "a", NULL);
    int t2 = g_node(g, "Transpose", "t2", NULL, "b", NULL);
    static const int64_t perm[2] = {1, 0};
    a_ints(g, t1, "perm", 2, perm);
    a_ints(g, t2, "perm", 2, perm);
    int t3 = g_node(g, "Transpose", "t3", NULL, "b", NULL); /* default perm: also [1,0] */
    (void)t3;
    g_node(g, "Add", "s", NULL, "t1", "t2", NULL);
    g_node(g, "Add", "y", NULL, "s", "t3", NULL);
    g_output(g, "y");
}

TEST(test_dead_nodes_and_cse)
{
    dab_graph_t *g = compare(build_dead_cse, 17, DAB_OPT_BASIC);
    CHECK_EQ_INT(count_op(g, "Relu"), 0);
    CHECK_EQ_INT(count_op(g, "Sigmoid"), 0);
    CHECK_EQ_INT(count_op(g, "Mul"), 1);
    /* t1 and t2 merge; t3 lacks the attribute, so it is kept (conservative) */
    CHECK_EQ_INT(count_op(g, "Transpose"), 2);
    CHECK_EQ_INT(g->n_nodes, 5);
    dab_graph_free(g);
}

/* Two equal nodes that are both graph outputs keep both names. */
static void build_cse_outputs(dab_graph_t *g)
{
    int64_t dims[1] = {5};
    g_input(g, "x", 1, dims);
    g_node(g, "Relu", "r1", NULL, "x", NULL);
    g_node(g, "Relu", "r2", NULL, "x", NULL);
    g_output(g, "r1");
    g_output(g, "r2");
}

TEST(test_cse_keeps_output_names)
{
    dab_graph_t *g = compare(build_cse_outputs, 17, DAB_OPT_ALL);
    CHECK_EQ_INT(g->n_nodes, 2);
    CHECK(!strcmp(g->values[g->outputs[1]].name, "r2"));
    CHECK_EQ_INT(g->values[g->outputs[1]].producer >= 0, 1);
    dab_graph_free(g);
}

/* ---- views ---- */

static void build_views(dab_graph_t *g)
{
    static const int64_t sh[2] = {4, 6}, axes[1] = {0};
    int64_t dims[3] = {2, 3, 4};
    g_input(g, "x", 3, dims);
    g_const(g, "shape", DAB_DT_INT64, 1, (int64_t[]){2}, sh);
    g_const(g, "axes", DAB_DT_INT64, 1, (int64_t[]){1}, axes);
    g_node(g, "Relu", "r", NULL, "x", NULL);
    g_node(g, "Reshape", "rs", NULL, "r", "shape", NULL);
    g_node(g, "Unsqueeze", "us", NULL, "rs", "axes", NULL);
    g_node(g, "Squeeze", "sq", NULL, "us", "axes", NULL);
    g_node(g, "Identity", "id", NULL, "sq", NULL);
    g_node(g, "Neg", "n", NULL, "id", NULL);       /* reads the view after r's own readers */
    g_node(g, "Sigmoid", "s", NULL, "n", NULL);
    int f = g_node(g, "Flatten", "y", NULL, "s", NULL);
    a_int(g, f, "axis", 1);
    g_node(g, "Identity", "xin", NULL, "x", NULL); /* a caller's input straight out */
    g_node(g, "Reshape", "xr", NULL, "x", "shape", NULL);
    g_node(g, "Abs", "z", NULL, "xr", NULL);
    g_output(g, "y");
    g_output(g, "xin");
    g_output(g, "z");
}

TEST(test_views)
{
    dab_graph_t *g = compare(build_views, 17, DAB_OPT_BASIC);
    int views = 0;
    for (int n = 0; n < g->n_nodes; n++)
        views += (g->nodes[n].flags & DAB_GNODE_VIEW) != 0;
    CHECK_EQ_INT(views, 7);
    dab_graph_free(g);
    g = compare(build_views, 17, DAB_OPT_NONE);
    for (int n = 0; n < g->n_nodes; n++)
        CHECK_EQ_INT(g->nodes[n].flags, 0);
    dab_graph_free(g);
}

/* The arena shrinks: the views take no space of their own. */
TEST(test_views_save_memory)
{
    dab_graph_t *gs[2];
    size_t bytes[2];
    for (int i = 0; i < 2; i++) {
        dab_graph_t *g = g_new(17);
        dab_err_t e = {0};
        build_views(g);
        CHECK_EQ_INT(dab_graph_finalize(g, &e), 0);
        CHECK_EQ_INT(dab_graph_optimize(g, i ? DAB_OPT_BASIC : DAB_OPT_NONE, &e), 0);
        dab_tensor_t x = {0};
        int64_t dims[3] = {2, 3, 4};
        dab_tensor_alloc(&x, DAB_DT_FLOAT, 3, dims, &e);
        fill(&x);
        const dab_tensor_t *feed[1] = {&x}, *outs[3];
        dab_session_t *s = NULL;
        dab_session_opts_t so = {.threads = 1};
        CHECK_EQ_INT(dab_session_create(g, &so, &s, &e), 0);
        CHECK_EQ_INT(dab_session_run(s, feed, outs, &e), 0);
        CHECK_EQ_INT(dab_session_run(s, feed, outs, &e), 0);
        bytes[i] = dab_session_arena_bytes(s);
        dab_session_free(s);
        dab_tensor_free(&x);
        gs[i] = g;
    }
    CHECK(bytes[1] < bytes[0]);
    dab_graph_free(gs[0]);
    dab_graph_free(gs[1]);
}

/* ---- fusions ---- */

/* Deterministic constants in [-1, 1) (positive when pos) of n elements. */
static int g_rand_const(dab_graph_t *g, const char *name, int rank, const int64_t *dims, bool pos)
{
    dab_tensor_t t = {0};
    dab_err_t e = {0};
    dab_tensor_alloc(&t, DAB_DT_FLOAT, rank, dims, &e);
    fill(&t);
    for (int64_t i = 0; i < dab_tensor_numel(&t); i++)
        ((float *)t.data)[i] = pos ? fabsf(((float *)t.data)[i]) + 0.1f : ((float *)t.data)[i] / 2;
    int v = g_const(g, name, DAB_DT_FLOAT, rank, dims, t.data);
    dab_tensor_free(&t);
    return v;
}

static void bn_params(dab_graph_t *g, const char *prefix, int64_t m)
{
    static const char *const names[4] = {"scale", "bias", "mean", "var"};
    char name[64];
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s_%s", prefix, names[i]);
        g_rand_const(g, name, 1, &m, i == 0 || i == 3);
    }
}

static void build_bn(dab_graph_t *g)
{
    g_seed = 11; /* both copies get the same constants */
    int64_t xd[4] = {1, 3, 5, 5}, wd[4] = {4, 3, 3, 3}, m = 4;
    int64_t x2d[2] = {2, 6}, w2d[2] = {6, 4}, w3d[2] = {4, 6};
    static const int64_t pads[4] = {1, 1, 1, 1};
    g_input(g, "x", 4, xd);
    g_input(g, "x2", 2, x2d);
    g_rand_const(g, "W", 4, wd, false);
    g_rand_const(g, "B", 1, &m, false);
    g_rand_const(g, "W2", 2, w2d, false);
    g_rand_const(g, "C2", 1, &m, false);
    g_rand_const(g, "W3", 2, w3d, false);
    bn_params(g, "bn1", 4);
    bn_params(g, "bn2", 4);
    bn_params(g, "bn3", 4);
    bn_params(g, "bn4", 4);
    int c = g_node(g, "Conv", "conv", NULL, "x", "W", "B", NULL);
    a_ints(g, c, "pads", 4, pads);
    int b = g_node(g, "BatchNormalization", "y", NULL, "conv", "bn1_scale", "bn1_bias",
                   "bn1_mean", "bn1_var", NULL);
    a_float(g, b, "epsilon", 1e-3f);
    g_node(g, "Gemm", "gemm", NULL, "x2", "W2", "C2", NULL);
    g_node(g, "BatchNormalization", "z", NULL, "gemm", "bn2_scale", "bn2_bias", "bn2_mean",
           "bn2_var", NULL);
    int t = g_node(g, "Gemm", "gemm_t", NULL, "x2", "W3", NULL);
    a_int(g, t, "transB", 1);
    g_node(g, "BatchNormalization", "z2", NULL, "gemm_t", "bn3_scale", "bn3_bias", "bn3_mean",
           "bn3_var", NULL);
    /* not fusable: the conv's output is read twice */
    int c2 = g_node(g, "Conv", "conv2", NULL, "x", "W", NULL);
    a_ints(g, c2, "pads", 4, pads);
    g_node(g, "BatchNormalization", "w", NULL, "conv2", "bn4_scale", "bn4_bias", "bn4_mean",
           "bn4_var", NULL);
    g_node(g, "Relu", "w2", NULL, "conv2", NULL);
    g_output(g, "y");
    g_output(g, "z");
    g_output(g, "z2");
    g_output(g, "w");
    g_output(g, "w2");
}

TEST(test_fuse_batchnorm)
{
    dab_graph_t *g = compare(build_bn, 15, DAB_OPT_ALL);
    CHECK_EQ_INT(count_op(g, "BatchNormalization"), 1);
    CHECK_EQ_INT(count_op(g, "Conv"), 2);
    CHECK_EQ_INT(count_op(g, "Gemm"), 2);
    int y = dab_graph_find_value(g, "y");
    CHECK(y >= 0 && g->values[y].producer >= 0 &&
          !strcmp(g->nodes[g->values[y].producer].op_type, "Conv"));
    dab_graph_free(g);
    g = compare(build_bn, 15, DAB_OPT_BASIC);
    CHECK_EQ_INT(count_op(g, "BatchNormalization"), 4);
    dab_graph_free(g);
}

static void build_act(dab_graph_t *g)
{
    g_seed = 13;
    int64_t xd[4] = {2, 3, 6, 6}, wd[4] = {4, 3, 3, 3}, m = 4, one = 1;
    int64_t x2d[2] = {3, 6}, x3d[2] = {1, 6}, w2d[2] = {6, 4}, x4d[3] = {2, 3, 6};
    static const float lo = -0.25f, hi = 0.3f;
    g_input(g, "x", 4, xd);
    g_input(g, "x2", 2, x2d);
    g_input(g, "x3", 2, x3d);
    g_input(g, "x4", 3, x4d);
    g_rand_const(g, "W", 4, wd, false);
    g_rand_const(g, "B", 1, &m, false);
    g_rand_const(g, "W2", 2, w2d, false);
    g_rand_const(g, "C2", 1, &m, false);
    g_const(g, "lo", DAB_DT_FLOAT, 0, &one, &lo);
    g_const(g, "hi", DAB_DT_FLOAT, 0, &one, &hi);
    bn_params(g, "bn", 4);
    /* Conv -> BN -> Relu: all into the Conv */
    g_node(g, "Conv", "c1", NULL, "x", "W", "B", NULL);
    g_node(g, "BatchNormalization", "c1n", NULL, "c1", "bn_scale", "bn_bias", "bn_mean", "bn_var",
           NULL);
    g_node(g, "Relu", "y1", NULL, "c1n", NULL);
    g_node(g, "Conv", "c2", NULL, "x", "W", NULL);
    g_node(g, "Clip", "y2", NULL, "c2", "lo", "hi", NULL);
    /* Gemm on oneDNN (bias rides along) and on the gemv path (one row) */
    g_node(g, "Gemm", "g1", NULL, "x2", "W2", "C2", NULL);
    int l = g_node(g, "LeakyRelu", "y3", NULL, "g1", NULL);
    a_float(g, l, "alpha", 0.2f);
    g_node(g, "Gemm", "g2", NULL, "x3", "W2", "C2", NULL);
    g_node(g, "Tanh", "y4", NULL, "g2", NULL);
    g_node(g, "MatMul", "m1", NULL, "x4", "W2", NULL);
    g_node(g, "Sigmoid", "y5", NULL, "m1", NULL);
    g_node(g, "MatMul", "m2", NULL, "x3", "W2", NULL);
    g_node(g, "HardSwish", "y6", NULL, "m2", NULL);
    /* not fused: the product is a graph output too */
    g_node(g, "MatMul", "m3", NULL, "x2", "W2", NULL);
    g_node(g, "Relu", "y7", NULL, "m3", NULL);
    g_output(g, "y1");
    g_output(g, "y2");
    g_output(g, "y3");
    g_output(g, "y4");
    g_output(g, "y5");
    g_output(g, "y6");
    g_output(g, "y7");
    g_output(g, "m3");
}

TEST(test_fuse_activations)
{
    dab_graph_t *g = compare(build_act, 17, DAB_OPT_ALL);
    CHECK_EQ_INT(g->n_nodes, 8);
    CHECK_EQ_INT(count_op(g, "Relu"), 1);
    CHECK_EQ_INT(count_op(g, "BatchNormalization"), 0);
    CHECK_EQ_INT(count_op(g, "Clip") + count_op(g, "LeakyRelu") + count_op(g, "Tanh") +
                     count_op(g, "Sigmoid") + count_op(g, "HardSwish"),
                 0);
    dab_graph_free(g);
}

static void build_gelu_act(dab_graph_t *g)
{
    g_seed = 17;
    int64_t x2d[2] = {3, 6}, x3d[2] = {1, 6}, w2d[2] = {6, 4};
    g_input(g, "x2", 2, x2d);
    g_input(g, "x3", 2, x3d);
    g_rand_const(g, "W2", 2, w2d, false);
    g_node(g, "MatMul", "m1", NULL, "x2", "W2", NULL);
    g_node(g, "Gelu", "y1", NULL, "m1", NULL);
    g_node(g, "MatMul", "m2", NULL, "x3", "W2", NULL);
    g_node(g, "Gelu", "y2", NULL, "m2", NULL);
    g->nodes[g->n_nodes - 1].attrs[0] = (dab_attr_t){.name = "approximate",
                                                      .type = DAB_ATTR_STRING,
                                                      .s = "tanh",
                                                      .s_len = 4};
    g->nodes[g->n_nodes - 1].n_attrs = 1;
    g_output(g, "y1");
    g_output(g, "y2");
}

TEST(test_fuse_gelu_activation)
{
    dab_graph_t *g = compare(build_gelu_act, 20, DAB_OPT_ALL);
    CHECK_EQ_INT(g->n_nodes, 2);
    CHECK_EQ_INT(count_op(g, "Gelu"), 0);
    dab_graph_free(g);
}

/* torch's LayerNorm at opset 13 (axes attribute) and 18 (axes input), and a copy whose
 * centred values are also a graph output (not fused). */
static void build_ln_common(dab_graph_t *g, bool axes_input, const char *x, const char *p,
                            bool leak)
{
    static const int64_t axes[1] = {-1};
    static const float two = 2.0f, eps = 1e-5f;
    char b[16][64];
    for (int i = 0; i < 16; i++)
        snprintf(b[i], sizeof b[i], "%s%d", p, i);
    int64_t one = 1;
    if (dab_graph_find_value(g, "two") < 0) {
        g_const(g, "two", DAB_DT_FLOAT, 0, &one, &two);
        g_const(g, "eps", DAB_DT_FLOAT, 0, &one, &eps);
        g_const(g, "axes", DAB_DT_INT64, 1, &one, axes);
    }
    int r1 = axes_input ? g_node(g, "ReduceMean", b[0], NULL, x, "axes", NULL)
                        : g_node(g, "ReduceMean", b[0], NULL, x, NULL);
    g_node(g, "Sub", b[1], NULL, x, b[0], NULL);
    g_node(g, "Pow", b[2], NULL, b[1], "two", NULL);
    int r2 = axes_input ? g_node(g, "ReduceMean", b[3], NULL, b[2], "axes", NULL)
                        : g_node(g, "ReduceMean", b[3], NULL, b[2], NULL);
    if (!axes_input) {
        a_ints(g, r1, "axes", 1, axes);
        a_ints(g, r2, "axes", 1, axes);
    }
    g_node(g, "Add", b[4], NULL, b[3], "eps", NULL);
    g_node(g, "Sqrt", b[5], NULL, b[4], NULL);
    g_node(g, "Div", b[6], NULL, b[1], b[5], NULL);
    g_node(g, "Mul", b[7], NULL, b[6], "gamma", NULL);
    g_node(g, "Add", p, NULL, "beta", b[7], NULL);
    g_output(g, p);
    if (leak)
        g_output(g, b[1]);
}

static void build_ln(dab_graph_t *g, bool axes_input)
{
    g_seed = 19;
    int64_t xd[3] = {2, 3, 8}, d = 8;
    g_input(g, "x", 3, xd);
    g_input(g, "x2", 3, xd);
    g_rand_const(g, "gamma", 1, &d, false);
    g_rand_const(g, "beta", 1, &d, false);
    build_ln_common(g, axes_input, "x", "y", false);
    build_ln_common(g, axes_input, "x2", "z", true);
}

static void build_ln13(dab_graph_t *g)
{
    build_ln(g, false);
}

static void build_ln18(dab_graph_t *g)
{
    build_ln(g, true);
}

TEST(test_fuse_layernorm)
{
    for (int v = 0; v < 2; v++) {
        dab_graph_t *g = v ? compare(build_ln18, 18, DAB_OPT_ALL) : compare(build_ln13, 13, DAB_OPT_ALL);
        CHECK_EQ_INT(count_op(g, "LayerNormalization"), 1);
        CHECK_EQ_INT(g->n_nodes, 10);
        int y = dab_graph_find_value(g, "y");
        CHECK(y >= 0 && g->values[y].producer >= 0 &&
              !strcmp(g->nodes[g->values[y].producer].op_type, "LayerNormalization"));
        dab_graph_free(g);
    }
}

/* Gelu's erf form as torch writes it, and with the half applied to x first. */
static void build_gelu(dab_graph_t *g)
{
    static const float sqrt2 = 1.4142135f, one = 1.0f, half = 0.5f, rsqrt2 = 0.70710677f;
    int64_t xd[2] = {4, 16}, s = 1;
    g_input(g, "x", 2, xd);
    g_input(g, "x3", 2, xd);
    g_const(g, "sqrt2", DAB_DT_FLOAT, 0, &s, &sqrt2);
    g_const(g, "rsqrt2", DAB_DT_FLOAT, 0, &s, &rsqrt2);
    g_const(g, "one", DAB_DT_FLOAT, 0, &s, &one);
    g_const(g, "half", DAB_DT_FLOAT, 0, &s, &half);
    g_node(g, "Div", "a", NULL, "x", "sqrt2", NULL);
    g_node(g, "Erf", "b", NULL, "a", NULL);
    g_node(g, "Add", "c", NULL, "b", "one", NULL);
    g_node(g, "Mul", "d", NULL, "x", "c", NULL);
    g_node(g, "Mul", "y", NULL, "d", "half", NULL);
    g_node(g, "Mul", "a2", NULL, "rsqrt2", "x", NULL);
    g_node(g, "Erf", "b2", NULL, "a2", NULL);
    g_node(g, "Add", "c2", NULL, "one", "b2", NULL);
    g_node(g, "Mul", "h2", NULL, "x", "half", NULL);
    g_node(g, "Mul", "z", NULL, "h2", "c2", NULL);
    /* not fused: Erf's output is read twice */
    g_node(g, "Div", "a3", NULL, "x3", "sqrt2", NULL);
    g_node(g, "Erf", "b3", NULL, "a3", NULL);
    g_node(g, "Add", "c3", NULL, "b3", "one", NULL);
    g_node(g, "Mul", "d3", NULL, "x3", "c3", NULL);
    g_node(g, "Mul", "w", NULL, "d3", "half", NULL);
    /* the tanh form, as GPT-2 writes it */
    static const float three = 3.0f, k1 = 0.044715f, k2 = 0.7978845608f;
    g_input(g, "x4", 2, xd);
    g_const(g, "three", DAB_DT_FLOAT, 0, &s, &three);
    g_const(g, "k1", DAB_DT_FLOAT, 0, &s, &k1);
    g_const(g, "k2", DAB_DT_FLOAT, 0, &s, &k2);
    g_node(g, "Pow", "t1", NULL, "x4", "three", NULL);
    g_node(g, "Mul", "t2", NULL, "k1", "t1", NULL);
    g_node(g, "Add", "t3", NULL, "x4", "t2", NULL);
    g_node(g, "Mul", "t4", NULL, "t3", "k2", NULL);
    g_node(g, "Tanh", "t5", NULL, "t4", NULL);
    g_node(g, "Add", "t6", NULL, "t5", "one", NULL);
    g_node(g, "Mul", "t7", NULL, "half", "x4", NULL);
    g_node(g, "Mul", "v", NULL, "t7", "t6", NULL);
    g_output(g, "y");
    g_output(g, "z");
    g_output(g, "w");
    g_output(g, "b3");
    g_output(g, "v");
}

TEST(test_fuse_gelu)
{
    dab_graph_t *g = compare(build_gelu, 13, DAB_OPT_ALL);
    CHECK_EQ_INT(count_op(g, "Gelu"), 3);
    CHECK_EQ_INT(count_op(g, "Erf"), 1);
    CHECK_EQ_INT(count_op(g, "Tanh"), 0);
    CHECK_EQ_INT(g->n_nodes, 3 + 5);
    dab_graph_free(g);
}

/* Attention as BERT exports it: K transposed by its producer, scores divided by sqrt(d),
 * an additive [b, 1, 1, s] mask; then with K^T fed directly, a Mul scale and no mask; then
 * a mask of one value per row (broadcast over the keys as Add does). */
static void build_attention(dab_graph_t *g)
{
    g_seed = 23;
    int64_t qd[4] = {2, 2, 5, 4}, kd[4] = {2, 5, 2, 4}, ktd[4] = {2, 2, 4, 5}, md[4] = {2, 1, 1, 5};
    int64_t m1d[4] = {2, 1, 5, 1}, s = 1;
    static const float sq = 2.0f, rs = 0.5f;
    static const int64_t perm_k[4] = {0, 2, 3, 1};
    g_input(g, "q", 4, qd);
    g_input(g, "k", 4, kd);
    g_input(g, "v", 4, qd);
    g_input(g, "kt2", 4, ktd);
    g_input(g, "q2", 4, qd);
    g_input(g, "v2", 4, qd);
    g_input(g, "mask1", 4, m1d);
    g_const(g, "sq", DAB_DT_FLOAT, 0, &s, &sq);
    g_const(g, "rs", DAB_DT_FLOAT, 0, &s, &rs);
    /* mask: keys 3 and 4 of batch 1 hidden, as (1 - m) * -10000 writes it */
    static const float mk[10] = {0, 0, 0, 0, 0, 0, 0, 0, -10000, -10000};
    g_const(g, "mask", DAB_DT_FLOAT, 4, md, mk);
    int t = g_node(g, "Transpose", "kt", NULL, "k", NULL);
    a_ints(g, t, "perm", 4, perm_k);
    g_node(g, "MatMul", "s1", NULL, "q", "kt", NULL);
    g_node(g, "Div", "s2", NULL, "s1", "sq", NULL);
    g_node(g, "Add", "s3", NULL, "mask", "s2", NULL);
    int sm = g_node(g, "Softmax", "p", NULL, "s3", NULL);
    a_int(g, sm, "axis", -1);
    g_node(g, "MatMul", "y", NULL, "p", "v", NULL);
    g_node(g, "MatMul", "u1", NULL, "q2", "kt2", NULL);
    g_node(g, "Mul", "u2", NULL, "rs", "u1", NULL);
    g_node(g, "Softmax", "pu", NULL, "u2", NULL);
    g_node(g, "MatMul", "z", NULL, "pu", "v2", NULL);
    g_node(g, "MatMul", "w1", NULL, "q2", "kt2", NULL); /* CSE makes this u1: shared */
    g_node(g, "Add", "w2", NULL, "w1", "mask1", NULL);
    g_node(g, "Softmax", "pw", NULL, "w2", NULL);
    g_node(g, "MatMul", "w", NULL, "pw", "v", NULL);
    g_node(g, "MatMul", "x1", NULL, "q", "kt2", NULL);
    g_node(g, "Add", "x2", NULL, "x1", "mask1", NULL);
    g_node(g, "Softmax", "px", NULL, "x2", NULL);
    g_node(g, "MatMul", "x", NULL, "px", "v2", NULL);
    g_input(g, "q3", 4, qd);
    g_node(g, "MatMul", "r1", NULL, "q3", "kt2", NULL);
    g_node(g, "Mul", "r2", NULL, "r1", "rs", NULL);
    g_node(g, "Softmax", "pr", NULL, "r2", NULL);
    g_node(g, "MatMul", "r", NULL, "pr", "v2", NULL);
    g_output(g, "y");
    g_output(g, "z");
    g_output(g, "w");
    g_output(g, "x");
    g_output(g, "r");
}

TEST(test_fuse_attention)
{
    dab_graph_t *g = compare(build_attention, 17, DAB_OPT_ALL);
    CHECK_EQ_INT(count_op(g, "Attention"), 0); /* not in "all" yet */
    dab_graph_free(g);
    t_extra_pass = dab_opt_fuse_attention;
    g = compare(build_attention, 17, DAB_OPT_ALL);
    t_extra_pass = NULL;
    /* y, x and r fuse; z's and w's scores are one value after CSE, read twice: they stay */
    CHECK_EQ_INT(count_op(g, "Attention"), 3);
    CHECK_EQ_INT(count_op(g, "Softmax"), 2);
    int y = dab_graph_find_value(g, "y");
    CHECK(y >= 0 && g->values[y].producer >= 0 &&
          !strcmp(g->nodes[g->values[y].producer].op_type, "Attention"));
    dab_graph_free(g);
}

/* MatMul + bias Add (+ Relu) on 2-D activations becomes one Gemm; rank 3 is left alone. */
static void build_mm_bias(dab_graph_t *g)
{
    g_seed = 29;
    int64_t xd[2] = {3, 6}, x3d[3] = {2, 3, 6}, wd[2] = {6, 4}, w2d[2] = {4, 5}, n = 4, n2 = 5;
    g_input(g, "x", 2, xd);
    g_input(g, "x3", 3, x3d);
    g_rand_const(g, "W", 2, wd, false);
    g_rand_const(g, "b", 1, &n, false);
    g_rand_const(g, "W2", 2, w2d, false);
    g_rand_const(g, "b2", 1, &n2, false);
    g_node(g, "MatMul", "m", NULL, "x", "W", NULL);
    g_node(g, "Add", "a", NULL, "b", "m", NULL);
    g_node(g, "Relu", "r", NULL, "a", NULL);
    g_node(g, "MatMul", "m2", NULL, "r", "W2", NULL); /* rank 2 known through the chain */
    g_node(g, "Add", "y", NULL, "m2", "b2", NULL);
    g_node(g, "MatMul", "m3", NULL, "x3", "W", NULL);
    g_node(g, "Add", "z", NULL, "m3", "b", NULL);
    g_output(g, "y");
    g_output(g, "z");
}

TEST(test_fuse_matmul_bias)
{
    dab_graph_t *g = compare(build_mm_bias, 13, DAB_OPT_ALL);
    CHECK_EQ_INT(count_op(g, "Gemm"), 2);
    CHECK_EQ_INT(count_op(g, "Relu"), 0);
    CHECK_EQ_INT(count_op(g, "MatMul"), 1);
    CHECK_EQ_INT(g->n_nodes, 4);
    dab_graph_free(g);
}

/* Values a subgraph reads from the outer scope by name are neither removed, folded nor
 * merged away. */
TEST(test_subgraph_names_pinned)
{
    dab_graph_t *g = g_new(17);
    dab_err_t e = {0};
    static const float c[2] = {1, 2};
    int64_t d = 2;
    g_input(g, "x", 1, &d);
    g_constf(g, "c", 2, c);
    g_node(g, "Relu", "seen", NULL, "x", NULL);      /* read only by the subgraph */
    g_node(g, "Neg", "folded_seen", NULL, "c", NULL); /* constant, but read by the subgraph */
    g_node(g, "Neg", "y", NULL, "x", NULL);
    g_output(g, "y");
    dab_graph_t *sub = dab_graph_new("body");
    sub->parent = g;
    dab_graph_value(sub, "seen");
    dab_graph_value(sub, "folded_seen");
    dab_graph_own_subgraph(g, sub);
    CHECK_EQ_INT(dab_graph_finalize(g, &e), 0);
    CHECK_EQ_INT(dab_graph_optimize(g, DAB_OPT_ALL, &e), 0);
    CHECK_EQ_INT(g->n_nodes, 3);
    int v = dab_graph_find_value(g, "folded_seen");
    CHECK(v >= 0 && g->values[v].producer >= 0 && !g->values[v].const_data);
    dab_graph_free(g);
}

/* Runs g (a control-flow model of tests/data/models/control) on the .pb inputs of its
 * data set `set`; the outputs go to out (valid until s is freed). */
static dab_session_t *run_control(const dab_graph_t *g, const char *name, int set,
                                  const dab_tensor_t **out)
{
    char path[512];
    dab_tensor_t ins[4] = {{0}};
    const dab_tensor_t *feed[4] = {0};
    dab_err_t e = {0};
    dab_session_t *s = NULL;
    dab_session_opts_t so = {.threads = 1};
    for (int k = 0; k < g->n_inputs && k < 4; k++) {
        snprintf(path, sizeof path, MODELS "control/%s/test_data_set_%d/input_%d.pb", name, set,
                 k);
        CHECK_EQ_INT(dab_onnx_read_tensor_file(path, &ins[k], NULL, &e), 0);
        feed[k] = &ins[k];
    }
    if (dab_session_create(g, &so, &s, &e) || dab_session_run(s, feed, out, &e)) {
        fprintf(stderr, "%s: %s\n", name, e.msg);
        CHECK(0);
        dab_session_free(s);
        s = NULL;
    }
    for (int k = 0; k < 4; k++)
        dab_tensor_free(&ins[k]);
    return s;
}

static bool same_output(const dab_tensor_t *a, const dab_tensor_t *b)
{
    return a && b && a->dtype == b->dtype && dab_shape_equal(a, b) &&
           !memcmp(a->data, b->data, dab_tensor_bytes(a));
}

/* A value computed in the outer graph and read only inside an If branch (and one that is
 * constant-foldable, read only there too) survives --optimize all: neither dead-node
 * removal nor folding nor merging takes it away, the If keeps it as an implicit input,
 * and both branches still give the unoptimized graph's numbers. */
TEST(test_value_read_only_by_branch_survives)
{
    dab_graph_t *g[2] = {0};
    dab_err_t e = {0};
    for (int i = 0; i < 2; i++) {
        CHECK_EQ_INT(dab_onnx_load_file(MODELS "control/if_outer/model.onnx", &g[i], &e), 0);
        if (g[i])
            CHECK_EQ_INT(dab_graph_optimize(g[i], i ? DAB_OPT_ALL : DAB_OPT_NONE, &e), 0);
    }
    if (!g[0] || !g[1])
        goto done;
    int a = dab_graph_find_value(g[1], "a"), nw = dab_graph_find_value(g[1], "nw");
    CHECK(a >= 0 && g[1]->values[a].producer >= 0);
    CHECK(nw >= 0 && (g[1]->values[nw].producer >= 0 || g[1]->values[nw].const_data));
    CHECK_EQ_INT(count_op(g[1], "If"), 1);
    CHECK_EQ_INT(count_op(g[1], "Mul"), 1);
    for (int n = 0; n < g[1]->n_nodes; n++)
        if (!strcmp(g[1]->nodes[n].op_type, "If")) {
            bool reads_a = false;
            for (int k = 0; k < g[1]->nodes[n].n_implicit; k++)
                reads_a |= g[1]->nodes[n].implicit[k] == a;
            CHECK(reads_a);
        }
    for (int set = 0; set < 2; set++) {
        const dab_tensor_t *o0[2] = {0}, *o1[2] = {0};
        dab_session_t *s0 = run_control(g[0], "if_outer", set, o0);
        dab_session_t *s1 = run_control(g[1], "if_outer", set, o1);
        CHECK(s0 && s1 && same_output(o0[0], o1[0]) && same_output(o0[1], o1[1]));
        dab_session_free(s0);
        dab_session_free(s1);
    }
done:
    dab_graph_free(g[0]);
    dab_graph_free(g[1]);
}

/* Folding stops at control flow: an If whose cond folds to a constant stays an If (its
 * branch still runs, reading a value the folder left computed), and the numbers hold. */
TEST(test_fold_stops_at_control_flow)
{
    dab_graph_t *g = NULL;
    dab_err_t e = {0};
    CHECK_EQ_INT(dab_onnx_load_file(MODELS "control/if_const_cond/model.onnx", &g, &e), 0);
    if (!g)
        return;
    CHECK_EQ_INT(dab_graph_optimize(g, DAB_OPT_ALL, &e), 0);
    int cond = dab_graph_find_value(g, "cond"), nw = dab_graph_find_value(g, "nw");
    CHECK(cond >= 0 && g->values[cond].const_data != NULL); /* ReduceSum, Greater folded */
    CHECK_EQ_INT(count_op(g, "ReduceSum") + count_op(g, "Greater"), 0);
    CHECK_EQ_INT(count_op(g, "If"), 1);
    CHECK(nw >= 0 && g->values[nw].producer >= 0); /* read by the branches by name */
    const dab_tensor_t *out[1] = {0};
    dab_session_t *s = run_control(g, "if_const_cond", 0, out);
    static const float want[3] = {-0.5f, -3.0f, -1.0f}; /* x + -w */
    for (int i = 0; s && i < 3; i++)
        CHECK_NEAR(((const float *)out[0]->data)[i], want[i], 1e-6);
    dab_session_free(s);
    dab_graph_free(g);
}

/* ---- whole models: optimized equals unoptimized ---- */

TEST(test_models_unchanged)
{
    static const char *const files[] = {MODELS "mlp.onnx", MODELS "consts.onnx",
                                        MODELS "row_sum.onnx",
                                        "examples/repository/digits_cnn/1/model.onnx",
                                        "examples/repository/digits_mlp/1/model.onnx",
                                        "examples/repository/text_classifier/1/model.onnx",
                                        "examples/repository/text_classifier/2/model.onnx"};
    for (size_t f = 0; f < DAB_ARRAY_LEN(files); f++) {
        dab_graph_t *g[2] = {0};
        dab_err_t e = {0};
        for (int i = 0; i < 2; i++) {
            CHECK_EQ_INT(dab_onnx_load_file(files[f], &g[i], &e), 0);
            CHECK_EQ_INT(dab_graph_optimize(g[i], i ? DAB_OPT_ALL : DAB_OPT_NONE, &e), 0);
        }
        if (!g[0] || !g[1]) {
            fprintf(stderr, "%s: %s\n", files[f], e.msg);
            dab_graph_free(g[0]);
            dab_graph_free(g[1]);
            continue;
        }
        dab_tensor_t ins[8] = {{0}};
        const dab_tensor_t *feed[8] = {0}, *outs[2][8];
        bool ok = g[0]->n_inputs <= 8 && g[0]->n_outputs <= 8;
        for (int i = 0; ok && i < g[0]->n_inputs; i++) {
            const dab_value_t *v = &g[0]->values[g[0]->inputs[i]];
            int64_t dims[DAB_MAX_RANK];
            for (int d = 0; d < v->rank; d++)
                dims[d] = v->dims[d] >= 0 ? v->dims[d] : 3;
            /* floats random; integer inputs (token ids, masks) all 1 */
            ok = v->rank >= 0 && (v->dtype == DAB_DT_FLOAT || v->dtype == DAB_DT_INT64) &&
                 !dab_tensor_alloc(&ins[i], v->dtype, v->rank, dims, &e);
            if (ok && v->dtype == DAB_DT_FLOAT)
                fill(&ins[i]);
            for (int64_t k = 0; ok && v->dtype == DAB_DT_INT64 && k < dab_tensor_numel(&ins[i]); k++)
                ((int64_t *)ins[i].data)[k] = 1;
            feed[i] = &ins[i];
        }
        dab_session_t *s[2] = {0};
        dab_session_opts_t so = {.threads = 1};
        for (int i = 0; ok && i < 2; i++) {
            CHECK_EQ_INT(dab_session_create(g[i], &so, &s[i], &e), 0);
            CHECK_EQ_INT(dab_session_run(s[i], feed, outs[i], &e), 0);
            CHECK_EQ_INT(dab_session_run(s[i], feed, outs[i], &e), 0);
        }
        CHECK(ok);
        CHECK(g[1]->n_nodes <= g[0]->n_nodes);
        for (int o = 0; ok && o < g[0]->n_outputs; o++) {
            CHECK(dab_shape_equal(outs[0][o], outs[1][o]));
            int bad = 0;
            for (int64_t k = 0; k < dab_tensor_numel(outs[0][o]); k++) {
                double x = dab_tensor_get_f64(outs[0][o], k), y = dab_tensor_get_f64(outs[1][o], k);
                bad += !(fabs(x - y) <= 1e-6 + 1e-5 * fabs(x));
            }
            CHECK_EQ_INT(bad, 0);
        }
        for (int i = 0; i < 2; i++) {
            dab_session_free(s[i]);
            dab_graph_free(g[i]);
        }
        for (int i = 0; i < 8; i++)
            dab_tensor_free(&ins[i]);
    }
}

TEST(test_level_parse)
{
    dab_opt_level_t l;
    dab_err_t e = {0};
    CHECK_EQ_INT(dab_opt_level_parse("none", &l, &e), 0);
    CHECK_EQ_INT(l, DAB_OPT_NONE);
    CHECK_EQ_INT(dab_opt_level_parse("basic", &l, &e), 0);
    CHECK_EQ_INT(l, DAB_OPT_BASIC);
    CHECK_EQ_INT(dab_opt_level_parse("all", &l, &e), 0);
    CHECK_EQ_INT(l, DAB_OPT_ALL);
    CHECK_EQ_INT(dab_opt_level_parse("max", &l, &e), DAB_EINVAL);
    CHECK(strstr(e.msg, "'max'") != NULL);
    CHECK(!strcmp(dab_opt_level_name(DAB_OPT_DEFAULT), "all"));
}

TEST_LIST(T(test_fold_constants), T(test_fold_graph_output), T(test_fold_refuses_enormous),
          T(test_fold_keeps_overridable_defaults), T(test_dead_nodes_and_cse),
          T(test_cse_keeps_output_names), T(test_views), T(test_views_save_memory), T(test_fuse_batchnorm), T(test_fuse_activations),
          T(test_fuse_gelu_activation), T(test_fuse_layernorm), T(test_fuse_gelu),
          T(test_fuse_attention), T(test_fuse_matmul_bias),
          T(test_subgraph_names_pinned), T(test_value_read_only_by_branch_survives),
          T(test_fold_stops_at_control_flow), T(test_models_unchanged), T(test_level_parse))
