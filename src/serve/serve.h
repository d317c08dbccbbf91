/*
 * serve.h - dabba's HTTP service: the KServe v2 / Open Inference Protocol over
 * libmicrohttpd, in front of the model repository and the runners.
 *
 * Threads: libmicrohttpd's pool parses requests and runs the handlers; an
 * inference request suspends its connection and is resumed by the instance
 * thread that finished it, so no HTTP thread ever waits on the engine.
 */
#ifndef DAB_SERVE_H
#define DAB_SERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/base.h"
#include "../cache/cache.h"

typedef struct dab_server dab_server_t;

typedef struct dab_server_opts {
    const char *repository;      /* model repository folder */
    const char *http_address;    /* "0.0.0.0" */
    int http_port;               /* 8000 */
    int http_threads;            /* libmicrohttpd pool size */
    int threads;                 /* compute budget shared by all instances */
    int control_mode;            /* dab_control_mode_t */
    int poll_secs;
    const char *const *load_models; /* explicit mode: models loaded at start */
    int n_load_models;
    size_t max_body_bytes;       /* 413 beyond (after decompression too) */
    size_t max_header_bytes;     /* per-connection memory for headers */
    int64_t max_tensor_elements; /* per input tensor */
    int max_rank;
    int max_connections;
    int idle_timeout_secs;       /* a connection silent this long is closed */
    int request_timeout_secs;    /* a body still arriving after this long is dropped */
    int max_queue;               /* per model version */
    int optimize;                /* dab_opt_level_t: graph optimizations (0: all) */
    dab_cache_opts_t cache;      /* response cache: L1 size (0 = none), Redis L2 */
} dab_server_opts_t;

/* Fills o with the embedded defaults. */
void dab_server_defaults(dab_server_opts_t *o);

/* Opens the repository, loads models per the control mode and starts listening.
 * On error nothing is left running and err says why. */
int dab_server_start(const dab_server_opts_t *o, dab_server_t **out, dab_err_t *err);

/* SIGTERM's first step: readiness goes false and no new connection is accepted. */
void dab_server_begin_drain(dab_server_t *s);

/* Waits until no request is in flight or timeout_ms passes; returns the number still
 * in flight. */
int dab_server_wait_idle(dab_server_t *s, int timeout_ms);

/* Rescans the repository (SIGHUP). */
int dab_server_rescan(dab_server_t *s, dab_err_t *err);

/*
 * Stops the HTTP daemon, unloads every model and frees the server. Requests still queued
 * are answered 503 first. Returns 0, or the number of requests still running after a
 * short grace (a model run cannot be interrupted): the server is then left as it is, for
 * the process to exit without running its own teardown.
 */
int dab_server_stop(dab_server_t *s);

/* The port actually bound (useful with port 0). */
int dab_server_port(const dab_server_t *s);

#endif
