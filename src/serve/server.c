/*
 * server.c - the HTTP front: libmicrohttpd plumbing, the per-request context,
 * routing, the KServe v2 endpoints and the repository's runner callbacks.
 *
 * A request's life: the first handler call creates its context; body chunks are
 * appended (refused past max_body_bytes); the final call dispatches. Quick
 * endpoints answer on that call. An inference suspends the connection and
 * queues a job; the instance thread that runs it encodes the response into the
 * context and resumes the connection; the next handler call queues the
 * response. (libmicrohttpd 0.9.75 drops keep-alive when a response is queued on
 * a connection's very first handler call, so nothing is ever answered there.)
 * The completion notifier writes the access log line and the metrics, releases
 * the model version and frees the context.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "../cache/cache.h"
#include "../observe/observe.h"
#include "../repo/repo.h"
#include "../sched/sched.h"
#include "serve.h"
#include "v2.h"

#define MAX_IO 64
/* No tensor a request makes a model compute may exceed this (shapes that depend on input
 * values could otherwise ask for any amount of memory). */
#define MAX_VALUE_BYTES ((size_t)4 << 30)
#define SERVER_NAME "dabba"

struct dab_server {
    dab_server_opts_t o;
    dab_repo_t *repo;
    struct MHD_Daemon *mhd;
    int port;
    atomic_int in_flight;
    atomic_bool draining;
    atomic_bool closing;  /* past the exit timeout: inference is refused, queues emptied */
    dab_v2_limits_t limits;
    /* metrics */
    dab_metric_t *m_requests;   /* {model,version,outcome} */
    dab_metric_t *m_http;       /* {endpoint,code} */
    dab_metric_t *m_latency;    /* {model,version} */
    dab_metric_t *m_queue;      /* {model,version} */
    dab_metric_t *m_compute;    /* {model,version} */
    dab_metric_t *m_req_size;   /* {model} */
    dab_metric_t *m_inflight;   /* {} */
    dab_metric_t *m_model_ready; /* {model,version} */
    dab_metric_t *m_model_load; /* {model,version} */
    dab_metric_t *m_batch_size; /* {model,version}: rows per run */
    dab_metric_t *m_queue_depth; /* {model,version,priority} */
    dab_metric_t *m_running;    /* {model,version}: requests in the engine now */
    dab_metric_t *m_rejections; /* {model,version,reason} */
    dab_metric_t *m_cache_time; /* {model,version,result}: time in the response cache */
    /* the response cache (NULL when neither tier is configured) */
    dab_cache_t *cache;
    dab_flight_t *flight;
    int quiesced_fd; /* the listening socket after SIGTERM's quiesce; -1 before */
};

typedef enum rq_state { RQ_RECEIVING, RQ_WAITING, RQ_DONE } rq_state_t;

typedef struct req {
    dab_server_t *srv;
    struct MHD_Connection *conn;
    rq_state_t state;
    uint64_t start_ns;
    char method[8];
    char *path;
    const char *endpoint; /* a label for metrics: "infer", "metadata", ... */
    dab_buf_t body;
    bool too_large;
    /* the response */
    int status;
    dab_buf_t resp;
    const char *content_type;
    size_t json_bytes;        /* binary responses: Inference-Header-Content-Length */
    bool binary_header;
    const char *content_encoding;
    dab_buf_t packed;         /* compressed body when content_encoding is set */
    bool retry_after;
    /* inference */
    char model[256];
    char version[32];
    char request_id[128];
    dab_model_version_t *mv;
    bool suspended; /* the connection waits for an instance thread to resume it */
    dab_v2_request_t *v2;
    dab_job_t job;
    const dab_tensor_t *feed[MAX_IO];
    dab_v2_coding_t accept;
    double queue_s, compute_s;
    const char *outcome;
    const char *reason;      /* why the scheduler refused or dropped it, for metrics */
    int fd;                  /* the connection's socket, for client_waiting */
    bool gone;               /* the client hung up while the request was queued */
    size_t bytes_in;
    /* response cache */
    dab_cache_scope_t *csc;   /* the model's scope when its response cache is on */
    dab_cache_key_t ckey;
    bool cache_lead;          /* leads the single flight for ckey: answers its waiters */
    bool flight_waiter;       /* waits for a leader's answer: resumed through wake() */
    atomic_int wake_state;    /* WAKE_* bits, for flight waiters */
    dab_flight_waiter_t fw;
    const char *cache_result; /* Dabba-Cache header: hit-l1, hit-l2, shared, miss */
    uint64_t cache_ns;        /* time spent in the cache (lookup, decode, insert) */
    /* control-plane work run off the HTTP threads (load / unload / cache purge) */
    char *load_config;
    enum { CTL_LOAD, CTL_UNLOAD, CTL_PURGE } control;
} req_t;

/* A flight waiter's connection is resumed by whichever comes second: its handler having
 * suspended it, or its answer being ready (the leader may finish first). */
#define WAKE_SUSPENDED 1
#define WAKE_READY 2

/* ---- responses ---- */

static void set_json(req_t *rq, int status, json_t *j)
{
    dab_buf_reset(&rq->resp);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (s) {
        dab_buf_puts(&rq->resp, s);
        dab_free(s); /* jansson allocates through dab_malloc (set at start-up) */
    }
    json_decref(j);
    rq->status = status;
    rq->content_type = "application/json";
    rq->state = RQ_DONE;
}

static void set_error(req_t *rq, int status, const char *msg)
{
    dab_buf_reset(&rq->resp);
    dab_v2_error_body(&rq->resp, msg);
    rq->status = status;
    rq->content_type = "application/json";
    rq->state = RQ_DONE;
    if (!rq->outcome)
        rq->outcome = status >= 500 ? "error" : "rejected";
}

