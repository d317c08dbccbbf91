/*
 * sched.h - running inference requests for a model version off the HTTP
 * threads: a runner owns instance threads, each with its own engine session,
 * fed from one queue. All instances of all runners share one compute budget
 * (the process's --threads), so instances × intra-op threads never exceed it.
 *
 * A job's completion callback runs on the instance thread with the outputs,
 * which stay valid only during the callback (they live in the session's
 * arena): the callback encodes or copies them, then hands the result to
 * whoever waits (for HTTP: resumes the suspended connection).
 */
#ifndef DAB_SCHED_H
#define DAB_SCHED_H

#include <stdbool.h>

#include "../base/base.h"
#include "../graph/graph.h"

/* The process-wide compute budget: call once at start-up (threads <= 0: all cores). */
void dab_sched_set_budget(int threads);
int dab_sched_budget(void);

typedef struct dab_job dab_job_t;

/*
 * Called once per job on an instance thread. rc is 0 and outputs[i] (graph output order)
 * are valid during the call, or rc < 0 and err says why (ECANCELED when the runner is
 * shutting down, ETIMEDOUT when the job waited past its deadline).
 */
typedef void (*dab_job_done_fn)(dab_job_t *job, int rc, const dab_err_t *err,
                                const dab_tensor_t *const *outputs);

struct dab_job {
    const dab_tensor_t *const *inputs; /* [graph n_inputs], read during the run */
    dab_job_done_fn done;
    void *user;
    uint64_t deadline_ns;  /* 0 = none; compared with dab_now_ns() when dequeued */
    /* filled by the runner */
    uint64_t enqueue_ns;
    uint64_t queue_ns;     /* time spent waiting */
    uint64_t compute_ns;   /* engine time */
    dab_job_t *next;       /* queue link, owned by the runner while queued */
};

typedef struct dab_runner dab_runner_t;

typedef struct dab_runner_opts {
    int instances;        /* instance threads (each with a session), >= 1 */
    int max_queue;        /* jobs waiting at most; 0 = 1024 */
    const char *label;    /* "model:version" for thread names and messages */
    size_t max_value_bytes; /* per tensor the engine may make (dab_session_opts_t); 0 = none */
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

/*
 * Creates the runner's sessions over g (which must outlive the runner) and starts its
 * instance threads. On error nothing is left running.
 */
int dab_runner_create(const dab_graph_t *g, const dab_runner_opts_t *opts, dab_runner_t **out,
                      dab_err_t *err);

/*
 * Queues job; the runner owns it until its done callback returns. EBUSY (with a
 * sentence) when the queue is full, ECANCELED when the runner is stopping; the
 * callback is not called then. Any thread.
 */
int dab_runner_submit(dab_runner_t *r, dab_job_t *job, dab_err_t *err);

/*
 * Runs job on the calling thread when that costs no waiting and the model is quick (recent
 * runs under 1 ms on average): the queue is empty, an instance is idle and its share of
 * the compute budget is free at once. Returns true
 * when it ran (job->done has been called, on this thread, before the return); false
 * when it did not run (nothing happened: submit it instead). Any thread. This saves
 * two thread hand-offs per request for models that do not batch.
 */
bool dab_runner_try_run(dab_runner_t *r, dab_job_t *job);

void dab_runner_stats(dab_runner_t *r, dab_runner_stats_t *out);

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
