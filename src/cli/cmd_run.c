/*
 * cmd_run.c - `dabba run MODEL --input NAME=FILE ...`: one inference on inputs
 * from .npy or TensorProto .pb files; prints the outputs or writes them as
 * .npy files into --output-dir.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

#define MAX_PRINT 32

static void print_tensor(const char *name, const dab_tensor_t *t)
{
    char shape[256];
    printf("%s: %s %s\n ", name, dab_dtype_name(t->dtype), dab_shape_str(t, shape, sizeof shape));
    int64_t n = dab_tensor_numel(t);
    bool fp = t->dtype == DAB_DT_FLOAT || t->dtype == DAB_DT_DOUBLE ||
              t->dtype == DAB_DT_FLOAT16 || t->dtype == DAB_DT_BFLOAT16;
    for (int64_t i = 0; i < n && i < MAX_PRINT; i++) {
        if (t->dtype == DAB_DT_STRING)
            printf(" \"%.*s\"", (int)((const dab_str_t *)t->data)[i].len,
                   ((const dab_str_t *)t->data)[i].ptr);
        else if (fp)
            printf(" %.9g", dab_tensor_get_f64(t, i));
        else
            printf(" %lld", (long long)dab_tensor_get_i64(t, i));
    }
    if (n > MAX_PRINT)
        printf(" ... (%lld values)", (long long)n);
    printf("\n");
}

int dab_cmd_run(int argc, char **argv)
{
    const char *model = NULL, *out_dir = NULL;
    int threads = 0, rc = 1;
    dab_opt_level_t level = DAB_OPT_ALL;
    enum { MAX_IN = 64 };
    char *names[MAX_IN];
    const char *files[MAX_IN];
    int n_given = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--input") && i + 1 < argc) {
            char *eq = strchr(argv[++i], '=');
            if (!eq || eq == argv[i] || n_given == MAX_IN) {
                fprintf(stderr, "dabba run: --input needs NAME=FILE, got '%s'\n", argv[i]);
                return 2;
            }
            *eq = 0;
            names[n_given] = argv[i];
            files[n_given++] = eq + 1;
        } else if (!strcmp(argv[i], "--output-dir") && i + 1 < argc) {
            out_dir = argv[++i];
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            if ((threads = dab_cli_int("--threads", argv[++i], 1, 1024)) < 0)
                return 2;
        } else if (!strcmp(argv[i], "--optimize") && i + 1 < argc) {
            if (dab_cli_opt_level("--optimize", argv[++i], &level))
                return 2;
        } else if (argv[i][0] != '-' && !model) {
            model = argv[i];
        } else {
            fprintf(stderr, "dabba run: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!model) {
        fprintf(stderr, "usage: dabba run MODEL --input NAME=FILE ... [--output-dir DIR] "
                        "[--threads T] [--optimize none|basic|all]\n");
        return 2;
    }
    dab_err_t err = {0};
    dab_graph_t *g = NULL;
    dab_session_t *s = NULL;
    dab_tensor_t ins[MAX_IN] = {0};
    const dab_tensor_t *feed[MAX_IN] = {0};
    const dab_tensor_t *outs[MAX_IN] = {0};
    if (dab_cli_load(model, level, &g, &err))
        goto fail;
    if (g->n_inputs > MAX_IN || g->n_outputs > MAX_IN) {
        dab_err_set(&err, DAB_ELIMIT, "the model has more than %d inputs or outputs", MAX_IN);
        goto fail;
    }
    for (int k = 0; k < n_given; k++) {
        int found = -1;
        for (int i = 0; i < g->n_inputs; i++)
            if (!strcmp(g->values[g->inputs[i]].name, names[k]))
                found = i;
        if (found < 0) {
            dab_err_set(&err, DAB_ENOTFOUND, "the model has no input named '%s'", names[k]);
            goto fail;
        }
        if (dab_cli_read_tensor(files[k], &ins[found], &err))
            goto fail;
        feed[found] = &ins[found];
    }
    for (int i = 0; i < g->n_inputs; i++)
        if (!feed[i]) {
            dab_err_set(&err, DAB_EINVAL, "input '%s' is not given (use --input %s=FILE)",
                        g->values[g->inputs[i]].name, g->values[g->inputs[i]].name);
            goto fail;
        }
    dab_session_opts_t so = {.threads = threads};
    if (dab_session_create(g, &so, &s, &err) || dab_session_run(s, feed, outs, &err))
        goto fail;
    if (out_dir)
        mkdir(out_dir, 0777);
    for (int i = 0; i < g->n_outputs; i++) {
        const char *name = g->values[g->outputs[i]].name;
        if (!out_dir) {
            print_tensor(name, outs[i]);
            continue;
        }
        char path[4096];
        int off = snprintf(path, sizeof path, "%s/", out_dir);
        for (const char *c = name; *c && off < (int)sizeof path - 5; c++)
            path[off++] = (*c == '/' || *c == '\\') ? '_' : *c;
        snprintf(path + off, sizeof path - (size_t)off, ".npy");
        if (dab_npy_write(path, outs[i], &err))
            goto fail;
        printf("%s -> %s\n", name, path);
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "dabba run: %s\n", err.msg);
done:
    for (int i = 0; i < MAX_IN; i++)
        dab_tensor_free(&ins[i]);
    dab_session_free(s);
    dab_graph_free(g);
    return rc;
}
