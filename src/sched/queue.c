/*
 * queue.c - the dynamic batcher's queues: one per priority level, each a list
 * of live jobs followed by a list of jobs that timed out under a DELAY policy.
 * Priority order is level 1 live, level 1 delayed, level 2 live, ... so a
 * delayed job waits behind every live job of its own and higher levels.
 *
 * Every function here runs with the runner's lock held.
 */
#include <string.h>

#include "sched_int.h"

/* Jobs examined per pick at most: a long queue of incompatible shapes costs bounded time. */
#define SCAN_MAX 4096

static void list_append(job_list_t *l, dab_job_t *job)
{
    job->next = NULL;
    job->prev = l->tail;
    if (l->tail)
        l->tail->next = job;
    else
        l->head = job;
    l->tail = job;
}

static void list_remove(job_list_t *l, dab_job_t *job)
{
    if (job->prev)
        job->prev->next = job->next;
    else
        l->head = job->next;
    if (job->next)
        job->next->prev = job->prev;
    else
        l->tail = job->prev;
    job->prev = job->next = NULL;
}

void dab_queue_push(dab_runner_t *r, dab_job_t *job)
{
    level_t *lv = &r->levels[job->level];
    list_append(&lv->live, job);
    lv->depth++;
    r->depth++;
    job->state = DAB_JOB_QUEUED;
}

void dab_queue_unlink(dab_runner_t *r, dab_job_t *job)
{
    level_t *lv = &r->levels[job->level];
    list_remove(job->delayed ? &lv->delayed : &lv->live, job);
    lv->depth--;
    r->depth--;
    job->state = DAB_JOB_RUNNING;
}

uint64_t dab_queue_expire(dab_runner_t *r, uint64_t now, dab_job_t **expired)
{
    uint64_t next = 0;
    for (int l = 0; l < r->n_levels; l++) {
        level_t *lv = &r->levels[l];
        for (dab_job_t *j = lv->live.head, *nx; j; j = nx) {
            nx = j->next;
            if (!j->deadline_ns)
                continue;
            if (now < j->deadline_ns) {
                if (!next || j->deadline_ns < next)
                    next = j->deadline_ns;
                continue;
            }
            list_remove(&lv->live, j);
            if (lv->policy.delay_on_timeout) {
                j->delayed = true;
                list_append(&lv->delayed, j);
            } else {
                lv->depth--;
                r->depth--;
                j->state = DAB_JOB_RUNNING;
                j->next = *expired;
                *expired = j;
            }
        }
    }
    return next;
}

/* Jobs can share a batch when every input agrees in dtype, rank and all dims after the
 * first. */
static bool compatible(const dab_runner_t *r, const dab_job_t *a, const dab_job_t *b)
{
    for (int i = 0; i < r->g->n_inputs; i++) {
        const dab_tensor_t *x = a->inputs[i], *y = b->inputs[i];
        if (x->dtype != y->dtype || x->rank != y->rank)
            return false;
        for (int d = 1; d < x->rank; d++)
            if (x->dims[d] != y->dims[d])
                return false;
    }
    return true;
}

static bool is_preferred(const dab_batching_t *b, int64_t rows)
{
    for (int i = 0; i < b->n_preferred; i++)
        if (b->preferred[i] == rows)
            return true;
    return false;
}

int dab_queue_pick(dab_runner_t *r, uint64_t now, dab_job_t **out, uint64_t *wake_at)
{
    const dab_batching_t *b = &r->b;
    *wake_at = 0;
    int n = 0, cut_pref = 0, cut_pow2 = 0, scanned = 0;
    int64_t rows = 0;
    bool full = false;
    for (int l = 0; l < r->n_levels && !full && scanned < SCAN_MAX; l++) {
        for (int pass = 0; pass < 2 && !full; pass++) {
            job_list_t *list = pass ? &r->levels[l].delayed : &r->levels[l].live;
            for (dab_job_t *j = list->head; j && scanned < SCAN_MAX; j = j->next, scanned++) {
                if (n == 0) {
                    out[n++] = j;
                    rows = j->rows;
                    if (!b->dynamic || j->solo) {
                        full = true;
                        break;
                    }
                } else if (!j->solo && rows + j->rows <= b->max_batch_size &&
                           compatible(r, out[0], j)) {
                    out[n++] = j;
                    rows += j->rows;
                } else {
                    continue;
                }
                if (is_preferred(b, rows))
                    cut_pref = n;
                if ((rows & (rows - 1)) == 0)
                    cut_pow2 = n;
                if (rows >= b->max_batch_size || n >= r->max_jobs) {
                    full = true;
                    break;
                }
            }
        }
    }
    if (n == 0)
        return 0;
    if (!full) {
        /* Not full: cut at the largest preferred size reached, else wait for the oldest
         * job's delay to pass (a stopping runner does not wait). */
        uint64_t due = out[0]->enqueue_ns + (uint64_t)b->max_queue_delay_us * 1000u;
        if (cut_pref)
            n = cut_pref;
        else if (now < due && !r->stopping) {
            *wake_at = due;
            return 0;
        } else if (b->n_preferred == 0 && cut_pow2)
            /* Without preferred sizes, a batch that is not full is cut at a power of two
             * (the rest follows at once): kernels are planned per batch size, and a
             * handful of sizes stays planned where every size from 1 to the maximum
             * would be planned again and again. */
            n = cut_pow2;
    }
    for (int i = 0; i < n; i++)
        dab_queue_unlink(r, out[i]);
    return n;
}
