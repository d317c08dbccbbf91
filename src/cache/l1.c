/*
 * l1.c - the in-process cache tier: shards, each a hash table of entries on one
 * list, bounded by bytes, with a TTL per entry.
 *
 * Eviction is SIEVE by default: a hit only sets the entry's visited bit (no list
 * move, so a hit writes one byte under the shard lock); the hand walks from the
 * oldest entry toward the newest, clearing visited bits and evicting the first
 * unvisited entry. New entries enter at the head, so a one-off scan is evicted
 * before the popular entries it pushed back. LRU (move to head on every hit, evict
 * the tail) is kept for comparison: bench/cache/policy measures both.
 *
 * Each shard's mutex guards its table, list, hand and byte count. Values are
 * refcounted: a reader keeps its value after the entry is evicted.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "cache_int.h"

typedef struct entry {
    dab_cache_key_t key;
    dab_cache_val_t *val;
    uint64_t expires_ns; /* 0 = never */
    size_t bytes;        /* charged to the shard and the owner */
    dab_l1_scope_stats_t *owner;
    struct entry *hnext;       /* hash chain */
    struct entry *prev, *next; /* list: head = newest */
    bool visited;
} entry_t;

typedef struct shard {
    pthread_mutex_t mu;
    entry_t **buckets; /* nb buckets, a power of two */
    size_t nb;
    size_t n;
    entry_t *head, *tail, *hand;
    size_t bytes, budget;
    uint64_t evictions, expired;
    char pad[64];
} shard_t;

struct dab_l1 {
    shard_t *shards;
    int n_shards;
    dab_evict_policy_t policy;
    uint64_t (*now_ns)(void);
};

size_t dab_l1_entry_bytes(size_t len)
{
    return len + sizeof(entry_t) + 64 /* the value's header */;
}

int dab_l1_new(const dab_l1_opts_t *o, dab_l1_t **out, dab_err_t *err)
{
    *out = NULL;
    if (o->shards < 1 || o->shards > 1024 || (o->shards & (o->shards - 1)))
        return dab_err_set(err, DAB_EINVAL, "cache shards must be a power of two in 1..1024, got %d",
                           o->shards);
    if (!o->max_bytes)
        return dab_err_set(err, DAB_EINVAL, "cache size must be more than 0 bytes");
    dab_l1_t *l1 = dab_calloc(1, sizeof *l1);
    if (!l1)
        return dab_err_set(err, DAB_ENOMEM, "out of memory making the cache");
    l1->shards = dab_calloc((size_t)o->shards, sizeof(shard_t));
    if (!l1->shards) {
        dab_free(l1);
        return dab_err_set(err, DAB_ENOMEM, "out of memory making the cache");
    }
    l1->n_shards = o->shards;
    l1->policy = o->policy;
    l1->now_ns = o->now_ns ? o->now_ns : dab_now_ns;
    for (int i = 0; i < o->shards; i++) {
        pthread_mutex_init(&l1->shards[i].mu, NULL);
        l1->shards[i].budget = o->max_bytes / (size_t)o->shards;
    }
    *out = l1;
    return 0;
}

static shard_t *shard_of(dab_l1_t *l1, const dab_cache_key_t *key)
{
    return &l1->shards[key->hi & (uint64_t)(l1->n_shards - 1)];
}

static entry_t **slot_of(shard_t *s, const dab_cache_key_t *key)
{
    entry_t **p = &s->buckets[key->lo & (s->nb - 1)];
    while (*p && ((*p)->key.lo != key->lo || (*p)->key.hi != key->hi))
        p = &(*p)->hnext;
    return p;
}

static void list_unlink(shard_t *s, entry_t *e)
{
    if (s->hand == e)
        s->hand = e->prev; /* toward the head: the hand never skips an entry */
    if (e->prev)
        e->prev->next = e->next;
    else
        s->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        s->tail = e->prev;
    e->prev = e->next = NULL;
}

static void list_push_head(shard_t *s, entry_t *e)
{
    e->prev = NULL;
    e->next = s->head;
    if (s->head)
        s->head->prev = e;
    s->head = e;
    if (!s->tail)
        s->tail = e;
}

/* Unlinks e from the table and the list and frees it (with s->mu held). */
static void drop(shard_t *s, entry_t *e, bool expired, bool evicted)
{
    entry_t **p = slot_of(s, &e->key);
    *p = e->hnext;
    list_unlink(s, e);
    s->n--;
    s->bytes -= e->bytes;
    if (e->owner) {
        atomic_fetch_sub(&e->owner->bytes, (long long)e->bytes);
        atomic_fetch_sub(&e->owner->entries, 1);
        if (expired)
            atomic_fetch_add(&e->owner->expired, 1);
        else if (evicted)
            atomic_fetch_add(&e->owner->evictions, 1);
    }
    if (expired)
        s->expired++;
    else if (evicted)
        s->evictions++;
    dab_cache_val_release(e->val);
    dab_free(e);
}