static void set_errorf(req_t *rq, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_errorf(req_t *rq, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    set_error(rq, status, msg);
}

static void set_empty(req_t *rq, int status)
{
    dab_buf_reset(&rq->resp);
    rq->status = status;
    rq->content_type = NULL;
    rq->state = RQ_DONE;
}

/* Maps an engine/repository error to an HTTP status. */
static int http_status(int code)
{
    return dab_v2_http_status(code);
}

static enum MHD_Result send_response(req_t *rq)
{
    const char *body = rq->resp.data ? rq->resp.data : "";
    size_t len = rq->resp.len;
    if (rq->content_encoding) {
        body = rq->packed.data;
        len = rq->packed.len;
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    if (rq->content_type)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, rq->content_type);
    if (rq->binary_header) {
        char n[32];
        snprintf(n, sizeof n, "%zu", rq->json_bytes);
        MHD_add_response_header(r, "Inference-Header-Content-Length", n);
    }
    if (rq->content_encoding)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_ENCODING, rq->content_encoding);
    if (rq->retry_after)
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (rq->cache_result)
        MHD_add_response_header(r, "Dabba-Cache", rq->cache_result);
    if (atomic_load(&rq->srv->draining))
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(rq->conn, (unsigned)rq->status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Compresses the response per Accept-Encoding when it is worth it. */
static void maybe_compress(req_t *rq)
{
    if (rq->accept == DAB_V2_CODING_IDENTITY || rq->resp.len < 1024)
        return;
    dab_err_t err = {0};
    if (dab_v2_compress(rq->resp.data, rq->resp.len, rq->accept, 1, &rq->packed, &err))
        return;
    rq->content_encoding = dab_v2_coding_name(rq->accept);
}

/* ---- metadata endpoints ---- */

static json_t *tensor_meta(const dab_value_t *v)
{
    json_t *shape = json_array();
    for (int d = 0; d < v->rank; d++)
        json_array_append_new(shape, json_integer(v->dims[d]));
    return json_pack("{s:s, s:s, s:o}", "name", v->name, "datatype",
                     dab_v2_dtype_name(v->dtype) ? dab_v2_dtype_name(v->dtype) : "UNKNOWN",
                     "shape", shape);
}

static json_t *versions_json(dab_server_t *s, const char *model)
{
    json_t *arr = json_array();
    dab_repo_status_t st;
    if (dab_repo_status(s->repo, &st))
        return arr;
    for (int i = 0; i < st.n_models; i++) {
        if (strcmp(st.models[i].name, model))
            continue;
        for (int k = 0; k < st.models[i].n_versions; k++)
            if (st.models[i].versions[k].state == DAB_VS_READY) {
                char v[32];
                snprintf(v, sizeof v, "%lld", (long long)st.models[i].versions[k].version);
                json_array_append_new(arr, json_string(v));
            }
    }
    dab_repo_status_free(&st);
    return arr;
}

static void model_metadata(req_t *rq, dab_model_version_t *mv)
{
    const dab_graph_t *g = dab_model_version_graph(mv);
    json_t *ins = json_array(), *outs = json_array();
    for (int i = 0; i < g->n_inputs; i++)
        json_array_append_new(ins, tensor_meta(&g->values[g->inputs[i]]));
    for (int i = 0; i < g->n_outputs; i++)
        json_array_append_new(outs, tensor_meta(&g->values[g->outputs[i]]));
    json_t *j = json_pack("{s:s, s:o, s:s, s:o, s:o}", "name", dab_model_version_name(mv),
                          "versions", versions_json(rq->srv, dab_model_version_name(mv)),
                          "platform", "onnx", "inputs", ins, "outputs", outs);
    set_json(rq, 200, j);
}

static void server_metadata(req_t *rq)
{
    json_t *j = json_pack("{s:s, s:s, s:[s,s,s]}", "name", SERVER_NAME, "version", DABBA_VERSION,
                          "extensions", "binary_tensor_data", "model_repository", "statistics");
    set_json(rq, 200, j);
}

static void models_list(req_t *rq)
{
    dab_repo_status_t st;
    if (dab_repo_status(rq->srv->repo, &st)) {
        set_error(rq, 500, "out of memory listing models");
        return;
    }
    json_t *arr = json_array();
    for (int i = 0; i < st.n_models; i++) {
        json_t *vs = json_array();
        for (int k = 0; k < st.models[i].n_versions; k++) {
            char v[32];
            snprintf(v, sizeof v, "%lld", (long long)st.models[i].versions[k].version);
            json_array_append_new(vs, json_pack("{s:s, s:s}", "version", v, "state",
                                                dab_version_state_name(st.models[i].versions[k].state)));
        }
        json_array_append_new(arr, json_pack("{s:s, s:s, s:o}", "name", st.models[i].name,
                                             "state", dab_version_state_name(st.models[i].state),
                                             "versions", vs));
    }
    dab_repo_status_free(&st);
    set_json(rq, 200, json_pack("{s:o}", "models", arr));
}

static json_t *duration(uint64_t count, uint64_t ns)
{
    return json_pack("{s:I, s:I}", "count", (json_int_t)count, "ns", (json_int_t)ns);
}

/* Statistics extension: every ready version, or one model, or one version. */
static void model_stats(req_t *rq, const char *model, int64_t version)
{
    dab_repo_status_t st;
    if (dab_repo_status(rq->srv->repo, &st)) {
        set_error(rq, 500, "out of memory reading statistics");
        return;
    }
    json_t *arr = json_array();
    bool found = !model;
    for (int i = 0; i < st.n_models; i++) {
        if (model && strcmp(st.models[i].name, model))
            continue;
        found = true;
        for (int k = 0; k < st.models[i].n_versions; k++) {
            int64_t v = st.models[i].versions[k].version;
            if (version && v != version)
                continue;
            dab_model_version_t *mv = dab_repo_acquire(rq->srv->repo, st.models[i].name, v, NULL);
            if (!mv)
                continue;
            dab_runner_stats_t rs = {0};
            dab_runner_t *runner = dab_model_version_runner(mv);
            if (runner)
                dab_runner_stats(runner, &rs);
            char vs[32];
            snprintf(vs, sizeof vs, "%lld", (long long)v);
            json_t *batches = json_array();
            dab_batch_stat_t bs[64];
            int nb = runner ? dab_runner_batch_stats(runner, bs, 64) : 0;
            for (int b = 0; b < DAB_MIN(nb, 64); b++)
                json_array_append_new(
                    batches, json_pack("{s:I, s:o, s:o, s:o}", "batch_size",
                                       (json_int_t)bs[b].batch_size, "compute_input",
                                       duration(bs[b].count, 0), "compute_infer",
                                       duration(bs[b].count, bs[b].compute_ns), "compute_output",
                                       duration(bs[b].count, 0)));
            /* Triton's convention: success includes the requests answered from the cache. */
            uint64_t hits = 0, misses = 0;
            double hit_s = 0, miss_s = 0;
            /* read only where there is a cache: reading makes the series */
            if (dab_model_version_config(mv)->response_cache) {
                const char *lh[3] = {st.models[i].name, vs, "hit"};
                const char *lm[3] = {st.models[i].name, vs, "miss"};
                hit_s = dab_series_read(dab_metric_series(rq->srv->m_cache_time, lh), &hits);
                miss_s = dab_series_read(dab_metric_series(rq->srv->m_cache_time, lm), &misses);
            }
            json_t *inf = json_pack(
                "{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "success",
                duration(rs.success_count + hits, rs.success_ns + (uint64_t)(hit_s * 1e9)),
                "fail", duration(rs.fail_count, rs.fail_ns), "queue",
                duration(rs.queue_count, rs.queue_ns), "compute_input", duration(rs.compute_count, 0),
                "compute_infer", duration(rs.compute_count, rs.compute_ns), "compute_output",
                duration(rs.compute_count, 0), "cache_hit", duration(hits, (uint64_t)(hit_s * 1e9)),
                "cache_miss", duration(misses, (uint64_t)(miss_s * 1e9)));
            json_array_append_new(
                arr, json_pack("{s:s, s:s, s:I, s:I, s:I, s:o, s:o}", "name", st.models[i].name,
                               "version", vs, "last_inference", (json_int_t)rs.last_inference_ms,
                               "inference_count", (json_int_t)(rs.inference_count + hits),
                               "execution_count", (json_int_t)rs.execution_count,
                               "inference_stats", inf, "batch_stats", batches));
            dab_model_version_release(mv);
        }
    }
    dab_repo_status_free(&st);
    if (!found) {
        json_decref(arr);
        set_errorf(rq, 404, "unknown model '%s'", model);
        return;
    }
    set_json(rq, 200, json_pack("{s:o}", "model_stats", arr));
}

/* ---- inference ---- */

static const char *label_version(req_t *rq)
{
    return rq->version[0] ? rq->version : "";
}

/* Encodes the answer of rq from its outputs (already filtered to those it asked for, in
 * the graph's order): binary or JSON per its request, compressed per Accept-Encoding. */
static void respond_outputs(req_t *rq, int n, const char *const *names,
                            const dab_tensor_t *const *tensors)
{
    dab_v2_output_t outs[MAX_IO];
    bool any_binary = false;
    for (int i = 0; i < n; i++) {
        outs[i].name = names[i];
        outs[i].tensor = tensors[i];
        outs[i].binary = dab_v2_output_wants_binary(rq->v2, names[i]);
        any_binary |= outs[i].binary;
    }
    dab_v2_response_t resp = {
        .model_name = rq->model,
        .model_version = rq->version,
        .id = rq->v2->id,
        .id_len = rq->v2->id_len,
        .n_outputs = n,
        .outputs = outs,
    };
    dab_err_t e = {0};
    dab_buf_reset(&rq->resp);
    if (dab_v2_response_encode(&resp, &rq->resp, &rq->json_bytes, &e)) {
        set_error(rq, 500, e.msg);
        rq->outcome = "error";
        return;
    }
    rq->status = 200;
    rq->state = RQ_DONE;
    rq->outcome = "success";
    rq->binary_header = any_binary;
    rq->content_type = any_binary ? "application/octet-stream" : "application/json";
    maybe_compress(rq);
}

/* Answers rq from a cached value; false (nothing changed but a log line) when the value
 * does not decode, so the request is computed instead. */
static bool respond_cached(req_t *rq, const dab_cache_val_t *v)
{
    dab_cache_tensors_t ct;
    dab_err_t err = {0};
    if (dab_cache_tensors_decode(v, &ct, &err)) {
        dab_log_limited(DAB_LOG_ERROR, "cache_decode", 5, "cache_fault",
                        DAB_F_STR("model", rq->model), DAB_F_STR("error", err.msg));
        return false;
    }
    const dab_tensor_t *ts[DAB_CACHE_MAX_TENSORS];
    for (int i = 0; i < ct.n; i++)
        ts[i] = &ct.tensors[i];
    respond_outputs(rq, ct.n, ct.names, ts);
    dab_cache_tensors_release(&ct);
    return true;
}

/* Adds one request's time in the response cache to the statistics. */
static void cache_time(req_t *rq, const char *result)
{
    const char *l[3] = {rq->model, rq->version, result};
    dab_metric_observe(rq->srv->m_cache_time, l, (double)rq->cache_ns / 1e9);
}

static void wake(req_t *rq)
{
    if (atomic_fetch_or(&rq->wake_state, WAKE_READY) & WAKE_SUSPENDED)
        MHD_resume_connection(rq->conn);
}

static void infer_done(dab_job_t *job, int rc, const dab_err_t *err,
                       const dab_tensor_t *const *outputs);
static void infer_release(dab_job_t *job);

/* A waiter whose leader failed (timed out, was dropped, refused): it computes on its
 * own now; the failure may have been the leader's alone. */
static void waiter_compute(req_t *rq)
{
    dab_err_t err = {0};
    rq->cache_result = "miss";
    int rc = dab_runner_submit(dab_model_version_runner(rq->mv), &rq->job, &err);
    if (rc) {
        rq->retry_after = rc == DAB_EBUSY || rc == DAB_ECANCELED;
        set_error(rq, rc == DAB_EINVAL ? 400 : 503, err.msg);
        rq->outcome = "rejected";
        rq->reason = rc == DAB_EBUSY ? "queue_full" : rc == DAB_ECANCELED ? "shutdown" : "invalid";
        wake(rq);
    }
}

/* The leader's end of a single flight: its waiters get the cached answer v, or, when
 * there is none (the leader failed or the answer could not be encoded), compute. */
static void flight_finish(req_t *leader, const dab_cache_val_t *v)
{
    leader->cache_lead = false;
    dab_flight_waiter_t *w = dab_flight_finish(leader->srv->flight, &leader->ckey);
    while (w) {
        dab_flight_waiter_t *next = w->next; /* w dies with its request once woken */
        req_t *rq = w->user;
        if (v && respond_cached(rq, v)) {
            cache_time(rq, "hit");
            wake(rq);
        } else {
            waiter_compute(rq);
        }
        w = next;
    }
}

/* Runs on the instance thread (or inline): encode, fill the cache, answer the flight's
 * waiters; infer_release then resumes the connection. */
static void infer_done(dab_job_t *job, int rc, const dab_err_t *err,
                       const dab_tensor_t *const *outputs)
{
    req_t *rq = job->user;
    rq->queue_s = job->queue_ns / 1e9;
    rq->compute_s = job->compute_ns / 1e9;
    if (rc) {
        bool gone = rq->gone;
        /* 499 (client closed request): nobody reads it, but the log and metrics do */
        int status = gone ? 499 : rc == DAB_ETIMEDOUT || rc == DAB_ECANCELED ? 503 : http_status(rc);
        set_error(rq, status, err ? err->msg : dab_strerror(rc));
        rq->outcome = rc == DAB_ETIMEDOUT ? "timeout" : gone ? "disconnected" : "error";
        rq->reason = rc == DAB_ETIMEDOUT ? "timeout"
                     : gone              ? "disconnected"
                     : rc == DAB_ECANCELED ? "shutdown"
                                           : NULL;
        rq->retry_after = rc == DAB_ETIMEDOUT || (rc == DAB_ECANCELED && !gone);
        if (rq->cache_lead)
            flight_finish(rq, NULL);
        rq->state = RQ_DONE;
        return;
    }
    const dab_graph_t *g = dab_model_version_graph(rq->mv);
    const char *names[MAX_IO];
    const dab_tensor_t *ts[MAX_IO];
    int n = 0;
    for (int i = 0; i < g->n_outputs && n < MAX_IO; i++) {
        const char *name = g->values[g->outputs[i]].name;
        bool wanted = rq->v2->n_outputs == 0;
        for (int k = 0; k < rq->v2->n_outputs && !wanted; k++)
            wanted = !strcmp(rq->v2->outputs[k].name, name);
        if (!wanted)
            continue;
        names[n] = name;
        ts[n++] = outputs[i];
    }
    if (rq->csc) {
        uint64_t t0 = dab_now_ns();
        dab_cache_val_t *v = NULL;
        dab_err_t e = {0};
        if (dab_cache_tensors_encode(n, names, ts, &v, &e))
            dab_log_limited(DAB_LOG_WARN, "cache_encode", 5, "cache_fault",
                            DAB_F_STR("model", rq->model), DAB_F_STR("error", e.msg));
        else
            dab_cache_put(rq->srv->cache, rq->csc, &rq->ckey, v,
                          dab_model_version_config(rq->mv)->response_cache_ttl_s);
        if (rq->cache_lead)
            flight_finish(rq, v);
        dab_cache_val_release(v);
        rq->cache_ns += dab_now_ns() - t0;
        cache_time(rq, "miss");
    }
    respond_outputs(rq, n, names, ts);
    rq->state = RQ_DONE;
}

/* After infer_done (in submission order with preserve_ordering): resume the connection,
 * which sends the response. */
static void infer_release(dab_job_t *job)
{
    req_t *rq = job->user;
    if (rq->flight_waiter)
        wake(rq);
    else if (rq->suspended)
        MHD_resume_connection(rq->conn);
}

/* Asked by the scheduler just before a queued request runs: false when its client has
 * closed the connection (the peer's FIN or a reset), so that it is dropped, not run. A
 * pipelined next request (readable bytes) or nothing to read means the client waits. */
static bool client_waiting(dab_job_t *job)
{
    req_t *rq = job->user;
    char c;
    ssize_t n = recv(rq->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    rq->gone = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    return !rq->gone;
}

/* Reads the v2 request parameters the scheduler honours: priority and timeout (µs). */
static int sched_params(req_t *rq)
{
    const json_t *p = rq->v2->parameters;
    const json_t *prio = json_object_get(p, "priority");
    const json_t *timeout = json_object_get(p, "timeout");
    if (prio && (!json_is_integer(prio) || json_integer_value(prio) < 0 ||
                 json_integer_value(prio) > INT32_MAX)) {
        set_error(rq, 400, "parameters.priority must be a non-negative integer");
        return -1;
    }
    if (timeout && (!json_is_integer(timeout) || json_integer_value(timeout) < 0)) {
        set_error(rq, 400, "parameters.timeout must be a non-negative integer (microseconds)");
        return -1;
    }
    rq->job.priority = prio ? (int)json_integer_value(prio) : 0;
    rq->job.timeout_us = timeout ? json_integer_value(timeout) : 0;
    return 0;
}

/* Checks one input's name, datatype and shape against the model's declaration. */
static int check_input_decl(void *user, const char *name, const dab_tensor_t *t, dab_err_t *err)
{
    const dab_graph_t *g = user;
    const dab_value_t *v = NULL;
    for (int i = 0; i < g->n_inputs && !v; i++)
        if (!strcmp(g->values[g->inputs[i]].name, name))
            v = &g->values[g->inputs[i]];
    if (!v)
        return dab_err_set(err, DAB_EINVAL, "the model has no input named '%s'", name);
    if (v->dtype != DAB_DT_UNDEFINED && !dab_v2_dtype_name(v->dtype))
        return dab_err_set(err, DAB_EUNSUPPORTED, "input '%s' is %s, which v2 cannot carry",
                           name, dab_dtype_name(v->dtype));
    if (v->dtype != DAB_DT_UNDEFINED && t->dtype != v->dtype)
        return dab_err_set(err, DAB_ETYPE, "input '%s' must be %s, got %s", name,
                           dab_v2_dtype_name(v->dtype), dab_v2_dtype_name(t->dtype));
    if (v->rank < 0)
        return 0;
    if (t->rank != v->rank)
        return dab_err_set(err, DAB_ESHAPE, "input '%s' must have %d dimensions, got %d", name,
                           v->rank, t->rank);
    for (int d = 0; d < v->rank; d++)
        if (v->dims[d] >= 0 && t->dims[d] != v->dims[d])
            return dab_err_set(err, DAB_ESHAPE,
                               "input '%s' must have %lld at dimension %d, got %lld", name,
                               (long long)v->dims[d], d, (long long)t->dims[d]);
    return 0;
}

/* Checks the decoded inputs against the model and orders them as the graph's. */
static int bind_inputs(req_t *rq, const dab_graph_t *g)
{
    const dab_v2_request_t *v2 = rq->v2;
    if (g->n_inputs > MAX_IO) {
        set_errorf(rq, 400, "model '%s' has more than %d inputs", rq->model, MAX_IO);
        return -1;
    }
    for (int k = 0; k < v2->n_inputs; k++) {
        bool known = false;
        for (int i = 0; i < g->n_inputs; i++)
            known |= !strcmp(g->values[g->inputs[i]].name, v2->inputs[k].name);
        if (!known) {
            set_errorf(rq, 400, "model '%s' has no input named '%s'", rq->model,
                       v2->inputs[k].name);
            return -1;
        }
    }
    for (int k = 0; k < v2->n_outputs; k++) {
        bool known = false;
        for (int i = 0; i < g->n_outputs; i++)
            known |= !strcmp(g->values[g->outputs[i]].name, v2->outputs[k].name);
        if (!known) {
            set_errorf(rq, 400, "model '%s' has no output named '%s'", rq->model,
                       v2->outputs[k].name);
            return -1;
        }
    }
    for (int i = 0; i < g->n_inputs; i++) {
        const dab_value_t *v = &g->values[g->inputs[i]];
        const dab_v2_input_t *in = dab_v2_request_input(v2, v->name);
        if (!in) {
            set_errorf(rq, 400, "input '%s' is missing (model '%s' needs it)", v->name,
                       rq->model);
            return -1;
        }
        dab_err_t e = {0};
        if (check_input_decl((void *)g, v->name, &in->tensor, &e)) {
            set_error(rq, 400, e.msg);
            return -1;
        }
        rq->feed[i] = &in->tensor;
    }
    return 0;
}

/* The raw binary form: the whole body is the one input's bytes; a symbolic first
 * dimension is derived from the size. */
static int decode_raw(req_t *rq, const dab_graph_t *g, dab_err_t *err)
{
    if (g->n_inputs != 1)
        return dab_err_set(err, DAB_EINVAL,
                           "a raw binary request needs a model with exactly one input; '%s' has %d",
                           rq->model, g->n_inputs);
    const dab_value_t *v = &g->values[g->inputs[0]];
    size_t esize = dab_dtype_size(v->dtype);
    if (v->rank < 0 || !esize)
        return dab_err_set(err, DAB_EINVAL, "input '%s' has no fixed datatype and rank", v->name);
    int64_t dims[DAB_MAX_RANK];
    int64_t known = 1;
    int free_axis = -1;
    for (int d = 0; d < v->rank; d++) {
        dims[d] = v->dims[d];
        if (dims[d] < 0) {
            if (free_axis >= 0)
                return dab_err_set(err, DAB_EINVAL,
                                   "input '%s' has more than one variable dimension; send JSON",
                                   v->name);
            free_axis = d;
        } else if (dims[d] && known > INT64_MAX / dims[d]) {
            return dab_err_set(err, DAB_ERANGE, "input '%s' is too large", v->name);
        } else {
            known *= dims[d];
        }
    }
    size_t unit;
    if (dab_mul_size((size_t)known, esize, &unit))
        return dab_err_set(err, DAB_ERANGE, "input '%s' is too large", v->name);
    if (free_axis >= 0) {
        if (!unit || rq->body.len % unit)
            return dab_err_set(err, DAB_EINVAL,
                               "raw body of %zu bytes is not a whole number of '%s' rows "
                               "(%zu bytes each)",
                               rq->body.len, v->name, unit);
        dims[free_axis] = (int64_t)(rq->body.len / unit);
    } else if (rq->body.len != unit) {
        return dab_err_set(err, DAB_EINVAL, "raw body has %zu bytes; input '%s' needs %zu",
                           rq->body.len, v->name, unit);
    }
    return dab_v2_request_from_raw(rq->body.data, rq->body.len, v->name, v->dtype, v->rank,
                                   dims, &rq->srv->limits, &rq->v2, err);
}

/* The set of outputs rq asked for, as a bit mask over the graph's outputs (all: ~0). */
static uint64_t wanted_mask(const req_t *rq, const dab_graph_t *g)
{
    if (!rq->v2->n_outputs)
        return ~0ull;
    uint64_t m = 0;
    for (int i = 0; i < g->n_outputs && i < 64; i++)
        for (int k = 0; k < rq->v2->n_outputs; k++)
            if (!strcmp(rq->v2->outputs[k].name, g->values[g->outputs[i]].name))
                m |= 1ull << i;
    return m;
}

/*
 * The response cache in front of the model: answers rq from L1 or L2 (true), or queues
 * it behind an identical request being computed (true: the leader answers it), or
 * makes it the leader of a new flight (false: compute it; infer_done fills the cache).
 * The key covers the model version's content, every input's name, datatype, shape and
 * bytes, and the outputs asked for; no other request parameter changes an answer.
 */
static bool cache_lookup(req_t *rq, const dab_graph_t *g)
{
    dab_server_t *s = rq->srv;
    uint64_t t0 = dab_now_ns();
    rq->csc = dab_cache_scope(s->cache, rq->model);
    if (!rq->csc)
        return false;
    dab_keyb_t kb;
    dab_keyb_init(&kb, "response", rq->model, dab_model_version_number(rq->mv),
                  dab_model_version_identity(rq->mv));
    for (int i = 0; i < g->n_inputs; i++)
        dab_keyb_tensor(&kb, g->values[g->inputs[i]].name, rq->feed[i]);
    dab_keyb_u64(&kb, wanted_mask(rq, g));
    rq->ckey = dab_keyb_final(&kb);
    dab_cache_val_t *v = NULL;
    dab_cache_tier_t tier = dab_cache_get(s->cache, rq->csc, &rq->ckey, &v);
    bool answered = v && respond_cached(rq, v);
    dab_cache_val_release(v);
    rq->cache_ns = dab_now_ns() - t0;
    if (answered) {
        rq->cache_result = tier == DAB_CACHE_HIT_L2 ? "hit-l2" : "hit-l1";
        cache_time(rq, "hit");
        return true;
    }
    rq->cache_result = "shared";
    /* Marked waiting before joining: once joined, the leader may answer at any moment,
     * and the handler must no longer read the request's state. */
    rq->state = RQ_WAITING;
    rq->suspended = true;
    rq->flight_waiter = true;
    rq->fw.user = rq;
    if (dab_flight_join(s->flight, &rq->ckey, &rq->fw)) {
        rq->state = RQ_RECEIVING;
        rq->suspended = false;
        rq->flight_waiter = false;
        rq->cache_lead = true;
        rq->cache_result = "miss";
        return false;
    }
    MHD_suspend_connection(rq->conn);
    if (atomic_fetch_or(&rq->wake_state, WAKE_SUSPENDED) & WAKE_READY)
        MHD_resume_connection(rq->conn);
    return true;
}

static void infer(req_t *rq, int64_t version)
{
    dab_server_t *s = rq->srv;
    dab_err_t err = {0};
    rq->mv = dab_repo_acquire(s->repo, rq->model, version, &err);
    if (!rq->mv) {
        set_error(rq, err.code == DAB_ENOTFOUND ? 404 : 503, err.msg);
        return;
    }
    if (!version)
        snprintf(rq->version, sizeof rq->version, "%lld",
                 (long long)dab_model_version_number(rq->mv));
    const dab_graph_t *g = dab_model_version_graph(rq->mv);
    const char *hdr = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                                                  "Inference-Header-Content-Length");
    const char *ctype = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                                                    MHD_HTTP_HEADER_CONTENT_TYPE);
    int rc;
    int64_t hlen = -1;
    if (hdr && (rc = dab_v2_parse_header_length(hdr, &hlen, &err))) {
        set_error(rq, 400, err.msg);
        return;
    }
    if (hlen == 0 || (hlen < 0 && ctype && !strncmp(ctype, "application/octet-stream", 24)))
        rc = decode_raw(rq, g, &err);
    else {
        /* Inputs are checked against the model before their buffers are allocated. */
        dab_v2_limits_t lim = s->limits;
        lim.check_input = check_input_decl;
        lim.check_user = (void *)g;
        rc = dab_v2_request_decode(rq->body.data ? rq->body.data : "", rq->body.len, hlen, &lim,
                                   &rq->v2, &err);
    }
    if (rc) {
        set_error(rq, rc == DAB_ELIMIT ? 413 : http_status(rc) == 500 ? 400 : http_status(rc),
                  err.msg);
        return;
    }
    /* The request's tensors may point into the body: the request keeps it. */
    dab_v2_request_adopt_body(rq->v2, &rq->body);
    if (rq->v2->id && !rq->request_id[0])
        snprintf(rq->request_id, sizeof rq->request_id, "%.*s", (int)DAB_MIN(rq->v2->id_len, 127),
                 rq->v2->id);
    if (bind_inputs(rq, g) || sched_params(rq))
        return;
    if (atomic_load(&s->closing)) {
        rq->retry_after = true;
        rq->reason = "shutdown";
        set_error(rq, 503, "the server is shutting down");
        return;
    }
    dab_runner_t *runner = dab_model_version_runner(rq->mv);
    rq->job.inputs = rq->feed;
    rq->job.done = infer_done;
    rq->job.release = infer_release;
    rq->job.user = rq;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(rq->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    rq->fd = ci ? ci->connect_fd : -1;
    rq->job.wanted = rq->fd >= 0 ? client_waiting : NULL;
    if (s->cache && dab_model_version_config(rq->mv)->response_cache && cache_lookup(rq, g))
        return;
    /* An idle instance runs the request right here: nothing to wait for. */
    if (dab_runner_try_run(runner, &rq->job, atomic_load(&s->in_flight) - 1))
        return;
    rq->state = RQ_WAITING;
    rq->suspended = true;
    MHD_suspend_connection(rq->conn);
    if ((rc = dab_runner_submit(runner, &rq->job, &err))) {
        rq->retry_after = rc == DAB_EBUSY || rc == DAB_ECANCELED;
        set_error(rq, rc == DAB_EINVAL ? 400 : 503, err.msg);
        rq->outcome = "rejected";
        rq->reason = rc == DAB_EBUSY ? "queue_full" : rc == DAB_ECANCELED ? "shutdown" : "invalid";
        if (rq->cache_lead)
            flight_finish(rq, NULL);
        MHD_resume_connection(rq->conn);
    }
}

/* ---- repository extension (load / unload run on their own thread) ---- */

/* Empties the response cache of one model (rq->model) or of every model. */
static void cache_purge(req_t *rq)
{
    dab_server_t *s = rq->srv;
    int64_t n1 = 0, n2 = 0;
    dab_err_t err = {0};
    int rc = 0;
    if (s->cache) {
        dab_cache_scope_t *sc = rq->model[0] ? dab_cache_scope(s->cache, rq->model) : NULL;
        if (rq->model[0] && !sc) {
            set_error(rq, 500, "out of memory purging the cache");
            return;
        }
        rc = dab_cache_purge(s->cache, sc, &n1, &n2, &err);
    }
    if (rc) {
        set_errorf(rq, 503, "removed %lld in-process entries, but purging Redis failed: %s",
                   (long long)n1, err.msg);
        return;
    }
    dab_log(DAB_LOG_INFO, "cache_purged", DAB_F_STR("model", rq->model), DAB_F_INT("l1_entries", n1),
            DAB_F_INT("l2_keys", n2));
    set_json(rq, 200, json_pack("{s:s, s:I, s:I}", "model", rq->model, "l1_entries_removed",
                                (json_int_t)n1, "l2_keys_removed", (json_int_t)n2));
}

static void *control_main(void *arg)
{
    req_t *rq = arg;
    if (rq->control == CTL_PURGE) {
        cache_purge(rq);
        MHD_resume_connection(rq->conn);
        return NULL;
    }
    dab_err_t err = {0};
    int rc = rq->control == CTL_UNLOAD ? dab_repo_unload(rq->srv->repo, rq->model, &err)
                                       : dab_repo_load(rq->srv->repo, rq->model, rq->load_config, &err);
    if (rc)
        set_error(rq, rc == DAB_ENOTFOUND ? 404 : rc == DAB_EUNSUPPORTED ? 400 : http_status(rc) == 500 ? 400 : http_status(rc), err.msg);
    else
        set_empty(rq, 200);
    MHD_resume_connection(rq->conn);
    return NULL;
}

/* Runs rq->control on a thread of its own: loads, unloads and purges may take seconds. */
static void control_start(req_t *rq)
{
    rq->state = RQ_WAITING;
    rq->suspended = true;
    MHD_suspend_connection(rq->conn);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, control_main, rq)) {
        set_error(rq, 500, "cannot start a thread for the request");
        MHD_resume_connection(rq->conn);
    }
    pthread_attr_destroy(&attr);
}

