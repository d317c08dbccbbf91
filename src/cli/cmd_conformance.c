/*
 * cmd_conformance.c - `dabba conformance DIR...`: runs folders in the ONNX
 * backend-test layout (model.onnx + test_data_set_N/{input,output}_K.pb) and
 * judges each output with rtol 1e-3 / atol 1e-5 (exact for integers, bools
 * and strings; the small float formats by their decoded values). Models with a random
 * op (RandomUniform, Bernoulli, ...) cannot reproduce the recorded numbers: their outputs
 * are checked for dtype, shape and range only, and the PASS line says so.
 *
 * Each test runs in a child process, so that a crash or a hang is reported
 * as that test's FAIL and the run goes on. The parent never runs engine
 * code (OpenMP does not survive fork in the child when the parent used it).
 */
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

#define RTOL 1e-3
#define ATOL 1e-5
#define MAX_IO 64

enum { RES_PASS = 0, RES_FAIL = 1, RES_UNSUPPORTED = 2 };

typedef struct conf_opts {
    int threads;
    int timeout_s;
    int fork;
    char *known_bad;      /* --known-bad file contents: "name reason" lines, or NULL */
    dab_opt_level_t level; /* --optimize */
} conf_opts_t;

/* The reason --known-bad gives for test `label`, copied into why; false when not listed. */
static bool known_bad(const conf_opts_t *o, const char *label, char *why, size_t why_len)
{
    size_t n = strlen(label);
    for (const char *line = o->known_bad; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (line[0] != '#' && len > n && !strncmp(line, label, n) && line[n] == ' ') {
            snprintf(why, why_len, "known defect in this test data: %.*s", (int)(len - n - 1),
                     line + n + 1);
            return true;
        }
        line = end ? end + 1 : line + len;
    }
    return false;
}

static int is_dir(const char *p)
{
    struct stat st;
    return !stat(p, &st) && S_ISDIR(st.st_mode);
}

