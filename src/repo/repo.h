/*
 * repo.h - the model repository: which models and versions are served, loading them
 * beside the serving ones, swapping them in atomically and freeing the old ones once
 * the last request using them has finished.
 *
 * On disk:   DIR/<model>/config.json            optional (docs/repository.md)
 *            DIR/<model>/<version>/model.onnx   version: a positive decimal integer
 *
 * A loaded version is a refcounted, immutable dab_model_version_t: the graph, the
 * parsed config and the runner (what serves it: scheduler, instances, sessions) built
 * by the caller's runner_create callback before the version is made visible. Requests
 * take a reference with dab_repo_acquire and give it back with
 * dab_model_version_release; a swap only moves the repository's own reference, so a
 * request that holds the old version finishes on it. When its last reference goes,
 * the repository's background thread calls runner_destroy and frees it (never the
 * releasing thread, which may be one of the runner's own workers).
 *
 * Control modes: NONE loads everything at start and changes only on
 * dab_repo_rescan (SIGHUP); POLL rescans every poll_secs; EXPLICIT loads only the
 * startup list and what dab_repo_load asks for.
 *
 * Threads and locks (repo.c):
 *   load_mu   one loader at a time: rescans, loads, unloads and close run under it,
 *             including the slow parts (reading files, runner_create, warm-up).
 *   table_mu  the table of models and versions (states, reasons, the serving
 *             pointers); held only for short lookups and pointer swaps, never
 *             across I/O or callbacks. acquire, status, index and ready take only this.
 *   bg_mu     the background thread's work: versions to destroy, rescan requests,
 *             the poll timer, shutdown.
 *   refcounts are atomics.
 */
#ifndef DAB_REPO_H
#define DAB_REPO_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "../base/base.h"
#include "../graph/graph.h"

typedef struct dab_repo dab_repo_t;

typedef enum dab_control_mode {
    DAB_CONTROL_NONE,    /* load every model at start; rescan only on dab_repo_rescan */
    DAB_CONTROL_POLL,    /* rescan every poll_secs */
    DAB_CONTROL_EXPLICIT /* only the startup list and dab_repo_load / dab_repo_unload */
} dab_control_mode_t;

/* "none" / "poll" / "explicit" -> mode; DAB_EINVAL naming the value otherwise. */
int dab_control_mode_parse(const char *s, dab_control_mode_t *out, dab_err_t *err);

typedef enum dab_version_policy {
    DAB_POLICY_LATEST,  /* the latest_n highest version numbers */
    DAB_POLICY_ALL,     /* every version folder */
    DAB_POLICY_SPECIFIC /* the versions listed */
} dab_version_policy_t;

/* Defaults and bounds of config.json (docs/repository.md). */
#define DAB_REPO_DEFAULT_MAX_BATCH 64      /* when the model batches and config says nothing */
#define DAB_REPO_MAX_BATCH_LIMIT 65536     /* largest max_batch_size accepted */
#define DAB_REPO_MAX_INSTANCES 256         /* largest instance count accepted */
#define DAB_REPO_MAX_CONFIG_BYTES (1 << 20) /* config.json and load bodies */
#define DAB_REPO_MAX_WARMUP_BYTES ((size_t)256 << 20) /* per warm-up input tensor */

/*
 * A model's configuration: config.json (or a load request's body) checked field by
 * field, with defaults filled in from the model. Immutable once made; each loaded
 * version owns its own (the defaults depend on its graph).
 */
