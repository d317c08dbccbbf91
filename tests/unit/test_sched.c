/*
 * test_sched.c - the scheduler: batched answers equal solo answers, shapes that
 * differ are never mixed, preserve_ordering, priorities, timeouts (REJECT and
 * DELAY), queue limits, cancellation, preferred sizes and the queue delay, and
 * a concurrent burst in which every job is answered exactly once.
 *
 * An instance is held busy deterministically by a "gate" job whose done
 * callback blocks until the test opens the gate; jobs queued meanwhile are
 * batched when it returns.
 */
#include <pthread.h>
#include <unistd.h>

#include "onnx/onnx.h"
#include "sched/sched.h"
#include "test.h"

#define MODELS "tests/data/models/"
#define MAX_ROWS 16

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static bool g_gate_open;
static int g_seq; /* order of callbacks, guarded by g_mu */

typedef struct tjob {
    dab_job_t job;
    dab_tensor_t x;
    const dab_tensor_t *in[1];
    float xdata[MAX_ROWS * 8];
    float out[MAX_ROWS * 8];
    int64_t out_rows;
    int rc;
    int done_calls, release_calls;
    int done_seq, release_seq;
    bool gate; /* done blocks until the gate opens */
} tjob_t;

static void on_done(dab_job_t *job, int rc, const dab_err_t *err, const dab_tensor_t *const *outs)
{
    tjob_t *t = job->user;
    (void)err;
    if (rc == 0) {
        t->out_rows = outs[0]->dims[0];
        size_t bytes = dab_tensor_bytes(outs[0]);
        if (bytes <= sizeof t->out)
            memcpy(t->out, outs[0]->data, bytes);
    }
    pthread_mutex_lock(&g_mu);
    t->rc = rc;
    t->done_calls++;
    t->done_seq = g_seq++;
    pthread_cond_broadcast(&g_cv);
    while (t->gate && !g_gate_open)
        pthread_cond_wait(&g_cv, &g_mu);
    pthread_mutex_unlock(&g_mu);
}

