/*
 * test_cache.c - the in-process cache: L1 eviction (SIEVE and LRU), the byte budget,
 * TTL, purge and refcounts; keys; the tensor encoding and its checks of hostile
 * bytes; single flight under threads; the two-tier cache with L1 alone.
 * (Redis, the L2 tier, is tests/unit/test_cache_redis.c.)
 */
#include <pthread.h>
#include <stdatomic.h>

#include "../../src/cache/cache_int.h"
#include "test.h"

static uint64_t g_now;
static uint64_t fake_now(void) { return g_now; }

static dab_cache_key_t K(uint64_t i) { return (dab_cache_key_t){.lo = i * 0x9E3779B97F4A7C15ull, .hi = i}; }

/* A value of len bytes all equal to tag. */
static dab_cache_val_t *val(size_t len, uint8_t tag)
{
    dab_cache_val_t *v = dab_cache_val_new(len);
    memset(v->data, tag, len);
    return v;
}

static bool put(dab_l1_t *l1, uint64_t k, size_t len, uint64_t ttl_ns, dab_l1_scope_stats_t *o)
{
    dab_cache_val_t *v = val(len, (uint8_t)k);
    dab_cache_key_t key = K(k);
    int rc = dab_l1_put(l1, &key, v, ttl_ns, o);
    dab_cache_val_release(v);
    return rc == 0;
}

static bool has(dab_l1_t *l1, uint64_t k)
{
    dab_cache_key_t key = K(k);
    dab_cache_val_t *v = dab_l1_get(l1, &key);
    bool ok = v && v->data[0] == (uint8_t)k;
    dab_cache_val_release(v);
    return ok;
}

static dab_l1_t *mk(size_t bytes, int shards, dab_evict_policy_t p)
{
    dab_l1_t *l1 = NULL;
    dab_l1_opts_t o = {.max_bytes = bytes, .shards = shards, .policy = p, .now_ns = fake_now};
    CHECK(dab_l1_new(&o, &l1, NULL) == 0);
    return l1;
}

TEST(l1_options)
{
    dab_l1_t *l1 = NULL;
    dab_err_t err = {0};
    dab_l1_opts_t o = {.max_bytes = 1000, .shards = 3};
    CHECK(dab_l1_new(&o, &l1, &err) == DAB_EINVAL && !l1);
    CHECK(strstr(err.msg, "power of two") != NULL);
    o.shards = 4;
    o.max_bytes = 0;
    CHECK(dab_l1_new(&o, &l1, &err) == DAB_EINVAL && !l1);
}

/* The byte budget holds after every put, and a value larger than a shard is refused. */
TEST(l1_budget)
{
    size_t e = dab_l1_entry_bytes(100);
    dab_l1_t *l1 = mk(10 * e, 1, DAB_EVICT_SIEVE);
    dab_l1_scope_stats_t o = {0};
    for (uint64_t i = 0; i < 100; i++) {
        CHECK(put(l1, i, 100, 0, &o));
        dab_l1_stats_t st;
        dab_l1_stats(l1, &st);
        if (st.bytes > 10 * e)
            CHECK(!"over budget");
    }
    dab_l1_stats_t st;
    dab_l1_stats(l1, &st);
    CHECK_EQ_INT(st.entries, 10);
    CHECK_EQ_INT(st.bytes, 10 * e);
    CHECK_EQ_INT(st.evictions, 90);
    CHECK_EQ_INT(atomic_load(&o.bytes), 10 * e);
    CHECK_EQ_INT(atomic_load(&o.entries), 10);
    CHECK_EQ_INT(atomic_load(&o.evictions), 90);
    /* the newest ten are there */
    for (uint64_t i = 90; i < 100; i++)
        CHECK(has(l1, i));
    dab_cache_val_t *big = val(11 * e, 1);
    dab_cache_key_t k = K(1000);
    CHECK(dab_l1_put(l1, &k, big, 0, NULL) == DAB_ELIMIT);
    dab_cache_val_release(big);
    CHECK(has(l1, 95));
    dab_l1_free(l1);
}

/* SIEVE: entries hit since the hand last passed survive; a scan of one-off keys is
 * evicted before them. LRU: the least recently used goes. */
