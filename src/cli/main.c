/*
 * main.c - dabba's entry point: picks the command and hands over its flags.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: dabba COMMAND [ARGS]\n"
            "\n"
            "commands:\n"
"  serve [--repository DIR] ...     the KServe v2 HTTP server (serve --help)\n"
            "  inspect MODEL                    opsets, inputs, outputs, parameters, op support\n"
            "  run MODEL --input NAME=FILE ...  run once on .npy / .pb inputs\n"
            "      [--output-dir DIR] [--threads T] [--optimize none|basic|all]\n"
            "  perf MODEL [--batch N] [--threads T] [--iterations K] [--warmup K]\n"
            "      [--dim NAME=VALUE] [--optimize L]  latency and throughput on generated inputs\n"
            "  conformance DIR...               run ONNX backend-test folders\n"
            "      [--threads T] [--timeout S] [--no-fork] [--known-bad FILE] [--optimize L]\n"
            "\n"
            "--optimize: graph optimizations before running: none, basic (constant folding,\n"
            "dead nodes, common subexpressions, copy-free reshapes) or all (basic + fusions;\n"
            "the default).\n");
}

int dab_cli_int(const char *flag, const char *value, int min, int max)
{
    char *end;
    long v = value ? strtol(value, &end, 10) : 0;
    if (!value || !*value || *end || v < min || v > max) {
        fprintf(stderr, "dabba: %s needs an integer in [%d, %d], got '%s'\n", flag, min, max,
                value ? value : "");
        return -1;
    }
    return (int)v;
}

int dab_cli_load(const char *path, dab_opt_level_t level, dab_graph_t **out, dab_err_t *err)
{
    int rc = dab_onnx_load_file(path, out, err);
    if (!rc && (rc = dab_graph_optimize(*out, level, err))) {
        dab_graph_free(*out);
        *out = NULL;
    }
    return rc;
}

int dab_cli_opt_level(const char *flag, const char *value, dab_opt_level_t *out)
{
    dab_err_t err = {0};
    if (!dab_opt_level_parse(value, out, &err))
        return 0;
    fprintf(stderr, "dabba: %s: %s\n", flag, err.msg);
    return -1;
}

int dab_cli_read_tensor(const char *path, dab_tensor_t *t, dab_err_t *err)
{
    size_t l = strlen(path);
    if (l > 4 && !strcmp(path + l - 4, ".npy"))
        return dab_npy_read(path, t, err);
    return dab_onnx_read_tensor_file(path, t, NULL, err);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "inspect"))
        return dab_cmd_inspect(argc - 1, argv + 1);
    if (!strcmp(cmd, "run"))
        return dab_cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "perf"))
        return dab_cmd_perf(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve")) {
        /* The server's compute threads share the cores with its HTTP threads: OpenMP
         * threads that spin between parallel regions (libgomp's default) take those cores
         * away (on 2 cores: 4.7k against 1.4k req/s for mlp_wide from one client). libgomp
         * reads OMP_WAIT_POLICY when it is loaded, before main, so the server sets it and
         * starts itself again, unless the user chose a policy. */
        if (!getenv("OMP_WAIT_POLICY") && !setenv("OMP_WAIT_POLICY", "PASSIVE", 1))
            execv("/proc/self/exe", argv); /* on failure: serve with the default policy */
        return dab_cmd_serve(argc - 1, argv + 1);
    }
    if (!strcmp(cmd, "conformance"))
        return dab_cmd_conformance(argc - 1, argv + 1);
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "dabba: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
