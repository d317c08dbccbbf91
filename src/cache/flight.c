/*
 * flight.c - single flight: concurrent identical misses compute once.
 *
 * The first caller for a key leads; callers arriving while it computes are queued
 * on its flight, and the leader answers them all when it finishes. Flights live in
 * shards (each a mutex and a short chained table), keyed like the cache.
 */
#include <pthread.h>

#include "cache.h"

#define FLIGHT_SHARDS 16
#define FLIGHT_BUCKETS 64

typedef struct flight {
    dab_cache_key_t key;
    dab_flight_waiter_t *head, *tail;
    struct flight *next;
} flight_t;

typedef struct fshard {
    pthread_mutex_t mu; /* guards buckets and every flight in them */
    flight_t *buckets[FLIGHT_BUCKETS];
} fshard_t;

struct dab_flight {
    fshard_t shards[FLIGHT_SHARDS];
};

dab_flight_t *dab_flight_new(void)
{
    dab_flight_t *f = dab_calloc(1, sizeof *f);
    if (f)
        for (int i = 0; i < FLIGHT_SHARDS; i++)
            pthread_mutex_init(&f->shards[i].mu, NULL);
    return f;
}

void dab_flight_free(dab_flight_t *f)
{
    if (!f)
        return;
    for (int i = 0; i < FLIGHT_SHARDS; i++)
        pthread_mutex_destroy(&f->shards[i].mu);
    dab_free(f);
}

static flight_t **find(fshard_t *s, const dab_cache_key_t *key)
{
    flight_t **p = &s->buckets[(key->lo >> 8) % FLIGHT_BUCKETS];
    while (*p && ((*p)->key.lo != key->lo || (*p)->key.hi != key->hi))
        p = &(*p)->next;
    return p;
}

bool dab_flight_join(dab_flight_t *f, const dab_cache_key_t *key, dab_flight_waiter_t *w)
{
    fshard_t *s = &f->shards[key->hi % FLIGHT_SHARDS];
    pthread_mutex_lock(&s->mu);
    flight_t **p = find(s, key);
    if (*p) {
        w->next = NULL;
        if ((*p)->tail)
            (*p)->tail->next = w;
        else
            (*p)->head = w;
        (*p)->tail = w;
        pthread_mutex_unlock(&s->mu);
        return false;
    }
    flight_t *fl = dab_calloc(1, sizeof *fl);
    if (fl) {
        fl->key = *key;
        *p = fl;
    }
    pthread_mutex_unlock(&s->mu);
    /* Out of memory: lead without a flight (identical callers compute too). */
    return true;
}

dab_flight_waiter_t *dab_flight_finish(dab_flight_t *f, const dab_cache_key_t *key)
{
    fshard_t *s = &f->shards[key->hi % FLIGHT_SHARDS];
    pthread_mutex_lock(&s->mu);
    flight_t **p = find(s, key);
    flight_t *fl = *p;
    dab_flight_waiter_t *w = NULL;
    if (fl) {
        *p = fl->next;
        w = fl->head;
    }
    pthread_mutex_unlock(&s->mu);
    dab_free(fl);
    return w;
}