static int exists(const char *p)
{
    struct stat st;
    return !stat(p, &st);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The dtype and shape of got match want's; otherwise writes why and returns 0. */
static int same_kind(const char *name, const dab_tensor_t *got, const dab_tensor_t *want,
                     char *why, size_t why_len)
{
    char a[128], b[128];
    if (got->dtype != want->dtype) {
        snprintf(why, why_len, "output '%s' is %s, expected %s", name, dab_dtype_name(got->dtype),
                 dab_dtype_name(want->dtype));
        return 0;
    }
    if (!dab_shape_equal(got, want)) {
        snprintf(why, why_len, "output '%s' has shape %s, expected %s", name,
                 dab_shape_str(got, a, sizeof a), dab_shape_str(want, b, sizeof b));
        return 0;
    }
    return 1;
}

/* Compares got with want; on mismatch writes a description into why. */
static int compare(const char *name, const dab_tensor_t *got, const dab_tensor_t *want, char *why,
                   size_t why_len)
{
    if (!same_kind(name, got, want, why, why_len))
        return 0;
    int64_t n = dab_tensor_numel(want);
    dab_dtype_t dt = want->dtype;
    if (dt == DAB_DT_STRING) {
        const dab_str_t *x = got->data, *y = want->data;
        for (int64_t i = 0; i < n; i++)
            if (x[i].len != y[i].len || memcmp(x[i].ptr, y[i].ptr, x[i].len)) {
                snprintf(why, why_len, "output '%s' differs at index %lld", name, (long long)i);
                return 0;
            }
        return 1;
    }
    /* the float8 / float4 formats compare as the values they decode to */
    bool fp = dab_dtype_is_float(dt);
    double worst = 0;
    int64_t worst_i = -1;
    for (int64_t i = 0; i < n; i++) {
        if (!fp) {
            if (dab_tensor_get_i64(got, i) != dab_tensor_get_i64(want, i) ||
                (dt == DAB_DT_UINT64 &&
                 ((const uint64_t *)got->data)[i] != ((const uint64_t *)want->data)[i])) {
                snprintf(why, why_len, "output '%s' differs at index %lld: got %lld, expected %lld",
                         name, (long long)i, (long long)dab_tensor_get_i64(got, i),
                         (long long)dab_tensor_get_i64(want, i));
                return 0;
            }
            continue;
        }
        double x = dab_tensor_get_f64(got, i), y = dab_tensor_get_f64(want, i);
        if (isnan(y) || isnan(x)) {
            if (isnan(x) != isnan(y)) {
                snprintf(why, why_len, "output '%s' index %lld: got %g, expected %g", name,
                         (long long)i, x, y);
                return 0;
            }
            continue;
        }
        if (isinf(y) || isinf(x)) {
            if (x != y) {
                snprintf(why, why_len, "output '%s' index %lld: got %g, expected %g", name,
                         (long long)i, x, y);
                return 0;
            }
            continue;
        }
        double excess = fabs(x - y) - (ATOL + RTOL * fabs(y));
        if (excess > 0 && (worst_i < 0 || excess > worst)) {
            worst = excess;
            worst_i = i;
        }
    }
    if (worst_i >= 0) {
        double x = dab_tensor_get_f64(got, worst_i), y = dab_tensor_get_f64(want, worst_i);
        snprintf(why, why_len,
                 "output '%s' largest error %.3g at index %lld (got %.9g, expected %.9g)", name,
                 fabs(x - y), (long long)worst_i, x, y);
        return 0;
    }
    return 1;
}

/* ---- tests of random ops: their numbers cannot match, so only shape, dtype and range
 * are checked ---- */

static bool is_random_op(const dab_gnode_t *n)
{
    static const char *const ops[] = {"RandomUniform",    "RandomNormal", "RandomUniformLike",
                                      "RandomNormalLike", "Bernoulli",    "Multinomial"};
    if (n->domain[0])
        return false;
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
        if (!strcmp(n->op_type, ops[i]))
            return true;
    return false;
}

static bool graph_has_random_op(const dab_graph_t *g)
{
    for (int i = 0; i < g->n_nodes; i++)
        if (is_random_op(&g->nodes[i]))
            return true;
    return false;
}

static float node_attr_float(const dab_gnode_t *n, const char *name, float def)
{
    for (int i = 0; i < n->n_attrs; i++)
        if (!strcmp(n->attrs[i].name, name))
            return n->attrs[i].f;
    return def;
}

/* The node producing value v, looking through Identity; NULL for inputs and constants. */
static const dab_gnode_t *producer(const dab_graph_t *g, int v)
{
    while (v >= 0 && g->values[v].producer >= 0) {
        const dab_gnode_t *n = &g->nodes[g->values[v].producer];
        if (strcmp(n->op_type, "Identity") || n->n_inputs < 1)
            return n;
        v = n->inputs[0];
    }
    return NULL;
}

/*
 * Checks output k of a model with random ops: dtype and shape as expected, then the
 * range its producer allows: [low, high) for RandomUniform(Like), 0 or 1 for Bernoulli
 * and for booleans (also when cast to a number), [0, classes) for Multinomial, finite
 * for the rest (NaN only where expected has NaN at the same index).
 */
static int check_random(const dab_graph_t *g, int k, const dab_tensor_t *const *feed,
                        const dab_tensor_t *got, const dab_tensor_t *want, char *why,
                        size_t why_len)
{
    const char *name = g->values[g->outputs[k]].name;
    if (!same_kind(name, got, want, why, why_len))
        return 0;
    if (got->dtype == DAB_DT_STRING)
        return 1;
    const dab_gnode_t *p = producer(g, g->outputs[k]);
    bool binary = got->dtype == DAB_DT_BOOL || (p && !strcmp(p->op_type, "Bernoulli"));
    if (p && !strcmp(p->op_type, "Cast") && p->n_inputs > 0 && p->inputs[0] >= 0 &&
        g->values[p->inputs[0]].dtype == DAB_DT_BOOL)
        binary = true;
    double lo = -INFINITY, hi = INFINITY;
    bool hi_open = false;
    const char *rule = "finite";
    if (binary) {
        lo = 0;
        hi = 1;
        rule = "0 or 1";
    } else if (p && !strncmp(p->op_type, "RandomUniform", 13) && !p->domain[0]) {
        lo = node_attr_float(p, "low", 0.0f);
        hi = node_attr_float(p, "high", 1.0f);
        hi_open = hi > lo;
        rule = "within [low, high)";
    } else if (p && !strcmp(p->op_type, "Multinomial") && p->n_inputs > 0 && p->inputs[0] >= 0) {
        const dab_value_t *in = &g->values[p->inputs[0]];
        lo = 0;
        rule = "a class index";
        if (in->rank == 2 && in->dims[1] >= 0)
            hi = (double)in->dims[1];
        for (int i = 0; i < g->n_inputs; i++)
            if (g->inputs[i] == p->inputs[0] && feed[i] && feed[i]->rank == 2)
                hi = (double)feed[i]->dims[1];
        hi_open = isfinite(hi);
    }
    int64_t n = dab_tensor_numel(got);
    for (int64_t i = 0; i < n; i++) {
        double x = dab_tensor_get_f64(got, i);
        bool ok = binary ? x == 0 || x == 1
                         : isnan(x) ? isnan(dab_tensor_get_f64(want, i))
                                    : x >= lo && (hi_open ? x < hi : x <= hi) &&
                                          (isfinite(x) || x == dab_tensor_get_f64(want, i));
        if (!ok) {
            snprintf(why, why_len, "output '%s' index %lld: %g is not %s", name, (long long)i, x,
                     rule);
            return 0;
        }
    }
    return 1;
}

/* Runs one test folder; prints its line; returns RES_*. Runs in the child. */
static int run_test(const char *dir, const char *label, const conf_opts_t *o)
{
    char path[4096];
    dab_err_t err = {0};
    dab_graph_t *g = NULL;
    dab_session_t *s = NULL;
    int res = RES_PASS;
    char why[1024] = "";
    bool has_random = false;
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    int rc = dab_cli_load(path, o->level, &g, &err);
    if (rc) {
        res = rc == DAB_EUNSUPPORTED ? RES_UNSUPPORTED : RES_FAIL;
        snprintf(why, sizeof why, "load: %s", err.msg);
        goto out;
    }
    const dab_gnode_t *un[8];
    int n_un = dab_graph_unsupported(g, un, 8);
    if (n_un) {
        int off = snprintf(why, sizeof why, "unsupported op%s:", n_un > 1 ? "s" : "");
        for (int i = 0; i < n_un && i < 8 && off < (int)sizeof why; i++)
            off += snprintf(why + off, sizeof why - (size_t)off, " %s%s%s(opset %d)",
                            un[i]->domain[0] ? un[i]->domain : "", un[i]->domain[0] ? ":" : "",
                            un[i]->op_type, un[i]->opset);
        res = RES_UNSUPPORTED;
        goto out;
    }
    has_random = graph_has_random_op(g);
    dab_session_opts_t so = {.threads = o->threads};
    rc = dab_session_create(g, &so, &s, &err);
    if (rc) {
        res = rc == DAB_EUNSUPPORTED ? RES_UNSUPPORTED : RES_FAIL;
        snprintf(why, sizeof why, "%s", err.msg);
        goto out;
    }
    int n_sets = 0;
    for (int set = 0;; set++) {
        char sdir[4096];
        snprintf(sdir, sizeof sdir, "%s/test_data_set_%d", dir, set);
        if (!is_dir(sdir))
            break;
        n_sets++;
        dab_tensor_t ins[MAX_IO] = {0}, outs[MAX_IO] = {0};
        char *in_names[MAX_IO] = {0};
        const dab_tensor_t *feed[MAX_IO] = {0};
        const dab_tensor_t *got[MAX_IO] = {0};
        int n_in = 0, n_out = 0;
        for (; n_in < MAX_IO; n_in++) {
            snprintf(path, sizeof path, "%s/input_%d.pb", sdir, n_in);
            if (!exists(path))
                break;
            if ((rc = dab_onnx_read_tensor_file(path, &ins[n_in], &in_names[n_in], &err)))
                break;
        }
        for (; !rc && n_out < MAX_IO; n_out++) {
            snprintf(path, sizeof path, "%s/output_%d.pb", sdir, n_out);
            if (!exists(path))
                break;
            rc = dab_onnx_read_tensor_file(path, &outs[n_out], NULL, &err);
            if (rc)
                break;
        }
        if (rc) {
            res = rc == DAB_EUNSUPPORTED ? RES_UNSUPPORTED : RES_FAIL;
            snprintf(why, sizeof why, "test data: %s", err.msg);
        } else if (n_in != g->n_inputs || n_out != g->n_outputs) {
            res = RES_FAIL;
            snprintf(why, sizeof why, "test data has %d inputs and %d outputs; model has %d and %d",
                     n_in, n_out, g->n_inputs, g->n_outputs);
        } else {
            /* Match inputs by name when the files carry names, else by position. */
            for (int i = 0; i < g->n_inputs; i++) {
                feed[i] = &ins[i];
                for (int k = 0; k < n_in; k++)
                    if (in_names[k] && !strcmp(in_names[k], g->values[g->inputs[i]].name))
                        feed[i] = &ins[k];
                /* Older ONNX test data (1.12) stores bfloat16 tensors as uint16 with the
                 * same bits: read them as what the model declares. */
                if (feed[i]->dtype == DAB_DT_UINT16 &&
                    g->values[g->inputs[i]].dtype == DAB_DT_BFLOAT16)
                    ((dab_tensor_t *)feed[i])->dtype = DAB_DT_BFLOAT16;
            }
            rc = dab_session_run(s, feed, got, &err);
            if (rc) {
                res = rc == DAB_EUNSUPPORTED ? RES_UNSUPPORTED : RES_FAIL;
                snprintf(why, sizeof why, "%s", err.msg);
            } else {
                for (int k = 0; k < n_out && res == RES_PASS; k++) {
                    if (outs[k].dtype == DAB_DT_UINT16 && got[k]->dtype == DAB_DT_BFLOAT16)
                        outs[k].dtype = DAB_DT_BFLOAT16; /* the same 1.12 quirk */
                    if (has_random ? !check_random(g, k, feed, got[k], &outs[k], why, sizeof why)
                               : !compare(g->values[g->outputs[k]].name, got[k], &outs[k], why,
                                          sizeof why))
                        res = RES_FAIL;
                }
            }
        }
        for (int k = 0; k < MAX_IO; k++) {
            dab_tensor_free(&ins[k]);
            dab_tensor_free(&outs[k]);
            dab_free(in_names[k]);
        }
        if (res != RES_PASS)
            break;
    }
    if (res == RES_PASS && !n_sets) {
        res = RES_FAIL;
        snprintf(why, sizeof why, "no test_data_set_* folder");
    }
out:
    if (res == RES_PASS && has_random)
        printf("PASS %s (random op: shape, dtype and range checked)\n", label);
    else if (res == RES_PASS)
        printf("PASS %s\n", label);
    else
        printf("%s %s: %s\n", res == RES_FAIL ? "FAIL" : "UNSUPPORTED", label, why);
    fflush(stdout);
    dab_session_free(s);
    dab_graph_free(g);
    return res;
}

static int run_isolated(const char *dir, const char *label, const conf_opts_t *o)
{
    char why[1024];
    if (known_bad(o, label, why, sizeof why)) {
        printf("UNSUPPORTED %s: %s\n", label, why);
        return RES_UNSUPPORTED;
    }
    if (!o->fork)
        return run_test(dir, label, o);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        printf("FAIL %s: cannot fork\n", label);
        return RES_FAIL;
    }
    if (pid == 0) {
        alarm((unsigned)o->timeout_s);
        _exit(run_test(dir, label, o));
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        ;
    if (WIFEXITED(st) && WEXITSTATUS(st) <= RES_UNSUPPORTED)
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        printf("FAIL %s: %s (signal %d)\n", label,
               WTERMSIG(st) == SIGALRM ? "timed out" : "crashed", WTERMSIG(st));
    else
        printf("FAIL %s: exited with status %d\n", label, WEXITSTATUS(st));
    fflush(stdout);
    return RES_FAIL;
}

static void tally(int res, int *counts)
{
    counts[res]++;
}

static void run_dir(const char *dir, const conf_opts_t *o, int *counts)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    if (exists(path)) {
        const char *label = strrchr(dir, '/');
        label = label && label[1] ? label + 1 : dir;
        tally(run_isolated(dir, label, o), counts);
        return;
    }
    DIR *d = opendir(dir);
    if (!d) {
        printf("FAIL %s: cannot open folder\n", dir);
        counts[RES_FAIL]++;
        return;
    }
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            char **nn = dab_realloc(names, (size_t)cap * sizeof *nn);
            if (!nn)
                break;
            names = nn;
        }
        names[n] = dab_strdup(e->d_name);
        if (names[n])
            n++;
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (is_dir(path))
            run_dir(path, o, counts);
        dab_free(names[i]);
    }
    dab_free(names);
}

