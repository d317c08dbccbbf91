/*
 * cache.c - the two-tier cache: L1 (l1.c) in front of L2 (redis.c), scopes with
 * their counters, and the dabba_cache_* metrics.
 *
 * Hits and misses are counted live on resolved metric series; what L1 does on its
 * own (evictions, expiry, bytes held) is kept in per-scope atomics and copied to
 * the metrics by dab_cache_metrics_sync before each scrape.
 */
#define XXH_INLINE_ALL
#include <pthread.h>
#include <string.h>

#include "../observe/observe.h"
#include "cache_int.h"

struct dab_cache_scope {
    char *name;
    dab_l1_scope_stats_t l1;
    struct dab_cache_scope *next;
    /* live series */
    dab_series_t *hit[3], *miss[3], *lookup[3]; /* by tier: [1] l1, [2] l2 */
    /* what the last sync exported (guarded by the cache's sync_mu) */
    long long synced_removed;
};

struct dab_cache {
    dab_cache_opts_t o;
    dab_l1_t *l1;
    dab_l2_t *l2;
    uint64_t (*now_ns)(void);
    pthread_mutex_t scopes_mu; /* guards the scope list's insertions */
    dab_cache_scope_t *_Atomic scopes;
    pthread_mutex_t sync_mu;
    dab_metric_t *m_hits, *m_misses, *m_evictions, *m_bytes, *m_entries, *m_errors;
    dab_metric_t *m_lookup, *m_l2_up;
};

/* Lookup time: from a microsecond (an L1 hit) to the slowest Redis timeout. */
static const double lookup_bounds_s[] = {1e-6,   2.5e-6, 5e-6,  1e-5,  2.5e-5, 5e-5, 1e-4,
                                         2.5e-4, 5e-4,   1e-3,  2.5e-3, 5e-3,  1e-2, 2.5e-2,
                                         5e-2,   0.1,    0.25,  1.0};

static const char *tier_name[3] = {"", "l1", "l2"};

/* L1's TTL for a TTL in seconds (<= 0: none). */
static uint64_t ttl_ns(int64_t ttl_s)
{
    return ttl_s > 0 ? (uint64_t)DAB_MIN(ttl_s, DAB_CACHE_MAX_TTL_S) * 1000000000ull : 0;
}

void dab_cache_defaults(dab_cache_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->l1_bytes = (size_t)64 << 20;
    o->l1_shards = 16;
    o->policy = DAB_EVICT_SIEVE;
    o->redis_timeout_ms = 5;
    o->redis_pool = 8;
    o->redis_prefix = "dabba:";
    o->redis_ttl_s = 3600;
}

static void on_l2_fault(void *user, const char *scope, dab_l2_fault_t f, const char *msg)
{
    dab_cache_t *c = user;
    const char *labels[] = {"l2", scope ? scope : "", dab_l2_fault_name(f)};
    dab_metric_add(c->m_errors, labels, 1);
}