TEST(l1_sieve_and_lru)
{
    size_t e = dab_l1_entry_bytes(10);
    dab_l1_t *s = mk(4 * e, 1, DAB_EVICT_SIEVE);
    for (uint64_t i = 1; i <= 4; i++)
        put(s, i, 10, 0, NULL);
    CHECK(has(s, 1)); /* visited */
    CHECK(has(s, 3));
    put(s, 5, 10, 0, NULL); /* evicts 2: the oldest unvisited */
    CHECK(!has(s, 2));
    CHECK(has(s, 1) && has(s, 3));
    /* a scan of new keys: the hot ones (1, 3) stay while the scan churns */
    for (uint64_t i = 100; i < 120; i++) {
        put(s, i, 10, 0, NULL);
        CHECK(has(s, 1));
        CHECK(has(s, 3));
    }
    dab_l1_free(s);

    dab_l1_t *l = mk(4 * e, 1, DAB_EVICT_LRU);
    for (uint64_t i = 1; i <= 4; i++)
        put(l, i, 10, 0, NULL);
    CHECK(has(l, 1)); /* 1 becomes the most recent: 2 is the least */
    put(l, 5, 10, 0, NULL);
    CHECK(!has(l, 2));
    CHECK(has(l, 1) && has(l, 3) && has(l, 4) && has(l, 5));
    dab_l1_free(l);
}

TEST(l1_ttl_replace_purge)
{
    g_now = 1000;
    dab_l1_t *l1 = mk(1 << 20, 4, DAB_EVICT_SIEVE);
    dab_l1_scope_stats_t a = {0}, b = {0};
    put(l1, 1, 10, 500, &a); /* expires at 1500 */
    put(l1, 2, 10, 0, &a);   /* never */
    put(l1, 3, 10, 0, &b);
    g_now = 1499;
    CHECK(has(l1, 1));
    g_now = 1500;
    CHECK(!has(l1, 1));
    CHECK_EQ_INT(atomic_load(&a.expired), 1);
    CHECK_EQ_INT(atomic_load(&a.entries), 1);
    g_now = 1ull << 40;
    CHECK(has(l1, 2));
    /* replacing keeps one entry with the new value */
    dab_cache_val_t *v = val(10, 77);
    dab_cache_key_t k = K(2);
    CHECK(dab_l1_put(l1, &k, v, 0, &a) == 0);
    dab_cache_val_release(v);
    dab_cache_val_t *got = dab_l1_get(l1, &k);
    CHECK(got && got->data[0] == 77);
    CHECK_EQ_INT(atomic_load(&a.entries), 1);
    /* purge one owner; the value a reader holds survives the purge */
    CHECK_EQ_INT(dab_l1_purge(l1, &a), 1);
    CHECK(got && got->data[9] == 77 && atomic_load(&got->refs) == 1);
    dab_cache_val_release(got);
    CHECK(!dab_l1_get(l1, &k));
    CHECK(has(l1, 3));
    CHECK_EQ_INT(atomic_load(&a.bytes), 0);
    CHECK_EQ_INT(dab_l1_purge(l1, NULL), 1);
    CHECK_EQ_INT(atomic_load(&b.entries), 0);
    dab_l1_stats_t st;
    dab_l1_stats(l1, &st);
    CHECK_EQ_INT(st.entries, 0);
    CHECK_EQ_INT(st.bytes, 0);
    dab_l1_free(l1);
    g_now = 0;
}

/* Many threads putting and getting: every value read is whole and belongs to its key,
 * and the budget holds at the end. */
typedef struct hammer {
    dab_l1_t *l1;
    int seed;
    atomic_int bad;
} hammer_t;

static void *hammer_main(void *arg)
{
    hammer_t *h = arg;
    unsigned x = (unsigned)h->seed * 2654435761u + 1;
    for (int i = 0; i < 20000; i++) {
        x = x * 1103515245u + 12345u;
        uint64_t k = (x >> 8) % 512;
        dab_cache_key_t key = K(k);
        if (x & 1) {
            dab_cache_val_t *v = val(16 + k % 200, (uint8_t)k);
            dab_l1_put(h->l1, &key, v, 0, NULL);
            dab_cache_val_release(v);
        } else {
            dab_cache_val_t *v = dab_l1_get(h->l1, &key);
            if (v) {
                if (v->len != 16 + k % 200)
                    atomic_fetch_add(&h->bad, 1);
                for (size_t b = 0; b < v->len; b++)
                    if (v->data[b] != (uint8_t)k)
                        atomic_fetch_add(&h->bad, 1);
                dab_cache_val_release(v);
            }
        }
    }
    return NULL;
}