static void repo_control(req_t *rq, bool unload)
{
    rq->control = unload ? CTL_UNLOAD : CTL_LOAD;
    if (rq->body.len > 2 * (size_t)DAB_REPO_MAX_CONFIG_BYTES) {
        set_errorf(rq, 413, "a repository request body is at most %d bytes",
                   2 * DAB_REPO_MAX_CONFIG_BYTES);
        return;
    }
    if (!unload && rq->body.len) {
        json_error_t je;
        json_t *j = json_loadb(rq->body.data, rq->body.len, 0, &je);
        if (!j || !json_is_object(j)) {
            json_decref(j);
            set_errorf(rq, 400, "the load request body is not a JSON object: %s", je.text);
            return;
        }
        json_t *cfg = json_object_get(json_object_get(j, "parameters"), "config");
        if (cfg && !json_is_string(cfg)) {
            json_decref(j);
            set_error(rq, 400, "parameters.config must be a string holding the config JSON");
            return;
        }
        if (cfg)
            rq->load_config = dab_strdup(json_string_value(cfg));
        json_decref(j);
    }
    control_start(rq);
}

static void repo_index(req_t *rq)
{
    dab_buf_reset(&rq->resp);
    if (dab_repo_index(rq->srv->repo, &rq->resp)) {
        set_error(rq, 500, "out of memory building the index");
        return;
    }
    rq->status = 200;
    rq->content_type = "application/json";
    rq->state = RQ_DONE;
}