int dab_cache_new(const dab_cache_opts_t *o, dab_cache_t **out, dab_err_t *err)
{
    *out = NULL;
    dab_cache_t *c = dab_calloc(1, sizeof *c);
    if (!c)
        return dab_err_set(err, DAB_ENOMEM, "out of memory making the cache");
    c->o = *o;
    c->now_ns = o->now_ns ? o->now_ns : dab_now_ns;
    pthread_mutex_init(&c->scopes_mu, NULL);
    pthread_mutex_init(&c->sync_mu, NULL);
    const char *tm[] = {"tier", "model"};
    const char *tmk[] = {"tier", "model", "kind"};
    c->m_hits = dab_metric_counter("dabba_cache_hits_total", "Cache lookups answered, by tier and model", 2, tm);
    c->m_misses = dab_metric_counter("dabba_cache_misses_total", "Cache lookups not answered, by tier and model", 2, tm);
    c->m_evictions = dab_metric_counter("dabba_cache_evictions_total", "L1 entries evicted for space or expired, by model", 2, tm);
    c->m_bytes = dab_metric_gauge("dabba_cache_bytes", "Bytes held by the in-process cache, by model", 2, tm);
    c->m_entries = dab_metric_gauge("dabba_cache_entries", "Entries held by the in-process cache, by model", 2, tm);
    c->m_errors = dab_metric_counter("dabba_cache_errors_total", "Cache faults (served without the cache), by tier, model and kind", 3, tmk);
    c->m_lookup = dab_metric_histogram("dabba_cache_lookup_seconds", "Time to look a key up, by tier and model", 2, tm,
                                       lookup_bounds_s, (int)(sizeof lookup_bounds_s / sizeof *lookup_bounds_s));
    c->m_l2_up = dab_metric_gauge("dabba_cache_l2_up", "1 when the last Redis call reached the server", 0, NULL);
    int rc;
    if (o->l1_bytes) {
        dab_l1_opts_t lo = {.max_bytes = o->l1_bytes,
                            .shards = o->l1_shards ? o->l1_shards : 16,
                            .policy = o->policy,
                            .now_ns = c->now_ns};
        if ((rc = dab_l1_new(&lo, &c->l1, err)))
            goto fail;
    }
    if (o->redis_url && *o->redis_url) {
        dab_l2_opts_t ro = {.url = o->redis_url,
                            .timeout_ms = o->redis_timeout_ms > 0 ? o->redis_timeout_ms : 5,
                            .pool = o->redis_pool > 0 ? o->redis_pool : 8,
                            .prefix = o->redis_prefix ? o->redis_prefix : "dabba:",
                            .default_ttl_s = o->redis_ttl_s > 0 ? o->redis_ttl_s : 3600,
                            .on_fault = on_l2_fault,
                            .fault_user = c};
        if ((rc = dab_l2_new(&ro, &c->l2, err)))
            goto fail;
    }
    *out = c;
    return 0;
fail:
    dab_cache_free(c);
    return rc;
}

void dab_cache_free(dab_cache_t *c)
{
    if (!c)
        return;
    dab_l2_free(c->l2);
    dab_l1_free(c->l1);
    dab_cache_scope_t *s = atomic_load(&c->scopes);
    while (s) {
        dab_cache_scope_t *next = s->next;
        dab_free(s->name);
        dab_free(s);
        s = next;
    }
    pthread_mutex_destroy(&c->scopes_mu);
    pthread_mutex_destroy(&c->sync_mu);
    dab_free(c);
}

static dab_cache_scope_t *scope_find(dab_cache_scope_t *s, const char *name)
{
    for (; s; s = s->next)
        if (!strcmp(s->name, name))
            return s;
    return NULL;
}

dab_cache_scope_t *dab_cache_scope(dab_cache_t *c, const char *name)
{
    /* Scopes are only ever prepended, so readers walk the list without the lock. */
    dab_cache_scope_t *s = scope_find(atomic_load(&c->scopes), name);
    if (s)
        return s;
    pthread_mutex_lock(&c->scopes_mu);
    s = scope_find(atomic_load(&c->scopes), name);
    if (!s && (s = dab_calloc(1, sizeof *s))) {
        if (!(s->name = dab_strdup(name))) {
            dab_free(s);
            s = NULL;
        } else {
            for (int i = 1; i < 3; i++) {
                const char *l[] = {tier_name[i], name};
                s->hit[i] = dab_metric_series(c->m_hits, l);
                s->miss[i] = dab_metric_series(c->m_misses, l);
                s->lookup[i] = dab_metric_series(c->m_lookup, l);
            }
            s->next = atomic_load(&c->scopes);
            atomic_store(&c->scopes, s);
        }
    }
    pthread_mutex_unlock(&c->scopes_mu);
    return s;
}

