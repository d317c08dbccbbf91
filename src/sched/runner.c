/*
 * runner.c - instance threads over a model version's priority queues, the
 * batches they run, and the process-wide compute budget they share.
 *
 * Locks: runner->mu guards the queues, the stop flag, statistics, the order
 * list and each instance's busy flag. g_budget_mu guards the free compute
 * tokens. An instance takes its intra-op thread count in tokens before
 * running, so the cores are never oversubscribed however many models and
 * instances are loaded. Callbacks (done, release, on_batch) run without any
 * lock held.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sched_int.h"

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

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* pthread_cond_timedwait until a dab_now_ns() time (CLOCK_MONOTONIC, as the condvars). */
static void wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t at_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(at_ns / 1000000000u),
                          .tv_nsec = (long)(at_ns % 1000000000u)};
    pthread_cond_timedwait(cv, mu, &ts);
}

static void cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

/* ---- finishing jobs ---- */

/* Releases finished jobs at the head of the submission order, one thread at a time.
 * Called with r->mu held; returns with it held. */
static void release_in_order(dab_runner_t *r)
{
    if (r->releasing)
        return; /* the thread releasing now will reach our job */
    r->releasing = true;
    while (r->order_head && r->order_head->state == DAB_JOB_FINISHED) {
        dab_job_t *j = r->order_head;
        r->order_head = j->order_next;
        if (!r->order_head)
            r->order_tail = NULL;
        pthread_mutex_unlock(&r->mu);
        if (j->release)
            j->release(j); /* may free j */
        pthread_mutex_lock(&r->mu);
    }
    r->releasing = false;
}

/* Adds a finished job to the statistics (with r->mu held). */
static void count_job(dab_runner_t *r, const dab_job_t *job, int rc)
{
    r->stats.queue_count++;
    r->stats.queue_ns += job->queue_ns;
    if (rc == 0) {
        r->stats.success_count++;
        r->stats.success_ns += job->queue_ns + job->compute_ns;
        r->stats.compute_count++;
        r->stats.compute_ns += job->compute_ns;
    } else {
        r->stats.fail_count++;
        r->stats.fail_ns += job->queue_ns + job->compute_ns;
    }
}

/* Gives job (already counted) its answer: done, then release (now, or in order). */
static void finish(dab_runner_t *r, dab_job_t *job, int rc, const dab_err_t *err,
                   const dab_tensor_t *const *outputs)
{
    job->done(job, rc, rc ? err : NULL, rc ? NULL : outputs);
    if (!r->b.preserve_ordering) {
        if (job->release)
            job->release(job);
        return;
    }
    pthread_mutex_lock(&r->mu);
    job->state = DAB_JOB_FINISHED;
    release_in_order(r);
    pthread_mutex_unlock(&r->mu);
}

static void fail_chain(dab_runner_t *r, dab_job_t *chain, int code, const char *why)
{
    if (!chain)
        return;
    uint64_t now = dab_now_ns();
    pthread_mutex_lock(&r->mu);
    for (dab_job_t *j = chain; j; j = j->next) {
        j->queue_ns = now - j->enqueue_ns;
        j->compute_ns = 0;
        j->batch_rows = 0;
        count_job(r, j, code);
    }
    pthread_mutex_unlock(&r->mu);
    for (dab_job_t *j = chain, *next; j; j = next) {
        next = j->next;
        dab_err_t err;
        if (code == DAB_ETIMEDOUT)
            dab_err_set(&err, code, "the request timed out after waiting %.3f ms in the queue of %s",
                        j->queue_ns / 1e6, r->label);
        else
            dab_err_set(&err, code, "%s", why);
        finish(r, j, code, &err, NULL);
    }
}

/* ---- running a batch ---- */

