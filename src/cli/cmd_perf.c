/*
 * cmd_perf.c - `dabba perf MODEL`: in-process latency and throughput on
 * generated inputs, the number to know before deploying. Symbolic dimensions
 * come from --dim NAME=VALUE; a symbolic leading dimension is the batch.
 * Reports median, p90, p99 and throughput, and the heap allocations per run
 * in steady state (which should be zero).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum { MAX_IN = 64, MAX_DIMS = 32 };

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Deterministic pseudo-random fill: floats in [0, 1), integers and bools 0. */
static void fill(dab_tensor_t *t, uint64_t *seed)
{
    int64_t n = dab_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        *seed = *seed * 6364136223846793005ull + 1442695040888963407ull;
        double r = (double)(*seed >> 11) / (double)(1ull << 53);
        if (t->dtype == DAB_DT_FLOAT)
            ((float *)t->data)[i] = (float)r;
        else if (t->dtype == DAB_DT_DOUBLE)
            ((double *)t->data)[i] = r;
        else if (t->dtype == DAB_DT_FLOAT16)
            ((uint16_t *)t->data)[i] = dab_f32_to_f16((float)r);
        else if (t->dtype == DAB_DT_BFLOAT16)
            ((uint16_t *)t->data)[i] = dab_f32_to_bf16((float)r);
    }
}

