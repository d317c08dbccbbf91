/*
 * policy.c - the eviction-policy study behind dabba's L1 default: SIEVE against LRU,
 * driving the real L1 (src/cache/l1.c: dab_l1_new / dab_l1_get / dab_l1_put) with
 * synthetic request traces, no HTTP in the way. bench/cache/run.sh builds it against
 * bin/libdabba.a and writes its output to bench/results/cache_policy.md.
 *
 * Traces (every one from a fixed seed, so a rerun replays the same requests):
 *   zipf-S        Zipf(S) over KEYS keys (S = 0.8, 1.0, 1.2);
 *   zipf-S+scan   the same, plus, every SCAN_EVERY requests after the warm-up, a one-off
 *                 sequential scan of SCAN_KEYS keys never seen before, interleaved 1:1 with
 *                 the Zipf requests (a batch job walking a table while the users keep on);
 *   shift         Zipf(1.0) whose ranks map onto keys shifted by SHIFT_KEYS every
 *                 SHIFT_EVERY requests: the hot set moves to keys that were cold.
 * Every value is VALUE_BYTES bytes; the cache holds 1 %, 5 % or 10 % of the KEYS keys'
 * bytes as L1 charges them (dab_l1_entry_bytes: value + entry + header), split over SHARDS
 * shards like the server's L1 (16 there).
 *
 * A lookup is what the server does for a response: dab_l1_get, and on a miss a new value
 * (dab_cache_val_new, filled) put with dab_l1_put. The hit ratio is counted on one thread
 * after WARMUP requests; the scan requests count as lookups (they can never hit).
 * Throughput: lookups/s of 2 threads sharing one L1, each replaying the first TP_REQUESTS
 * requests of its own trace of the same kind (seeds differ), best of ROUNDS runs;
 * 1-thread lookups/s comes from the hit-ratio pass.
 *
 * Output: a markdown report on stdout (tables + which policy wins where); progress on
 * stderr. Exit 1 when the L1 refuses to start or a put fails.
 *
 * usage: policy [--requests N] [--keys N] [--value-bytes N] [--shards N] [--rounds N]
 *               [--tp-requests N]
 * Defaults: 1 000 000 requests per trace, 100 000 keys, 1 KiB values, 16 shards, 3 rounds,
 * 150 000 requests per thread in the throughput runs (about 30 s on 2 cores).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/cache_int.h"

#define SCAN_KEYS 50000
#define N_SIZES 3
#define N_POLICIES 2

static const double size_pct[N_SIZES] = {1, 5, 10};
static const dab_evict_policy_t policies[N_POLICIES] = {DAB_EVICT_SIEVE, DAB_EVICT_LRU};
static const char *policy_name[N_POLICIES] = {"SIEVE", "LRU"};

typedef struct params {
    size_t requests, keys, value_bytes, warmup, tp_requests;
    int shards, rounds;
    size_t scan_every, shift_every, shift_keys;
} params_t;

typedef enum trace_kind { T_ZIPF, T_SCAN, T_SHIFT } trace_kind_t;

typedef struct trace_spec {
    const char *name;
    trace_kind_t kind;
    double s;
} trace_spec_t;

static const trace_spec_t specs[] = {
    {"zipf-0.8", T_ZIPF, 0.8},        {"zipf-1.0", T_ZIPF, 1.0},
    {"zipf-1.2", T_ZIPF, 1.2},        {"zipf-0.8+scan", T_SCAN, 0.8},
    {"zipf-1.0+scan", T_SCAN, 1.0},   {"zipf-1.2+scan", T_SCAN, 1.2},
    {"shift (zipf-1.0)", T_SHIFT, 1.0},
};
#define N_SPECS (int)(sizeof specs / sizeof *specs)

/* ---- deterministic randomness: splitmix64 seeds xoshiro256** ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef struct rng {
    uint64_t s[4];
} rng_t;

static void rng_seed(rng_t *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng_t *r)
{
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* uniform in [0, 1) */
static double rng_unit(rng_t *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

/* ---- Zipf: precomputed CDF over ranks 0..n-1, inverse by binary search ---- */

static double *zipf_cdf(size_t n, double s)
{
    double *cdf = malloc(n * sizeof *cdf), sum = 0;
    if (!cdf)
        return NULL;
    for (size_t i = 0; i < n; i++)
        cdf[i] = (sum += 1.0 / pow((double)(i + 1), s));
    for (size_t i = 0; i < n; i++)
        cdf[i] /= sum;
    cdf[n - 1] = 1.0;
    return cdf;
}

static uint32_t zipf_draw(const double *cdf, size_t n, rng_t *r)
{
    double u = rng_unit(r);
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (uint32_t)lo;
}

/*
 * Fills ids[0..p->requests) with key ids for spec. Zipf ranks map to ids through a fixed
 * shuffle (so a rank's id says nothing of its popularity); scan keys are ids >= keys,
 * each used once. Returns the number of scan requests in the counted part.
 */
static size_t make_trace(const params_t *p, const trace_spec_t *spec, const double *cdf,
                         uint64_t seed, uint32_t *ids)
{
    rng_t r;
    rng_seed(&r, seed);
    uint32_t *perm = malloc(p->keys * sizeof *perm);
    if (!perm) {
        fprintf(stderr, "policy: out of memory\n");
        exit(1);
    }
    rng_t pr;
    rng_seed(&pr, 0x5eed0000u); /* the same shuffle for every trace and thread */
    for (size_t i = 0; i < p->keys; i++)
        perm[i] = (uint32_t)i;
    for (size_t i = p->keys - 1; i > 0; i--) {
        size_t j = rng_next(&pr) % (i + 1);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    size_t scans = 0, scan_left = 0;
    uint64_t next_new = p->keys;
    for (size_t i = 0; i < p->requests; i++) {
        if (spec->kind == T_SCAN && i >= p->warmup && (i - p->warmup) % p->scan_every == 0)
            scan_left = SCAN_KEYS;
        if (scan_left && (i & 1)) {
            ids[i] = (uint32_t)next_new++; /* the scan: a new key each time, 1 in 2 requests */
            scan_left--;
            scans += i >= p->warmup;
            continue;
        }
        uint32_t rank = zipf_draw(cdf, p->keys, &r);
        if (spec->kind == T_SHIFT)
            rank = (uint32_t)((rank + (i / p->shift_every) * p->shift_keys) % p->keys);
        ids[i] = perm[rank];
    }
    free(perm);
    return scans;
}

/* A well-mixed 128-bit key per id, as XXH3-128 keys are. */
static dab_cache_key_t key_of(uint32_t id)
{
    uint64_t x = id;
    dab_cache_key_t k;
    k.lo = splitmix64(&x);
    k.hi = splitmix64(&x);
    return k;
}

/* ---- one replay ---- */

typedef struct replay {
    dab_l1_t *l1;
    const uint32_t *ids;
    size_t n, warmup, value_bytes;
    uint64_t hits, counted; /* after warmup */
    int failed;
    pthread_barrier_t *start;
} replay_t;

static void *replay_run(void *arg)
{
    replay_t *rp = arg;
    if (rp->start)
        pthread_barrier_wait(rp->start);
    for (size_t i = 0; i < rp->n; i++) {
        dab_cache_key_t k = key_of(rp->ids[i]);
        dab_cache_val_t *v = dab_l1_get(rp->l1, &k);
        bool counted = i >= rp->warmup;
        rp->counted += counted;
        if (v) {
            rp->hits += counted;
            dab_cache_val_release(v);
            continue;
        }
        /* the miss path: compute (here: fill) a response and cache it */
        v = dab_cache_val_new(rp->value_bytes);
        if (!v) {
            rp->failed = DAB_ENOMEM;
            break;
        }
        memset(v->data, (int)(rp->ids[i] & 0xff), v->len);
        int rc = dab_l1_put(rp->l1, &k, v, 0, NULL);
        dab_cache_val_release(v);
        if (rc) {
            rp->failed = rc;
            break;
        }
    }
    return NULL;
}

static dab_l1_t *l1_make(const params_t *p, int pol, size_t cap_bytes)
{
    dab_l1_opts_t o = {.max_bytes = cap_bytes, .shards = p->shards, .policy = policies[pol]};
    dab_err_t err;
    dab_l1_t *l1;
    memset(&err, 0, sizeof err);
    if (dab_l1_new(&o, &l1, &err)) {
        fprintf(stderr, "policy: dab_l1_new: %s\n", err.msg);
        exit(1);
    }
    return l1;
}

static double now_s(void) { return (double)dab_now_ns() / 1e9; }

typedef struct cell {
    double hit, tput1, tput2;
} cell_t;

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void usage(void)
{
    fprintf(stderr, "usage: policy [--requests N] [--keys N] [--value-bytes N] [--shards N] "
                    "[--rounds N] [--tp-requests N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    params_t p = {.requests = 1000000, .keys = 100000, .value_bytes = 1024, .shards = 16,
                  .rounds = 3, .tp_requests = 150000};
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        long long v = atoll(argv[i + 1]);
        if (v < 1)
            usage();
        if (!strcmp(argv[i], "--requests"))
            p.requests = (size_t)v;
        else if (!strcmp(argv[i], "--keys"))
            p.keys = (size_t)v;
        else if (!strcmp(argv[i], "--value-bytes"))
            p.value_bytes = (size_t)v;
        else if (!strcmp(argv[i], "--shards"))
            p.shards = (int)v;
        else if (!strcmp(argv[i], "--rounds"))
            p.rounds = (int)v;
        else if (!strcmp(argv[i], "--tp-requests"))
            p.tp_requests = (size_t)v;
        else
            usage();
        i++;
    }
    if (p.keys >= UINT32_MAX / 4 || p.requests < 10 || p.shards > 1024)
        usage();
    if (p.tp_requests > p.requests)
        p.tp_requests = p.requests;
    p.warmup = p.requests / 10;
    p.scan_every = (p.requests - p.warmup) / 4; /* 4 scans in the counted part */
    if (p.scan_every < 2 * SCAN_KEYS)
        p.scan_every = 2 * SCAN_KEYS;
    p.shift_every = p.requests / 8;
    p.shift_keys = p.keys / 4;

    uint32_t *ids[2] = {malloc(p.requests * sizeof(uint32_t)),
                        malloc(p.requests * sizeof(uint32_t))};
    if (!ids[0] || !ids[1]) {
        fprintf(stderr, "policy: out of memory for %zu-request traces\n", p.requests);
        return 1;
    }
    size_t entry = dab_l1_entry_bytes(p.value_bytes);
    cell_t cells[N_SPECS][N_SIZES][N_POLICIES];
    size_t scan_reqs[N_SPECS];
    double t_begin = now_s();

    for (int t = 0; t < N_SPECS; t++) {
        double *cdf = zipf_cdf(p.keys, specs[t].s);
        if (!cdf) {
            fprintf(stderr, "policy: out of memory\n");
            return 1;
        }
        scan_reqs[t] = make_trace(&p, &specs[t], cdf, 1000 + (uint64_t)t, ids[0]);
        make_trace(&p, &specs[t], cdf, 2000 + (uint64_t)t, ids[1]);
        free(cdf);
        for (int z = 0; z < N_SIZES; z++) {
            size_t cap = (size_t)((double)p.keys * size_pct[z] / 100.0 * (double)entry);
            for (int pol = 0; pol < N_POLICIES; pol++) {
                cell_t *c = &cells[t][z][pol];
                /* hit ratio and 1-thread throughput */
                replay_t rp = {.l1 = l1_make(&p, pol, cap), .ids = ids[0], .n = p.requests,
                               .warmup = p.warmup, .value_bytes = p.value_bytes};
                double t0 = now_s();
                replay_run(&rp);
                double t1 = now_s();
                dab_l1_free(rp.l1);
                if (rp.failed) {
                    fprintf(stderr, "policy: %s: %s\n", specs[t].name, dab_strerror(rp.failed));
                    return 1;
                }
                c->hit = (double)rp.hits / (double)rp.counted;
                c->tput1 = (double)p.requests / (t1 - t0);
                /* 2 threads on one L1, best of rounds */
                double tp[64];
                int rounds = p.rounds > 64 ? 64 : p.rounds;
                for (int r = 0; r < rounds; r++) {
                    pthread_barrier_t bar;
                    pthread_barrier_init(&bar, NULL, 3);
                    dab_l1_t *l1 = l1_make(&p, pol, cap);
                    replay_t two[2];
                    pthread_t th[2];
                    for (int k = 0; k < 2; k++) {
                        two[k] = (replay_t){.l1 = l1, .ids = ids[k], .n = p.tp_requests,
                                            .warmup = p.warmup, .value_bytes = p.value_bytes,
                                            .start = &bar};
                        if (pthread_create(&th[k], NULL, replay_run, &two[k])) {
                            fprintf(stderr, "policy: cannot start a thread\n");
                            return 1;
                        }
                    }
                    pthread_barrier_wait(&bar);
                    double a = now_s();
                    pthread_join(th[0], NULL);
                    pthread_join(th[1], NULL);
                    double b = now_s();
                    pthread_barrier_destroy(&bar);
                    dab_l1_free(l1);
                    if (two[0].failed || two[1].failed) {
                        fprintf(stderr, "policy: %s (2 threads): %s\n", specs[t].name,
                                dab_strerror(two[0].failed ? two[0].failed : two[1].failed));
                        return 1;
                    }
                    tp[r] = 2.0 * (double)p.tp_requests / (b - a);
                }
                qsort(tp, (size_t)rounds, sizeof *tp, cmp_dbl);
                c->tput2 = tp[rounds - 1]; /* the best run: others' load only ever slows one */
                fprintf(stderr, "policy: %-16s %4.0f%% %-5s hit %6.2f%%  1 thread %5.2f M/s  "
                                "2 threads %5.2f M/s\n",
                        specs[t].name, size_pct[z], policy_name[pol], 100 * c->hit,
                        c->tput1 / 1e6, c->tput2 / 1e6);
            }
        }
    }
    free(ids[0]);
    free(ids[1]);

    /* ---- the report ---- */
    printf("# L1 eviction policy: SIEVE vs LRU\n\n");
    printf("- `bench/cache/policy` driving src/cache/l1.c directly (dab_l1_get, and on a miss "
           "dab_cache_val_new + dab_l1_put), %d shards as in `dabba serve`; %zu keys of %zu-byte "
           "values (%zu bytes each as L1 charges them); cache = 1 / 5 / 10 %% of the keys' bytes "
           "(about %zu / %zu / %zu entries)\n",
           p.shards, p.keys, p.value_bytes, entry, p.keys / 100, p.keys / 20, p.keys / 10);
    printf("- %zu requests per trace, the first %zu (10 %%) not counted (warm-up); fixed seeds\n",
           p.requests, p.warmup);
    printf("- +scan: after the warm-up, every %zu requests a one-off scan of %d new keys "
           "interleaved 1:1 with the Zipf requests (%zu of the counted requests are scan keys, "
           "which can never hit: a hit ratio there is at most %.1f %%)\n",
           p.scan_every, SCAN_KEYS, scan_reqs[3],
           100.0 * (1.0 - (double)scan_reqs[3] / (double)(p.requests - p.warmup)));
    printf("- shift: Zipf(1.0) whose hot set moves by %zu keys every %zu requests\n",
           p.shift_keys, p.shift_every);
    printf("- lookups/s (millions): 1 thread from the hit-ratio run; 2 threads sharing one L1, "
           "each replaying the first %zu requests of its own trace of the same kind (another "
           "seed), best of %d runs (as bench/run.sh: the machine is shared, and load from other "
           "processes only ever slows a run). Machine: %ld cores\n\n",
           p.tp_requests, p.rounds, sysconf(_SC_NPROCESSORS_ONLN));
    printf("| trace | cache | SIEVE hit %% | LRU hit %% | SIEVE - LRU (points) | LRU misses "
           "SIEVE avoids | SIEVE Mlookups/s 1 thr | LRU 1 thr | SIEVE 2 thr | LRU 2 thr |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    int wins[N_SPECS] = {0}, losses[N_SPECS] = {0};
    int faster2 = 0, cells_n = 0;
    double tp_ratio_sum = 0, scale_sum = 0;
    for (int t = 0; t < N_SPECS; t++) {
        for (int z = 0; z < N_SIZES; z++) {
            cell_t *s = &cells[t][z][0], *l = &cells[t][z][1];
            double d = 100 * (s->hit - l->hit);
            double avoided = (1 - l->hit) > 0 ? ((1 - l->hit) - (1 - s->hit)) / (1 - l->hit) : 0;
            if (d > 0.05)
                wins[t]++;
            else if (d < -0.05)
                losses[t]++;
            faster2 += s->tput2 > l->tput2;
            tp_ratio_sum += s->tput2 / l->tput2;
            scale_sum += s->tput2 / s->tput1 + l->tput2 / l->tput1;
            cells_n++;
            printf("| %s | %.0f %% | %.2f | %.2f | %+.2f | %+.1f %% | %.2f | %.2f | %.2f "
                   "| %.2f |\n",
                   specs[t].name, size_pct[z], 100 * s->hit, 100 * l->hit, d, 100 * avoided,
                   s->tput1 / 1e6, l->tput1 / 1e6, s->tput2 / 1e6, l->tput2 / 1e6);
        }
    }
    printf("\n\"LRU misses SIEVE avoids\": (LRU miss ratio - SIEVE miss ratio) / LRU miss ratio; "
           "negative where SIEVE misses more. Differences within ±0.05 points count as ties.\n\n");
    printf("Which policy wins where:\n\n");
    const char *family[3] = {"skewed (Zipf)", "Zipf + one-off scans", "shifting popularity"};
    trace_kind_t kinds[3] = {T_ZIPF, T_SCAN, T_SHIFT};
    for (int f = 0; f < 3; f++) {
        int w = 0, lo = 0, n = 0;
        for (int t = 0; t < N_SPECS; t++)
            if (specs[t].kind == kinds[f]) {
                w += wins[t];
                lo += losses[t];
                n += N_SIZES;
            }
        const char *who = w > lo ? "SIEVE wins" : lo > w ? "LRU wins" : "neither wins";
        printf("- %s: %s (SIEVE better in %d of %d cells, LRU better in %d, ties %d)\n", family[f],
               who, w, n, lo, n - w - lo);
    }
    printf("- throughput, 2 threads: SIEVE faster in %d of %d cells; SIEVE/LRU lookups/s "
           "averages %.2f\n",
           faster2, cells_n, tp_ratio_sum / cells_n);
    printf("- 2 threads vs 1 thread (both policies): %.2fx on average%s\n",
           scale_sum / (2 * cells_n),
           scale_sum / (2 * cells_n) < 1 ? " - below 1: the two threads lose more to contention "
                                          "(shard mutexes, the allocator's locks) than they gain"
                                        : "");
    fprintf(stderr, "policy: done in %.0f s\n", now_s() - t_begin);
    return 0;
}
