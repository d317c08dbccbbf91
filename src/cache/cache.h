/*
 * cache.h - dabba's caches: one interface over two tiers, for whole responses and
 * for the stages pipelines own (tokenization, embeddings, vector-search results).
 *
 * L1 is in-process: sharded, bounded by bytes, with a TTL per entry and SIEVE
 * eviction (scan-resistant; chosen over LRU by bench/cache/policy). L2 is Redis
 * through hiredis (src/cache/redis.c): a connection pool, a deadline on every call,
 * a key prefix, a TTL on every key and values wrapped in a checksummed envelope.
 * A lookup goes L1 -> L2 -> compute; an L2 hit fills L1, and a fill goes to L1 at
 * once and to L2 in the background, so that Redis never delays an answer beyond
 * its per-call timeout. A Redis fault (down, slow, full, garbage) is counted,
 * logged at a bounded rate and answered as a miss; the connection is retried with
 * backoff.
 *
 * Entries belong to a scope (a model's name, or a stage's name): per-scope
 * counters feed the metrics, and a scope can be purged on both tiers.
 *
 * Keys are XXH3-128 of everything that determines the value (dab_keyb_*): the
 * stage, the scope, the model version and its content, and the canonical request.
 *
 * Values are immutable, refcounted byte blobs (dab_cache_val_t). Tensors are
 * stored in a compact binary encoding (dab_cache_tensors_encode / _decode) whose
 * decoded tensors point into the blob, so a hit copies nothing.
 *
 * Concurrent identical misses compute once: dab_flight_* lets the first caller
 * lead and queues the others behind it.
 */
#ifndef DAB_CACHE_H
#define DAB_CACHE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/base.h"
#include "../tensor/tensor.h"

/* ---- keys ---- */

typedef struct dab_cache_key {
    uint64_t lo, hi;
} dab_cache_key_t;

/* Builds a key: XXH3-128 over length-prefixed parts, so ("ab","c") != ("a","bc").
 * On the caller's stack; no allocation. */
typedef struct dab_keyb {
    _Alignas(64) unsigned char state[640]; /* an XXH3_state_t (key.c checks the size) */
} dab_keyb_t;

/* Starts a key for stage ("response", "tokenize", ...) in scope (a model name) at a
 * model version whose content hash is identity (0 when there is none). */
void dab_keyb_init(dab_keyb_t *kb, const char *stage, const char *scope, int64_t version,
                   uint64_t identity);
void dab_keyb_bytes(dab_keyb_t *kb, const void *p, size_t n);
void dab_keyb_str(dab_keyb_t *kb, const char *s);
void dab_keyb_u64(dab_keyb_t *kb, uint64_t v);
/* A named tensor: name, dtype, shape and the element bytes (strings: each length and
 * bytes). The tensor's shape is assumed checked. */
void dab_keyb_tensor(dab_keyb_t *kb, const char *name, const dab_tensor_t *t);
dab_cache_key_t dab_keyb_final(const dab_keyb_t *kb);

/* 32 lowercase hex digits and a NUL into out[33]. */
void dab_cache_key_hex(const dab_cache_key_t *key, char out[33]);

/* ---- values ---- */

/* An immutable blob once published; data is 64-byte aligned. */
typedef struct dab_cache_val {
    atomic_int refs;
    size_t len;
    uint8_t *data;
} dab_cache_val_t;

/* A new value of len bytes (contents uninitialised) with one reference; NULL when out
 * of memory. Any thread. */
dab_cache_val_t *dab_cache_val_new(size_t len);
/* A new value holding a copy of len bytes at p; NULL when out of memory. */
dab_cache_val_t *dab_cache_val_copy(const void *p, size_t len);
void dab_cache_val_ref(dab_cache_val_t *v);
/* Drops a reference; the last one frees the value. NULL is fine. Any thread. */
void dab_cache_val_release(dab_cache_val_t *v);

/* ---- the tensor encoding ---- */

#define DAB_CACHE_MAX_TENSORS 64

/*
 * Encodes n named tensors (n <= DAB_CACHE_MAX_TENSORS; names at most 65535 bytes)
 * into a new value: magic "DBT1", count, then per tensor its name, dtype, rank, dims
 * and bytes (16-byte aligned within the blob; strings as 4-byte length + bytes per
 * element), little-endian. On error *out is NULL and err says why. Any thread.
 */
int dab_cache_tensors_encode(int n, const char *const *names, const dab_tensor_t *const *tensors,
                             dab_cache_val_t **out, dab_err_t *err);

/* Tensors decoded from a value; they point into the value's bytes (and, for strings,
 * into arrays this struct owns). */
typedef struct dab_cache_tensors {
    int n;
    const char *names[DAB_CACHE_MAX_TENSORS];
    dab_tensor_t tensors[DAB_CACHE_MAX_TENSORS];
    void *strings; /* dab_str_t arrays of string tensors; freed by _release */
} dab_cache_tensors_t;

/*
 * Decodes v (which must outlive out) checking every size against the blob, so a
 * value from Redis that decodes is structurally sound. DAB_EFORMAT naming what is
 * wrong otherwise. Call dab_cache_tensors_release(out) after success.
 */
int dab_cache_tensors_decode(const dab_cache_val_t *v, dab_cache_tensors_t *out, dab_err_t *err);
void dab_cache_tensors_release(dab_cache_tensors_t *t);

/* ---- the two-tier cache ---- */