/* ---- metrics ---- */

/* Sets the queue depth and running gauges of one loaded version (at scrape time). */
static void queue_depth_metrics(dab_server_t *s, const char *model, int64_t version)
{
    dab_model_version_t *mv = dab_repo_acquire(s->repo, model, version, NULL);
    dab_runner_t *r = mv ? dab_model_version_runner(mv) : NULL;
    if (r) {
        int depths[DAB_SCHED_MAX_LEVELS];
        int n = DAB_MIN(dab_runner_queue_depths(r, depths, DAB_SCHED_MAX_LEVELS),
                        DAB_SCHED_MAX_LEVELS);
        char v[32], p[16];
        snprintf(v, sizeof v, "%lld", (long long)version);
        for (int l = 0; l < n; l++) {
            snprintf(p, sizeof p, "%d", l + 1);
            const char *labels[3] = {model, v, p};
            dab_metric_set(s->m_queue_depth, labels, depths[l]);
        }
        dab_runner_stats_t rs;
        dab_runner_stats(r, &rs);
        const char *labels[2] = {model, v};
        dab_metric_set(s->m_running, labels, rs.in_flight);
    }
    dab_model_version_release(mv);
}

static void metrics(req_t *rq)
{
    dab_server_t *s = rq->srv;
    dab_repo_status_t st;
    if (!dab_repo_status(s->repo, &st)) {
        for (int i = 0; i < st.n_models; i++)
            for (int k = 0; k < st.models[i].n_versions; k++) {
                const dab_repo_version_status_t *vs = &st.models[i].versions[k];
                char v[32];
                snprintf(v, sizeof v, "%lld", (long long)vs->version);
                const char *labels[2] = {st.models[i].name, v};
                dab_metric_set(s->m_model_ready, labels, vs->state == DAB_VS_READY);
                if (vs->load_ns)
                    dab_metric_set(s->m_model_load, labels, vs->load_ns / 1e9);
                queue_depth_metrics(s, st.models[i].name, vs->version);
            }
        dab_repo_status_free(&st);
    }
    dab_metric_set(s->m_inflight, NULL, atomic_load(&s->in_flight));
    if (s->cache)
        dab_cache_metrics_sync(s->cache);
    dab_buf_reset(&rq->resp);
    if (dab_metrics_render(&rq->resp)) {
        set_error(rq, 500, "out of memory rendering metrics");
        return;
    }
    rq->status = 200;
    rq->content_type = DAB_METRICS_CONTENT_TYPE;
    rq->state = RQ_DONE;
}