/* Concatenates the jobs' inputs along dimension 0 into the instance's staging tensors. */
static int stage_inputs(instance_t *inst, dab_job_t **jobs, int n, int64_t rows, dab_err_t *err)
{
    const dab_graph_t *g = inst->r->g;
    for (int i = 0; i < g->n_inputs; i++) {
        const dab_tensor_t *t0 = jobs[0]->inputs[i];
        size_t row_bytes = jobs[0]->rows ? dab_tensor_bytes(t0) / (size_t)jobs[0]->rows : 0;
        size_t total = row_bytes * (size_t)rows;
        if (total > inst->stage_cap[i]) {
            /* grows to the largest batch seen, then steady state allocates nothing */
            void *p = dab_malloc(total);
            if (!p)
                return dab_err_set(err, DAB_ENOMEM, "out of memory staging a batch of %lld rows",
                                   (long long)rows);
            dab_free(inst->stage[i].data);
            inst->stage[i].data = p;
            inst->stage_cap[i] = total;
        }
        dab_tensor_set_shape(&inst->stage[i], t0->dtype, t0->rank, t0->dims);
        inst->stage[i].dims[0] = rows;
        char *dst = inst->stage[i].data;
        for (int k = 0; k < n; k++) {
            size_t bytes = row_bytes * (size_t)jobs[k]->rows;
            if (bytes)
                memcpy(dst, jobs[k]->inputs[i]->data, bytes);
            dst += bytes;
        }
        inst->feed[i] = &inst->stage[i];
    }
    return 0;
}

/* Checks that every output has the batch's rows first, so it can be split. */
static int check_split(const dab_runner_t *r, const dab_tensor_t *const *outs, int64_t rows,
                       dab_err_t *err)
{
    const dab_graph_t *g = r->g;
    for (int o = 0; o < g->n_outputs; o++)
        if (outs[o]->rank < 1 || outs[o]->dims[0] != rows)
            return dab_err_set(err, DAB_ESHAPE,
                               "output '%s' of %s has %lld rows for a batch of %lld; the model "
                               "does not batch along the first dimension (set max_batch_size "
                               "to 0 in its config)",
                               g->values[g->outputs[o]].name, r->label,
                               (long long)(outs[o]->rank ? outs[o]->dims[0] : 0), (long long)rows);
    return 0;
}

/* Points the instance's views at job rows [first, first + count) of the outputs. */
static void make_views(instance_t *inst, const dab_tensor_t *const *outs, int64_t rows,
                       int64_t first, int64_t count)
{
    for (int o = 0; o < inst->r->g->n_outputs; o++) {
        const dab_tensor_t *t = outs[o];
        size_t row_bytes = rows ? dab_tensor_bytes(t) / (size_t)rows : 0;
        dab_tensor_t *v = &inst->views[o];
        *v = *t;
        v->dims[0] = count;
        v->data = (char *)t->data + row_bytes * (size_t)first;
        inst->view_ptrs[o] = v;
    }
}

/* Drops the jobs whose owner no longer wants them (a client gone while they waited) and
 * closes the gaps; returns how many remain. */
static int drop_unwanted(dab_runner_t *r, dab_job_t **jobs, int n)
{
    int kept = 0;
    for (int k = 0; k < n; k++) {
        dab_job_t *j = jobs[k];
        if (j->wanted && !j->wanted(j)) {
            j->next = NULL;
            fail_chain(r, j, DAB_ECANCELED,
                       "the client closed the connection while the request was queued");
        } else {
            jobs[kept++] = j;
        }
    }
    return kept;
}

/* Runs jobs[0..n) (already unlinked) as one batch on inst, whose session the caller
 * holds; with budget_held the caller has taken the instance's compute tokens. */
