/*
 * runner.c - instance threads over one FIFO queue per model version, and the
 * process-wide compute budget they share.
 *
 * Locks: runner->mu guards the queue, the stop flag, statistics and each
 * instance's busy flag. g_budget_mu guards the free compute tokens. An
 * instance takes its intra-op thread count in tokens before running, so the
 * cores are never oversubscribed however many models are loaded.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sched.h"

static pthread_mutex_t g_budget_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_budget_cv = PTHREAD_COND_INITIALIZER;
static int g_budget_total = 0;
static int g_budget_free = 0;

void dab_sched_set_budget(int threads)
{
    pthread_mutex_lock(&g_budget_mu);
    int total = threads > 0 ? threads : dab_cpu_count();
    g_budget_free += total - g_budget_total;
    g_budget_total = total;
    pthread_cond_broadcast(&g_budget_cv);
    pthread_mutex_unlock(&g_budget_mu);
}

int dab_sched_budget(void)
{
    pthread_mutex_lock(&g_budget_mu);
    if (!g_budget_total) {
        g_budget_total = dab_cpu_count();
        g_budget_free = g_budget_total;
    }
    int t = g_budget_total;
    pthread_mutex_unlock(&g_budget_mu);
    return t;
}

static void budget_take(int n)
{
    pthread_mutex_lock(&g_budget_mu);
    while (g_budget_free < n)
        pthread_cond_wait(&g_budget_cv, &g_budget_mu);
    g_budget_free -= n;
    pthread_mutex_unlock(&g_budget_mu);
}

static bool budget_try_take(int n)
{
    pthread_mutex_lock(&g_budget_mu);
    bool ok = g_budget_free >= n;
    if (ok)
        g_budget_free -= n;
    pthread_mutex_unlock(&g_budget_mu);
    return ok;
}

static void budget_give(int n)
{
    pthread_mutex_lock(&g_budget_mu);
    g_budget_free += n;
    pthread_cond_broadcast(&g_budget_cv);
    pthread_mutex_unlock(&g_budget_mu);
}

typedef struct instance {
    struct dab_runner *r;
    dab_session_t *session;
    pthread_t thread;
    bool started;
    bool busy; /* guarded by r->mu: a sync run or a queued job holds the session */
    int threads;
} instance_t;

struct dab_runner {
    const dab_graph_t *g;
    char label[128];
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* queue non-empty, stop, or an instance freed */
    dab_job_t *head, *tail; /* guarded by mu */
    int depth, max_queue;
    bool stopping, cancel;
    int n_instances;
    int sync_waiting;       /* threads in dab_runner_each_session waiting for an instance */
    instance_t *inst;
    dab_runner_stats_t stats; /* guarded by mu */
    uint64_t recent_compute_ns; /* moving average of run times; guarded by mu */
};

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Runs job on inst (whose session the caller holds) and calls its callback. With
 * budget_held the caller has already taken the instance's compute budget. */
static void execute(instance_t *inst, dab_job_t *job, bool budget_held)
{
    dab_runner_t *r = inst->r;
    dab_err_t err = {0};
    const dab_tensor_t *outs[256];
    int rc;
    uint64_t start = dab_now_ns();
    job->queue_ns = job->enqueue_ns ? start - job->enqueue_ns : 0;
    if (r->g->n_outputs > 256) {
        rc = dab_err_set(&err, DAB_ELIMIT, "the model has more than 256 outputs");
    } else if (job->deadline_ns && start > job->deadline_ns) {
        rc = dab_err_set(&err, DAB_ETIMEDOUT, "the request timed out after waiting %.3f ms in the queue",
                         job->queue_ns / 1e6);
    } else {
        if (!budget_held)
            budget_take(inst->threads);
        rc = dab_session_run(inst->session, job->inputs, outs, &err);
        if (!budget_held)
            budget_give(inst->threads);
    }
    uint64_t end = dab_now_ns();
    job->compute_ns = end - start;
    pthread_mutex_lock(&r->mu);
    r->stats.queue_count++;
    r->stats.queue_ns += job->queue_ns;
    if (rc == 0) {
        r->stats.success_count++;
        r->stats.success_ns += job->queue_ns + job->compute_ns;
        r->stats.compute_count++;
        r->stats.compute_ns += job->compute_ns;
        r->recent_compute_ns = r->stats.compute_count == 1
                                   ? job->compute_ns
                                   : (r->recent_compute_ns * 7 + job->compute_ns) / 8;
        r->stats.inference_count++;
        r->stats.execution_count++;
        r->stats.last_inference_ms = wall_ms();
    } else {
        r->stats.fail_count++;
        r->stats.fail_ns += job->queue_ns + job->compute_ns;
    }
    pthread_mutex_unlock(&r->mu);
    job->done(job, rc, rc ? &err : NULL, rc ? NULL : outs);
}