/* ---- routing ---- */

/* Splits path into at most max segments (in place); returns the count, -1 if too many. */
static int split_path(char *path, char **seg, int max)
{
    int n = 0;
    char *save = NULL;
    for (char *p = strtok_r(path, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
        if (n == max)
            return -1;
        /* minimal percent-decoding for model names */
        char *w = p;
        for (char *r = p; *r; r++) {
            if (r[0] == '%' && r[1] && r[2]) {
                char hex[3] = {r[1], r[2], 0};
                char *end;
                long c = strtol(hex, &end, 16);
                if (!*end && c > 0) {
                    *w++ = (char)c;
                    r += 2;
                    continue;
                }
            }
            *w++ = *r;
        }
        *w = 0;
        seg[n++] = p;
    }
    return n;
}

static bool parse_version(const char *s, int64_t *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || v <= 0)
        return false;
    *out = v;
    return true;
}

/* True when the repository knows a model of that name (loaded or not). */
static bool model_known(dab_server_t *s, const char *model)
{
    dab_repo_status_t st;
    if (dab_repo_status(s->repo, &st))
        return true; /* out of memory: let the purge run; it is harmless */
    bool found = false;
    for (int i = 0; i < st.n_models && !found; i++)
        found = !strcmp(st.models[i].name, model);
    dab_repo_status_free(&st);
    return found;
}

