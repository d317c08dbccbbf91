/*
 * sched.h - running inference requests for a model version off the HTTP
 * threads. A runner owns instance threads, each with its own engine session,
 * fed from priority queues by a dynamic batcher: queued requests whose inputs
 * agree after the first dimension are concatenated along it, run as one batch
 * and split back. All instances of all runners share one compute budget (the
 * process's --threads), so instances × intra-op threads never exceed it.
 *
 * A job's done callback runs with the outputs (views of the batch's outputs,
 * valid only during the call: they live in the session's arena); the callback
 * encodes or copies them. Its release callback then hands the result to
 * whoever waits (for HTTP: resumes the suspended connection); with
 * preserve_ordering releases happen in submission order.
 */
#ifndef DAB_SCHED_H
#define DAB_SCHED_H

#include <jansson.h>
#include <stdbool.h>

#include "../base/base.h"
#include "../graph/graph.h"

/* The process-wide compute budget: call once at start-up (threads <= 0: all cores). */
void dab_sched_set_budget(int threads);
int dab_sched_budget(void);

typedef struct dab_job dab_job_t;

/*
 * Called once per job. rc is 0 and outputs[i] (graph output order) are valid during the
 * call, or rc < 0 and err says why: ETIMEDOUT (waited past its timeout), ECANCELED
 * (runner shutting down, or dab_runner_cancel), EINVAL/ESHAPE (the batch could not be
 * split), or the engine's error. Runs on an instance thread, the reaper thread, or the
 * thread that called dab_runner_try_run / dab_runner_cancel / dab_runner_cancel_queued.
 */
typedef void (*dab_job_done_fn)(dab_job_t *job, int rc, const dab_err_t *err,
                                const dab_tensor_t *const *outputs);
/* Called once after done (in submission order with preserve_ordering); the runner does
 * not touch the job afterwards, so this may free it. */
typedef void (*dab_job_release_fn)(dab_job_t *job);

typedef enum dab_job_state {
    DAB_JOB_NEW = 0,
    DAB_JOB_QUEUED,
    DAB_JOB_RUNNING,
    DAB_JOB_FINISHED
} dab_job_state_t;

struct dab_job {
    const dab_tensor_t *const *inputs; /* [graph n_inputs], read during the run */
    dab_job_done_fn done;
    dab_job_release_fn release; /* may be NULL */
    void *user;
    /* Asked (may be NULL) when the job is picked from the queue, on the instance thread:
     * false drops it (done gets ECANCELED, then release) instead of running it. */
    bool (*wanted)(dab_job_t *job);
    int priority;       /* 1..priority_levels, 1 first; 0 = the model's default level */
    int64_t timeout_us; /* > 0: the request's own timeout (used when the policy allows) */
    /* filled by the runner */
    uint64_t enqueue_ns;
    uint64_t queue_ns;   /* time spent waiting */
    uint64_t compute_ns; /* engine time of the batch it ran in */
    int batch_rows;      /* rows of the batch it ran in */
    /* the runner's own (guarded by the runner's lock) */
    dab_job_state_t state;
    int level;            /* 0-based priority level */
    int64_t rows;         /* first dimension (1 when the model does not batch) */
    bool solo;            /* never merged with others */
    bool delayed;         /* timed out under a DELAY policy */
    uint64_t deadline_ns; /* 0 = none */
    dab_job_t *prev, *next; /* queue links */
    dab_job_t *order_next;  /* submission order (preserve_ordering) */
};

/* What a priority level does with its jobs (Triton's ModelQueuePolicy). */
typedef struct dab_queue_policy {
    int max_queue_size;          /* waiting jobs at this level at most; 0 = no own limit */
    bool delay_on_timeout;       /* DELAY: an expired job waits behind live ones; else REJECT */
    int64_t default_timeout_us;  /* 0 = none */
    bool allow_timeout_override; /* a job's timeout_us may shorten the default */
} dab_queue_policy_t;

#define DAB_SCHED_MAX_PREFERRED 16
#define DAB_SCHED_MAX_LEVELS 1000

/* How a runner groups and orders jobs (config.json's max_batch_size and dynamic_batching). */
typedef struct dab_batching {
    int max_batch_size;   /* rows per run; 0 = the model does not batch */
    bool dynamic;         /* merge queued jobs into batches (needs max_batch_size > 0) */
    int n_preferred;
    int preferred[DAB_SCHED_MAX_PREFERRED]; /* ascending */
    int64_t max_queue_delay_us;
    bool preserve_ordering;
    int priority_levels;  /* 0 = one level */
    int default_priority; /* 1..priority_levels (0 when there are none) */
    dab_queue_policy_t default_policy;
    /* [priority_levels] or NULL (every level uses default_policy); copied by the runner */
    const dab_queue_policy_t *level_policies;
} dab_batching_t;