static void *instance_main(void *arg)
{
    instance_t *inst = arg;
    dab_runner_t *r = inst->r;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->stopping && (!r->head || inst->busy))
            pthread_cond_wait(&r->cv, &r->mu);
        if (!r->head && r->stopping)
            break;
        if (!r->head || inst->busy)
            continue;
        dab_job_t *job = r->head;
        r->head = job->next;
        if (!r->head)
            r->tail = NULL;
        r->depth--;
        if (r->cancel) {
            pthread_mutex_unlock(&r->mu);
            dab_err_t err;
            dab_err_set(&err, DAB_ECANCELED, "the model version %s is shutting down", r->label);
            job->done(job, DAB_ECANCELED, &err, NULL);
            pthread_mutex_lock(&r->mu);
            continue;
        }
        inst->busy = true;
        r->stats.in_flight++;
        pthread_mutex_unlock(&r->mu);
        execute(inst, job, false);
        pthread_mutex_lock(&r->mu);
        inst->busy = false;
        r->stats.in_flight--;
        if (r->sync_waiting)
            pthread_cond_broadcast(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

int dab_runner_create(const dab_graph_t *g, const dab_runner_opts_t *opts, dab_runner_t **out,
                      dab_err_t *err)
{
    *out = NULL;
    int n = opts && opts->instances > 0 ? opts->instances : 1;
    dab_runner_t *r = dab_calloc(1, sizeof *r);
    if (!r)
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    r->g = g;
    snprintf(r->label, sizeof r->label, "%s", opts && opts->label ? opts->label : "model");
    r->max_queue = opts && opts->max_queue > 0 ? opts->max_queue : 1024;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->inst = dab_calloc((size_t)n, sizeof *r->inst);
    if (!r->inst) {
        dab_runner_destroy(r, true);
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    }
    int budget = dab_sched_budget();
    int per = DAB_MAX(1, budget / n);
    for (int i = 0; i < n; i++) {
        instance_t *inst = &r->inst[i];
        inst->r = r;
        inst->threads = per;
        dab_session_opts_t so = {.threads = per,
                                 .max_value_bytes = opts ? opts->max_value_bytes : 0};
        int rc = dab_session_create(g, &so, &inst->session, err);
        if (rc) {
            r->n_instances = i;
            dab_runner_destroy(r, true);
            return rc;
        }
        r->n_instances = i + 1;
    }
    for (int i = 0; i < n; i++) {
        if (pthread_create(&r->inst[i].thread, NULL, instance_main, &r->inst[i])) {
            dab_runner_destroy(r, true);
            return dab_err_set(err, DAB_ENOMEM, "cannot start instance threads for %s", r->label);
        }
        r->inst[i].started = true;
        char name[16];
        snprintf(name, sizeof name, "inst-%d", i);
        pthread_setname_np(r->inst[i].thread, name);
    }
    *out = r;
    return 0;
}

int dab_runner_submit(dab_runner_t *r, dab_job_t *job, dab_err_t *err)
{
    job->next = NULL;
    job->enqueue_ns = dab_now_ns();
    pthread_mutex_lock(&r->mu);
    if (r->stopping) {
        pthread_mutex_unlock(&r->mu);
        return dab_err_set(err, DAB_ECANCELED, "the model version %s is shutting down", r->label);
    }
    if (r->depth >= r->max_queue) {
        pthread_mutex_unlock(&r->mu);
        return dab_err_set(err, DAB_EBUSY, "the queue of %s is full (%d requests waiting)",
                           r->label, r->max_queue);
    }
    if (r->tail)
        r->tail->next = job;
    else
        r->head = job;
    r->tail = job;
    r->depth++;
    /* With several instances the woken thread may belong to one busy with an inline
     * run; wake them all so that an idle one takes the job. */
    if (r->n_instances > 1)
        pthread_cond_broadcast(&r->cv);
    else
        pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return 0;
}

#define INLINE_MAX_NS 1000000ull /* runs longer than 1 ms on average go to instance threads */

bool dab_runner_try_run(dab_runner_t *r, dab_job_t *job)
{
    instance_t *inst = NULL;
    pthread_mutex_lock(&r->mu);
    /* Only quick models run inline: a long run would stall the other connections that
     * the calling HTTP thread serves. */
    if (!r->stopping && !r->head && r->recent_compute_ns < INLINE_MAX_NS)
        for (int i = 0; i < r->n_instances && !inst; i++)
            if (!r->inst[i].busy && budget_try_take(r->inst[i].threads))
                inst = &r->inst[i];
    if (inst) {
        inst->busy = true;
        r->stats.in_flight++;
    }
    pthread_mutex_unlock(&r->mu);
    if (!inst)
        return false;
    job->next = NULL;
    job->enqueue_ns = dab_now_ns();
    execute(inst, job, true);
    budget_give(inst->threads);
    pthread_mutex_lock(&r->mu);
    inst->busy = false;
    r->stats.in_flight--;
    /* Wake the instance threads only when there is something for them: waking them on
     * every inline run costs a futex round trip per request. */
    if (r->head || r->sync_waiting)
        pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return true;
}

int dab_runner_each_session(dab_runner_t *r,
                            int (*fn)(void *user, dab_session_t *s, dab_err_t *err), void *user,
                            dab_err_t *err)
{
    for (int i = 0; i < r->n_instances; i++) {
        instance_t *inst = &r->inst[i];
        /* Wait for the instance to be free, then hold it: its thread leaves it alone. */
        pthread_mutex_lock(&r->mu);
        r->sync_waiting++;
        while (inst->busy)
            pthread_cond_wait(&r->cv, &r->mu);
        r->sync_waiting--;
        inst->busy = true;
        pthread_mutex_unlock(&r->mu);
        budget_take(inst->threads);
        int rc = fn(user, inst->session, err);
        budget_give(inst->threads);
        pthread_mutex_lock(&r->mu);
        inst->busy = false;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        if (rc)
            return rc;
    }
    return 0;
}

void dab_runner_cancel_queued(dab_runner_t *r)
{
    pthread_mutex_lock(&r->mu);
    dab_job_t *j = r->head;
    r->head = r->tail = NULL;
    r->depth = 0;
    pthread_mutex_unlock(&r->mu);
    for (dab_job_t *next; j; j = next) {
        next = j->next;
        dab_err_t err;
        dab_err_set(&err, DAB_ECANCELED, "the server is shutting down");
        j->done(j, DAB_ECANCELED, &err, NULL);
    }
}

void dab_runner_stats(dab_runner_t *r, dab_runner_stats_t *out)
{
    pthread_mutex_lock(&r->mu);
    *out = r->stats;
    out->queue_depth = r->depth;
    pthread_mutex_unlock(&r->mu);
}

void dab_runner_destroy(dab_runner_t *r, bool cancel_queued)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    r->cancel = cancel_queued;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    for (int i = 0; r->inst && i < r->n_instances; i++)
        if (r->inst[i].started)
            pthread_join(r->inst[i].thread, NULL);
    /* Jobs still queued when no thread ever started are failed here. */
    for (dab_job_t *j = r->head, *next; j; j = next) {
        next = j->next;
        dab_err_t err;
        dab_err_set(&err, DAB_ECANCELED, "the model version %s is shutting down", r->label);
        j->done(j, DAB_ECANCELED, &err, NULL);
    }
    for (int i = 0; r->inst && i < r->n_instances; i++)
        dab_session_free(r->inst[i].session);
    dab_free(r->inst);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    dab_free(r);
}