typedef struct dab_model_config {
    char *name;                          /* the model folder's name */
    int max_batch_size; /* 0 = the model does not batch; -1 between parse and complete
                           when config.json does not say */
    dab_version_policy_t version_policy; /* default LATEST with latest_n 1 */
    int latest_n;
    int64_t *specific; /* SPECIFIC: sorted ascending, no duplicates */
    int n_specific;
    int instance_count;      /* sum of instance_group[*].count; default 1 */
    bool dynamic_batching;   /* a "dynamic_batching" object is present (read it from json) */
    bool response_cache;     /* response_cache.enable */
    int64_t response_cache_ttl_s; /* response_cache.ttl_seconds; 0 = no expiry */
    char *model_filename;    /* default_model_filename; default "model.onnx" */
    /* Warm-up samples, filled by dab_model_config_complete: warmup_inputs[i] feeds
     * graph->inputs[i]; an entry with data == NULL means "use the input's default
     * initializer". Run warmup_count times (default 1). Zeros of the declared shapes
     * (symbolic dims = 1) unless config "warmup" says otherwise. */
    int warmup_count;
    int n_warmup_inputs;
    dab_tensor_t *warmup_inputs;
    /* The whole effective config (the user's fields plus the defaults above, and the
     * model's "input"/"output" in Triton's form) for the scheduler, caches and the
     * /config endpoint. Owned by the config; read-only. */
    json_t *json;
} dab_model_config_t;

/*
 * Checks a config's text without the model: JSON syntax and every field dabba knows
 * (docs/repository.md). text NULL (no config.json) gives the defaults. model_name is the
 * folder's name; a "name" field must match it. On success *out is a new config to free
 * with dab_model_config_free; it is completed only after dab_model_config_complete.
 * Errors: DAB_EFORMAT (not JSON: line and column), DAB_EINVAL (a field: the sentence names
 * it), DAB_ELIMIT (too large), DAB_ENOMEM; *out is NULL then. Any thread.
 * Needs jansson's allocator set before any JSON is made (see docs/repository.md).
 */
int dab_model_config_parse(const char *model_name, const char *text, size_t len,
                           dab_model_config_t **out, dab_err_t *err);

/*
 * Checks the config against the model graph g and fills in what depends on it:
 * max_batch_size (default DAB_REPO_DEFAULT_MAX_BATCH when every input and output has a
 * symbolic first dimension, else 0), the "input"/"output" lists, warm-up tensors (a
 * warm-up "file" is read relative to model_dir, which may be NULL to refuse files) and
 * the effective json. On error err names the field or input at fault and c must only be
 * freed. One thread per config.
 */
int dab_model_config_complete(dab_model_config_t *c, const dab_graph_t *g, const char *model_dir,
                              dab_err_t *err);

/* Frees a config and everything it owns. NULL is fine. */
void dab_model_config_free(dab_model_config_t *c);

/* ---- loaded versions ---- */

typedef struct dab_model_version dab_model_version_t;

/* Accessors. Valid while the caller holds a reference; the values never change,
 * except the runner, which runner_create sets before the version is visible. */
const char *dab_model_version_name(const dab_model_version_t *v);
int64_t dab_model_version_number(const dab_model_version_t *v);
const dab_graph_t *dab_model_version_graph(const dab_model_version_t *v);
const dab_model_config_t *dab_model_version_config(const dab_model_version_t *v);
const char *dab_model_version_path(const dab_model_version_t *v); /* the model file */
uint64_t dab_model_version_file_bytes(const dab_model_version_t *v);
/* Time from the start of reading the file to the end of runner_create (warm-up). */
uint64_t dab_model_version_load_ns(const dab_model_version_t *v);
/* A hash of the model file's bytes and the config: equal across restarts for the same
 * content (the response cache keys on it, so a changed model never sees old entries). */
uint64_t dab_model_version_identity(const dab_model_version_t *v);
void *dab_model_version_runner(const dab_model_version_t *v);

/* For runner_create only: stores what serves v (read back with dab_model_version_runner). */
void dab_model_version_set_runner(dab_model_version_t *v, void *runner);

/* Takes one more reference on v (the caller already holds one); returns v. Any thread. */
dab_model_version_t *dab_model_version_retain(dab_model_version_t *v);

/* Gives back one reference. The last one hands v to the repository's background thread,
 * which calls runner_destroy and frees it. NULL is fine. Any thread, lock-free. */
void dab_model_version_release(dab_model_version_t *v);

/*
 * Runs the config's warm-up samples warmup_count times on session s (created over v's
 * graph). For runners to call from runner_create, once per instance session. On failure
 * err says which run failed and why.
 */
int dab_model_version_warmup(const dab_model_version_t *v, dab_session_t *s, dab_err_t *err);

/* ---- the repository ---- */