TEST(l1_threads)
{
    for (int p = 0; p < 2; p++) {
        size_t budget = 64 * dab_l1_entry_bytes(120);
        dab_l1_t *l1 = mk(budget, 4, p ? DAB_EVICT_LRU : DAB_EVICT_SIEVE);
        hammer_t h[4];
        pthread_t t[4];
        for (int i = 0; i < 4; i++) {
            h[i] = (hammer_t){.l1 = l1, .seed = i + 1};
            pthread_create(&t[i], NULL, hammer_main, &h[i]);
        }
        int bad = 0;
        for (int i = 0; i < 4; i++) {
            pthread_join(t[i], NULL);
            bad += atomic_load(&h[i].bad);
        }
        CHECK_EQ_INT(bad, 0);
        dab_l1_stats_t st;
        dab_l1_stats(l1, &st);
        CHECK(st.bytes <= budget && st.entries > 0);
        dab_l1_free(l1);
    }
}

/* ---- keys ---- */

TEST(keys)
{
    dab_keyb_t a, b;
    dab_keyb_init(&a, "response", "m", 1, 7);
    dab_keyb_str(&a, "ab");
    dab_keyb_str(&a, "c");
    dab_keyb_init(&b, "response", "m", 1, 7);
    dab_keyb_str(&b, "a");
    dab_keyb_str(&b, "bc");
    dab_cache_key_t ka = dab_keyb_final(&a), kb = dab_keyb_final(&b);
    CHECK(ka.lo != kb.lo || ka.hi != kb.hi);
    /* the same parts give the same key; version, identity, stage and scope all count */
    dab_cache_key_t base, k;
    float data[4] = {1, 2, 3, 4};
    dab_tensor_t t = {.dtype = DAB_DT_FLOAT, .rank = 2, .dims = {2, 2}, .data = data};
    dab_keyb_init(&a, "response", "m", 1, 7);
    dab_keyb_tensor(&a, "x", &t);
    base = dab_keyb_final(&a);
    dab_keyb_init(&a, "response", "m", 1, 7);
    dab_keyb_tensor(&a, "x", &t);
    k = dab_keyb_final(&a);
    CHECK(k.lo == base.lo && k.hi == base.hi);
    struct {
        const char *stage, *scope;
        int64_t ver;
        uint64_t id;
    } v[] = {{"tokenize", "m", 1, 7}, {"response", "n", 1, 7}, {"response", "m", 2, 7},
             {"response", "m", 1, 8}};
    for (int i = 0; i < 4; i++) {
        dab_keyb_init(&a, v[i].stage, v[i].scope, v[i].ver, v[i].id);
        dab_keyb_tensor(&a, "x", &t);
        k = dab_keyb_final(&a);
        CHECK(k.lo != base.lo || k.hi != base.hi);
    }
    /* shape, dtype and bytes count: [2,2] vs [4,1], one changed float */
    dab_tensor_t t2 = t;
    t2.dims[0] = 4;
    t2.dims[1] = 1;
    dab_keyb_init(&a, "response", "m", 1, 7);
    dab_keyb_tensor(&a, "x", &t2);
    k = dab_keyb_final(&a);
    CHECK(k.lo != base.lo || k.hi != base.hi);
    t2 = t;
    t2.dtype = DAB_DT_INT32;
    dab_keyb_init(&a, "response", "m", 1, 7);
    dab_keyb_tensor(&a, "x", &t2);
    k = dab_keyb_final(&a);
    CHECK(k.lo != base.lo || k.hi != base.hi);
    data[3] = 4.0001f;
    dab_keyb_init(&a, "response", "m", 1, 7);
    dab_keyb_tensor(&a, "x", &t);
    k = dab_keyb_final(&a);
    CHECK(k.lo != base.lo || k.hi != base.hi);
    char hex[33];
    dab_cache_key_t kk = {.lo = 0x0123456789abcdefull, .hi = 0xfedcba9876543210ull};
    dab_cache_key_hex(&kk, hex);
    CHECK(!strcmp(hex, "0123456789abcdeffedcba9876543210"));
}

/* ---- the tensor encoding ---- */

