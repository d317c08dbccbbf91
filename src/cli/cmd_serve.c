/*
 * cmd_serve.c - `dabba serve`: flags and DABBA_* environment variables into
 * server options, then the signal loop: SIGTERM/SIGINT drain and exit 0,
 * SIGHUP rescans the repository.
 */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../observe/observe.h"
#include "../repo/repo.h"
#include "../serve/serve.h"
#include "cli.h"

enum opt_kind { OPT_STR, OPT_INT, OPT_SIZE, OPT_I64 };

typedef struct opt {
    const char *flag;
    const char *env;
    enum opt_kind kind;
    void *dst;
    const char *help;
} opt_t;

static const char *g_mode = "none", *g_log_format = "json", *g_log_level = "info";
static const char *g_optimize = "all", *g_cache_policy = "sieve";
static int g_exit_timeout = 30;
#define MAX_LOAD 64
static const char *g_load[MAX_LOAD];
static int g_n_load;

static void usage(const opt_t *opts, int n)
{
    fprintf(stderr, "usage: dabba serve [flags]   (each flag also from its environment variable)\n");
    for (int i = 0; i < n; i++)
        fprintf(stderr, "  %-26s %-30s %s\n", opts[i].flag, opts[i].env, opts[i].help);
    fprintf(stderr, "  %-26s %-30s %s\n", "--load-model NAME", "DABBA_LOAD_MODEL (a,b,c)",
            "explicit mode: load at start (repeatable)");
}

static int set_opt(const opt_t *o, const char *v)
{
    char *end;
    switch (o->kind) {
    case OPT_STR:
        *(const char **)o->dst = v;
        return 0;
    case OPT_INT: {
        long x = strtol(v, &end, 10);
        if (!*v || *end || x < 0 || x > 1 << 30)
            break;
        *(int *)o->dst = (int)x;
        return 0;
    }
    case OPT_SIZE: {
        /* bytes, or with a binary suffix: 64K, 128M, 2G (also KiB, MB ...: all x1024) */
        unsigned long long x = strtoull(v, &end, 10);
        if (!*v || end == v || v[0] == '-')
            break;
        int shift = 0;
        if (*end == 'k' || *end == 'K')
            shift = 10;
        else if (*end == 'm' || *end == 'M')
            shift = 20;
        else if (*end == 'g' || *end == 'G')
            shift = 30;
        if (shift) {
            end++;
            if (*end == 'i')
                end++;
            if (*end == 'B')
                end++;
        }
        if (*end || (shift && x > (~0ull >> shift)))
            break;
        *(size_t *)o->dst = (size_t)(x << shift);
        return 0;
    }
    case OPT_I64: {
        long long x = strtoll(v, &end, 10);
        if (!*v || *end || x <= 0)
            break;
        *(int64_t *)o->dst = x;
        return 0;
    }
    }
    fprintf(stderr, "dabba serve: %s (%s) must be a non-negative integer%s, got '%s'\n", o->flag,
            o->env, o->kind == OPT_SIZE ? " (bytes; K, M or G suffix allowed)" : "", v);
    return -1;
}

static void add_load(char *list)
{
    char *save = NULL;
    for (char *p = strtok_r(list, ",", &save); p && g_n_load < MAX_LOAD;
         p = strtok_r(NULL, ",", &save))
        g_load[g_n_load++] = p;
}