/*
 * Fills b from config.json's max_batch_size and "dynamic_batching" object (db, may be NULL:
 * no dynamic batching), already checked by the repository's parser. *level_policies gets a
 * dab_malloc'd array (free with dab_free) when db has priority levels, else NULL; b points
 * at it. EINVAL with the field named on a value the scheduler cannot use.
 */
int dab_batching_from_json(const json_t *db, int max_batch_size, dab_batching_t *b,
                           dab_queue_policy_t **level_policies, dab_err_t *err);

typedef struct dab_runner dab_runner_t;

typedef struct dab_runner_opts {
    int instances;          /* instance threads (each with a session), >= 1 */
    int max_queue;          /* jobs waiting at most over all levels; 0 = 1024 */
    const char *label;      /* "model:version" for thread names and messages */
    size_t max_value_bytes; /* per tensor the engine may make (dab_session_opts_t); 0 = none */
    dab_batching_t batching;
    /* Called after every run on the instance thread (metrics); may be NULL. */
    void (*on_batch)(void *user, int rows, int jobs, uint64_t compute_ns);
    void *observer;
} dab_runner_opts_t;

/* Statistics since creation (the v2 statistics extension's fields). */
typedef struct dab_runner_stats {
    uint64_t success_count, success_ns;
    uint64_t fail_count, fail_ns;
    uint64_t queue_count, queue_ns;
    uint64_t compute_count, compute_ns;
    uint64_t inference_count, execution_count;
    uint64_t last_inference_ms; /* wall clock, ms since the epoch */
    int queue_depth;
    int in_flight;
} dab_runner_stats_t;

/* Runs of one batch size (the statistics extension's batch_stats). */
typedef struct dab_batch_stat {
    int batch_size;
    uint64_t count;
    uint64_t compute_ns;
} dab_batch_stat_t;

/*
 * Creates the runner's sessions over g (which must outlive the runner) and starts its
 * instance threads. On error nothing is left running.
 */
int dab_runner_create(const dab_graph_t *g, const dab_runner_opts_t *opts, dab_runner_t **out,
                      dab_err_t *err);

/*
 * Queues job (its inputs, done, release, user, priority and timeout_us set); the runner
 * owns it until its release (or done, without release) returns. Errors, with a sentence
 * and no callback: EINVAL (priority out of range; more rows than max_batch_size; a
 * scalar input to a batching model), EBUSY (the queue or the level's queue is full),
 * ECANCELED (the runner is stopping). Any thread.
 */
int dab_runner_submit(dab_runner_t *r, dab_job_t *job, dab_err_t *err);

/*
 * Runs job on the calling thread when that costs no waiting and the model is quick (recent
 * runs under 1 ms on average): the queue is empty, an instance is idle, its share of the
 * compute budget is free at once, and batching would not wait (max_queue_delay 0). With
 * dynamic batching also only when `others` (requests the caller holds besides this one,
 * e.g. an HTTP server's in-flight count) is 0: requests that arrive together should batch.
 * Returns true when it ran (done and release have been called on this thread before the
 * return); false when nothing happened (submit it instead). Any thread. This saves two
 * thread hand-offs per request for models under light load.
 */
bool dab_runner_try_run(dab_runner_t *r, dab_job_t *job, int others);

/*
 * Drops job if it is still queued: its done gets ECANCELED with `why`, then its release,
 * on the calling thread, and true is returned. False (nothing happens) when it is already
 * running or finished. The caller guarantees job is alive. Any thread.
 */
bool dab_runner_cancel(dab_runner_t *r, dab_job_t *job, const char *why);

void dab_runner_stats(dab_runner_t *r, dab_runner_stats_t *out);

/* The observer given in the options (for its owner to free after destroy); NULL r: NULL. */
void *dab_runner_observer(const dab_runner_t *r);

/* Copies the batch sizes run so far (ascending) into out; returns how many there are
 * (which may exceed max: only max are copied). */
int dab_runner_batch_stats(dab_runner_t *r, dab_batch_stat_t *out, int max);

/* Waiting jobs per priority level (index 0 = level 1) into depths; returns the level count
 * (1 when the model has no priority levels). */
int dab_runner_queue_depths(dab_runner_t *r, int *depths, int max);

/* Fails every queued (not yet running) job with ECANCELED, on the calling thread; the
 * runner keeps taking new jobs. Any thread but an instance's own. */
void dab_runner_cancel_queued(dab_runner_t *r);

/*
 * Calls fn once on every instance's session (warm-up), waiting for each instance to be
 * free. Stops at the first failure and returns it. Any thread but an instance's own.
 */
int dab_runner_each_session(dab_runner_t *r,
                            int (*fn)(void *user, dab_session_t *s, dab_err_t *err), void *user,
                            dab_err_t *err);

/*
 * Stops taking jobs, finishes those queued (or fails them with ECANCELED when
 * cancel_queued), joins the threads and frees everything.
 */
void dab_runner_destroy(dab_runner_t *r, bool cancel_queued);

#endif