dab_cache_tier_t dab_cache_get(dab_cache_t *c, dab_cache_scope_t *sc, const dab_cache_key_t *key,
                               dab_cache_val_t **out)
{
    *out = NULL;
    if (c->l1) {
        uint64_t t0 = dab_now_ns();
        dab_cache_val_t *v = dab_l1_get(c->l1, key);
        dab_series_observe(sc->lookup[1], (double)(dab_now_ns() - t0) / 1e9);
        if (v) {
            dab_series_add(sc->hit[1], 1);
            *out = v;
            return DAB_CACHE_HIT_L1;
        }
        dab_series_add(sc->miss[1], 1);
    }
    if (!c->l2)
        return DAB_CACHE_MISS;
    uint64_t t0 = dab_now_ns();
    dab_cache_val_t *v = NULL;
    int64_t ttl_s = -1;
    int rc = dab_l2_get(c->l2, sc->name, key, &v, &ttl_s);
    dab_series_observe(sc->lookup[2], (double)(dab_now_ns() - t0) / 1e9);
    if (rc || !v) {
        dab_series_add(sc->miss[2], 1);
        return DAB_CACHE_MISS;
    }
    dab_series_add(sc->hit[2], 1);
    if (c->l1)
        dab_l1_put(c->l1, key, v, ttl_ns(ttl_s), &sc->l1);
    *out = v;
    return DAB_CACHE_HIT_L2;
}

void dab_cache_put(dab_cache_t *c, dab_cache_scope_t *sc, const dab_cache_key_t *key,
                   dab_cache_val_t *v, int64_t ttl_s)
{
    if (c->l1)
        dab_l1_put(c->l1, key, v, ttl_ns(ttl_s), &sc->l1);
    if (c->l2)
        dab_l2_put(c->l2, sc->name, key, v, ttl_s);
}

int dab_cache_purge(dab_cache_t *c, dab_cache_scope_t *sc, int64_t *l1_dropped,
                    int64_t *l2_dropped, dab_err_t *err)
{
    int64_t n1 = c->l1 ? dab_l1_purge(c->l1, sc ? &sc->l1 : NULL) : 0, n2 = 0;
    int rc = 0;
    if (c->l2) {
        dab_l2_flush(c->l2, 1000); /* fills queued before the purge must not outlive it */
        rc = dab_l2_purge(c->l2, sc ? sc->name : NULL, &n2, err);
    }
    if (l1_dropped)
        *l1_dropped = n1;
    if (l2_dropped)
        *l2_dropped = n2;
    return rc;
}

void dab_cache_stats(dab_cache_t *c, dab_cache_stats_t *out)
{
    memset(out, 0, sizeof *out);
    if (c->l1) {
        dab_l1_stats_t s;
        dab_l1_stats(c->l1, &s);
        out->l1_entries = s.entries;
        out->l1_bytes = s.bytes;
        out->l1_evictions = s.evictions;
        out->l1_expired = s.expired;
    }
    for (dab_cache_scope_t *s = atomic_load(&c->scopes); s; s = s->next) {
        out->l1_hits += (uint64_t)dab_series_read(s->hit[1], NULL);
        out->l1_misses += (uint64_t)dab_series_read(s->miss[1], NULL);
    }
    if (c->l2) {
        dab_l2_stats_t s;
        dab_l2_stats(c->l2, &s);
        out->l2_configured = true;
        out->l2_up = s.up;
        out->l2_hits = s.hits;
        out->l2_misses = s.misses;
        out->l2_writes = s.writes;
        out->l2_dropped = s.faults[DAB_L2_F_DROPPED];
        for (int f = 0; f < DAB_L2_N_FAULTS; f++)
            if (f != DAB_L2_F_DROPPED && f != DAB_L2_F_DOWN)
                out->l2_errors += s.faults[f];
    }
}

void dab_cache_metrics_sync(dab_cache_t *c)
{
    pthread_mutex_lock(&c->sync_mu);
    for (dab_cache_scope_t *s = atomic_load(&c->scopes); s; s = s->next) {
        const char *l[] = {"l1", s->name};
        long long ev = atomic_load(&s->l1.evictions) + atomic_load(&s->l1.expired);
        if (ev > s->synced_removed)
            dab_metric_add(c->m_evictions, l, (double)(ev - s->synced_removed));
        s->synced_removed = ev;
        if (c->l1) {
            dab_metric_set(c->m_bytes, l, (double)atomic_load(&s->l1.bytes));
            dab_metric_set(c->m_entries, l, (double)atomic_load(&s->l1.entries));
        }
    }
    if (c->l2) {
        dab_l2_stats_t st;
        dab_l2_stats(c->l2, &st);
        dab_metric_set(c->m_l2_up, NULL, st.up ? 1 : 0);
    }
    pthread_mutex_unlock(&c->sync_mu);
}