int dab_cmd_conformance(int argc, char **argv)
{
    conf_opts_t o = {.threads = 0, .timeout_s = 120, .fork = 1, .level = DAB_OPT_ALL};
    int counts[3] = {0, 0, 0};
    int n_dirs = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            if ((o.threads = dab_cli_int("--threads", argv[++i], 1, 1024)) < 0)
                return 2;
        } else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
            if ((o.timeout_s = dab_cli_int("--timeout", argv[++i], 1, 86400)) < 0)
                return 2;
        } else if (!strcmp(argv[i], "--optimize") && i + 1 < argc) {
            if (dab_cli_opt_level("--optimize", argv[++i], &o.level))
                return 2;
        } else if (!strcmp(argv[i], "--no-fork")) {
            o.fork = 0;
        } else if (!strcmp(argv[i], "--known-bad") && i + 1 < argc) {
            FILE *f = fopen(argv[++i], "rb");
            dab_buf_t b = {0};
            char chunk[4096];
            size_t got;
            if (!f) {
                fprintf(stderr, "dabba conformance: cannot open %s\n", argv[i]);
                return 2;
            }
            while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
                dab_buf_append(&b, chunk, got);
            fclose(f);
            o.known_bad = b.data;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "dabba conformance: unknown flag '%s'\n", argv[i]);
            return 2;
        }
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") || !strcmp(argv[i], "--timeout") ||
            !strcmp(argv[i], "--known-bad") || !strcmp(argv[i], "--optimize")) {
            i++;
            continue;
        }
        if (argv[i][0] == '-')
            continue;
        n_dirs++;
        size_t l = strlen(argv[i]);
        while (l > 1 && argv[i][l - 1] == '/')
            argv[i][--l] = 0;
        run_dir(argv[i], &o, counts);
    }
    if (!n_dirs) {
        fprintf(stderr, "usage: dabba conformance DIR... [--threads T] [--timeout S] [--no-fork] "
                        "[--known-bad FILE] [--optimize none|basic|all]\n");
        return 2;
    }
    int total = counts[0] + counts[1] + counts[2];
    printf("conformance: %d passed, %d failed, %d unsupported, %d total\n", counts[RES_PASS],
           counts[RES_FAIL], counts[RES_UNSUPPORTED], total);
    dab_free(o.known_bad);
    return counts[RES_FAIL] ? 1 : 0;
}