TEST(codec_round_trip)
{
    float f[6] = {1.5f, -2, 3, 4, 5, 6};
    int64_t i64[1] = {42};
    dab_str_t strs[3] = {{"hello", 5}, {"", 0}, {"w\0rld", 5}};
    dab_tensor_t a = {.dtype = DAB_DT_FLOAT, .rank = 2, .dims = {2, 3}, .data = f};
    dab_tensor_t b = {.dtype = DAB_DT_INT64, .rank = 0, .data = i64};
    dab_tensor_t c = {.dtype = DAB_DT_STRING, .rank = 1, .dims = {3}, .data = strs};
    dab_tensor_t d = {.dtype = DAB_DT_FLOAT, .rank = 2, .dims = {0, 5}, .data = f};
    const char *names[] = {"logits", "count", "words", "empty"};
    const dab_tensor_t *ts[] = {&a, &b, &c, &d};
    dab_cache_val_t *v = NULL;
    dab_err_t err = {0};
    CHECK(dab_cache_tensors_encode(4, names, ts, &v, &err) == 0 && v);
    dab_cache_tensors_t out;
    CHECK(dab_cache_tensors_decode(v, &out, &err) == 0);
    CHECK_EQ_INT(out.n, 4);
    for (int i = 0; i < 4 && out.n == 4; i++) {
        CHECK(!strcmp(out.names[i], names[i]));
        CHECK(out.tensors[i].dtype == ts[i]->dtype && dab_shape_equal(&out.tensors[i], ts[i]));
        CHECK(((uintptr_t)out.tensors[i].data & 15) == 0 || ts[i]->dtype == DAB_DT_STRING);
    }
    if (out.n == 4) {
        CHECK(!memcmp(out.tensors[0].data, f, sizeof f));
        CHECK(*(int64_t *)out.tensors[1].data == 42);
        const dab_str_t *s = out.tensors[2].data;
        CHECK(s[0].len == 5 && !memcmp(s[0].ptr, "hello", 5));
        CHECK(s[1].len == 0);
        CHECK(s[2].len == 5 && !memcmp(s[2].ptr, "w\0rld", 5));
    }
    dab_cache_tensors_release(&out);
    /* every truncation and every single-byte change of the header area either decodes
     * to a consistent set or is refused; none reads outside the blob (ASan build) */
    int refused = 0;
    for (size_t len = 0; len < v->len; len++) {
        dab_cache_val_t *t = dab_cache_val_copy(v->data, len);
        if (dab_cache_tensors_decode(t, &out, &err))
            refused++;
        else
            dab_cache_tensors_release(&out);
        dab_cache_val_release(t);
    }
    CHECK_EQ_INT(refused, (long long)v->len);
    for (size_t pos = 0; pos < v->len; pos++) {
        dab_cache_val_t *t = dab_cache_val_copy(v->data, v->len);
        t->data[pos] ^= 0xA5;
        if (!dab_cache_tensors_decode(t, &out, &err)) {
            for (int i = 0; i < out.n; i++) {
                size_t want;
                CHECK(dab_shape_check("x", out.tensors[i].dtype, out.tensors[i].rank,
                                      out.tensors[i].dims, 0, &want, NULL) == 0);
            }
            dab_cache_tensors_release(&out);
        }
        dab_cache_val_release(t);
    }
    dab_cache_val_t *junk = dab_cache_val_copy("DBT1\xff\xff\xff\xff", 8);
    CHECK(dab_cache_tensors_decode(junk, &out, &err) == DAB_EFORMAT);
    CHECK(strstr(err.msg, "claims") != NULL);
    dab_cache_val_release(junk);
    dab_cache_val_release(v);
    CHECK(dab_cache_tensors_encode(DAB_CACHE_MAX_TENSORS + 1, names, ts, &v, &err) == DAB_ELIMIT);
}

/* ---- single flight ---- */

TEST(flight_basic)
{
    dab_flight_t *f = dab_flight_new();
    dab_cache_key_t k = K(5), k2 = K(6);
    dab_flight_waiter_t w[4] = {{0}};
    CHECK(dab_flight_join(f, &k, &w[0]));   /* leads */
    CHECK(!dab_flight_join(f, &k, &w[1]));  /* waits */
    CHECK(!dab_flight_join(f, &k, &w[2]));
    CHECK(dab_flight_join(f, &k2, &w[3]));  /* another key leads its own */
    dab_flight_waiter_t *ws = dab_flight_finish(f, &k);
    CHECK(ws == &w[1] && ws->next == &w[2] && !w[2].next);
    CHECK(dab_flight_join(f, &k, &w[0]));   /* a new flight */
    CHECK(!dab_flight_finish(f, &k));
    CHECK(!dab_flight_finish(f, &k2));
    CHECK(!dab_flight_finish(f, &k2));      /* finishing twice is harmless */
    dab_flight_free(f);
}

/* Threads racing on a few keys, round after round: per key and round exactly one
 * leader, and every waiter is handed back exactly once. */
typedef struct racer {
    dab_flight_t *f;
    pthread_barrier_t *bar;
    atomic_int *leads, *served;
    int rounds;
} racer_t;