static void on_release(dab_job_t *job)
{
    tjob_t *t = job->user;
    pthread_mutex_lock(&g_mu);
    t->release_calls++;
    t->release_seq = g_seq++;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

/* A job of `rows` rows of width n, values from seed. */
static void tjob_init(tjob_t *t, int rows, int n, int seed)
{
    memset(t, 0, sizeof *t);
    for (int i = 0; i < rows * n; i++)
        t->xdata[i] = (float)((seed * 7919 + i * 104729) % 2001 - 1000) / 997.0f;
    int64_t dims[2] = {rows, n};
    dab_tensor_set_shape(&t->x, DAB_DT_FLOAT, 2, dims);
    t->x.data = t->xdata;
    t->in[0] = &t->x;
    t->job.inputs = t->in;
    t->job.done = on_done;
    t->job.release = on_release;
    t->job.user = t;
    t->rc = 1; /* not answered yet */
}

static void gate_reset(void)
{
    pthread_mutex_lock(&g_mu);
    g_gate_open = false;
    g_seq = 0;
    pthread_mutex_unlock(&g_mu);
}

static void gate_open(void)
{
    pthread_mutex_lock(&g_mu);
    g_gate_open = true;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

/* Waits (at most 10 s) until *count is non-zero; returns whether it became so. */
static bool wait_count(const int *count)
{
    uint64_t until = dab_now_ns() + 10000000000ull;
    pthread_mutex_lock(&g_mu);
    while (!*count && dab_now_ns() < until) {
        pthread_mutex_unlock(&g_mu);
        usleep(1000);
        pthread_mutex_lock(&g_mu);
    }
    bool ok = *count > 0;
    pthread_mutex_unlock(&g_mu);
    return ok;
}

static bool wait_done(tjob_t *t)
{
    return wait_count(&t->done_calls);
}

static bool wait_released(tjob_t *t)
{
    return wait_count(&t->release_calls);
}

static dab_graph_t *load(const char *path)
{
    dab_graph_t *g = NULL;
    dab_err_t e = {0};
    if (dab_onnx_load_file(path, &g, &e))
        fprintf(stderr, "load %s: %s\n", path, e.msg);
    return g;
}

static dab_runner_t *make_runner(const dab_graph_t *g, int instances, const dab_batching_t *b)
{
    dab_runner_opts_t o = {.instances = instances, .label = "test:1", .batching = *b,
                           .max_queue = 4096};
    dab_runner_t *r = NULL;
    dab_err_t e = {0};
    if (dab_runner_create(g, &o, &r, &e))
        fprintf(stderr, "runner: %s\n", e.msg);
    return r;
}

/* Loads model and starts a runner over it; false (after reporting) when either fails. */
static bool setup(const char *model, int instances, const dab_batching_t *b, dab_graph_t **g,
                  dab_runner_t **r)
{
    *r = NULL;
    *g = load(model);
    CHECK(*g != NULL);
    if (*g)
        *r = make_runner(*g, instances, b);
    CHECK(*r != NULL);
    gate_reset();
    return *r != NULL;
}

static void teardown(dab_graph_t *g, dab_runner_t *r)
{
    dab_runner_destroy(r, false);
    dab_graph_free(g);
}

static int submit(dab_runner_t *r, tjob_t *t);

/* Submits a gate job of width n and waits until the instance is held inside its done. */
static void hold_instance(dab_runner_t *r, tjob_t *gate, int n)
{
    tjob_init(gate, 1, n, 12345);
    gate->gate = true;
    CHECK_EQ_INT(submit(r, gate), 0);
    CHECK(wait_done(gate));
}

static int submit(dab_runner_t *r, tjob_t *t)
{
    dab_err_t e = {0};
    return dab_runner_submit(r, &t->job, &e);
}

/* The answer a job gets alone, from a session of its own. */
static void solo_answer(const dab_graph_t *g, tjob_t *t, float *out, int64_t *rows)
{
    dab_session_t *s = NULL;
    dab_err_t e = {0};
    const dab_tensor_t *outs[1];
    *rows = -1;
    dab_session_opts_t so = {.threads = 1};
    if (dab_session_create(g, &so, &s, &e) == 0 && dab_session_run(s, t->in, outs, &e) == 0) {
        *rows = outs[0]->dims[0];
        memcpy(out, outs[0]->data, dab_tensor_bytes(outs[0]));
    }
    dab_session_free(s);
}

/* Batched and solo runs may use different GEMM kernels (matrix-vector for one row), whose
 * sums round differently in the last bits; anything beyond that would be another
 * request's rows. Returns the largest relative difference. */
static double max_rel_diff(const float *a, const float *b, int64_t n)
{
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / (1e-6 + fabs((double)b[i]));
        if (d > worst)
            worst = d;
    }
    return worst;
}

TEST(test_batched_answers_equal_solo)
{
#ifdef __SANITIZE_THREAD__
    /* one intra-op thread per instance: libgomp's own synchronisation is invisible to
     * ThreadSanitizer, and the scheduler's is what is under test */
    dab_sched_set_budget(2);
#endif
    dab_batching_t b = {.max_batch_size = 16, .dynamic = true};
    dab_graph_t *g;
    dab_runner_t *r;
    if (!setup(MODELS "mlp.onnx", 1, &b, &g, &r)) {
        teardown(g, r);
        return;
    }
    static tjob_t gate, jobs[10];
    tjob_init(&gate, 1, 4, 99);
    gate.gate = true;
    CHECK_EQ_INT(submit(r, &gate), 0);
    CHECK(wait_done(&gate)); /* the instance is now held */
    int total = 0;
    for (int i = 0; i < 10; i++) {
        tjob_init(&jobs[i], 1 + i % 3, 4, i);
        total += 1 + i % 3;
        CHECK_EQ_INT(submit(r, &jobs[i]), 0);
    }
    gate_open();
    int batched = 0;
    for (int i = 0; i < 10; i++) {
        CHECK(wait_released(&jobs[i]));
        CHECK_EQ_INT(jobs[i].rc, 0);
        CHECK_EQ_INT(jobs[i].done_calls, 1);
        CHECK_EQ_INT(jobs[i].release_calls, 1);
        CHECK_EQ_INT(jobs[i].out_rows, 1 + i % 3);
        batched += jobs[i].job.batch_rows > jobs[i].out_rows;
        float want[MAX_ROWS * 8];
        int64_t rows;
        solo_answer(g, &jobs[i], want, &rows);
        CHECK_EQ_INT(rows, jobs[i].out_rows);
        CHECK(max_rel_diff(jobs[i].out, want, rows * 3) < 1e-5);
    }
    /* 19 rows queued, 16 per batch at most: the first batch takes jobs 0-7 (15 rows) and
     * job 9 (1 row) that still fits; job 8 (3 rows) runs next, alone */
    CHECK_EQ_INT(batched, 9);
    CHECK_EQ_INT(jobs[0].job.batch_rows, 16);
    CHECK_EQ_INT(jobs[9].job.batch_rows, 16);
    CHECK_EQ_INT(jobs[8].job.batch_rows, 3);
    CHECK(jobs[8].done_seq > jobs[9].done_seq);
    dab_runner_stats_t st;
    dab_runner_stats(r, &st);
    CHECK_EQ_INT(st.execution_count, 3);
    CHECK_EQ_INT(st.inference_count, total + 1);
    dab_batch_stat_t bs[8];
    int nb = dab_runner_batch_stats(r, bs, 8);
    CHECK_EQ_INT(nb, 3);
    CHECK_EQ_INT(bs[0].batch_size, 1);
    CHECK_EQ_INT(bs[0].count, 1);
    teardown(g, r);
}

TEST(test_shapes_not_mixed)
{
    dab_batching_t b = {.max_batch_size = 16, .dynamic = true};
    dab_graph_t *g;
    dab_runner_t *r;
    if (!setup(MODELS "row_sum.onnx", 1, &b, &g, &r)) {
        teardown(g, r);
        return;
    }
    static tjob_t gate, jobs[8];
    hold_instance(r, &gate, 3);
    for (int i = 0; i < 8; i++) {
        tjob_init(&jobs[i], 2, i % 2 ? 5 : 3, i); /* widths 3 and 5 interleaved */
        CHECK_EQ_INT(submit(r, &jobs[i]), 0);
    }
    gate_open();
    for (int i = 0; i < 8; i++) {
        CHECK(wait_released(&jobs[i]));
        CHECK_EQ_INT(jobs[i].rc, 0);
        /* four jobs of each width, two rows each: batches of 8 rows of one width */
        CHECK_EQ_INT(jobs[i].job.batch_rows, 8);
        int n = i % 2 ? 5 : 3;
        for (int row = 0; row < 2; row++) {
            float sum = 0;
            for (int k = 0; k < n; k++)
                sum += jobs[i].xdata[row * n + k];
            CHECK_NEAR(jobs[i].out[row], sum, 1e-5);
        }
    }
    /* the width-5 batch ran after the width-3 one (its head was queued second) */
    CHECK(jobs[1].done_seq > jobs[0].done_seq);
    CHECK(jobs[1].done_seq > jobs[6].done_seq);
    teardown(g, r);
}

TEST(test_preserve_ordering)
{
    dab_batching_t b = {.max_batch_size = 4, .dynamic = true, .preserve_ordering = true};
    dab_graph_t *g;
    dab_runner_t *r;
    if (!setup(MODELS "mlp.onnx", 2, &b, &g, &r)) {
        teardown(g, r);
        return;
    }
    static tjob_t first, second, third;
    tjob_init(&first, 1, 4, 1);
    first.gate = true;
    tjob_init(&second, 1, 4, 2);
    tjob_init(&third, 2, 4, 3);
    CHECK_EQ_INT(submit(r, &first), 0);
    CHECK(wait_done(&first)); /* instance 1 held inside first's done */
    CHECK_EQ_INT(submit(r, &second), 0);
    CHECK(wait_done(&second)); /* instance 2 answered it ... */
    CHECK_EQ_INT(submit(r, &third), 0);
    CHECK(wait_done(&third));
    usleep(20000);
    pthread_mutex_lock(&g_mu);
    /* ... but neither is released before the first */
    CHECK_EQ_INT(second.release_calls, 0);
    CHECK_EQ_INT(third.release_calls, 0);
    pthread_mutex_unlock(&g_mu);
    gate_open();
    CHECK(wait_released(&third));
    CHECK(first.release_seq < second.release_seq);
    CHECK(second.release_seq < third.release_seq);
    CHECK_EQ_INT(second.rc, 0);
    CHECK_EQ_INT(third.rc, 0);
    teardown(g, r);
}

TEST(test_priorities)
{
    /* one row per batch, so the run order shows the pick order */
    dab_batching_t b = {.max_batch_size = 1, .dynamic = true, .priority_levels = 3,
                        .default_priority = 3};
    dab_graph_t *g;
    dab_runner_t *r;
    if (!setup(MODELS "mlp.onnx", 1, &b, &g, &r)) {
        teardown(g, r);
        return;
    }
    static tjob_t gate, low[3], mid[3], high[3], bad;
    hold_instance(r, &gate, 4);
    for (int i = 0; i < 3; i++) {
        tjob_init(&low[i], 1, 4, 10 + i); /* default level: 3 */
        CHECK_EQ_INT(submit(r, &low[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        tjob_init(&mid[i], 1, 4, 20 + i);
        mid[i].job.priority = 2;
        CHECK_EQ_INT(submit(r, &mid[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        tjob_init(&high[i], 1, 4, 30 + i);
        high[i].job.priority = 1;
        CHECK_EQ_INT(submit(r, &high[i]), 0);
    }
    tjob_init(&bad, 1, 4, 40);
    bad.job.priority = 4;
    CHECK_EQ_INT(submit(r, &bad), DAB_EINVAL);
    int depths[4] = {0};
    CHECK_EQ_INT(dab_runner_queue_depths(r, depths, 4), 3);
    CHECK_EQ_INT(depths[0], 3);
    CHECK_EQ_INT(depths[2], 3);
    gate_open();
    for (int i = 0; i < 3; i++)
        CHECK(wait_released(&low[i]));
    for (int i = 0; i < 3; i++) {
        CHECK(high[i].done_seq < mid[0].done_seq);
        CHECK(mid[i].done_seq < low[0].done_seq);
        if (i)
            CHECK(low[i - 1].done_seq < low[i].done_seq); /* FIFO within a level */
    }
    teardown(g, r);
}

TEST(test_timeout_reject_while_instance_busy)
{
    dab_batching_t b = {.max_batch_size = 4, .dynamic = true};
    b.default_policy.default_timeout_us = 300000;
    b.default_policy.allow_timeout_override = true;
    dab_graph_t *g;
    dab_runner_t *r;
    if (!setup(MODELS "mlp.onnx", 1, &b, &g, &r)) {
        teardown(g, r);
        return;
    }
    static tjob_t gate, quick, longer, capped;
    hold_instance(r, &gate, 4);
    tjob_init(&quick, 1, 4, 2);
    quick.job.timeout_us = 20000; /* shortens the default: allowed */
    tjob_init(&longer, 1, 4, 3);
    longer.job.timeout_us = 100000000; /* cannot lengthen it past 300 ms */
    tjob_init(&capped, 1, 4, 4);
    CHECK_EQ_INT(submit(r, &quick), 0);
    CHECK_EQ_INT(submit(r, &longer), 0);
    CHECK_EQ_INT(submit(r, &capped), 0);
    /* the instance stays held: the queue timer answers the expired jobs */
    CHECK(wait_done(&quick));
    CHECK_EQ_INT(quick.rc, DAB_ETIMEDOUT);
    CHECK(quick.job.queue_ns >= 20000000ull);
    CHECK(wait_done(&longer));
    CHECK(wait_done(&capped));
    CHECK_EQ_INT(longer.rc, DAB_ETIMEDOUT);
    CHECK_EQ_INT(capped.rc, DAB_ETIMEDOUT);
    CHECK(longer.job.queue_ns < 5000000000ull);
    gate_open();
    CHECK(wait_released(&gate));
    dab_runner_stats_t st;
    dab_runner_stats(r, &st);
    CHECK_EQ_INT(st.fail_count, 3);
    CHECK_EQ_INT(st.success_count, 1);
    teardown(g, r);
}

TEST(test_timeout_delay)
{
    dab_batching_t b = {.max_batch_size = 1, .dynamic = true};
    b.default_policy.delay_on_timeout = true;
    b.default_policy.allow_timeout_override = true;
    dab_graph_t *g;
    dab_runner_t *r;
    if (!setup(MODELS "mlp.onnx", 1, &b, &g, &r)) {
        teardown(g, r);
        return;
    }
    static tjob_t gate, late, a, c;
    hold_instance(r, &gate, 4);
    tjob_init(&late, 1, 4, 2);
    late.job.timeout_us = 1000;
    tjob_init(&a, 1, 4, 3);
    tjob_init(&c, 1, 4, 4);
    CHECK_EQ_INT(submit(r, &late), 0);
    CHECK_EQ_INT(submit(r, &a), 0);
    CHECK_EQ_INT(submit(r, &c), 0);
    usleep(30000); /* late's timeout passes: it moves behind the live jobs */
    gate_open();
    CHECK(wait_released(&late));
    CHECK_EQ_INT(late.rc, 0); /* DELAY still runs it */
    CHECK(a.done_seq < late.done_seq);
    CHECK(c.done_seq < late.done_seq);
    teardown(g, r);
}

static bool never_wanted(dab_job_t *job)
{
    (void)job;
    return false;
}

TEST(test_queue_limits_and_cancel)
{
    dab_queue_policy_t levels[2] = {{.max_queue_size = 0}, {.max_queue_size = 2}};
    dab_batching_t b = {.max_batch_size = 4, .dynamic = true, .priority_levels = 2,
                        .default_priority = 2, .level_policies = levels};
    dab_graph_t *g;
    dab_runner_t *r;
    if (!setup(MODELS "mlp.onnx", 1, &b, &g, &r)) {
        teardown(g, r);
        return;
    }
    static tjob_t gate, q[4], big;
    hold_instance(r, &gate, 4);
    for (int i = 0; i < 4; i++)
        tjob_init(&q[i], 1, 4, 10 + i);
    CHECK_EQ_INT(submit(r, &q[0]), 0);
    CHECK_EQ_INT(submit(r, &q[1]), 0);
    CHECK_EQ_INT(submit(r, &q[2]), DAB_EBUSY); /* level 2 holds 2 at most */
    q[3].job.priority = 1;
    CHECK_EQ_INT(submit(r, &q[3]), 0); /* level 1 has no limit of its own */
    tjob_init(&big, 5, 4, 50);
    CHECK_EQ_INT(submit(r, &big), DAB_EINVAL); /* 5 rows > max_batch_size 4 */
    /* a job its owner no longer wants when it is picked is dropped, not run */
    static tjob_t unwanted;
    tjob_init(&unwanted, 1, 4, 60);
    unwanted.job.priority = 1;
    unwanted.job.wanted = never_wanted;
    CHECK_EQ_INT(submit(r, &unwanted), 0);
    /* a queued job is dropped, not run */
    CHECK(dab_runner_cancel(r, &q[0].job, "client gone"));
    CHECK(wait_released(&q[0]));
    CHECK_EQ_INT(q[0].rc, DAB_ECANCELED);
    gate_open();
    CHECK(wait_released(&q[1]));
    CHECK_EQ_INT(q[1].rc, 0);
    CHECK(!dab_runner_cancel(r, &q[1].job, "too late")); /* finished: nothing happens */
    CHECK(wait_released(&unwanted));
    CHECK_EQ_INT(unwanted.rc, DAB_ECANCELED);
    CHECK_EQ_INT(unwanted.job.batch_rows, 0);
    CHECK_EQ_INT(q[0].done_calls, 1);
    CHECK_EQ_INT(q[1].done_calls, 1);
    CHECK_EQ_INT(q[2].done_calls, 0);
    teardown(g, r);
}

TEST(test_preferred_size_and_delay)
{
    dab_batching_t b = {.max_batch_size = 8, .dynamic = true, .n_preferred = 1,
                        .preferred = {4}, .max_queue_delay_us = 600000};
    dab_graph_t *g;
    dab_runner_t *r;
    if (!setup(MODELS "mlp.onnx", 1, &b, &g, &r)) {
        teardown(g, r);
        return;
    }
    static tjob_t four[4], two[2];
    uint64_t t0 = dab_now_ns();
    for (int i = 0; i < 4; i++) {
        tjob_init(&four[i], 1, 4, i);
        CHECK_EQ_INT(submit(r, &four[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        CHECK(wait_released(&four[i]));
    /* a preferred size is cut at once, without waiting for the delay */
    CHECK(dab_now_ns() - t0 < 450000000ull);
    CHECK_EQ_INT(four[3].job.batch_rows, 4);
    t0 = dab_now_ns();
    for (int i = 0; i < 2; i++) {
        tjob_init(&two[i], 1, 4, 10 + i);
        CHECK_EQ_INT(submit(r, &two[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        CHECK(wait_released(&two[i]));
    /* two rows make no preferred size: they wait the delay, then run together */
    CHECK(dab_now_ns() - t0 >= 590000000ull);
    CHECK_EQ_INT(two[0].job.batch_rows, 2);
    CHECK_EQ_INT(two[1].job.batch_rows, 2);
    teardown(g, r);
}

/* ---- a burst from several threads ---- */

#define BURST_THREADS 8
#define BURST_JOBS 150

typedef struct burst {
    dab_runner_t *r;
    const dab_graph_t *g;
    tjob_t *jobs;
    int rejected;
} burst_t;

static void *burst_main(void *arg)
{
    burst_t *b = arg;
    for (int i = 0; i < BURST_JOBS; i++) {
        if (submit(b->r, &b->jobs[i]))
            b->rejected++;
        if (i % 16 == 15)
            usleep(200);
    }
    return NULL;
}

TEST(test_burst_every_job_answered_once)
{
    dab_batching_t b = {.max_batch_size = 16, .dynamic = true, .max_queue_delay_us = 100};
    dab_graph_t *g;
    dab_runner_t *r;
    if (!setup(MODELS "mlp.onnx", 2, &b, &g, &r)) {
        teardown(g, r);
        return;
    }
    gate_open();
    static tjob_t jobs[BURST_THREADS][BURST_JOBS];
    burst_t bs[BURST_THREADS];
    pthread_t th[BURST_THREADS];
    for (int t = 0; t < BURST_THREADS; t++) {
        for (int i = 0; i < BURST_JOBS; i++)
            tjob_init(&jobs[t][i], 1 + (t + i) % 3, 4, t * 1000 + i);
        bs[t] = (burst_t){.r = r, .g = g, .jobs = jobs[t]};
        pthread_create(&th[t], NULL, burst_main, &bs[t]);
    }
    for (int t = 0; t < BURST_THREADS; t++)
        pthread_join(th[t], NULL);
    int wrong = 0, unanswered = 0, twice = 0, merged = 0;
    /* distinct inputs give answers far apart: a row from another job would show */
    for (int t = 0; t < BURST_THREADS; t++) {
        CHECK_EQ_INT(bs[t].rejected, 0);
        for (int i = 0; i < BURST_JOBS; i++) {
            tjob_t *j = &jobs[t][i];
            if (!wait_released(j)) {
                unanswered++;
                continue;
            }
            twice += j->done_calls != 1 || j->release_calls != 1;
            merged += j->job.batch_rows > j->out_rows;
            float want[MAX_ROWS * 8];
            int64_t rows;
            solo_answer(g, j, want, &rows);
            if (j->rc || rows != j->out_rows || max_rel_diff(j->out, want, rows * 3) >= 1e-5)
                wrong++;
        }
    }
    CHECK_EQ_INT(unanswered, 0);
    CHECK_EQ_INT(twice, 0);
    CHECK_EQ_INT(wrong, 0);
    CHECK(merged > 0);
    dab_runner_stats_t st;
    dab_runner_stats(r, &st);
    CHECK_EQ_INT(st.success_count, BURST_THREADS * BURST_JOBS);
    CHECK_EQ_INT(st.queue_depth, 0);
    teardown(g, r);
}

TEST(test_inline_runs)
{
    dab_batching_t b = {.max_batch_size = 8, .dynamic = true};
    dab_graph_t *g;
    dab_runner_t *r;
    if (!setup(MODELS "mlp.onnx", 1, &b, &g, &r)) {
        teardown(g, r);
        return;
    }
    gate_open();
    static tjob_t alone, crowded;
    tjob_init(&alone, 1, 4, 1);
    /* nothing else in flight: it runs here, answered before the call returns */
    CHECK(dab_runner_try_run(r, &alone.job, 0));
    CHECK_EQ_INT(alone.done_calls, 1);
    CHECK_EQ_INT(alone.release_calls, 1);
    CHECK_EQ_INT(alone.rc, 0);
    /* other requests in flight: it should wait to join their batch */
    tjob_init(&crowded, 1, 4, 2);
    CHECK(!dab_runner_try_run(r, &crowded.job, 3));
    CHECK_EQ_INT(crowded.done_calls, 0);
    CHECK_EQ_INT(submit(r, &crowded), 0);
    CHECK(wait_released(&crowded));
    CHECK_EQ_INT(crowded.rc, 0);
    teardown(g, r);
}

TEST(test_config_from_json)
{
    json_error_t je;
    json_t *db = json_loads(
        "{\"preferred_batch_size\": [8, 4], \"max_queue_delay_microseconds\": 500,"
        " \"preserve_ordering\": true, \"priority_levels\": 3, \"default_priority_level\": 2,"
        " \"default_queue_policy\": {\"max_queue_size\": 7, \"timeout_action\": \"DELAY\","
        "   \"default_timeout_microseconds\": 1000, \"allow_timeout_override\": true},"
        " \"priority_queue_policy\": {\"1\": {\"max_queue_size\": 2}}}",
        0, &je);
    CHECK(db != NULL);
    dab_batching_t b;
    dab_queue_policy_t *lp = NULL;
    dab_err_t e = {0};
    CHECK_EQ_INT(dab_batching_from_json(db, 16, &b, &lp, &e), 0);
    CHECK(b.dynamic);
    CHECK_EQ_INT(b.n_preferred, 2);
    CHECK_EQ_INT(b.preferred[0], 4);
    CHECK_EQ_INT(b.max_queue_delay_us, 500);
    CHECK(b.preserve_ordering);
    CHECK_EQ_INT(b.default_priority, 2);
    CHECK(lp != NULL);
    if (lp) {
        /* level 1's own policy replaces the default whole (as in Triton) */
        CHECK_EQ_INT(lp[0].max_queue_size, 2);
        CHECK_EQ_INT(lp[0].default_timeout_us, 0);
        CHECK(!lp[0].delay_on_timeout);
        CHECK_EQ_INT(lp[1].max_queue_size, 7);
        CHECK(lp[2].delay_on_timeout);
        CHECK(lp[2].allow_timeout_override);
    }
    dab_free(lp);
    CHECK_EQ_INT(dab_batching_from_json(db, 0, &b, &lp, &e), DAB_EINVAL);
    CHECK(strstr(e.msg, "max_batch_size") != NULL);
    json_decref(db);
    CHECK_EQ_INT(dab_batching_from_json(NULL, 8, &b, &lp, &e), 0);
    CHECK(!b.dynamic);
    CHECK_EQ_INT(b.max_batch_size, 8);
}

TEST_LIST(T(test_batched_answers_equal_solo), T(test_shapes_not_mixed), T(test_preserve_ordering),
          T(test_priorities), T(test_timeout_reject_while_instance_busy), T(test_timeout_delay),
          T(test_queue_limits_and_cancel), T(test_preferred_size_and_delay),
          T(test_burst_every_job_answered_once), T(test_inline_runs), T(test_config_from_json))