static void dispatch(req_t *rq)
{
    dab_server_t *s = rq->srv;
    bool get = !strcmp(rq->method, "GET"), post = !strcmp(rq->method, "POST");
    /* Every route fits in a small buffer; a longer path is no route (404 below). */
    char copy[1024];
    char *seg[10];
    int n = -1;
    if (strlen(rq->path) < sizeof copy) {
        memcpy(copy, rq->path, strlen(rq->path) + 1);
        n = split_path(copy, seg, 10);
    }
    if (rq->too_large) {
        rq->endpoint = "too_large";
        set_errorf(rq, 413, "the request body exceeds the limit of %zu bytes", s->o.max_body_bytes);
        return;
    }
    if (n == 1 && !strcmp(seg[0], "metrics") && get) {
        rq->endpoint = "metrics";
        metrics(rq);
        return;
    }
    if (n < 1 || strcmp(seg[0], "v2")) {
        rq->endpoint = "unknown";
        set_errorf(rq, 404, "no such endpoint: %s %s", rq->method, rq->path);
        return;
    }
    if (n == 1 && get) {
        rq->endpoint = "server_metadata";
        server_metadata(rq);
        return;
    }
    if (n == 3 && !strcmp(seg[1], "health") && get) {
        rq->endpoint = "health";
        if (!strcmp(seg[2], "live"))
            set_empty(rq, 200);
        else if (!strcmp(seg[2], "ready"))
            set_empty(rq, !atomic_load(&s->draining) && dab_repo_ready(s->repo) ? 200 : 503);
        else
            set_errorf(rq, 404, "no such endpoint: %s", rq->path);
        return;
    }
    if (n == 3 && !strcmp(seg[1], "cache") && !strcmp(seg[2], "purge")) {
        rq->endpoint = "cache_purge";
        if (!post) {
            set_error(rq, 405, "cache purge takes POST");
            return;
        }
        rq->control = CTL_PURGE;
        control_start(rq);
        return;
    }
    if (n >= 2 && !strcmp(seg[1], "repository")) {
        rq->endpoint = "repository";
        if (!post) {
            set_error(rq, 405, "repository endpoints take POST");
        } else if (n == 3 && !strcmp(seg[2], "index")) {
            repo_index(rq);
        } else if (n == 5 && !strcmp(seg[2], "models") &&
                   (!strcmp(seg[4], "load") || !strcmp(seg[4], "unload"))) {
            snprintf(rq->model, sizeof rq->model, "%s", seg[3]);
            repo_control(rq, !strcmp(seg[4], "unload"));
        } else {
            set_errorf(rq, 404, "no such endpoint: %s", rq->path);
        }
        return;
    }
    if (n >= 2 && !strcmp(seg[1], "models")) {
        if (n == 2 && get) {
            rq->endpoint = "models";
            models_list(rq);
            return;
        }
        if (n == 3 && !strcmp(seg[2], "stats") && get) {
            rq->endpoint = "stats";
            model_stats(rq, NULL, 0);
            return;
        }
        snprintf(rq->model, sizeof rq->model, "%s", seg[2]);
        if (n == 5 && !strcmp(seg[3], "cache") && !strcmp(seg[4], "purge")) {
            rq->endpoint = "cache_purge";
            if (!post)
                set_error(rq, 405, "cache purge takes POST");
            else if (!model_known(s, rq->model))
                set_errorf(rq, 404, "unknown model '%s'", rq->model);
            else {
                rq->control = CTL_PURGE;
                control_start(rq);
            }
            return;
        }
        int64_t version = 0;
        int rest = 3;
        if (n >= 5 && !strcmp(seg[3], "versions")) {
            if (!parse_version(seg[4], &version)) {
                set_errorf(rq, 400, "version '%s' is not a positive integer", seg[4]);
                return;
            }
            snprintf(rq->version, sizeof rq->version, "%lld", (long long)version);
            rest = 5;
        }
        const char *action = n > rest ? seg[rest] : "";
        if (n > rest + 1) {
            set_errorf(rq, 404, "no such endpoint: %s", rq->path);
            return;
        }
        if (!strcmp(action, "infer")) {
            rq->endpoint = "infer";
            if (!post)
                set_error(rq, 405, "infer takes POST");
            else
                infer(rq, version);
            return;
        }
        if (!get) {
            set_errorf(rq, 405, "%s takes GET", action[0] ? action : "model metadata");
            return;
        }
        if (!strcmp(action, "stats")) {
            rq->endpoint = "stats";
            model_stats(rq, rq->model, version);
            return;
        }
        dab_err_t err = {0};
        dab_model_version_t *mv = dab_repo_acquire(s->repo, rq->model, version, &err);
        if (!strcmp(action, "ready")) {
            rq->endpoint = "model_ready";
            if (mv)
                set_empty(rq, 200);
            else
                set_error(rq, err.code == DAB_ENOTFOUND ? 404 : 503, err.msg);
        } else if (!mv) {
            rq->endpoint = "metadata";
            set_error(rq, err.code == DAB_ENOTFOUND ? 404 : 503, err.msg);
        } else if (!strcmp(action, "config")) {
            rq->endpoint = "config";
            const dab_model_config_t *c = dab_model_version_config(mv);
            set_json(rq, 200, c->json ? json_incref(c->json) : json_object());
        } else if (!action[0]) {
            rq->endpoint = "metadata";
            model_metadata(rq, mv);
        } else {
            set_errorf(rq, 404, "no such endpoint: %s", rq->path);
        }
        dab_model_version_release(mv);
        return;
    }
    rq->endpoint = "unknown";
    set_errorf(rq, 404, "no such endpoint: %s %s", rq->method, rq->path);
}