/* Evicts one entry by the policy; expired entries met on the way go first. */
static void evict_one(dab_l1_t *l1, shard_t *s, uint64_t now)
{
    if (l1->policy == DAB_EVICT_LRU) {
        entry_t *e = s->tail;
        drop(s, e, e->expires_ns && e->expires_ns <= now, true);
        return;
    }
    entry_t *e = s->hand ? s->hand : s->tail;
    for (;;) {
        if (e->expires_ns && e->expires_ns <= now)
            break;
        if (!e->visited)
            break;
        e->visited = false;
        e = e->prev ? e->prev : s->tail;
    }
    s->hand = e->prev;
    drop(s, e, e->expires_ns && e->expires_ns <= now, true);
}

/* Doubles the bucket array when entries outnumber buckets (with s->mu held). A failed
 * allocation only leaves the chains longer. */
static void grow(shard_t *s)
{
    size_t nb = s->nb ? s->nb * 2 : 64;
    entry_t **b = dab_calloc(nb, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < s->nb; i++) {
        entry_t *e = s->buckets[i];
        while (e) {
            entry_t *next = e->hnext;
            size_t k = e->key.lo & (nb - 1);
            e->hnext = b[k];
            b[k] = e;
            e = next;
        }
    }
    dab_free(s->buckets);
    s->buckets = b;
    s->nb = nb;
}

dab_cache_val_t *dab_l1_get(dab_l1_t *l1, const dab_cache_key_t *key)
{
    shard_t *s = shard_of(l1, key);
    dab_cache_val_t *v = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->nb) {
        entry_t *e = *slot_of(s, key);
        if (e && e->expires_ns && e->expires_ns <= l1->now_ns()) {
            drop(s, e, true, false);
        } else if (e) {
            if (l1->policy == DAB_EVICT_LRU) {
                list_unlink(s, e);
                list_push_head(s, e);
            } else {
                e->visited = true;
            }
            v = e->val;
            dab_cache_val_ref(v);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return v;
}

int dab_l1_put(dab_l1_t *l1, const dab_cache_key_t *key, dab_cache_val_t *v, uint64_t ttl_ns,
               dab_l1_scope_stats_t *owner)
{
    shard_t *s = shard_of(l1, key);
    size_t bytes = dab_l1_entry_bytes(v->len);
    if (bytes > s->budget)
        return DAB_ELIMIT;
    entry_t *ne = dab_calloc(1, sizeof *ne);
    if (!ne)
        return DAB_ENOMEM;
    uint64_t now = l1->now_ns();
    pthread_mutex_lock(&s->mu);
    if (s->nb) {
        entry_t *old = *slot_of(s, key);
        if (old)
            drop(s, old, false, false);
    }
    if (s->n + 1 > s->nb)
        grow(s);
    if (!s->nb) {
        pthread_mutex_unlock(&s->mu);
        dab_free(ne);
        return DAB_ENOMEM;
    }
    while (s->bytes + bytes > s->budget && s->tail)
        evict_one(l1, s, now);
    ne->key = *key;
    ne->val = v;
    dab_cache_val_ref(v);
    ne->expires_ns = ttl_ns ? now + ttl_ns : 0;
    ne->bytes = bytes;
    ne->owner = owner;
    entry_t **p = &s->buckets[key->lo & (s->nb - 1)];
    ne->hnext = *p;
    *p = ne;
    list_push_head(s, ne);
    s->n++;
    s->bytes += bytes;
    if (owner) {
        atomic_fetch_add(&owner->bytes, (long long)bytes);
        atomic_fetch_add(&owner->entries, 1);
    }
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int64_t dab_l1_purge(dab_l1_t *l1, const dab_l1_scope_stats_t *owner)
{
    int64_t n = 0;
    for (int i = 0; i < l1->n_shards; i++) {
        shard_t *s = &l1->shards[i];
        pthread_mutex_lock(&s->mu);
        entry_t *e = s->head;
        while (e) {
            entry_t *next = e->next;
            if (!owner || e->owner == owner) {
                drop(s, e, false, false);
                n++;
            }
            e = next;
        }
        pthread_mutex_unlock(&s->mu);
    }
    return n;
}

void dab_l1_stats(dab_l1_t *l1, dab_l1_stats_t *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < l1->n_shards; i++) {
        shard_t *s = &l1->shards[i];
        pthread_mutex_lock(&s->mu);
        out->entries += s->n;
        out->bytes += s->bytes;
        out->evictions += s->evictions;
        out->expired += s->expired;
        pthread_mutex_unlock(&s->mu);
    }
}

void dab_l1_free(dab_l1_t *l1)
{
    if (!l1)
        return;
    dab_l1_purge(l1, NULL);
    for (int i = 0; i < l1->n_shards; i++) {
        pthread_mutex_destroy(&l1->shards[i].mu);
        dab_free(l1->shards[i].buckets);
    }
    dab_free(l1->shards);
    dab_free(l1);
}