static void *racer_main(void *arg)
{
    racer_t *r = arg;
    for (int round = 0; round < r->rounds; round++) {
        dab_flight_waiter_t w = {0};
        dab_cache_key_t k = K((uint64_t)(round % 3));
        w.user = &w;
        pthread_barrier_wait(r->bar);
        if (dab_flight_join(r->f, &k, &w)) {
            atomic_fetch_add(&r->leads[round], 1);
            pthread_barrier_wait(r->bar); /* every thread has joined */
            for (dab_flight_waiter_t *x = dab_flight_finish(r->f, &k); x; x = x->next)
                atomic_fetch_add(&r->served[round], 1);
        } else {
            pthread_barrier_wait(r->bar);
        }
        pthread_barrier_wait(r->bar); /* the leader has finished before w goes away */
    }
    return NULL;
}

TEST(flight_threads)
{
    enum { N = 6, R = 200 };
    dab_flight_t *f = dab_flight_new();
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, N);
    static atomic_int leads[R], served[R];
    racer_t r = {.f = f, .bar = &bar, .leads = leads, .served = served, .rounds = R};
    pthread_t t[N];
    for (int i = 0; i < N; i++)
        pthread_create(&t[i], NULL, racer_main, &r);
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    int bad = 0;
    for (int i = 0; i < R; i++)
        bad += atomic_load(&leads[i]) != 1 || atomic_load(&served[i]) != N - 1;
    CHECK_EQ_INT(bad, 0);
    pthread_barrier_destroy(&bar);
    dab_flight_free(f);
}

/* ---- the two-tier cache, with L1 alone ---- */

TEST(cache_l1_only)
{
    dab_cache_opts_t o;
    dab_cache_defaults(&o);
    o.l1_bytes = 1 << 20;
    o.now_ns = fake_now;
    g_now = 1;
    dab_cache_t *c = NULL;
    dab_err_t err = {0};
    CHECK(dab_cache_new(&o, &c, &err) == 0 && c);
    dab_cache_scope_t *a = dab_cache_scope(c, "a"), *b = dab_cache_scope(c, "b");
    CHECK(a && b && a != b && dab_cache_scope(c, "a") == a);
    dab_cache_key_t k1 = K(1), k2 = K(2);
    dab_cache_val_t *v = NULL;
    CHECK(dab_cache_get(c, a, &k1, &v) == DAB_CACHE_MISS && !v);
    dab_cache_val_t *x = val(32, 9);
    dab_cache_put(c, a, &k1, x, 10);
    dab_cache_put(c, b, &k2, x, 0);
    dab_cache_val_release(x);
    CHECK(dab_cache_get(c, a, &k1, &v) == DAB_CACHE_HIT_L1 && v && v->data[31] == 9);
    dab_cache_val_release(v);
    g_now += 11000000000ull; /* past a's 10 s */
    CHECK(dab_cache_get(c, a, &k1, &v) == DAB_CACHE_MISS);
    CHECK(dab_cache_get(c, b, &k2, &v) == DAB_CACHE_HIT_L1);
    dab_cache_val_release(v);
    dab_cache_stats_t st;
    dab_cache_stats(c, &st);
    CHECK_EQ_INT(st.l1_hits, 2);
    CHECK_EQ_INT(st.l1_misses, 2);
    CHECK_EQ_INT(st.l1_expired, 1);
    CHECK_EQ_INT(st.l1_entries, 1);
    CHECK(!st.l2_configured);
    dab_cache_metrics_sync(c);
    int64_t n1 = -1, n2 = -1;
    CHECK(dab_cache_purge(c, a, &n1, &n2, &err) == 0 && n1 == 0 && n2 == 0);
    CHECK(dab_cache_purge(c, NULL, &n1, &n2, &err) == 0 && n1 == 1);
    CHECK(dab_cache_get(c, b, &k2, &v) == DAB_CACHE_MISS);
    dab_cache_free(c);
    /* a malformed Redis URL is refused, naming it */
    o.redis_url = "redis://127.0.0.1:70000/0";
    CHECK(dab_cache_new(&o, &c, &err) == DAB_EINVAL && !c);
    CHECK(strstr(err.msg, "70000") != NULL);
    o.redis_url = "http://localhost";
    CHECK(dab_cache_new(&o, &c, &err) == DAB_EINVAL && !c);
    /* a TTL past the longest any tier keeps is refused at start, naming it */
    o.redis_url = "redis://127.0.0.1:6379/0";
    o.redis_ttl_s = DAB_CACHE_MAX_TTL_S + 1;
    CHECK(dab_cache_new(&o, &c, &err) == DAB_EINVAL && !c);
    CHECK(strstr(err.msg, "TTL") != NULL);
    g_now = 0;
}

TEST_LIST(T(l1_options), T(l1_budget), T(l1_sieve_and_lru), T(l1_ttl_replace_purge),
          T(l1_threads), T(keys), T(codec_round_trip), T(flight_basic), T(flight_threads),
          T(cache_l1_only))