static void run_batch(instance_t *inst, dab_job_t **jobs, int n, bool budget_held)
{
    dab_runner_t *r = inst->r;
    const dab_graph_t *g = r->g;
    dab_err_t err = {0};
    const dab_tensor_t *outs[256];
    int rc = 0;
    int64_t rows = 0;
    for (int k = 0; k < n; k++)
        rows += jobs[k]->rows;
    uint64_t start = dab_now_ns();
    for (int k = 0; k < n; k++)
        jobs[k]->queue_ns = jobs[k]->enqueue_ns ? start - jobs[k]->enqueue_ns : 0;
    if (g->n_outputs > 256)
        rc = dab_err_set(&err, DAB_ELIMIT, "the model has more than 256 outputs");
    const dab_tensor_t *const *feed = jobs[0]->inputs;
    if (!rc && n > 1 && !(rc = stage_inputs(inst, jobs, n, rows, &err)))
        feed = inst->feed;
    if (!rc) {
        if (!budget_held)
            budget_take(inst->threads);
        rc = dab_session_run(inst->session, feed, outs, &err);
        if (!budget_held)
            budget_give(inst->threads);
    }
    if (!rc && n > 1)
        rc = check_split(r, outs, rows, &err);
    uint64_t compute = dab_now_ns() - start;
    pthread_mutex_lock(&r->mu);
    for (int k = 0; k < n; k++) {
        jobs[k]->compute_ns = compute;
        jobs[k]->batch_rows = (int)rows;
        count_job(r, jobs[k], rc);
    }
    if (rc == 0) {
        r->stats.execution_count++;
        r->stats.inference_count += r->b.max_batch_size > 0 ? (uint64_t)rows : (uint64_t)n;
        r->stats.last_inference_ms = wall_ms();
        r->recent_compute_ns = r->stats.execution_count == 1
                                   ? compute
                                   : (r->recent_compute_ns * 7 + compute) / 8;
        if (r->batch_stats && rows >= 0 && rows <= r->b.max_batch_size) {
            r->batch_stats[rows].count++;
            r->batch_stats[rows].compute_ns += compute;
        }
    }
    pthread_mutex_unlock(&r->mu);
    if (rc == 0 && r->on_batch)
        r->on_batch(r->observer, (int)rows, n, compute);
    int64_t first = 0;
    for (int k = 0; k < n; k++) {
        dab_job_t *j = jobs[k];
        int64_t jr = j->rows;
        const dab_tensor_t *const *mine = outs;
        if (rc == 0 && n > 1) {
            make_views(inst, outs, rows, first, jr);
            mine = inst->view_ptrs;
        }
        first += jr;
        finish(r, j, rc, &err, rc ? NULL : mine);
    }
}

/* ---- threads ---- */