/* ---- libmicrohttpd callbacks ---- */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls)
{
    dab_server_t *s = cls;
    req_t *rq = *con_cls;
    if (!rq) {
        rq = dab_calloc(1, sizeof *rq);
        if (!rq)
            return MHD_NO;
        rq->srv = s;
        rq->conn = conn;
        rq->start_ns = dab_now_ns();
        snprintf(rq->method, sizeof rq->method, "%s", method);
        rq->path = dab_strdup(url);
        if (!rq->path) {
            dab_free(rq);
            return MHD_NO;
        }
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        unsigned long long clen = cl ? strtoull(cl, NULL, 10) : 0;
        if (clen > s->o.max_body_bytes)
            rq->too_large = true;
        /* Room for the announced body up front (no regrowing copies), but not more than
         * 1 MiB before the bytes actually arrive. */
        else if (clen && dab_buf_reserve(&rq->body, (size_t)DAB_MIN(clen, 1ull << 20)))
            rq->too_large = true; /* refused below as too large rather than dropped */
        const char *rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-ID");
        if (rid)
            snprintf(rq->request_id, sizeof rq->request_id, "%s", rid);
        rq->accept = dab_v2_coding_accept(
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT_ENCODING));
        atomic_fetch_add(&s->in_flight, 1);
        *con_cls = rq;
        return MHD_YES;
    }
    if (*upload_size) {
        /* A body trickling in (slowloris) is cut off once the request is too old. */
        if (s->o.request_timeout_secs > 0 &&
            dab_now_ns() - rq->start_ns > (uint64_t)s->o.request_timeout_secs * 1000000000ull) {
            dab_log_limited(DAB_LOG_WARN, "request_timeout", 10, "request_timeout",
                            DAB_F_STR("path", rq->path), DAB_F_UINT("bytes_in", rq->bytes_in));
            return MHD_NO;
        }
        rq->bytes_in += *upload_size;
        if (!rq->too_large) {
            if (rq->body.len + *upload_size > s->o.max_body_bytes ||
                dab_buf_append(&rq->body, upload_data, *upload_size)) {
                rq->too_large = true;
                dab_buf_free(&rq->body);
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (rq->state == RQ_DONE)
        return send_response(rq);
    if (rq->state == RQ_WAITING)
        return MHD_YES;
    (void)version;
    /* A compressed request body is inflated before anything reads it. */
    const char *ce = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_ENCODING);
    if (ce && !rq->too_large) {
        dab_v2_coding_t coding;
        dab_err_t err = {0};
        dab_buf_t plain = {0};
        int rc = dab_v2_coding_parse(ce, &coding, &err);
        if (!rc && coding != DAB_V2_CODING_IDENTITY)
            rc = dab_v2_inflate(rq->body.data ? rq->body.data : "", rq->body.len, coding,
                                s->o.max_body_bytes, &plain, &err);
        if (rc) {
            dab_buf_free(&plain);
            set_error(rq, rc == DAB_ELIMIT ? 413 : 400, err.msg);
            rq->endpoint = "decode";
            return send_response(rq);
        }
        if (coding != DAB_V2_CODING_IDENTITY) {
            dab_buf_free(&rq->body);
            rq->body = plain;
        }
    }
    dispatch(rq);
    /* A suspended request is answered on the call after its resume (another thread may
     * be writing its answer now). */
    if (!rq->suspended && rq->state == RQ_DONE)
        return send_response(rq);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    dab_server_t *s = cls;
    req_t *rq = *con_cls;
    (void)conn;
    if (!rq)
        return;
    double latency_s = (dab_now_ns() - rq->start_ns) / 1e9;
    const char *endpoint = rq->endpoint ? rq->endpoint : "unknown";
    char code[8];
    snprintf(code, sizeof code, "%d", rq->status ? rq->status : 499);
    const char *hl[2] = {endpoint, code};
    dab_metric_add(s->m_http, hl, 1);
    if (rq->model[0] && !strcmp(endpoint, "infer")) {
        const char *outcome = rq->outcome ? rq->outcome
                              : toe != MHD_REQUEST_TERMINATED_COMPLETED_OK ? "disconnected"
                                                                          : "error";
        const char *ml[3] = {rq->model, label_version(rq), outcome};
        dab_metric_add(s->m_requests, ml, 1);
        const char *mv[2] = {rq->model, label_version(rq)};
        dab_metric_observe(s->m_latency, mv, latency_s);
        if (rq->outcome && !strcmp(rq->outcome, "success")) {
            dab_metric_observe(s->m_queue, mv, rq->queue_s);
            dab_metric_observe(s->m_compute, mv, rq->compute_s);
        }
        const char *m1[1] = {rq->model};
        dab_metric_observe(s->m_req_size, m1, (double)rq->bytes_in);
        if (rq->reason) {
            const char *mr[3] = {rq->model, label_version(rq), rq->reason};
            dab_metric_add(s->m_rejections, mr, 1);
        }
    }
    size_t bytes_out = rq->content_encoding ? rq->packed.len : rq->resp.len;
    dab_log(DAB_LOG_INFO, "request", DAB_F_STR("method", rq->method), DAB_F_STR("path", rq->path),
            DAB_F_INT("status", rq->status ? rq->status : 499),
            DAB_F_DBL("latency_ms", round(latency_s * 1e6) / 1e3), DAB_F_STR("model", rq->model),
            DAB_F_STR("version", rq->version), DAB_F_STR("request_id", rq->request_id),
            DAB_F_UINT("bytes_in", rq->bytes_in), DAB_F_UINT("bytes_out", bytes_out),
            DAB_F_STR("cache", rq->cache_result ? rq->cache_result : ""));
    if (rq->status >= 500)
        dab_log_limited(DAB_LOG_ERROR, "request_error", 10, "request_error",
                        DAB_F_STR("path", rq->path), DAB_F_INT("status", rq->status),
                        DAB_F_STRN("error", rq->resp.data ? rq->resp.data : "", rq->resp.len));
    dab_v2_request_free(rq->v2);
    dab_model_version_release(rq->mv);
    dab_buf_free(&rq->body);
    dab_buf_free(&rq->resp);
    dab_buf_free(&rq->packed);
    dab_free(rq->load_config);
    dab_free(rq->path);
    dab_free(rq);
    *con_cls = NULL;
    atomic_fetch_sub(&s->in_flight, 1);
}

/* ---- runners for the repository ---- */

/* With dynamic batching, also runs the warm-up sample tiled to every batch size the
 * batcher cuts without preferred sizes (powers of two up to max_batch_size, and the
 * maximum), so that no request pays for planning a new batch size (tens of ms for large
 * weights). Needs one-row samples of every input; otherwise there is nothing to tile. */
static int warm_batch_sizes(const dab_model_version_t *v, dab_session_t *sess, dab_err_t *err)
{
    const dab_model_config_t *c = dab_model_version_config(v);
    const dab_graph_t *g = dab_model_version_graph(v);
    if (!c->dynamic_batching || c->max_batch_size < 2 || c->n_warmup_inputs < g->n_inputs ||
        g->n_inputs > MAX_IO || g->n_outputs > 256)
        return 0;
    for (int i = 0; i < g->n_inputs; i++) {
        const dab_tensor_t *t = &c->warmup_inputs[i];
        if (!t->data || t->rank < 1 || t->dims[0] != 1 || t->dtype == DAB_DT_STRING)
            return 0;
    }
    dab_tensor_t tiled[MAX_IO];
    const dab_tensor_t *in[MAX_IO], *outs[256];
    memset(tiled, 0, sizeof tiled);
    int rc = 0, sizes[32], n_sizes = 0;
    size_t row_bytes = 0;
    for (int i = 0; i < g->n_inputs; i++)
        row_bytes += dab_tensor_bytes(&c->warmup_inputs[i]);
    /* tiles stay within the warm-up sample bound; larger sizes are planned when they come */
    for (int rows = 2; rows <= c->max_batch_size && n_sizes < 31; rows *= 2) {
        if (row_bytes && (size_t)rows > DAB_REPO_MAX_WARMUP_BYTES / row_bytes)
            break;
        sizes[n_sizes++] = rows;
    }
    if ((!n_sizes || sizes[n_sizes - 1] != c->max_batch_size) &&
        (!row_bytes || (size_t)c->max_batch_size <= DAB_REPO_MAX_WARMUP_BYTES / row_bytes))
        sizes[n_sizes++] = c->max_batch_size;
    for (int si = 0; !rc && si < n_sizes; si++) {
        int rows = sizes[si];
        for (int i = 0; !rc && i < g->n_inputs; i++) {
            const dab_tensor_t *t = &c->warmup_inputs[i];
            int64_t dims[DAB_MAX_RANK];
            memcpy(dims, t->dims, sizeof dims);
            dims[0] = rows;
            dab_tensor_free(&tiled[i]);
            if (!(rc = dab_tensor_alloc(&tiled[i], t->dtype, t->rank, dims, err))) {
                size_t row = dab_tensor_bytes(t);
                for (int k = 0; k < rows; k++)
                    memcpy((char *)tiled[i].data + row * (size_t)k, t->data, row);
                in[i] = &tiled[i];
            }
        }
        if (!rc && (rc = dab_session_run(sess, in, outs, err)))
            dab_err_prefix(err, "warm-up of a batch of %d: ", rows);
    }
    for (int i = 0; i < g->n_inputs; i++)
        dab_tensor_free(&tiled[i]);
    return rc;
}

static int warm_session(void *user, dab_session_t *sess, dab_err_t *err)
{
    int rc = dab_model_version_warmup(user, sess, err);
    return rc ? rc : warm_batch_sizes(user, sess, err);
}

/* What a runner's on_batch needs: the batch-size series of its model version. */
typedef struct batch_observer {
    dab_series_t *batch_size;
} batch_observer_t;

static void on_batch(void *user, int rows, int jobs, uint64_t compute_ns)
{
    batch_observer_t *o = user;
    (void)jobs;
    (void)compute_ns;
    dab_series_observe(o->batch_size, rows);
}

static int runner_create(void *user, dab_model_version_t *v, dab_err_t *err)
{
    dab_server_t *s = user;
    const dab_model_config_t *c = dab_model_version_config(v);
    char label[300], version[32];
    snprintf(version, sizeof version, "%lld", (long long)dab_model_version_number(v));
    snprintf(label, sizeof label, "%s:%s", dab_model_version_name(v), version);
    dab_runner_opts_t ro = {.instances = c->instance_count > 0 ? c->instance_count : 1,
                            .max_queue = s->o.max_queue,
                            .label = label,
                            .max_value_bytes = MAX_VALUE_BYTES,
                            .on_batch = on_batch};
    dab_queue_policy_t *policies = NULL;
    int rc = dab_batching_from_json(json_object_get(c->json, "dynamic_batching"),
                                    c->max_batch_size, &ro.batching, &policies, err);
    batch_observer_t *obs = rc ? NULL : dab_calloc(1, sizeof *obs);
    if (!rc && !obs)
        rc = dab_err_set(err, DAB_ENOMEM, "out of memory");
    if (rc) {
        dab_free(policies);
        return rc;
    }
    const char *labels[2] = {dab_model_version_name(v), version};
    obs->batch_size = dab_metric_series(s->m_batch_size, labels);
    ro.observer = obs;
    dab_runner_t *r;
    rc = dab_runner_create(dab_model_version_graph(v), &ro, &r, err);
    dab_free(policies); /* the runner keeps its own copy */
    if (rc) {
        dab_free(obs);
        return rc;
    }
    if ((rc = dab_runner_each_session(r, warm_session, v, err))) {
        dab_runner_destroy(r, true);
        dab_free(obs);
        return dab_err_prefix(err, "warm-up: ");
    }
    dab_model_version_set_runner(v, r);
    return 0;
}

static void runner_destroy(void *user, dab_model_version_t *v)
{
    (void)user;
    dab_runner_t *r = dab_model_version_runner(v);
    void *obs = dab_runner_observer(r);
    dab_runner_destroy(r, false);
    dab_free(obs);
}

static void on_change(void *user, const char *model)
{
    dab_server_t *s = user;
    dab_repo_status_t st;
    if (dab_repo_status(s->repo, &st))
        return;
    for (int i = 0; i < st.n_models; i++) {
        if (strcmp(st.models[i].name, model))
            continue;
        for (int k = 0; k < st.models[i].n_versions; k++) {
            const dab_repo_version_status_t *vs = &st.models[i].versions[k];
            char v[32];
            snprintf(v, sizeof v, "%lld", (long long)vs->version);
            const char *labels[2] = {model, v};
            dab_metric_set(s->m_model_ready, labels, vs->state == DAB_VS_READY);
            if (vs->load_ns)
                dab_metric_set(s->m_model_load, labels, vs->load_ns / 1e9);
        }
    }
    dab_repo_status_free(&st);
}

/* ---- lifecycle ---- */

void dab_server_defaults(dab_server_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->repository = "examples/repository";
    o->http_address = "0.0.0.0";
    o->http_port = 8000;
    o->http_threads = dab_cpu_count();
    o->threads = 0;
    o->control_mode = DAB_CONTROL_NONE;
    o->poll_secs = 15;
    o->max_body_bytes = 64u << 20;
    o->max_header_bytes = 32u << 10;
    o->max_tensor_elements = 64ll << 20;
    o->max_rank = 8;
    o->max_connections = 1024;
    o->idle_timeout_secs = 60;
    o->request_timeout_secs = 60;
    o->max_queue = 1024;
    dab_cache_defaults(&o->cache);
    o->cache.l1_bytes = (size_t)128 << 20;
}

static void register_metrics(dab_server_t *s)
{
    static const char *const mvo[] = {"model", "version", "outcome"};
    static const char *const ec[] = {"endpoint", "code"};
    static const char *const mv[] = {"model", "version"};
    static const char *const m[] = {"model"};
    s->m_requests = dab_metric_counter("dabba_inference_requests_total",
                                       "Inference requests by model, version and outcome", 3, mvo);
    s->m_http = dab_metric_counter("dabba_http_requests_total",
                                   "HTTP requests by endpoint and status code", 2, ec);
    s->m_latency = dab_metric_histogram("dabba_request_duration_seconds",
                                        "Inference request time from first byte to response", 2,
                                        mv, NULL, 0);
    s->m_queue = dab_metric_histogram("dabba_queue_duration_seconds",
                                      "Time inference requests waited in the queue", 2, mv, NULL, 0);
    s->m_compute = dab_metric_histogram("dabba_compute_duration_seconds",
                                        "Engine time per inference", 2, mv, NULL, 0);
    s->m_req_size = dab_metric_histogram("dabba_request_size_bytes", "Inference request body size",
                                         1, m, dab_buckets_size_bytes, DAB_BUCKETS_SIZE_N);
    s->m_inflight = dab_metric_gauge("dabba_inflight_requests", "HTTP requests in flight", 0, NULL);
    s->m_model_ready = dab_metric_gauge("dabba_model_ready",
                                        "1 when the model version is loaded and serving", 2, mv);
    s->m_model_load = dab_metric_gauge("dabba_model_load_seconds",
                                       "Time the serving version took to load and warm up", 2, mv);
    static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
    s->m_batch_size = dab_metric_histogram("dabba_batch_size",
                                           "Rows per engine run (dynamic batches included)", 2,
                                           mv, batch_bounds, DAB_ARRAY_LEN(batch_bounds));
    static const char *const mvp[] = {"model", "version", "priority"};
    s->m_queue_depth = dab_metric_gauge("dabba_queue_depth",
                                        "Inference requests waiting, by priority level", 3, mvp);
    s->m_running = dab_metric_gauge("dabba_inference_running",
                                    "Inference requests the engine is running now", 2, mv);
    static const char *const mvr[] = {"model", "version", "reason"};
    s->m_rejections = dab_metric_counter(
        "dabba_inference_rejections_total",
        "Inference requests the scheduler refused or dropped: queue_full, timeout, "
        "disconnected, shutdown, invalid",
        3, mvr);
    static const char *const mvres[] = {"model", "version", "result"};
    static const double cache_bounds_s[] = {1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4,
                                            2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 0.1};
    s->m_cache_time = dab_metric_histogram(
        "dabba_response_cache_seconds",
        "Time a request spent in the response cache: lookup and decode on a hit (result=hit, "
        "also answers shared from an identical request), lookup and insert on a miss",
        3, mvres, cache_bounds_s, (int)DAB_ARRAY_LEN(cache_bounds_s));
}

int dab_server_start(const dab_server_opts_t *o, dab_server_t **out, dab_err_t *err)
{
    *out = NULL;
    if (o->http_port < 0 || o->http_port > 65535)
        return dab_err_set(err, DAB_EINVAL, "--http-port %d is not a TCP port (0-65535)",
                           o->http_port);
    if (o->max_connections < 1 || o->max_body_bytes < 1)
        return dab_err_set(err, DAB_EINVAL,
                           "--max-connections and --max-body-bytes must be at least 1");
    dab_server_t *s = dab_calloc(1, sizeof *s);
    if (!s)
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    s->o = *o;
    s->quiesced_fd = -1;
    dab_v2_limits_default(&s->limits);
    s->limits.max_elements = o->max_tensor_elements;
    s->limits.max_rank = DAB_MIN(o->max_rank, DAB_MAX_RANK);
    s->limits.max_total_bytes = o->max_body_bytes * 2;
    register_metrics(s);
    dab_sched_set_budget(o->threads);
    int rc;
    if (o->cache.l1_bytes || (o->cache.redis_url && *o->cache.redis_url)) {
        if ((rc = dab_cache_new(&o->cache, &s->cache, err)))
            goto fail;
        if (!(s->flight = dab_flight_new())) {
            rc = dab_err_set(err, DAB_ENOMEM, "out of memory making the cache");
            goto fail;
        }
    }
    dab_repo_opts_t ro = {
        .mode = (dab_control_mode_t)o->control_mode,
        .poll_secs = o->poll_secs,
        .startup_models = o->load_models,
        .n_startup = o->n_load_models,
        .optimize = (dab_opt_level_t)o->optimize,
        .runner_create = runner_create,
        .runner_destroy = runner_destroy,
        .on_change = on_change,
        .user = s,
    };
    if ((rc = dab_repo_open(o->repository, &ro, &s->repo, err)))
        goto fail;
    if ((rc = dab_repo_start(s->repo, err)))
        goto fail;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ITC | MHD_USE_TURBO | MHD_USE_ERROR_LOG;
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)o->http_port);
    if (inet_pton(AF_INET, o->http_address, &addr.sin_addr) != 1) {
        rc = dab_err_set(err, DAB_EINVAL, "--http-address '%s' is not an IPv4 address",
                         o->http_address);
        goto fail;
    }
    s->mhd = MHD_start_daemon(
        flags, (uint16_t)o->http_port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, &addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)DAB_MAX(1, o->http_threads),
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->idle_timeout_secs,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)o->max_header_bytes,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
    if (!s->mhd) {
        rc = dab_err_set(err, DAB_EIO, "cannot listen on %s:%d (in use, or no permission?)",
                         o->http_address, o->http_port);
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : o->http_port;
    *out = s;
    return 0;
fail:
    dab_repo_close(s->repo);
    dab_flight_free(s->flight);
    dab_cache_free(s->cache);
    dab_free(s);
    return rc;
}