int dab_cmd_serve(int argc, char **argv)
{
    dab_server_opts_t so;
    dab_server_defaults(&so);
    const opt_t opts[] = {
        {"--repository", "DABBA_REPOSITORY", OPT_STR, &so.repository, "model repository folder"},
        {"--http-address", "DABBA_HTTP_ADDRESS", OPT_STR, &so.http_address, "listen address (0.0.0.0)"},
        {"--http-port", "DABBA_HTTP_PORT", OPT_INT, &so.http_port, "listen port (8000; 0 = any)"},
        {"--http-threads", "DABBA_HTTP_THREADS", OPT_INT, &so.http_threads, "HTTP threads (cores)"},
        {"--threads", "DABBA_THREADS", OPT_INT, &so.threads, "compute threads (0 = all cores)"},
        {"--model-control-mode", "DABBA_MODEL_CONTROL_MODE", OPT_STR, &g_mode, "none|poll|explicit"},
        {"--repository-poll-secs", "DABBA_REPOSITORY_POLL_SECS", OPT_INT, &so.poll_secs, "poll interval (15)"},
        {"--exit-timeout-secs", "DABBA_EXIT_TIMEOUT_SECS", OPT_INT, &g_exit_timeout, "SIGTERM drain limit (30)"},
        {"--log-format", "DABBA_LOG_FORMAT", OPT_STR, &g_log_format, "json|text"},
        {"--log-level", "DABBA_LOG_LEVEL", OPT_STR, &g_log_level, "debug|info|warn|error"},
        {"--max-body-bytes", "DABBA_MAX_BODY_BYTES", OPT_SIZE, &so.max_body_bytes, "request body limit (64 MiB)"},
        {"--max-header-bytes", "DABBA_MAX_HEADER_BYTES", OPT_SIZE, &so.max_header_bytes, "header memory per connection (32 KiB)"},
        {"--max-tensor-elements", "DABBA_MAX_TENSOR_ELEMENTS", OPT_I64, &so.max_tensor_elements, "elements per input tensor (64 Mi)"},
        {"--max-rank", "DABBA_MAX_RANK", OPT_INT, &so.max_rank, "dimensions per input tensor (8)"},
        {"--max-connections", "DABBA_MAX_CONNECTIONS", OPT_INT, &so.max_connections, "open connections (1024)"},
        {"--idle-timeout-secs", "DABBA_IDLE_TIMEOUT_SECS", OPT_INT, &so.idle_timeout_secs, "close silent connections (60)"},
        {"--request-timeout-secs", "DABBA_REQUEST_TIMEOUT_SECS", OPT_INT, &so.request_timeout_secs, "drop bodies still arriving after (60)"},
        {"--max-queue", "DABBA_MAX_QUEUE", OPT_INT, &so.max_queue, "queued requests per model version (1024)"},
        {"--optimize", "DABBA_OPTIMIZE", OPT_STR, &g_optimize, "graph optimizations: none|basic|all"},
        {"--cache-size", "DABBA_CACHE_SIZE", OPT_SIZE, &so.cache.l1_bytes, "in-process cache bytes (128M; 0 = none)"},
        {"--cache-policy", "DABBA_CACHE_POLICY", OPT_STR, &g_cache_policy, "in-process eviction: sieve|lru"},
        {"--redis", "DABBA_REDIS", OPT_STR, &so.cache.redis_url, "shared cache redis://[[user]:pass@]host[:port][/db]"},
        {"--redis-timeout-ms", "DABBA_REDIS_TIMEOUT_MS", OPT_INT, &so.cache.redis_timeout_ms, "deadline per Redis call (5)"},
        {"--redis-pool", "DABBA_REDIS_POOL", OPT_INT, &so.cache.redis_pool, "Redis connections for lookups (8)"},
        {"--redis-prefix", "DABBA_REDIS_PREFIX", OPT_STR, &so.cache.redis_prefix, "Redis key prefix (dabba:)"},
        {"--redis-ttl-secs", "DABBA_REDIS_TTL_SECS", OPT_I64, &so.cache.redis_ttl_s, "TTL of Redis keys a model sets none for (3600)"},
    };
    const int n_opts = (int)DAB_ARRAY_LEN(opts);
    static char env_load[4096];
    for (int i = 0; i < n_opts; i++) {
        const char *v = getenv(opts[i].env);
        if (v && set_opt(&opts[i], v))
            return 2;
    }
    const char *el = getenv("DABBA_LOAD_MODEL");
    if (el) {
        snprintf(env_load, sizeof env_load, "%s", el);
        add_load(env_load);
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(opts, n_opts);
            return 0;
        }
        if (!strcmp(argv[i], "--load-model") && i + 1 < argc) {
            add_load(argv[++i]);
            continue;
        }
        int k = 0;
        for (; k < n_opts; k++)
            if (!strcmp(argv[i], opts[k].flag))
                break;
        if (k == n_opts || i + 1 >= argc) {
            fprintf(stderr, "dabba serve: unknown flag or missing value: '%s'\n", argv[i]);
            usage(opts, n_opts);
            return 2;
        }
        if (set_opt(&opts[k], argv[++i]))
            return 2;
    }
    dab_err_t err = {0};
    dab_log_format_t lf;
    dab_log_level_t ll;
    dab_control_mode_t mode;
    dab_opt_level_t level;
    if (dab_log_parse_format(g_log_format, &lf, &err) || dab_log_parse_level(g_log_level, &ll, &err) ||
        dab_control_mode_parse(g_mode, &mode, &err) ||
        dab_opt_level_parse(g_optimize, &level, &err)) {
        fprintf(stderr, "dabba serve: %s\n", err.msg);
        return 2;
    }
    if (!strcmp(g_cache_policy, "sieve"))
        so.cache.policy = DAB_EVICT_SIEVE;
    else if (!strcmp(g_cache_policy, "lru"))
        so.cache.policy = DAB_EVICT_LRU;
    else {
        dab_err_set(&err, DAB_EINVAL, "--cache-policy must be sieve or lru, got '%s'", g_cache_policy);
        fprintf(stderr, "dabba serve: %s\n", err.msg);
        return 2;
    }
    dab_log_init(lf, ll);
    json_set_alloc_funcs(dab_malloc, dab_free);
    so.control_mode = mode;
    so.optimize = (int)level;
    so.load_models = g_load;
    so.n_load_models = g_n_load;

    /* Signals are taken by this thread only: block them before any thread starts. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    dab_server_t *srv;
    if (dab_server_start(&so, &srv, &err)) {
        dab_log(DAB_LOG_ERROR, "start_failed", DAB_F_STR("error", err.msg));
        fprintf(stderr, "dabba serve: %s\n", err.msg);
        return 1;
    }
    dab_log(DAB_LOG_INFO, "listening", DAB_F_STR("address", so.http_address),
            DAB_F_INT("port", dab_server_port(srv)), DAB_F_STR("repository", so.repository),
            DAB_F_STR("control_mode", g_mode));
    for (;;) {
        int sig;
        if (sigwait(&set, &sig))
            continue;
        if (sig == SIGHUP) {
            dab_log(DAB_LOG_INFO, "rescan", DAB_F_STR("reason", "SIGHUP"));
            if (dab_server_rescan(srv, &err))
                dab_log(DAB_LOG_ERROR, "rescan_failed", DAB_F_STR("error", err.msg));
            continue;
        }
        dab_log(DAB_LOG_INFO, "draining", DAB_F_STR("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"),
                DAB_F_INT("exit_timeout_secs", g_exit_timeout));
        dab_server_begin_drain(srv);
        int left = dab_server_wait_idle(srv, g_exit_timeout * 1000);
        int running = dab_server_stop(srv);
        dab_log(DAB_LOG_INFO, "stopped", DAB_F_INT("unfinished_requests", left),
                DAB_F_INT("still_running", running));
        if (running)
            _exit(0); /* model runs still going: skip teardown that would pull memory from them */
        return 0;
    }
}