int dab_cmd_perf(int argc, char **argv)
{
    const char *model = NULL;
    int batch = 1, threads = 0, iterations = 1000, warmup = 50;
    const char *dim_names[MAX_DIMS];
    int64_t dim_vals[MAX_DIMS];
    int n_dims = 0;
    dab_opt_level_t level = DAB_OPT_ALL;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--batch") && i + 1 < argc) {
            if ((batch = dab_cli_int(f, argv[++i], 1, 1 << 20)) < 0)
                return 2;
        } else if (!strcmp(f, "--threads") && i + 1 < argc) {
            if ((threads = dab_cli_int(f, argv[++i], 1, 1024)) < 0)
                return 2;
        } else if (!strcmp(f, "--iterations") && i + 1 < argc) {
            if ((iterations = dab_cli_int(f, argv[++i], 1, 100000000)) < 0)
                return 2;
        } else if (!strcmp(f, "--warmup") && i + 1 < argc) {
            if ((warmup = dab_cli_int(f, argv[++i], 0, 100000000)) < 0)
                return 2;
        } else if (!strcmp(f, "--dim") && i + 1 < argc) {
            char *eq = strchr(argv[++i], '=');
            int v;
            if (!eq || n_dims == MAX_DIMS) {
                fprintf(stderr, "dabba perf: --dim needs NAME=VALUE, got '%s'\n", argv[i]);
                return 2;
            }
            *eq = 0;
            if ((v = dab_cli_int("--dim", eq + 1, 0, 1 << 30)) < 0)
                return 2;
            dim_names[n_dims] = argv[i];
            dim_vals[n_dims++] = v;
        } else if (!strcmp(f, "--optimize") && i + 1 < argc) {
            if (dab_cli_opt_level(f, argv[++i], &level))
                return 2;
        } else if (f[0] != '-' && !model) {
            model = f;
        } else {
            fprintf(stderr, "dabba perf: unexpected argument '%s'\n", f);
            return 2;
        }
    }
    if (!model) {
        fprintf(stderr, "usage: dabba perf MODEL [--batch N] [--threads T] [--iterations K] "
                        "[--warmup K] [--dim NAME=VALUE] [--optimize none|basic|all]\n");
        return 2;
    }
    if (threads <= 0)
        threads = dab_cpu_count();
    dab_err_t err = {0};
    dab_graph_t *g = NULL;
    dab_session_t *s = NULL;
    dab_tensor_t ins[MAX_IN] = {0};
    const dab_tensor_t *feed[MAX_IN] = {0};
    const dab_tensor_t *outs[MAX_IN] = {0};
    uint64_t *lat = NULL;
    int rc = 1;
    if (dab_cli_load(model, level, &g, &err))
        goto fail;
    if (g->n_inputs > MAX_IN || g->n_outputs > MAX_IN) {
        dab_err_set(&err, DAB_ELIMIT, "the model has more than %d inputs or outputs", MAX_IN);
        goto fail;
    }
    uint64_t seed = 42;
    for (int i = 0; i < g->n_inputs; i++) {
        const dab_value_t *v = &g->values[g->inputs[i]];
        int64_t dims[DAB_MAX_RANK];
        if (v->rank < 0) {
            dab_err_set(&err, DAB_EINVAL, "input '%s' has no declared shape", v->name);
            goto fail;
        }
        for (int d = 0; d < v->rank; d++) {
            dims[d] = v->dims[d];
            if (dims[d] >= 0)
                continue;
            for (int k = 0; k < n_dims; k++)
                if (v->dim_params[d] && !strcmp(v->dim_params[d], dim_names[k]))
                    dims[d] = dim_vals[k];
            if (dims[d] < 0 && d == 0)
                dims[d] = batch;
            if (dims[d] < 0) {
                dab_err_set(&err, DAB_EINVAL,
                            "input '%s' has symbolic dimension '%s' at axis %d; set it with "
                            "--dim %s=VALUE",
                            v->name, v->dim_params[d] ? v->dim_params[d] : "?", d,
                            v->dim_params[d] ? v->dim_params[d] : "NAME");
                goto fail;
            }
        }
        dab_dtype_t dt = v->dtype == DAB_DT_UNDEFINED ? DAB_DT_FLOAT : v->dtype;
        if (dab_tensor_alloc(&ins[i], dt, v->rank, dims, &err))
            goto fail;
        fill(&ins[i], &seed);
        feed[i] = &ins[i];
    }
    dab_session_opts_t so = {.threads = threads};
    if (dab_session_create(g, &so, &s, &err))
        goto fail;
    /* Two untimed runs build the plan before warm-up starts. */
    for (int i = 0; i < warmup + 2; i++)
        if (dab_session_run(s, feed, outs, &err))
            goto fail;
    lat = dab_malloc((size_t)iterations * sizeof *lat);
    if (!lat) {
        dab_err_set(&err, DAB_ENOMEM, "out of memory");
        goto fail;
    }
    dab_alloc_stats_t a0, a1;
    dab_alloc_stats(&a0);
    uint64_t t_start = dab_now_ns();
    for (int i = 0; i < iterations; i++) {
        uint64_t t0 = dab_now_ns();
        if (dab_session_run(s, feed, outs, &err))
            goto fail;
        lat[i] = dab_now_ns() - t0;
    }
    uint64_t t_total = dab_now_ns() - t_start;
    dab_alloc_stats(&a1);
    qsort(lat, (size_t)iterations, sizeof *lat, cmp_u64);
    double med = lat[iterations / 2] / 1e3;
    double p90 = lat[(size_t)((iterations - 1) * 0.90)] / 1e3;
    double p99 = lat[(size_t)((iterations - 1) * 0.99)] / 1e3;
    double mean_us = t_total / 1e3 / iterations;
    double tput = batch * 1e6 / mean_us;
    printf("model: %s (optimize %s, %d nodes)\n", model, dab_opt_level_name(level), g->n_nodes);
    printf("runs: %d (after %d warm-up), arena %zu bytes, heap allocations per run %.2f\n",
           iterations, warmup, dab_session_arena_bytes(s),
           (double)(a1.calls - a0.calls) / iterations);
    printf("latency_us: median %.1f, p90 %.1f, p99 %.1f, mean %.1f, min %.1f, max %.1f\n", med,
           p90, p99, mean_us, lat[0] / 1e3, lat[iterations - 1] / 1e3);
    printf("perf: batch %d, threads %d, median_us %.1f, p99_us %.1f, throughput_per_s %.1f\n",
           batch, threads, med, p99, tput);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "dabba perf: %s\n", err.msg);
done:
    dab_free(lat);
    for (int i = 0; i < MAX_IN; i++)
        dab_tensor_free(&ins[i]);
    dab_session_free(s);
    dab_graph_free(g);
    return rc;
}