int dab_server_port(const dab_server_t *s)
{
    return s->port;
}

void dab_server_begin_drain(dab_server_t *s)
{
    atomic_store(&s->draining, true);
    /* The listening socket is ours after this, but libmicrohttpd's threads may still
     * have it in their epoll sets: it is closed after the daemon stops. */
    MHD_socket fd = MHD_quiesce_daemon(s->mhd);
    if (fd != MHD_INVALID_SOCKET)
        s->quiesced_fd = fd;
}

int dab_server_wait_idle(dab_server_t *s, int timeout_ms)
{
    uint64_t until = dab_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    int n;
    while ((n = atomic_load(&s->in_flight)) > 0 && dab_now_ns() < until)
        usleep(10000);
    return n;
}

int dab_server_rescan(dab_server_t *s, dab_err_t *err)
{
    return dab_repo_rescan(s->repo, err);
}

/* Answers every queued inference request with 503 (their connections resume). */
static void cancel_queued(dab_server_t *s)
{
    dab_repo_status_t st;
    if (dab_repo_status(s->repo, &st))
        return;
    for (int i = 0; i < st.n_models; i++)
        for (int k = 0; k < st.models[i].n_versions; k++) {
            dab_model_version_t *mv =
                dab_repo_acquire(s->repo, st.models[i].name, st.models[i].versions[k].version, NULL);
            if (!mv)
                continue;
            dab_runner_t *r = dab_model_version_runner(mv);
            if (r)
                dab_runner_cancel_queued(r);
            dab_model_version_release(mv);
        }
    dab_repo_status_free(&st);
}

int dab_server_stop(dab_server_t *s)
{
    if (!s)
        return 0;
    /* libmicrohttpd must not be stopped with suspended connections: answer the queued
     * requests, give running ones a moment, and otherwise leave everything to exit(). */
    if (atomic_load(&s->in_flight) > 0) {
        /* Requests still being received or decoded reach a runner later: they are
         * refused from now on, and queues are emptied again while running ones finish. */
        atomic_store(&s->closing, true);
        int left = 1;
        for (int i = 0; i < 200 && left > 0; i++) {
            cancel_queued(s);
            left = dab_server_wait_idle(s, 10);
        }
        if (left > 0)
            return left;
    }
    if (s->mhd)
        MHD_stop_daemon(s->mhd);
    if (s->quiesced_fd >= 0)
        close(s->quiesced_fd);
    dab_repo_close(s->repo);
    dab_flight_free(s->flight);
    dab_cache_free(s->cache); /* after the runners: a run may still fill it */
    dab_free(s);
    return 0;
}
