/*
 * sched_int.h - what runner.c and queue.c share: the runner's state and the
 * priority queues the batcher picks from.
 */
#ifndef DAB_SCHED_INT_H
#define DAB_SCHED_INT_H

#include <pthread.h>

#include "sched.h"

typedef struct job_list {
    dab_job_t *head, *tail;
} job_list_t;

/* One priority level: jobs still within their timeout, then DELAY-expired ones. */
typedef struct level {
    job_list_t live, delayed;
    int depth;
    dab_queue_policy_t policy;
} level_t;

typedef struct instance {
    struct dab_runner *r;
    dab_session_t *session;
    pthread_t thread;
    bool started;
    bool busy; /* guarded by r->mu: a run, an inline run or a warm-up holds the session */
    int threads;
    dab_job_t **batch;       /* [max jobs per batch] */
    /* batch staging (dynamic batching only): inputs concatenated along dimension 0 */
    dab_tensor_t *stage;     /* [n_inputs] */
    size_t *stage_cap;       /* bytes allocated per stage[i].data */
    const dab_tensor_t **feed; /* [n_inputs] */
    dab_tensor_t *views;     /* [n_outputs]: one job's rows of the batch's outputs */
    const dab_tensor_t **view_ptrs;
} instance_t;

struct dab_runner {
    const dab_graph_t *g;
    char label[128];
    dab_batching_t b;
    int max_jobs; /* jobs per batch at most */
    void (*on_batch)(void *user, int rows, int jobs, uint64_t compute_ns);
    void *observer;
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* work queued, stop, an instance freed, a delay to re-check */
    /* guarded by mu */
    level_t *levels;
    int n_levels;
    int depth, max_queue;
    bool stopping, cancel;
    int n_instances;
    int sync_waiting;       /* threads in dab_runner_each_session waiting for an instance */
    instance_t *inst;
    dab_runner_stats_t stats;
    dab_batch_stat_t *batch_stats; /* [max_batch_size + 1], indexed by rows */
    uint64_t recent_compute_ns; /* moving average of run times */
    /* submission order (preserve_ordering): every job from submit to release */
    dab_job_t *order_head, *order_tail;
    bool releasing; /* one thread at a time releases finished jobs in order */
    /* the reaper: fails or delays jobs whose timeout passes while they wait */
    bool has_timeouts;
    pthread_t reaper;
    bool reaper_started;
    pthread_cond_t reap_cv;
    uint64_t reap_at; /* when the reaper wakes next; 0 = not before a new deadline */
};

/* ---- queue.c (all with r->mu held) ---- */

/* Appends job to its level's live list. */
void dab_queue_push(dab_runner_t *r, dab_job_t *job);
/* Unlinks a queued job from whichever list holds it. */
void dab_queue_unlink(dab_runner_t *r, dab_job_t *job);
/*
 * Moves jobs whose deadline has passed: REJECT ones are unlinked and chained through
 * ->next onto *expired; DELAY ones move to their level's delayed list. Returns the
 * earliest deadline still pending among live jobs (0 = none).
 */
uint64_t dab_queue_expire(dab_runner_t *r, uint64_t now, dab_job_t **expired);
/*
 * Picks the next batch for an idle instance: the first job in priority order and the
 * queued jobs compatible with it, cut per max/preferred size and max_queue_delay. On a
 * cut, unlinks them into out (at most r->max_jobs) and returns their count. Returns 0
 * when nothing is to run yet; *wake_at is then when to look again (0 = on new work).
 */
int dab_queue_pick(dab_runner_t *r, uint64_t now, dab_job_t **out, uint64_t *wake_at);

#endif