static void *instance_main(void *arg)
{
    instance_t *inst = arg;
    dab_runner_t *r = inst->r;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        if (r->stopping && (!r->depth || r->cancel))
            break;
        if (inst->busy || !r->depth) {
            pthread_cond_wait(&r->cv, &r->mu);
            continue;
        }
        uint64_t now = dab_now_ns(), wake_at;
        dab_job_t *expired = NULL;
        if (r->has_timeouts)
            dab_queue_expire(r, now, &expired);
        int n = dab_queue_pick(r, now, inst->batch, &wake_at);
        if (n == 0 && !expired) {
            if (wake_at)
                wait_until(&r->cv, &r->mu, wake_at);
            else
                pthread_cond_wait(&r->cv, &r->mu);
            continue;
        }
        /* busy before the lock is dropped: a warm-up must not take the session now */
        inst->busy = true;
        r->stats.in_flight += n;
        pthread_mutex_unlock(&r->mu);
        fail_chain(r, expired, DAB_ETIMEDOUT, NULL);
        int run = n ? drop_unwanted(r, inst->batch, n) : 0;
        if (run)
            run_batch(inst, inst->batch, run, false);
        pthread_mutex_lock(&r->mu);
        inst->busy = false;
        r->stats.in_flight -= n;
        if (r->sync_waiting)
            pthread_cond_broadcast(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* Fails or delays jobs whose timeout passes while every instance is busy. */
static void *reaper_main(void *arg)
{
    dab_runner_t *r = arg;
    pthread_mutex_lock(&r->mu);
    while (!r->stopping) {
        dab_job_t *expired = NULL;
        uint64_t next = dab_queue_expire(r, dab_now_ns(), &expired);
        if (expired) {
            pthread_mutex_unlock(&r->mu);
            fail_chain(r, expired, DAB_ETIMEDOUT, NULL);
            pthread_mutex_lock(&r->mu);
            continue;
        }
        r->reap_at = next;
        if (next)
            wait_until(&r->reap_cv, &r->mu, next);
        else
            pthread_cond_wait(&r->reap_cv, &r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ---- configuration ---- */

static int copy_batching(dab_runner_t *r, const dab_batching_t *b, dab_err_t *err)
{
    r->b = *b;
    r->b.level_policies = NULL;
    if (r->b.max_batch_size < 0)
        r->b.max_batch_size = 0;
    if (r->b.max_batch_size == 0)
        r->b.dynamic = false;
    if (r->b.n_preferred < 0 || r->b.n_preferred > DAB_SCHED_MAX_PREFERRED)
        r->b.n_preferred = 0;
    if (r->b.priority_levels < 0 || r->b.priority_levels > DAB_SCHED_MAX_LEVELS)
        return dab_err_set(err, DAB_EINVAL, "%s: priority_levels must be 0 to %d", r->label,
                           DAB_SCHED_MAX_LEVELS);
    r->n_levels = r->b.priority_levels > 0 ? r->b.priority_levels : 1;
    if (r->b.priority_levels == 0)
        r->b.default_priority = 1;
    else if (r->b.default_priority < 1 || r->b.default_priority > r->b.priority_levels)
        r->b.default_priority = r->b.priority_levels; /* unmarked requests go last */
    r->levels = dab_calloc((size_t)r->n_levels, sizeof *r->levels);
    if (!r->levels)
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    for (int l = 0; l < r->n_levels; l++) {
        const dab_queue_policy_t *p =
            b->level_policies && b->priority_levels > 0 ? &b->level_policies[l] : &b->default_policy;
        r->levels[l].policy = *p;
        if (p->default_timeout_us > 0 || p->allow_timeout_override)
            r->has_timeouts = true;
    }
    r->max_jobs = r->b.dynamic ? r->b.max_batch_size : 1;
    if (r->b.max_batch_size > 0) {
        r->batch_stats = dab_calloc((size_t)r->b.max_batch_size + 1, sizeof *r->batch_stats);
        if (!r->batch_stats)
            return dab_err_set(err, DAB_ENOMEM, "out of memory");
    } else {
        /* a model that does not batch runs batches of 1 */
        r->batch_stats = dab_calloc(2, sizeof *r->batch_stats);
        if (!r->batch_stats)
            return dab_err_set(err, DAB_ENOMEM, "out of memory");
    }
    return 0;
}

static int instance_init(dab_runner_t *r, instance_t *inst, int threads, size_t max_value_bytes,
                         dab_err_t *err)
{
    const dab_graph_t *g = r->g;
    inst->r = r;
    inst->threads = threads;
    inst->batch = dab_calloc((size_t)r->max_jobs, sizeof *inst->batch);
    if (!inst->batch)
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    if (r->b.dynamic) {
        size_t ni = (size_t)DAB_MAX(g->n_inputs, 1), no = (size_t)DAB_MAX(g->n_outputs, 1);
        inst->stage = dab_calloc(ni, sizeof *inst->stage);
        inst->stage_cap = dab_calloc(ni, sizeof *inst->stage_cap);
        inst->feed = dab_calloc(ni, sizeof *inst->feed);
        inst->views = dab_calloc(no, sizeof *inst->views);
        inst->view_ptrs = dab_calloc(no, sizeof *inst->view_ptrs);
        if (!inst->stage || !inst->stage_cap || !inst->feed || !inst->views || !inst->view_ptrs)
            return dab_err_set(err, DAB_ENOMEM, "out of memory");
    }
    dab_session_opts_t so = {.threads = threads, .max_value_bytes = max_value_bytes};
    return dab_session_create(g, &so, &inst->session, err);
}

static void instance_free(const dab_runner_t *r, instance_t *inst)
{
    dab_session_free(inst->session);
    for (int i = 0; inst->stage && i < r->g->n_inputs; i++)
        dab_free(inst->stage[i].data);
    dab_free(inst->stage);
    dab_free(inst->stage_cap);
    dab_free(inst->feed);
    dab_free(inst->views);
    dab_free(inst->view_ptrs);
    dab_free(inst->batch);
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
    cond_init_monotonic(&r->cv);
    cond_init_monotonic(&r->reap_cv);
    if (opts) {
        r->on_batch = opts->on_batch;
        r->observer = opts->observer;
    }
    dab_batching_t none = {0};
    int rc = copy_batching(r, opts ? &opts->batching : &none, err);
    if (!rc && !(r->inst = dab_calloc((size_t)n, sizeof *r->inst)))
        rc = dab_err_set(err, DAB_ENOMEM, "out of memory");
    if (rc) {
        dab_runner_destroy(r, true);
        return rc;
    }
    int per = DAB_MAX(1, dab_sched_budget() / n);
    for (int i = 0; i < n; i++) {
        r->n_instances = i + 1;
        if ((rc = instance_init(r, &r->inst[i], per, opts ? opts->max_value_bytes : 0, err))) {
            dab_runner_destroy(r, true);
            return rc;
        }
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
    if (r->has_timeouts) {
        if (pthread_create(&r->reaper, NULL, reaper_main, r)) {
            dab_runner_destroy(r, true);
            return dab_err_set(err, DAB_ENOMEM, "cannot start the queue timer of %s", r->label);
        }
        r->reaper_started = true;
        pthread_setname_np(r->reaper, "queue-timer");
    }
    *out = r;
    return 0;
}

/* ---- submitting ---- */

/* Checks job against the model's batching and fills its rows, level and deadline. */
static int admit(dab_runner_t *r, dab_job_t *job, dab_err_t *err)
{
    const dab_graph_t *g = r->g;
    job->rows = 1;
    job->solo = false;
    job->delayed = false;
    if (r->b.max_batch_size > 0 && g->n_inputs > 0) {
        for (int i = 0; i < g->n_inputs; i++) {
            const dab_tensor_t *t = job->inputs[i];
            if (t->rank < 1)
                return dab_err_set(err, DAB_EINVAL,
                                   "input '%s' is a scalar; %s batches along the first dimension",
                                   g->values[g->inputs[i]].name, r->label);
            if (t->dims[0] != job->inputs[0]->dims[0])
                job->solo = true; /* inputs disagree on rows: run it alone, unsplit */
        }
        job->rows = job->inputs[0]->dims[0];
        if (job->rows > r->b.max_batch_size)
            return dab_err_set(err, DAB_EINVAL,
                               "the request has a batch of %lld; %s takes at most %d "
                               "(max_batch_size)",
                               (long long)job->rows, r->label, r->b.max_batch_size);
        if (job->rows == 0)
            job->solo = true;
    }
    int prio = job->priority ? job->priority : r->b.default_priority;
    if (r->b.priority_levels == 0)
        prio = 1; /* a model without levels serves every request at one level */
    else if (prio < 1 || prio > r->b.priority_levels)
        return dab_err_set(err, DAB_EINVAL,
                           "priority %d is out of range: %s has priority levels 1 to %d",
                           job->priority, r->label, r->b.priority_levels);
    job->level = prio - 1;
    const dab_queue_policy_t *p = &r->levels[job->level].policy;
    int64_t timeout_us = p->default_timeout_us;
    if (job->timeout_us > 0 && p->allow_timeout_override &&
        (!timeout_us || job->timeout_us < timeout_us))
        timeout_us = job->timeout_us;
    /* a request's own timeout may be any int64: beyond ~292 years it means none */
    if (timeout_us > INT64_MAX / 1000)
        timeout_us = 0;
    job->enqueue_ns = dab_now_ns();
    job->deadline_ns = timeout_us > 0 ? job->enqueue_ns + (uint64_t)timeout_us * 1000u : 0;
    job->order_next = NULL;
    job->queue_ns = job->compute_ns = 0;
    job->batch_rows = 0;
    return 0;
}

static void order_append(dab_runner_t *r, dab_job_t *job)
{
    if (!r->b.preserve_ordering)
        return;
    if (r->order_tail)
        r->order_tail->order_next = job;
    else
        r->order_head = job;
    r->order_tail = job;
}

int dab_runner_submit(dab_runner_t *r, dab_job_t *job, dab_err_t *err)
{
    int rc = admit(r, job, err);
    if (rc)
        return rc;
    pthread_mutex_lock(&r->mu);
    level_t *lv = &r->levels[job->level];
    if (r->stopping)
        rc = dab_err_set(err, DAB_ECANCELED, "the model version %s is shutting down", r->label);
    else if (r->depth >= r->max_queue)
        rc = dab_err_set(err, DAB_EBUSY, "the queue of %s is full (%d requests waiting)",
                         r->label, r->depth);
    else if (lv->policy.max_queue_size > 0 && lv->depth >= lv->policy.max_queue_size)
        rc = dab_err_set(err, DAB_EBUSY,
                         "the queue of %s is full at priority level %d (%d requests waiting)",
                         r->label, job->level + 1, lv->depth);
    if (rc) {
        pthread_mutex_unlock(&r->mu);
        return rc;
    }
    dab_queue_push(r, job);
    order_append(r, job);
    /* With several instances the woken thread may be one busy with an inline run; wake
     * them all so that an idle one takes the job. */
    if (r->n_instances > 1)
        pthread_cond_broadcast(&r->cv);
    else
        pthread_cond_signal(&r->cv);
    if (job->deadline_ns && (!r->reap_at || job->deadline_ns < r->reap_at))
        pthread_cond_signal(&r->reap_cv);
    pthread_mutex_unlock(&r->mu);
    return 0;
}

#define INLINE_MAX_NS 1000000ull /* runs longer than 1 ms on average go to instance threads */
/* While the server holds other requests, only runs under 0.1 ms stay inline: a longer one
 * would hold back the calling HTTP thread's other connections (cache hits, quick models). */
#define INLINE_BUSY_MAX_NS 100000ull

bool dab_runner_try_run(dab_runner_t *r, dab_job_t *job, int others)
{
    dab_err_t err;
    instance_t *inst = NULL;
    pthread_mutex_lock(&r->mu);
    /* Only quick models run inline: a long run would stall the other connections that
     * the calling HTTP thread serves. A batching delay means the user wants waiting. A
     * batching model runs inline only when the caller holds no other request: under
     * load, a thread busy with an inline run holds back its connections' requests, which
     * would have joined the next batch, and batches of one or two would be all that ever
     * form. */
    if (!r->stopping && !r->depth &&
        r->recent_compute_ns < (others > 0 ? INLINE_BUSY_MAX_NS : INLINE_MAX_NS) &&
        !(r->b.dynamic && (r->b.max_queue_delay_us > 0 || others > 0)) &&
        !(r->b.preserve_ordering && r->order_head) && admit(r, job, &err) == 0)
        for (int i = 0; i < r->n_instances && !inst; i++)
            if (!r->inst[i].busy && budget_try_take(r->inst[i].threads))
                inst = &r->inst[i];
    if (inst) {
        inst->busy = true;
        r->stats.in_flight++;
        job->state = DAB_JOB_RUNNING;
        order_append(r, job);
    }
    pthread_mutex_unlock(&r->mu);
    if (!inst)
        return false;
    dab_job_t *batch[1] = {job};
    run_batch(inst, batch, 1, true);
    budget_give(inst->threads);
    pthread_mutex_lock(&r->mu);
    inst->busy = false;
    r->stats.in_flight--;
    /* Wake the instance threads only when there is something for them: waking them on
     * every inline run costs a futex round trip per request. */
    if (r->depth || r->sync_waiting)
        pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return true;
}

bool dab_runner_cancel(dab_runner_t *r, dab_job_t *job, const char *why)
{
    pthread_mutex_lock(&r->mu);
    bool queued = job->state == DAB_JOB_QUEUED;
    if (queued)
        dab_queue_unlink(r, job);
    pthread_mutex_unlock(&r->mu);
    if (queued) {
        job->next = NULL;
        fail_chain(r, job, DAB_ECANCELED, why);
    }
    return queued;
}

/* Unlinks every queued job into a chain (with r->mu held). */
static dab_job_t *take_all(dab_runner_t *r)
{
    dab_job_t *chain = NULL, **tail = &chain;
    for (int l = 0; l < r->n_levels; l++) {
        for (int pass = 0; pass < 2; pass++) {
            job_list_t *list = pass ? &r->levels[l].delayed : &r->levels[l].live;
            while (list->head) {
                dab_job_t *j = list->head;
                dab_queue_unlink(r, j);
                *tail = j;
                tail = &j->next;
            }
        }
    }
    *tail = NULL;
    return chain;
}

void dab_runner_cancel_queued(dab_runner_t *r)
{
    pthread_mutex_lock(&r->mu);
    dab_job_t *chain = take_all(r);
    pthread_mutex_unlock(&r->mu);
    fail_chain(r, chain, DAB_ECANCELED, "the server is shutting down");
}

/* ---- inspection ---- */

void dab_runner_stats(dab_runner_t *r, dab_runner_stats_t *out)
{
    pthread_mutex_lock(&r->mu);
    *out = r->stats;
    out->queue_depth = r->depth;
    pthread_mutex_unlock(&r->mu);
}

void *dab_runner_observer(const dab_runner_t *r)
{
    return r ? r->observer : NULL;
}

int dab_runner_batch_stats(dab_runner_t *r, dab_batch_stat_t *out, int max)
{
    int n = 0;
    pthread_mutex_lock(&r->mu);
    int top = r->b.max_batch_size > 0 ? r->b.max_batch_size : 1;
    for (int rows = 0; rows <= top; rows++) {
        if (!r->batch_stats[rows].count)
            continue;
        if (n < max) {
            out[n] = r->batch_stats[rows];
            out[n].batch_size = rows;
        }
        n++;
    }
    pthread_mutex_unlock(&r->mu);
    return n;
}

int dab_runner_queue_depths(dab_runner_t *r, int *depths, int max)
{
    pthread_mutex_lock(&r->mu);
    for (int l = 0; l < r->n_levels && l < max; l++)
        depths[l] = r->levels[l].depth;
    int n = r->n_levels;
    pthread_mutex_unlock(&r->mu);
    return n;
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

void dab_runner_destroy(dab_runner_t *r, bool cancel_queued)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    r->cancel = cancel_queued;
    pthread_cond_broadcast(&r->cv);
    pthread_cond_broadcast(&r->reap_cv);
    pthread_mutex_unlock(&r->mu);
    for (int i = 0; r->inst && i < r->n_instances; i++)
        if (r->inst[i].started)
            pthread_join(r->inst[i].thread, NULL);
    if (r->reaper_started)
        pthread_join(r->reaper, NULL);
    /* Jobs still queued (cancelled, or no thread ever started) are failed here. */
    pthread_mutex_lock(&r->mu);
    dab_job_t *chain = r->levels ? take_all(r) : NULL;
    pthread_mutex_unlock(&r->mu);
    fail_chain(r, chain, DAB_ECANCELED, "the model version is shutting down");
    for (int i = 0; r->inst && i < r->n_instances; i++)
        instance_free(r, &r->inst[i]);
    dab_free(r->inst);
    dab_free(r->levels);
    dab_free(r->batch_stats);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    pthread_cond_destroy(&r->reap_cv);
    dab_free(r);
}
