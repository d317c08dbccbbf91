/*
 * cache_int.h - what the cache's own files share: the L1 store (l1.c) and the Redis
 * tier (redis.c), glued into the two-tier cache by cache.c.
 */
#ifndef DAB_CACHE_INT_H
#define DAB_CACHE_INT_H

#include "cache.h"

/* The longest TTL any tier keeps (ten years, as config.json allows): a longer one,
 * e.g. a TTL Redis reports for a key someone else wrote, is cut to it, so that no TTL
 * overflows when turned into nanoseconds. */
#define DAB_CACHE_MAX_TTL_S (10ll * 365 * 86400)

/* ---- L1: in-process, sharded, byte-bounded, TTL ---- */

typedef struct dab_l1 dab_l1_t;

/* Per-scope L1 accounting, updated under the shard locks with atomics; the cache
 * layer turns it into metrics. */
typedef struct dab_l1_scope_stats {
    atomic_llong bytes, entries, evictions, expired;
} dab_l1_scope_stats_t;

typedef struct dab_l1_opts {
    size_t max_bytes;         /* total; each shard gets max_bytes / shards */
    int shards;               /* power of two, 1..1024 */
    dab_evict_policy_t policy;
    uint64_t (*now_ns)(void); /* NULL = dab_now_ns */
} dab_l1_opts_t;

/* DAB_EINVAL naming the option when shards is not a power of two or max_bytes is 0. */
int dab_l1_new(const dab_l1_opts_t *o, dab_l1_t **out, dab_err_t *err);
void dab_l1_free(dab_l1_t *l1);

/* A new reference to the live value under key, or NULL (absent or expired: an expired
 * entry is dropped here). Any thread. */
dab_cache_val_t *dab_l1_get(dab_l1_t *l1, const dab_cache_key_t *key);

/* Stores v under key (replacing an older value), taking a reference; entries are
 * evicted by the policy until the shard fits its budget. ttl_ns 0 = no expiry. A
 * value larger than a shard's budget is refused with DAB_ELIMIT (nothing changes).
 * owner (may be NULL) is charged the entry's bytes while it lives and told of its
 * eviction or expiry. Any thread. */
int dab_l1_put(dab_l1_t *l1, const dab_cache_key_t *key, dab_cache_val_t *v, uint64_t ttl_ns,
               dab_l1_scope_stats_t *owner);

/* Drops every entry owned by owner (NULL: every entry); returns how many. */
int64_t dab_l1_purge(dab_l1_t *l1, const dab_l1_scope_stats_t *owner);

/* Bytes charged for an entry holding len value bytes (value + bookkeeping). */
size_t dab_l1_entry_bytes(size_t len);

typedef struct dab_l1_stats {
    uint64_t entries, bytes, evictions, expired;
} dab_l1_stats_t;
void dab_l1_stats(dab_l1_t *l1, dab_l1_stats_t *out);

/* ---- L2: Redis ---- */

typedef struct dab_l2 dab_l2_t;

/* A parsed redis:// URL. */
typedef struct dab_redis_url {
    char host[256];
    int port;           /* default 6379 */
    char user[128];     /* "" = none (AUTH with the password alone) */
    char password[256]; /* "" = no AUTH */
    int db;             /* default 0 */
} dab_redis_url_t;

/* redis://[[user]:password@]host[:port][/db] (percent-escapes in user and password).
 * DAB_EINVAL naming the part at fault. */
int dab_redis_url_parse(const char *url, dab_redis_url_t *out, dab_err_t *err);

/* The kinds of L2 fault, for counters and logs. */
typedef enum dab_l2_fault {
    DAB_L2_F_CONNECT,  /* could not connect, or AUTH / SELECT failed */
    DAB_L2_F_TIMEOUT,  /* the call's deadline passed */
    DAB_L2_F_IO,       /* the connection broke */
    DAB_L2_F_PROTOCOL, /* the server's bytes are not RESP, or not the reply expected */
    DAB_L2_F_REPLY,    /* an error reply (e.g. OOM: Redis is full) */
    DAB_L2_F_CORRUPT,  /* a value whose envelope, length, key or checksum is wrong */
    DAB_L2_F_DOWN,     /* skipped: the server is in backoff after faults */
    DAB_L2_F_BUSY,     /* skipped: no pooled connection free within the timeout */
    DAB_L2_F_DROPPED,  /* a fill dropped: the write queue was full */
    DAB_L2_N_FAULTS
} dab_l2_fault_t;

/* "connect", "timeout", ... */
const char *dab_l2_fault_name(dab_l2_fault_t f);

typedef struct dab_l2_opts {
    const char *url;
    int timeout_ms;         /* deadline per call (connect + AUTH/SELECT count as one call) */
    int pool;               /* lookup connections */
    const char *prefix;     /* every key starts with it */
    int64_t default_ttl_s;  /* for puts with ttl_s 0 */
    int max_pending_writes; /* queued fills; 0 = 4096 */
    /* Told of every fault, from the calling thread or the writer thread; scope may be
     * NULL (purge, connect). Must be quick and thread-safe. */
    void (*on_fault)(void *user, const char *scope, dab_l2_fault_t f, const char *msg);
    void *fault_user;
} dab_l2_opts_t;

/* Parses the URL (DAB_EINVAL) and starts the writer thread; connects lazily. */
int dab_l2_new(const dab_l2_opts_t *o, dab_l2_t **out, dab_err_t *err);

/* Writes what is queued within a short bound, then closes everything. NULL is fine. */
void dab_l2_free(dab_l2_t *l2);

/*
 * GET prefix + scope + ":" + hex(key). 0 with *out a new value holding the payload
 * (envelope checked: magic, length, key, XXH3-64 checksum) and *ttl_s the key's
 * remaining TTL in seconds (-1 unknown), or 0 with *out NULL for a miss; a fault
 * returns DAB_EIO (connect, broken connection, error reply), DAB_ETIMEDOUT, DAB_EFORMAT
 * (protocol, corrupt) or DAB_EBUSY (skipped: down or no free connection) after telling
 * on_fault. Returns within timeout_ms. Any thread.
 */
int dab_l2_get(dab_l2_t *l2, const char *scope, const dab_cache_key_t *key,
               dab_cache_val_t **out, int64_t *ttl_s);

/* Queues SET key envelope(v) EX ttl (ttl_s 0 = default_ttl_s), taking a reference on
 * v. Returns at once. Any thread. */
void dab_l2_put(dab_l2_t *l2, const char *scope, const dab_cache_key_t *key,
                dab_cache_val_t *v, int64_t ttl_s);

/* Deletes every key of scope (NULL: every key under the prefix) with SCAN MATCH and
 * UNLINK, on its own connection, within a few seconds; *deleted gets the count. */
int dab_l2_purge(dab_l2_t *l2, const char *scope, int64_t *deleted, dab_err_t *err);

/* Blocks until every fill queued before the call has been written or dropped, at most
 * timeout_ms (tests and shutdown). */
void dab_l2_flush(dab_l2_t *l2, int timeout_ms);

typedef struct dab_l2_stats {
    uint64_t hits, misses, writes, faults[DAB_L2_N_FAULTS];
    bool up; /* the last call reached the server */
} dab_l2_stats_t;
void dab_l2_stats(dab_l2_t *l2, dab_l2_stats_t *out);

#endif