typedef struct dab_cache dab_cache_t;
typedef struct dab_cache_scope dab_cache_scope_t;

typedef enum dab_evict_policy {
    DAB_EVICT_SIEVE, /* default: the better hit ratio on skewed and scanning workloads */
    DAB_EVICT_LRU,
} dab_evict_policy_t;

typedef struct dab_cache_opts {
    size_t l1_bytes;           /* 0 = no L1 */
    int l1_shards;             /* power of two; 0 = 16 */
    dab_evict_policy_t policy;
    const char *redis_url;     /* NULL/"" = no L2; redis://[[user]:password@]host[:port][/db] */
    int redis_timeout_ms;      /* per Redis call, connect included; 0 = 5 */
    int redis_pool;            /* connections for lookups; 0 = 8 */
    const char *redis_prefix;  /* NULL = "dabba:" */
    int64_t redis_ttl_s;       /* TTL of keys put without one; 0 = 3600 */
    uint64_t (*now_ns)(void);  /* clock for TTLs (tests); NULL = dab_now_ns */
} dab_cache_opts_t;

/* Fills o with the defaults (64 MiB L1, no L2). */
void dab_cache_defaults(dab_cache_opts_t *o);

/*
 * Makes a cache. A malformed Redis URL is DAB_EINVAL naming the part at fault; an
 * unreachable Redis is not an error (it is retried, and counted while it is down).
 * On error *out is NULL. The metrics dabba_cache_* are registered here.
 */
int dab_cache_new(const dab_cache_opts_t *o, dab_cache_t **out, dab_err_t *err);

/* Stops the L2 writer (pending fills are written within a short bound) and frees
 * everything. No call may be in progress. NULL is fine. */
void dab_cache_free(dab_cache_t *c);

/* The scope named name, created on first use (names are copied); lives as long as the
 * cache. NULL only when out of memory. Any thread. */
dab_cache_scope_t *dab_cache_scope(dab_cache_t *c, const char *name);

typedef enum dab_cache_tier {
    DAB_CACHE_MISS = 0,
    DAB_CACHE_HIT_L1 = 1,
    DAB_CACHE_HIT_L2 = 2,
} dab_cache_tier_t;

/*
 * Looks key up in L1, then L2. A hit stores a new reference in *out (release it) and
 * returns the tier; a miss (including every L2 fault) returns DAB_CACHE_MISS with *out
 * NULL. An L2 hit is put into L1 with the TTL Redis reports. Never fails; bounded by
 * the Redis timeout. Any thread.
 */
dab_cache_tier_t dab_cache_get(dab_cache_t *c, dab_cache_scope_t *sc, const dab_cache_key_t *key,
                               dab_cache_val_t **out);

/* Stores v (the cache takes its own references) under key for ttl_s seconds (0: L1
 * keeps it until evicted, L2 uses redis_ttl_s). A value larger than an L1 shard is
 * not kept in L1. Never fails; the L2 write is queued (dropped and counted when the
 * queue is full). Any thread. */
void dab_cache_put(dab_cache_t *c, dab_cache_scope_t *sc, const dab_cache_key_t *key,
                   dab_cache_val_t *v, int64_t ttl_s);

/* Drops every entry of sc (NULL: of every scope) from L1 and, when there is one, from
 * L2 (SCAN + UNLINK under the prefix). *l1_dropped / *l2_dropped (may be NULL) get the
 * counts. An L2 failure is returned with err naming it, after L1 was purged. */
int dab_cache_purge(dab_cache_t *c, dab_cache_scope_t *sc, int64_t *l1_dropped,
                    int64_t *l2_dropped, dab_err_t *err);

/* What a cache holds and has done, summed over scopes. */
typedef struct dab_cache_stats {
    uint64_t l1_entries, l1_bytes, l1_hits, l1_misses, l1_evictions, l1_expired;
    uint64_t l2_hits, l2_misses, l2_errors, l2_writes, l2_dropped;
    bool l2_configured, l2_up;
} dab_cache_stats_t;
void dab_cache_stats(dab_cache_t *c, dab_cache_stats_t *out);

/* Copies what L1 did on its own (evictions, expiry, bytes and entries held) and
 * whether Redis is up into the dabba_cache_* metrics; call before rendering them.
 * Any thread. */
void dab_cache_metrics_sync(dab_cache_t *c);

/* ---- single flight ---- */

typedef struct dab_flight dab_flight_t;

/* A caller waiting for another's computation; owned by the caller (in its request). */
typedef struct dab_flight_waiter {
    struct dab_flight_waiter *next;
    void *user;
} dab_flight_waiter_t;

/* A table of computations in progress. NULL when out of memory. */
dab_flight_t *dab_flight_new(void);
/* Every flight must have finished. NULL is fine. */
void dab_flight_free(dab_flight_t *f);

/*
 * Returns true when the caller now leads the computation of key (it must call
 * dab_flight_finish once it has an answer or has failed), false when another caller
 * leads it and w was queued behind it. Any thread.
 */
bool dab_flight_join(dab_flight_t *f, const dab_cache_key_t *key, dab_flight_waiter_t *w);

/* The leader's end: removes the flight and returns its waiters (in arrival order) for
 * the caller to answer; a caller joining after this leads a new flight. Any thread. */
dab_flight_waiter_t *dab_flight_finish(dab_flight_t *f, const dab_cache_key_t *key);

#endif