typedef struct dab_repo_opts {
    dab_control_mode_t mode;
    int poll_secs;                      /* POLL: seconds between rescans (<= 0: 15) */
    const char *const *startup_models;  /* EXPLICIT: models to load at start */
    int n_startup;
    dab_opt_level_t optimize;           /* graph optimizations after loading (0: all) */
    /*
     * Builds what serves version v (scheduler, instances, sessions, warm-up) before v is
     * made visible; called on the loader thread (whoever runs the load) with no table
     * lock held, while the previous version of v, if any, keeps serving. Store the result
     * with dab_model_version_set_runner. Return 0, or a DAB_E* code with err saying why:
     * the version then fails to load, with that message in the index, and runner_destroy
     * is not called for it. NULL: the repository checks the version itself by running
     * its warm-up on one session.
     */
    int (*runner_create)(void *user, dab_model_version_t *v, dab_err_t *err);
    /* Frees v's runner when v's last reference is gone; on the repository's background
     * thread. Called for every version whose runner_create succeeded. May be NULL. */
    void (*runner_destroy)(void *user, dab_model_version_t *v);
    /* Something about model `model` changed (a version loaded, failed, swapped in or
     * unloaded) - for logs and metrics. Called on the loader thread holding load_mu:
     * it may call dab_repo_acquire, _status, _index and _ready, but not _load, _unload,
     * _rescan or _close. May be NULL. */
    void (*on_change)(void *user, const char *model);
    void *user;
} dab_repo_opts_t;

/*
 * Opens the repository at dir (which must be a readable folder) with opts (copied; the
 * startup names too). Loads nothing yet: see dab_repo_start. On success *out is the
 * repository to close with dab_repo_close; on error *out is NULL and err says why
 * (DAB_ENOTFOUND: no such folder, DAB_EINVAL: a bad option, DAB_ENOMEM). One thread.
 */
int dab_repo_open(const char *dir, const dab_repo_opts_t *opts, dab_repo_t **out, dab_err_t *err);

/*
 * The initial load, on the calling thread: NONE and POLL load every model in the folder,
 * EXPLICIT the startup list; then starts the background thread (destroying drained
 * versions; POLL's rescans). Returns 0 even when some models failed to load: they are
 * FAILED in the index, and dab_repo_ready says false. Fails (nothing started) when the
 * folder cannot be read, a startup model is not in the folder (DAB_ENOTFOUND) or the
 * thread cannot be created. Call once, before any other dab_repo_* except _close.
 */
int dab_repo_start(dab_repo_t *r, dab_err_t *err);

/*
 * A reference to the serving version `version` of model `name` (version 0: the highest
 * numbered READY version). Release it with dab_model_version_release. Returns NULL with
 * err set: DAB_ENOTFOUND when the model or version is not in the repository, DAB_EBUSY
 * when it is but is not ready (loading, failed, unloaded, closing) - err then says why.
 * Any thread, many at once; takes table_mu for a name lookup and a refcount increment.
 */
dab_model_version_t *dab_repo_acquire(dab_repo_t *r, const char *name, int64_t version,
                                      dab_err_t *err);

/*
 * EXPLICIT mode: loads model `name` per its version policy, or reloads it when loaded:
 * new and changed versions (and all of them when the config changed) are loaded beside
 * the serving ones and swapped in; versions the policy no longer selects are unloaded
 * once their replacements are ready. config_json (NUL-terminated) replaces config.json
 * until the next load without one; NULL reads config.json. Runs on the calling thread.
 * Returns 0 when every selected version is READY; otherwise the first failure's code and
 * message (versions that did load stay loaded, and a serving version whose replacement
 * failed keeps serving). DAB_ENOTFOUND: no such model folder; DAB_EUNSUPPORTED: not in
 * EXPLICIT mode; DAB_EINVAL: an invalid config_json (nothing changes) or called before
 * dab_repo_start; DAB_EBUSY: closing. Any thread; waits for any other load, unload or rescan.
 */
int dab_repo_load(dab_repo_t *r, const char *name, const char *config_json, dab_err_t *err);

/*
 * EXPLICIT mode: unloads every version of model `name` (requests holding one finish on
 * it). 0 also when it was not loaded; DAB_ENOTFOUND when the repository has no such model;
 * DAB_EUNSUPPORTED when not in EXPLICIT mode; DAB_EINVAL before dab_repo_start; DAB_EBUSY
 * while closing. Any thread; waits for any other load.
 */
int dab_repo_unload(dab_repo_t *r, const char *name, dab_err_t *err);

/*
 * Brings the served set in line with the folder, on the calling thread. NONE and POLL:
 * new models and versions are loaded, changed model files (size, mtime, then a content
 * hash) and changed configs reloaded and swapped in, removed ones unloaded; versions
 * that failed are retried only when their file or config changed. EXPLICIT: only
 * refreshes the list of models in the folder (for the index). Returns 0 unless the
 * folder cannot be read (or DAB_EINVAL before dab_repo_start, DAB_EBUSY while closing);
 * load failures are reported in the index and the log. Any thread (never a signal
 * handler); waits for any other load.
 */
int dab_repo_rescan(dab_repo_t *r, dab_err_t *err);

/* Asks the background thread to rescan soon and returns at once (e.g. from the thread
 * that handles SIGHUP). Any thread except a signal handler. */
void dab_repo_request_rescan(dab_repo_t *r);

/*
 * Appends the repository index as a JSON array to json_out, one entry per model version
 * known (on disk or loaded), sorted by name then version:
 *   {"name":"m","version":"2","state":"READY","reason":""}
 * "version" is a string (as the KServe repository extension has it) and is absent for a
 * model-level entry (a model with an invalid config and nothing serving, or no versions).
 * Returns 0 or DAB_ENOMEM. Any thread.
 */
int dab_repo_index(dab_repo_t *r, dab_buf_t *json_out);

/* True when the repository has started, is not closing, and every model that should be
 * loaded has at least one READY version. Any thread. */
bool dab_repo_ready(dab_repo_t *r);

/* ---- status snapshots (for /v2/models, metrics, logs) ---- */

typedef enum dab_version_state {
    DAB_VS_UNAVAILABLE, /* not loaded: unloaded, not selected by the policy, not loaded yet */
    DAB_VS_LOADING,     /* first load in progress */
    DAB_VS_READY,       /* serving (possibly while a replacement failed: see reason) */
    DAB_VS_FAILED       /* the last load failed: see reason */
} dab_version_state_t;

/* "UNAVAILABLE", "LOADING", "READY", "FAILED". */
const char *dab_version_state_name(dab_version_state_t s);

typedef struct dab_repo_version_status {
    int64_t version;
    dab_version_state_t state;
    char *reason;               /* "" when there is nothing to say */
    uint64_t load_ns;           /* the serving version's load time; 0 when none serves */
    uint64_t file_bytes;        /* the serving version's file size; 0 when none serves */
    int64_t loaded_unix_s;      /* wall-clock time the serving version was swapped in */
} dab_repo_version_status_t;

typedef struct dab_repo_model_status {
    char *name;
    dab_version_state_t state; /* READY when some version is; else LOADING, FAILED or
                                  UNAVAILABLE */
    char *reason;              /* model-level: an invalid config, no versions; "" if none */
    int n_versions;
    dab_repo_version_status_t *versions; /* ascending version numbers */
} dab_repo_model_status_t;

typedef struct dab_repo_status {
    int n_models;
    dab_repo_model_status_t *models; /* sorted by name */
} dab_repo_status_t;

/* A snapshot of every model and version (copied; free with dab_repo_status_free).
 * Returns 0 or DAB_ENOMEM (out is then empty). Any thread. */
int dab_repo_status(dab_repo_t *r, dab_repo_status_t *out);
void dab_repo_status_free(dab_repo_status_t *s);

/* The repository's folder and mode as opened. */
const char *dab_repo_dir(const dab_repo_t *r);
dab_control_mode_t dab_repo_mode(const dab_repo_t *r);

/*
 * Stops the poller, unloads every model, waits until every reference has been released
 * and every version destroyed, then frees the repository. The caller must make sure
 * holders do release (stop the server first). NULL is fine. One thread, once.
 */
void dab_repo_close(dab_repo_t *r);

#endif
