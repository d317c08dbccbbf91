/*
 * test_cache_redis.c - the cache's Redis tier (src/cache/redis.c): URL parsing, the
 * round trip and its TTLs, the envelope (read back and forged), corrupt values,
 * purges by scope and prefix, a server killed and restarted, paused and resumed,
 * full, password-protected and on another database, a full write queue, many
 * threads at once, and fake servers that answer garbage, the wrong type, nothing,
 * one byte at a time, or hang up.
 *
 * It starts its own redis-servers (on free loopback ports, without persistence) and
 * kills them at exit, even after a failure; fake servers are threads of this test.
 * Timeouts are short (50-200 ms) where the test is about faults, and the time
 * bounds checked are generous: these are correctness checks, not benchmarks.
 */
#define XXH_INLINE_ALL
#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include "cache/cache_int.h"
#include "test.h"

#define PASSWORD "p@ss:w/rd"
#define PASSWORD_URL "p%40ss%3Aw%2Frd"

/* ---- redis-servers ---- */

typedef struct rserver {
    pid_t pid; /* 0: not running */
    int port;
    const char *password; /* NULL: none */
    redisContext *admin;  /* the test's own connection */
} rserver_t;

static rserver_t g_main, g_flaky, g_auth; /* g_flaky is killed, paused and restarted */
static rserver_t *const g_servers[] = {&g_main, &g_flaky, &g_auth};

static void server_stop(rserver_t *s)
{
    if (s->admin)
        redisFree(s->admin);
    s->admin = NULL;
    if (s->pid > 0) {
        kill(s->pid, SIGCONT);
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
    }
    s->pid = 0;
}

static void stop_all_servers(void)
{
    for (size_t i = 0; i < DAB_ARRAY_LEN(g_servers); i++)
        server_stop(g_servers[i]);
}

/* A loopback port that was free a moment ago. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static redisContext *admin_connect(rserver_t *s)
{
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    tv.tv_sec = 5;
    tv.tv_usec = 0;
    redisSetTimeout(c, tv);
    if (s->password) {
        redisReply *r = redisCommand(c, "AUTH %s", s->password);
        bool ok = r && r->type == REDIS_REPLY_STATUS;
        if (r)
            freeReplyObject(r);
        if (!ok) {
            redisFree(c);
            return NULL;
        }
    }
    return c;
}

/* Runs a command on the test's own connection (NULL when the server is not there). */
static redisReply *rcmd(rserver_t *s, const char *fmt, ...)
{
    if (s->admin && s->admin->err) {
        redisFree(s->admin);
        s->admin = NULL;
    }
    if (!s->admin)
        s->admin = admin_connect(s);
    if (!s->admin)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(s->admin, fmt, ap);
    va_end(ap);
    return r;
}

/* An integer reply, or -999 for anything else. */
static long long rcmd_int(rserver_t *s, const char *fmt, const char *arg)
{
    redisReply *r = rcmd(s, fmt, arg);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -999;
    if (r)
        freeReplyObject(r);
    return v;
}

static void rcmd_ok(rserver_t *s, const char *fmt, ...)
{
    if (!s->admin)
        s->admin = admin_connect(s);
    if (!s->admin)
        return;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(s->admin, fmt, ap);
    va_end(ap);
    if (r)
        freeReplyObject(r);
}

/* Starts redis-server on s->port (a free one when 0) and waits until it answers PING. */
static bool server_start(rserver_t *s)
{
    static bool atexit_done;
    if (!atexit_done) {
        atexit(stop_all_servers);
        atexit_done = true;
    }
    for (int attempt = 0; attempt < 3; attempt++) {
        int port = s->port ? s->port : free_port();
        char ports[16];
        snprintf(ports, sizeof ports, "%d", port);
        pid_t pid = fork();
        if (pid < 0)
            return false;
        if (pid == 0) {
            /* The server dies with this test, even if the test crashes. */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            freopen("/dev/null", "w", stdout);
            freopen("/dev/null", "w", stderr);
            if (chdir("/tmp") != 0)
                _exit(127);
            if (s->password)
                execlp("redis-server", "redis-server", "--port", ports, "--bind", "127.0.0.1",
                       "--save", "", "--appendonly", "no", "--requirepass", s->password,
                       (char *)NULL);
            else
                execlp("redis-server", "redis-server", "--port", ports, "--bind", "127.0.0.1",
                       "--save", "", "--appendonly", "no", (char *)NULL);
            _exit(127);
        }
        s->pid = pid;
        s->port = port;
        uint64_t until = dab_now_ns() + 10000000000ull;
        while (dab_now_ns() < until) {
            if (waitpid(pid, NULL, WNOHANG) == pid) {
                s->pid = 0;
                break;
            }
            redisReply *r = rcmd(s, "PING");
            bool ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
            if (r)
                freeReplyObject(r);
            if (ok)
                return true;
            if (s->admin) {
                redisFree(s->admin);
                s->admin = NULL;
            }
            usleep(20000);
        }
        if (s->pid) {
            server_stop(s);
            return false;
        }
        if (attempt == 0 && s->port == port)
            usleep(200000); /* a restart on the same port: let it go */
    }
    return false;
}

static void server_kill(rserver_t *s)
{
    if (s->admin)
        redisFree(s->admin);
    s->admin = NULL;
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
    }
    s->pid = 0;
}

static void url_of(const rserver_t *s, char *out, size_t n, const char *tail)
{
    snprintf(out, n, "redis://%s127.0.0.1:%d%s", s->password ? ":" PASSWORD_URL "@" : "", s->port,
             tail ? tail : "");
}

/* ---- the tier under test ---- */

typedef struct faults {
    pthread_mutex_t mu;
    int n[DAB_L2_N_FAULTS];
    char last[DAB_L2_N_FAULTS][512];
} faults_t;

static void on_fault(void *user, const char *scope, dab_l2_fault_t f, const char *msg)
{
    faults_t *fl = user;
    (void)scope;
    pthread_mutex_lock(&fl->mu);
    fl->n[f]++;
    snprintf(fl->last[f], sizeof fl->last[f], "%s", msg);
    pthread_mutex_unlock(&fl->mu);
}

static void faults_init(faults_t *fl)
{
    memset(fl, 0, sizeof *fl);
    pthread_mutex_init(&fl->mu, NULL);
}

static int faults_n(faults_t *fl, dab_l2_fault_t f)
{
    pthread_mutex_lock(&fl->mu);
    int n = fl->n[f];
    pthread_mutex_unlock(&fl->mu);
    return n;
}

static bool faults_last_has(faults_t *fl, dab_l2_fault_t f, const char *needle)
{
    pthread_mutex_lock(&fl->mu);
    bool has = strstr(fl->last[f], needle) != NULL;
    if (!has)
        fprintf(stderr, "  last %s fault: '%s' (wanted '%s')\n", dab_l2_fault_name(f), fl->last[f],
                needle);
    pthread_mutex_unlock(&fl->mu);
    return has;
}

typedef struct mkopts {
    const char *url;
    int timeout_ms, pool, max_pending;
    const char *prefix;
    int64_t ttl_s;
} mkopts_t;

static dab_l2_t *mk(mkopts_t m, faults_t *fl)
{
    dab_l2_opts_t o = {.url = m.url,
                       .timeout_ms = m.timeout_ms,
                       .pool = m.pool,
                       .prefix = m.prefix ? m.prefix : "dt:",
                       .default_ttl_s = m.ttl_s,
                       .max_pending_writes = m.max_pending,
                       .on_fault = on_fault,
                       .fault_user = fl};
    dab_l2_t *l2 = NULL;
    dab_err_t e = {0};
    if (dab_l2_new(&o, &l2, &e))
        fprintf(stderr, "dab_l2_new(%s): %s\n", m.url, e.msg);
    return l2;
}

static dab_cache_key_t key_of(uint64_t i)
{
    return (dab_cache_key_t){.lo = 0x9e3779b97f4a7c15ull * (i + 1),
                             .hi = 0xc2b2ae3d27d4eb4full ^ i};
}

static dab_cache_val_t *val_of(size_t len, unsigned seed)
{
    dab_cache_val_t *v = dab_cache_val_new(len);
    for (size_t i = 0; i < len; i++)
        v->data[i] = (uint8_t)(i * 131 + seed * 7 + (i >> 8));
    return v;
}

static bool val_eq(const dab_cache_val_t *a, const dab_cache_val_t *b)
{
    return a && b && a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* The Redis key of (prefix, scope, key) as the tier writes it. */
static void rkey(char *out, size_t n, const char *prefix, const char *scope,
                 const dab_cache_key_t *k)
{
    char hex[33];
    dab_cache_key_hex(k, hex);
    snprintf(out, n, "%s%s:%s", prefix, scope, hex);
}

static uint64_t ms_since(uint64_t t0)
{
    return (dab_now_ns() - t0) / 1000000;
}

/* Gets key and, whatever happens, releases the value; returns rc and the time. */
static int get_timed(dab_l2_t *l2, const char *scope, const dab_cache_key_t *k, uint64_t *ms,
                     dab_cache_val_t **keep)
{
    dab_cache_val_t *v = (dab_cache_val_t *)1;
    int64_t ttl = -5;
    uint64_t t0 = dab_now_ns();
    int rc = dab_l2_get(l2, scope, k, &v, &ttl);
    if (ms)
        *ms = ms_since(t0);
    if (rc != 0 && v != NULL) {
        fprintf(stderr, "  get failed (%d) but *out is not NULL\n", rc);
        t_failed++;
        v = NULL;
    }
    if (keep)
        *keep = v;
    else
        dab_cache_val_release(v);
    return rc;
}

/* Polls get until it succeeds (rc 0), at most ms; returns whether it did. */
static bool get_until_ok(dab_l2_t *l2, const dab_cache_key_t *k, int ms)
{
    uint64_t until = dab_now_ns() + (uint64_t)ms * 1000000;
    while (dab_now_ns() < until) {
        if (get_timed(l2, "s", k, NULL, NULL) == 0)
            return true;
        usleep(10000);
    }
    return false;
}

/* ---- URL ---- */

static void check_url_bad(const char *url, const char *needle)
{
    dab_redis_url_t u;
    dab_err_t e = {0};
    int rc = dab_redis_url_parse(url, &u, &e);
    CHECK_EQ_INT(rc, DAB_EINVAL);
    if (!strstr(e.msg, needle)) {
        fprintf(stderr, "  URL '%s': message '%s' lacks '%s'\n", url, e.msg, needle);
        t_failed++;
    } else {
        t_passed++;
    }
}

TEST(test_url_parse)
{
    dab_redis_url_t u;
    dab_err_t e = {0};
    CHECK_EQ_INT(dab_redis_url_parse("redis://127.0.0.1", &u, &e), 0);
    CHECK(strcmp(u.host, "127.0.0.1") == 0 && u.port == 6379 && u.db == 0 && !u.user[0] &&
          !u.password[0]);
    CHECK_EQ_INT(dab_redis_url_parse("redis://cache.local:6390/3", &u, &e), 0);
    CHECK(strcmp(u.host, "cache.local") == 0 && u.port == 6390 && u.db == 3);
    CHECK_EQ_INT(dab_redis_url_parse("redis://:secret@h:1/0", &u, &e), 0);
    CHECK(strcmp(u.password, "secret") == 0 && !u.user[0] && u.port == 1 && u.db == 0);
    CHECK_EQ_INT(dab_redis_url_parse("redis://al%69ce:" PASSWORD_URL "@h/7", &u, &e), 0);
    CHECK(strcmp(u.user, "alice") == 0 && strcmp(u.password, PASSWORD) == 0 && u.db == 7 &&
          u.port == 6379 && strcmp(u.host, "h") == 0);
    CHECK_EQ_INT(dab_redis_url_parse("redis://[::1]:6380", &u, &e), 0);
    CHECK(strcmp(u.host, "::1") == 0 && u.port == 6380);
    CHECK_EQ_INT(dab_redis_url_parse("redis://[::1]", &u, &e), 0);
    CHECK(strcmp(u.host, "::1") == 0 && u.port == 6379);
    CHECK_EQ_INT(dab_redis_url_parse("redis://h:65535/1000000", &u, &e), 0);
    CHECK(u.port == 65535 && u.db == 1000000);
    CHECK_EQ_INT(dab_redis_url_parse("REDIS://h/", &u, &e), 0);
    CHECK(u.db == 0);

    check_url_bad("", "empty");
    check_url_bad("http://h", "must start with redis://");
    check_url_bad("rediss://h", "TLS");
    check_url_bad("redis://h:99999", "port '99999' is not 1..65535");
    check_url_bad("redis://h:0", "port '0'");
    check_url_bad("redis://h:12ab", "port '12ab'");
    check_url_bad("redis://h:", "port is empty");
    check_url_bad("redis://:6379", "host is empty");
    check_url_bad("redis://:pw@/1", "host is empty");
    check_url_bad("redis://h h", "host 'h h'");
    check_url_bad("redis://[::1", "']'");
    check_url_bad("redis://[::1]x", "after the IPv6 host");
    check_url_bad("redis://h/x", "database 'x'");
    check_url_bad("redis://h/1000001", "database '1000001'");
    check_url_bad("redis://h/-1", "database '-1'");
    check_url_bad("redis://h?timeout=1", "options");
    check_url_bad("redis://a%zz:pw@h", "user has a '%'");
    check_url_bad("redis://:p%4@h", "password has a '%'");
    check_url_bad("redis://:p%00@h", "%00");
    check_url_bad("redis://onlyname@h", "no ':'");
    check_url_bad("redis://user:@h", "password is empty");
    char longpw[400] = "redis://:";
    memset(longpw + 9, 'a', 300);
    strcpy(longpw + 309, "@h");
    check_url_bad(longpw, "password is longer than 255");

    /* a password is never repeated in a message */
    dab_redis_url_parse("redis://:topsecret%zz@h", &u, &e);
    CHECK(strstr(e.msg, "topsecret") == NULL);

    /* dab_l2_new refuses a bad URL and bad options, naming them */
    dab_l2_opts_t o = {.url = "redis://h:70000"};
    dab_l2_t *l2 = (dab_l2_t *)1;
    CHECK_EQ_INT(dab_l2_new(&o, &l2, &e), DAB_EINVAL);
    CHECK(l2 == NULL && strstr(e.msg, "port '70000'"));
    o = (dab_l2_opts_t){.url = "redis://h", .pool = -1};
    CHECK_EQ_INT(dab_l2_new(&o, &l2, &e), DAB_EINVAL);
    CHECK(l2 == NULL && strstr(e.msg, "pool"));

    CHECK(strcmp(dab_l2_fault_name(DAB_L2_F_TIMEOUT), "timeout") == 0);
    CHECK(strcmp(dab_l2_fault_name(DAB_L2_F_DROPPED), "dropped") == 0);
    CHECK(strcmp(dab_l2_fault_name(DAB_L2_N_FAULTS), "unknown") == 0);
}

/* ---- round trip ---- */

TEST(test_roundtrip_ttl)
{
    dab_alloc_stats_t a0, a1;
    dab_alloc_stats(&a0);
    char url[128];
    url_of(&g_main, url, sizeof url, NULL);
    faults_t fl;
    faults_init(&fl);
    dab_l2_t *l2 = mk((mkopts_t){.url = url, .timeout_ms = 1000, .pool = 2, .ttl_s = 777}, &fl);
    CHECK(l2 != NULL);
    if (!l2)
        return;
    dab_cache_key_t k1 = key_of(1), k2 = key_of(2), k3 = key_of(3), k4 = key_of(4);
    dab_cache_val_t *v1 = val_of(1000, 1), *v2 = val_of(0, 2), *v3 = val_of(1 << 20, 3);
    dab_l2_put(l2, "s", &k1, v1, 100);
    dab_l2_put(l2, "s", &k2, v2, 0); /* the default TTL */
    dab_l2_put(l2, "s", &k3, v3, 50);
    dab_l2_flush(l2, 5000);
    dab_l2_stats_t st;
    dab_l2_stats(l2, &st);
    CHECK_EQ_INT(st.writes, 3);
    /* the tier dropped its references once written */
    CHECK_EQ_INT(atomic_load(&v1->refs), 1);
    CHECK_EQ_INT(atomic_load(&v3->refs), 1);

    dab_cache_val_t *out = NULL;
    int64_t ttl = -5;
    CHECK_EQ_INT(dab_l2_get(l2, "s", &k1, &out, &ttl), 0);
    CHECK(val_eq(out, v1));
    CHECK(ttl >= 1 && ttl <= 100);
    dab_cache_val_release(out);
    CHECK_EQ_INT(dab_l2_get(l2, "s", &k2, &out, &ttl), 0);
    CHECK(out && out->len == 0);
    CHECK(ttl > 700 && ttl <= 777);
    dab_cache_val_release(out);
    CHECK_EQ_INT(dab_l2_get(l2, "s", &k3, &out, &ttl), 0);
    CHECK(val_eq(out, v3));
    CHECK(ttl >= 1 && ttl <= 50);
    dab_cache_val_release(out);
    /* absent, and present only in another scope: misses */
    out = (dab_cache_val_t *)1;
    CHECK_EQ_INT(dab_l2_get(l2, "s", &k4, &out, &ttl), 0);
    CHECK(out == NULL && ttl == -1);
    CHECK_EQ_INT(dab_l2_get(l2, "other", &k1, &out, &ttl), 0);
    CHECK(out == NULL);

    /* the keys, and their TTLs, as Redis has them */
    char rk[128];
    rkey(rk, sizeof rk, "dt:", "s", &k1);
    long long t1 = rcmd_int(&g_main, "TTL %s", rk);
    CHECK(t1 > 0 && t1 <= 100);
    rkey(rk, sizeof rk, "dt:", "s", &k2);
    long long t2 = rcmd_int(&g_main, "TTL %s", rk);
    CHECK(t2 > 700 && t2 <= 777);

    dab_l2_stats(l2, &st);
    CHECK_EQ_INT(st.hits, 3);
    CHECK_EQ_INT(st.misses, 2);
    CHECK(st.up);
    for (int f = 0; f < DAB_L2_N_FAULTS; f++)
        CHECK_EQ_INT(st.faults[f], 0);
    dab_l2_free(l2);
    dab_cache_val_release(v1);
    dab_cache_val_release(v2);
    dab_cache_val_release(v3);
    dab_alloc_stats(&a1);
    CHECK_EQ_INT(a1.live_bytes, a0.live_bytes);
}

/* ---- the envelope ---- */

static void le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* An envelope built from the format's description, not from redis.c. */
static size_t envelope(uint8_t *out, const dab_cache_key_t *k, const void *payload, uint32_t n)
{
    memcpy(out, "DBC1", 4);
    le(out + 4, n, 4);
    le(out + 8, k->lo, 8);
    le(out + 16, k->hi, 8);
    memcpy(out + 24, payload, n);
    le(out + 24 + n, XXH3_64bits(out, 24 + (size_t)n), 8);
    return 32 + (size_t)n;
}

static void set_raw(const char *prefix, const char *scope, const dab_cache_key_t *k, const void *p,
                    size_t n)
{
    char rk[128];
    rkey(rk, sizeof rk, prefix, scope, k);
    redisReply *r = rcmd(&g_main, "SET %s %b", rk, p, n);
    CHECK(r && r->type == REDIS_REPLY_STATUS);
    if (r)
        freeReplyObject(r);
}

TEST(test_envelope_format)
{
    char url[128];
    url_of(&g_main, url, sizeof url, NULL);
    faults_t fl;
    faults_init(&fl);
    dab_l2_t *l2 = mk((mkopts_t){.url = url, .timeout_ms = 1000, .pool = 1}, &fl);
    if (!l2)
        return;
    /* what the tier writes is the documented envelope */
    dab_cache_key_t k = key_of(10);
    dab_cache_val_t *v = val_of(300, 10);
    dab_l2_put(l2, "env", &k, v, 60);
    dab_l2_flush(l2, 5000);
    char rk[128];
    rkey(rk, sizeof rk, "dt:", "env", &k);
    redisReply *r = rcmd(&g_main, "GET %s", rk);
    uint8_t want[400];
    size_t wn = envelope(want, &k, v->data, (uint32_t)v->len);
    CHECK(r && r->type == REDIS_REPLY_STRING && r->len == wn && memcmp(r->str, want, wn) == 0);
    if (r)
        freeReplyObject(r);

    /* and an envelope written by someone else is read */
    dab_cache_key_t k2 = key_of(11);
    const char payload[] = "written by another dabba";
    wn = envelope(want, &k2, payload, sizeof payload);
    set_raw("dt:", "env", &k2, want, wn);
    dab_cache_val_t *out = NULL;
    int64_t ttl = 0;
    CHECK_EQ_INT(dab_l2_get(l2, "env", &k2, &out, &ttl), 0);
    CHECK(out && out->len == sizeof payload && memcmp(out->data, payload, sizeof payload) == 0);
    CHECK_EQ_INT(ttl, -1); /* SET without EX: no TTL */
    dab_cache_val_release(out);
    dab_cache_val_release(v);
    dab_l2_free(l2);
}

TEST(test_corrupt_values)
{
    char url[128];
    url_of(&g_main, url, sizeof url, NULL);
    faults_t fl;
    faults_init(&fl);
    dab_l2_t *l2 = mk((mkopts_t){.url = url, .timeout_ms = 1000, .pool = 1}, &fl);
    if (!l2)
        return;
    const char payload[] = "0123456789abcdef";
    uint8_t good[128], bad[128];
    dab_cache_key_t k = key_of(20), other = key_of(21);
    size_t n = envelope(good, &k, payload, sizeof payload);
    /* wrong magic */
    memcpy(bad, good, n);
    bad[0] = 'X';
    set_raw("dt:", "c", &k, bad, n);
    int corrupt0 = faults_n(&fl, DAB_L2_F_CORRUPT);
    CHECK_EQ_INT(get_timed(l2, "c", &k, NULL, NULL), DAB_EFORMAT);
    CHECK(faults_last_has(&fl, DAB_L2_F_CORRUPT, "DBC1"));
    /* right magic, bad checksum */
    memcpy(bad, good, n);
    bad[30] ^= 1;
    set_raw("dt:", "c", &k, bad, n);
    CHECK_EQ_INT(get_timed(l2, "c", &k, NULL, NULL), DAB_EFORMAT);
    CHECK(faults_last_has(&fl, DAB_L2_F_CORRUPT, "checksum"));
    /* truncated */
    set_raw("dt:", "c", &k, good, n - 5);
    CHECK_EQ_INT(get_timed(l2, "c", &k, NULL, NULL), DAB_EFORMAT);
    CHECK(faults_last_has(&fl, DAB_L2_F_CORRUPT, "payload bytes"));
    /* shorter than any envelope */
    set_raw("dt:", "c", &k, "DBC1", 4);
    CHECK_EQ_INT(get_timed(l2, "c", &k, NULL, NULL), DAB_EFORMAT);
    /* a length field that would read far past the value */
    memcpy(bad, good, n);
    le(bad + 4, 0xffffffffu, 4);
    set_raw("dt:", "c", &k, bad, n);
    CHECK_EQ_INT(get_timed(l2, "c", &k, NULL, NULL), DAB_EFORMAT);
    /* another key's envelope, checksum and all, under this key */
    size_t n2 = envelope(bad, &other, payload, sizeof payload);
    set_raw("dt:", "c", &k, bad, n2);
    CHECK_EQ_INT(get_timed(l2, "c", &k, NULL, NULL), DAB_EFORMAT);
    CHECK(faults_last_has(&fl, DAB_L2_F_CORRUPT, "another key"));
    CHECK_EQ_INT(faults_n(&fl, DAB_L2_F_CORRUPT) - corrupt0, 6);
    /* a list where a string should be */
    char rk[128];
    rkey(rk, sizeof rk, "dt:", "c", &k);
    rcmd_ok(&g_main, "DEL %s", rk);
    rcmd_ok(&g_main, "RPUSH %s a b c", rk);
    CHECK_EQ_INT(get_timed(l2, "c", &k, NULL, NULL), DAB_EFORMAT);
    CHECK_EQ_INT(faults_n(&fl, DAB_L2_F_CORRUPT) - corrupt0, 7);
    CHECK(faults_last_has(&fl, DAB_L2_F_CORRUPT, "WRONGTYPE"));

    /* none of it broke the connection or put the tier in backoff */
    set_raw("dt:", "c", &k, good, n);
    dab_cache_val_t *out = NULL;
    CHECK_EQ_INT(get_timed(l2, "c", &k, NULL, &out), 0);
    CHECK(out && out->len == sizeof payload && memcmp(out->data, payload, sizeof payload) == 0);
    dab_cache_val_release(out);
    dab_l2_stats_t st;
    dab_l2_stats(l2, &st);
    CHECK_EQ_INT(st.faults[DAB_L2_F_DOWN], 0);
    CHECK_EQ_INT(st.faults[DAB_L2_F_CORRUPT], 7);
    CHECK_EQ_INT(st.faults[DAB_L2_F_IO] + st.faults[DAB_L2_F_CONNECT], 0);
    CHECK(st.up);
    dab_l2_free(l2);
}

/* ---- purge ---- */

TEST(test_purge)
{
    char url[128];
    url_of(&g_main, url, sizeof url, NULL);
    faults_t fl;
    faults_init(&fl);
    /* glob metacharacters in the prefix must match only themselves */
    const char *prefix = "pg*[x]?:";
    dab_l2_t *l2 = mk((mkopts_t){.url = url, .timeout_ms = 1000, .pool = 1, .prefix = prefix}, &fl);
    if (!l2)
        return;
    dab_cache_val_t *v = val_of(64, 5);
    for (int i = 0; i < 5; i++) {
        dab_cache_key_t k = key_of(100 + (uint64_t)i);
        dab_l2_put(l2, "a", &k, v, 600);
    }
    for (int i = 0; i < 3; i++) {
        dab_cache_key_t k = key_of(200 + (uint64_t)i);
        dab_l2_put(l2, "b", &k, v, 600);
    }
    for (int i = 0; i < 2; i++) { /* a scope that starts like "a" */
        dab_cache_key_t k = key_of(300 + (uint64_t)i);
        dab_l2_put(l2, "a:x", &k, v, 600);
    }
    dab_l2_flush(l2, 5000);
    /* keys an unescaped pattern would take */
    rcmd_ok(&g_main, "SET %s 1", "foreign:key");
    rcmd_ok(&g_main, "SET %s 1", "pgQQx1:zzz");
    rcmd_ok(&g_main, "SET %s 1", "pg*[x]?");

    int64_t deleted = -1;
    dab_err_t e = {0};
    CHECK_EQ_INT(dab_l2_purge(l2, "a", &deleted, &e), 0);
    CHECK_EQ_INT(deleted, 5);
    dab_cache_key_t ka = key_of(100), kb = key_of(200), kx = key_of(300);
    dab_cache_val_t *out = NULL;
    CHECK_EQ_INT(get_timed(l2, "a", &ka, NULL, &out), 0);
    CHECK(out == NULL);
    CHECK_EQ_INT(get_timed(l2, "b", &kb, NULL, &out), 0);
    CHECK(out != NULL);
    dab_cache_val_release(out);
    CHECK_EQ_INT(get_timed(l2, "a:x", &kx, NULL, &out), 0);
    CHECK(out != NULL);
    dab_cache_val_release(out);

    CHECK_EQ_INT(dab_l2_purge(l2, NULL, &deleted, &e), 0);
    CHECK_EQ_INT(deleted, 5);
    CHECK_EQ_INT(get_timed(l2, "b", &kb, NULL, &out), 0);
    CHECK(out == NULL);
    CHECK_EQ_INT(rcmd_int(&g_main, "EXISTS %s", "foreign:key"), 1);
    CHECK_EQ_INT(rcmd_int(&g_main, "EXISTS %s", "pgQQx1:zzz"), 1);
    CHECK_EQ_INT(rcmd_int(&g_main, "EXISTS %s", "pg*[x]?"), 1);
    CHECK_EQ_INT(dab_l2_purge(l2, NULL, &deleted, &e), 0);
    CHECK_EQ_INT(deleted, 0);
    rcmd_ok(&g_main, "DEL foreign:key pgQQx1:zzz %s", "pg*[x]?");
    dab_cache_val_release(v);
    dab_l2_free(l2);

    /* a purge against no server fails, naming it */
    faults_init(&fl);
    char dead[64];
    snprintf(dead, sizeof dead, "redis://127.0.0.1:%d", free_port());
    l2 = mk((mkopts_t){.url = dead, .timeout_ms = 100, .pool = 1}, &fl);
    if (!l2)
        return;
    CHECK_EQ_INT(dab_l2_purge(l2, "a", &deleted, &e), DAB_EIO);
    CHECK(strstr(e.msg, "connect") && strstr(e.msg, "refused"));
    CHECK_EQ_INT(faults_n(&fl, DAB_L2_F_CONNECT), 1);
    dab_l2_free(l2);
}

/* ---- a server that dies, stops, fills up ---- */

TEST(test_killed_and_restarted)
{
    char url[128];
    url_of(&g_flaky, url, sizeof url, NULL);
    faults_t fl;
    faults_init(&fl);
    dab_l2_t *l2 = mk((mkopts_t){.url = url, .timeout_ms = 50, .pool = 2}, &fl);
    if (!l2)
        return;
    dab_cache_key_t k = key_of(400);
    CHECK(get_until_ok(l2, &k, 2000));
    server_kill(&g_flaky);

    uint64_t ms;
    int rc = get_timed(l2, "s", &k, &ms, NULL);
    CHECK(rc == DAB_EIO || rc == DAB_ETIMEDOUT);
    CHECK(ms < 1000);
    CHECK_EQ_INT(faults_n(&fl, DAB_L2_F_CONNECT) + faults_n(&fl, DAB_L2_F_IO) +
                     faults_n(&fl, DAB_L2_F_TIMEOUT),
                 1);
    CHECK(faults_last_has(&fl, DAB_L2_F_CONNECT, "connect: Connection refused"));
    /* in backoff: skipped at once */
    rc = get_timed(l2, "s", &k, &ms, NULL);
    CHECK_EQ_INT(rc, DAB_EBUSY);
    CHECK(ms < 20);
    CHECK_EQ_INT(faults_n(&fl, DAB_L2_F_DOWN), 1);
    dab_l2_stats_t st;
    dab_l2_stats(l2, &st);
    CHECK(!st.up);
    /* puts while down are dropped by the writer, and counted */
    dab_cache_val_t *v = val_of(10, 1);
    dab_l2_put(l2, "s", &k, v, 60);
    dab_l2_flush(l2, 2000);
    CHECK_EQ_INT(faults_n(&fl, DAB_L2_F_DROPPED), 1);
    CHECK_EQ_INT(atomic_load(&v->refs), 1);

    CHECK(server_start(&g_flaky));
    uint64_t t0 = dab_now_ns();
    CHECK(get_until_ok(l2, &k, 5000));
    CHECK(ms_since(t0) < 3000); /* the backoff is at most 2 s (+ jitter) */
    dab_l2_stats(l2, &st);
    CHECK(st.up);
    dab_l2_put(l2, "s", &k, v, 60);
    dab_l2_flush(l2, 2000);
    dab_cache_val_t *out = NULL;
    CHECK_EQ_INT(get_timed(l2, "s", &k, NULL, &out), 0);
    CHECK(val_eq(out, v));
    dab_cache_val_release(out);
    dab_cache_val_release(v);
    dab_l2_free(l2);
}

TEST(test_paused_server)
{
    char url[128];
    url_of(&g_flaky, url, sizeof url, NULL);
    faults_t fl;
    faults_init(&fl);
    dab_l2_t *l2 = mk((mkopts_t){.url = url, .timeout_ms = 50, .pool = 2}, &fl);
    if (!l2)
        return;
    dab_cache_key_t k = key_of(500);
    CHECK(get_until_ok(l2, &k, 2000));
    kill(g_flaky.pid, SIGSTOP);

    uint64_t ms;
    CHECK_EQ_INT(get_timed(l2, "s", &k, &ms, NULL), DAB_ETIMEDOUT);
    CHECK(ms >= 40 && ms < 1000);
    CHECK(faults_last_has(&fl, DAB_L2_F_TIMEOUT, "no reply within 50 ms"));
    /* 1.2 s of requests: each bounded, and only about one timeout per backoff period
     * (50, 100, 200, 400, 800 ms) rather than one per request */
    uint64_t t0 = dab_now_ns(), worst = 0;
    int calls = 0;
    while (ms_since(t0) < 1200) {
        int rc = get_timed(l2, "s", &k, &ms, NULL);
        CHECK(rc == DAB_EBUSY || rc == DAB_ETIMEDOUT);
        worst = DAB_MAX(worst, ms);
        calls++;
        usleep(2000);
    }
    CHECK(worst < 1000);
    int timeouts = faults_n(&fl, DAB_L2_F_TIMEOUT);
    CHECK(timeouts >= 2 && timeouts <= 7);
    CHECK(faults_n(&fl, DAB_L2_F_DOWN) >= calls - 7);

    kill(g_flaky.pid, SIGCONT);
    t0 = dab_now_ns();
    CHECK(get_until_ok(l2, &k, 5000));
    CHECK(ms_since(t0) < 3000);
    dab_l2_free(l2);
}

TEST(test_queue_overflow)
{
    char url[128];
    url_of(&g_flaky, url, sizeof url, NULL);
    faults_t fl;
    faults_init(&fl);
    dab_l2_t *l2 = mk((mkopts_t){.url = url, .timeout_ms = 200, .pool = 1, .max_pending = 4}, &fl);
    if (!l2)
        return;
    dab_cache_val_t *v = val_of(100, 7);
    kill(g_flaky.pid, SIGSTOP);
    dab_cache_key_t k = key_of(600);
    dab_l2_put(l2, "q", &k, v, 60);
    usleep(30000); /* the writer takes it and waits on the paused server */
    for (int i = 0; i < 30; i++) {
        k = key_of(601 + (uint64_t)i);
        dab_l2_put(l2, "q", &k, v, 60);
    }
    CHECK(faults_n(&fl, DAB_L2_F_DROPPED) >= 26);
    CHECK(faults_last_has(&fl, DAB_L2_F_DROPPED, "write queue full"));
    dab_l2_flush(l2, 3000);
    CHECK_EQ_INT(faults_n(&fl, DAB_L2_F_TIMEOUT), 1);
    /* every fill was written or dropped: 31 in all, none written */
    dab_l2_stats_t st;
    dab_l2_stats(l2, &st);
    CHECK_EQ_INT(st.writes, 0);
    CHECK_EQ_INT(st.faults[DAB_L2_F_DROPPED], 31);
    CHECK_EQ_INT(atomic_load(&v->refs), 1);
    kill(g_flaky.pid, SIGCONT);

    /* once the backoff has passed, fills are written again */
    uint64_t until = dab_now_ns() + 5000000000ull;
    while (st.writes == 0 && dab_now_ns() < until) {
        usleep(50000);
        dab_l2_put(l2, "q", &k, v, 60);
        dab_l2_flush(l2, 2000);
        dab_l2_stats(l2, &st);
    }
    CHECK(st.writes >= 1);
    dab_cache_val_release(v);
    dab_l2_free(l2);
}

TEST(test_server_full)
{
    char url[128];
    url_of(&g_main, url, sizeof url, NULL);
    faults_t fl;
    faults_init(&fl);
    dab_l2_t *l2 = mk((mkopts_t){.url = url, .timeout_ms = 1000, .pool = 1}, &fl);
    if (!l2)
        return;
    dab_cache_key_t ka = key_of(700), kb = key_of(701);
    dab_cache_val_t *v = val_of(2000, 9);
    dab_l2_put(l2, "full", &ka, v, 600);
    dab_l2_flush(l2, 5000);
    dab_cache_val_t *out = NULL;
    CHECK_EQ_INT(get_timed(l2, "full", &ka, NULL, &out), 0); /* opens the lookup connection */
    CHECK(val_eq(out, v));
    dab_cache_val_release(out);

    rcmd_ok(&g_main, "CONFIG SET maxmemory-policy noeviction");
    rcmd_ok(&g_main, "CONFIG SET maxmemory 1mb");
    static char fill[65536];
    memset(fill, 'f', sizeof fill);
    bool full = false;
    for (int i = 0; i < 400 && !full; i++) {
        redisReply *r = rcmd(&g_main, "SET fill:%d %b", i, fill, sizeof fill);
        full = r && r->type == REDIS_REPLY_ERROR && strstr(r->str, "OOM");
        if (r)
            freeReplyObject(r);
    }
    CHECK(full);
    redisReply *r = rcmd(&g_main, "INFO stats");
    const char *p =
        r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "total_connections_received:") : NULL;
    long conns0 = p ? atol(p + 27) : -1;
    if (r)
        freeReplyObject(r);

    dab_l2_put(l2, "full", &kb, v, 600);
    dab_l2_flush(l2, 5000);
    CHECK_EQ_INT(faults_n(&fl, DAB_L2_F_REPLY), 1);
    CHECK(faults_last_has(&fl, DAB_L2_F_REPLY, "OOM"));
    /* lookups still work; the writer's connection is still in use */
    CHECK_EQ_INT(get_timed(l2, "full", &ka, NULL, &out), 0);
    CHECK(val_eq(out, v));
    dab_cache_val_release(out);
    rcmd_ok(&g_main, "CONFIG SET maxmemory 0");
    dab_l2_put(l2, "full", &kb, v, 600);
    dab_l2_flush(l2, 5000);
    CHECK_EQ_INT(get_timed(l2, "full", &kb, NULL, &out), 0);
    CHECK(val_eq(out, v));
    dab_cache_val_release(out);
    r = rcmd(&g_main, "INFO stats");
    p = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "total_connections_received:") : NULL;
    long conns1 = p ? atol(p + 27) : -2;
    if (r)
        freeReplyObject(r);
    CHECK_EQ_INT(conns1, conns0); /* no reconnection */
    dab_l2_stats_t st;
    dab_l2_stats(l2, &st);
    CHECK_EQ_INT(st.writes, 2);
    CHECK(st.up);
    CHECK_EQ_INT(st.faults[DAB_L2_F_IO] + st.faults[DAB_L2_F_CONNECT] + st.faults[DAB_L2_F_DOWN],
                 0);
    for (int i = 0; i < 400; i++)
        rcmd_ok(&g_main, "UNLINK fill:%d", i);
    dab_cache_val_release(v);
    dab_l2_free(l2);
}

/* ---- AUTH and SELECT ---- */

TEST(test_auth_and_db)
{
    char url[160];
    faults_t fl;
    faults_init(&fl);
    dab_cache_key_t k = key_of(800);
    dab_cache_val_t *v = val_of(50, 8), *out = NULL;

    /* the right password (escaped in the URL) */
    url_of(&g_auth, url, sizeof url, NULL);
    dab_l2_t *l2 = mk((mkopts_t){.url = url, .timeout_ms = 1000, .pool = 1}, &fl);
    if (!l2)
        return;
    dab_l2_put(l2, "s", &k, v, 60);
    dab_l2_flush(l2, 5000);
    CHECK_EQ_INT(get_timed(l2, "s", &k, NULL, &out), 0);
    CHECK(val_eq(out, v));
    dab_cache_val_release(out);
    dab_l2_free(l2);
    /* with a user name */
    snprintf(url, sizeof url, "redis://default:%s@127.0.0.1:%d", PASSWORD_URL, g_auth.port);
    l2 = mk((mkopts_t){.url = url, .timeout_ms = 1000, .pool = 1}, &fl);
    CHECK_EQ_INT(get_timed(l2, "s", &k, NULL, &out), 0);
    CHECK(val_eq(out, v));
    dab_cache_val_release(out);
    dab_l2_free(l2);
    CHECK_EQ_INT(faults_n(&fl, DAB_L2_F_CONNECT), 0);

    /* a wrong one: CONNECT, with Redis's words */
    snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%d", g_auth.port);
    l2 = mk((mkopts_t){.url = url, .timeout_ms = 1000, .pool = 1}, &fl);
    CHECK_EQ_INT(get_timed(l2, "s", &k, NULL, NULL), DAB_EIO);
    CHECK_EQ_INT(faults_n(&fl, DAB_L2_F_CONNECT), 1);
    CHECK(faults_last_has(&fl, DAB_L2_F_CONNECT, "AUTH: WRONGPASS"));
    pthread_mutex_lock(&fl.mu);
    CHECK(strstr(fl.last[DAB_L2_F_CONNECT], "wrong") == NULL); /* the password is not told */
    pthread_mutex_unlock(&fl.mu);
    dab_l2_free(l2);
    /* none: Redis says NOAUTH to the GET */
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", g_auth.port);
    l2 = mk((mkopts_t){.url = url, .timeout_ms = 1000, .pool = 1}, &fl);
    CHECK_EQ_INT(get_timed(l2, "s", &k, NULL, NULL), DAB_EIO);
    CHECK(faults_last_has(&fl, DAB_L2_F_REPLY, "NOAUTH"));
    dab_l2_free(l2);

    /* database 3 holds its own keys */
    url_of(&g_main, url, sizeof url, "/3");
    dab_l2_t *db3 = mk((mkopts_t){.url = url, .timeout_ms = 1000, .pool = 1}, &fl);
    url_of(&g_main, url, sizeof url, "/0");
    dab_l2_t *db0 = mk((mkopts_t){.url = url, .timeout_ms = 1000, .pool = 1}, &fl);
    if (db3 && db0) {
        dab_l2_put(db3, "db", &k, v, 60);
        dab_l2_flush(db3, 5000);
        CHECK_EQ_INT(get_timed(db0, "db", &k, NULL, &out), 0);
        CHECK(out == NULL);
        CHECK_EQ_INT(get_timed(db3, "db", &k, NULL, &out), 0);
        CHECK(val_eq(out, v));
        dab_cache_val_release(out);
        char rk[128];
        rkey(rk, sizeof rk, "dt:", "db", &k);
        rcmd_ok(&g_main, "SELECT 3");
        CHECK_EQ_INT(rcmd_int(&g_main, "EXISTS %s", rk), 1);
        rcmd_ok(&g_main, "FLUSHDB");
        rcmd_ok(&g_main, "SELECT 0");
        CHECK_EQ_INT(rcmd_int(&g_main, "EXISTS %s", rk), 0);
    }
    dab_l2_free(db3);
    dab_l2_free(db0);
    /* a database the server does not have: CONNECT, with Redis's words */
    url_of(&g_main, url, sizeof url, "/99999");
    l2 = mk((mkopts_t){.url = url, .timeout_ms = 1000, .pool = 1}, &fl);
    CHECK_EQ_INT(get_timed(l2, "s", &k, NULL, NULL), DAB_EIO);
    CHECK(faults_last_has(&fl, DAB_L2_F_CONNECT, "SELECT: ERR"));
    dab_l2_free(l2);
    dab_cache_val_release(v);
}

/* ---- fake servers ---- */

typedef enum fake_mode {
    FAKE_GARBAGE,  /* bytes that are not RESP */
    FAKE_INTEGER,  /* ":42" to everything */
    FAKE_CLOSE,    /* hangs up at once */
    FAKE_DRIP,     /* a valid reply, one byte per 100 ms */
    FAKE_SILENT,   /* accepts, never answers */
    FAKE_BIGARRAY, /* claims an array of two billion elements */
} fake_mode_t;

typedef struct fake {
    int lfd, port;
    fake_mode_t mode;
    atomic_bool stop;
    pthread_t th;
    int held[64]; /* FAKE_SILENT's connections */
    int n_held;
} fake_t;

/* Waits up to ms for fd to be readable, watching stop; true when readable. */
static bool fake_wait(fake_t *f, int fd, int ms)
{
    for (int waited = 0; waited < ms && !atomic_load(&f->stop); waited += 20) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 20) > 0)
            return true;
    }
    return false;
}

static void *fake_main(void *arg)
{
    fake_t *f = arg;
    while (!atomic_load(&f->stop)) {
        if (!fake_wait(f, f->lfd, 100))
            continue;
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        if (f->mode == FAKE_CLOSE) {
            close(fd);
            continue;
        }
        if (f->mode == FAKE_SILENT) {
            if (f->n_held < 64)
                f->held[f->n_held++] = fd;
            else
                close(fd);
            continue;
        }
        char buf[4096];
        /* answer each request, until the client hangs up */
        while (fake_wait(f, fd, 2000)) {
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n <= 0)
                break;
            const char *reply = f->mode == FAKE_GARBAGE    ? "hello, this is not redis\r\n"
                                : f->mode == FAKE_INTEGER  ? ":42\r\n"
                                : f->mode == FAKE_BIGARRAY ? "*2000000000\r\n:1\r\n"
                                                           : "$5\r\nhello\r\n";
            if (f->mode == FAKE_DRIP) {
                bool gone = false;
                for (const char *p = reply; *p && !gone && !atomic_load(&f->stop); p++) {
                    gone = send(fd, p, 1, MSG_NOSIGNAL) != 1;
                    usleep(100000);
                }
                if (gone)
                    break;
            } else if (send(fd, reply, strlen(reply), MSG_NOSIGNAL) < 0) {
                break;
            }
        }
        close(fd);
    }
    return NULL;
}

static bool fake_start(fake_t *f, fake_mode_t mode)
{
    memset(f, 0, sizeof *f);
    f->mode = mode;
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(f->lfd, 16) != 0 || getsockname(f->lfd, (struct sockaddr *)&a, &len) != 0)
        return false;
    f->port = ntohs(a.sin_port);
    return pthread_create(&f->th, NULL, fake_main, f) == 0;
}

static void fake_stop(fake_t *f)
{
    atomic_store(&f->stop, true);
    pthread_join(f->th, NULL);
    for (int i = 0; i < f->n_held; i++)
        close(f->held[i]);
    close(f->lfd);
}

TEST(test_fake_servers)
{
    struct {
        fake_mode_t mode;
        int rc;
        dab_l2_fault_t kind;
        const char *says;
    } cases[] = {
        {FAKE_GARBAGE, DAB_EFORMAT, DAB_L2_F_PROTOCOL, "Protocol error"},
        {FAKE_INTEGER, DAB_EFORMAT, DAB_L2_F_PROTOCOL, "reply is an integer, expected a string"},
        {FAKE_CLOSE, DAB_EIO, DAB_L2_F_IO, ""},
        {FAKE_DRIP, DAB_ETIMEDOUT, DAB_L2_F_TIMEOUT, "no reply within 100 ms"},
        {FAKE_SILENT, DAB_ETIMEDOUT, DAB_L2_F_TIMEOUT, "no reply within 100 ms"},
        {FAKE_BIGARRAY, DAB_EFORMAT, DAB_L2_F_PROTOCOL, "array reply of 2000000000 elements"},
    };
    for (size_t c = 0; c < DAB_ARRAY_LEN(cases); c++) {
        fake_t f;
        CHECK(fake_start(&f, cases[c].mode));
        char url[64];
        snprintf(url, sizeof url, "redis://127.0.0.1:%d", f.port);
        faults_t fl;
        faults_init(&fl);
        dab_l2_t *l2 = mk((mkopts_t){.url = url, .timeout_ms = 100, .pool = 1}, &fl);
        dab_cache_key_t k = key_of(900);
        for (int round = 0; round < 2 && l2; round++) {
            uint64_t ms;
            int rc = get_timed(l2, "s", &k, &ms, NULL);
            if (rc != cases[c].rc)
                fprintf(stderr, "  fake mode %d round %d: rc %d\n", (int)cases[c].mode, round, rc);
            CHECK_EQ_INT(rc, cases[c].rc);
            CHECK(ms < 1000);
            CHECK_EQ_INT(faults_n(&fl, cases[c].kind), round + 1);
            CHECK(faults_last_has(&fl, cases[c].kind, cases[c].says));
            /* in backoff now: skipped */
            CHECK_EQ_INT(get_timed(l2, "s", &k, &ms, NULL), DAB_EBUSY);
            CHECK(ms < 50);
            usleep(150000); /* past the first backoff (55 ms at most) and the second (110) */
        }
        if (l2) {
            /* the writer meets the same server */
            dab_cache_val_t *v = val_of(10, 1);
            dab_l2_put(l2, "s", &k, v, 60);
            uint64_t t0 = dab_now_ns();
            dab_l2_flush(l2, 3000);
            CHECK(ms_since(t0) < 1500);
            dab_l2_stats_t st;
            dab_l2_stats(l2, &st);
            CHECK_EQ_INT(st.writes, 0);
            CHECK(st.faults[DAB_L2_F_DROPPED] >= 1);
            CHECK(!st.up);
            CHECK_EQ_INT(atomic_load(&v->refs), 1);
            dab_cache_val_release(v);
        }
        dab_l2_free(l2);
        fake_stop(&f);
    }
}

/* A pool of one and six lookups at once on a server that never answers: each is
 * bounded by its timeout, and those that found no free connection say BUSY. */
typedef struct busy_arg {
    dab_l2_t *l2;
    pthread_barrier_t *bar;
    int rc;
    uint64_t ms;
} busy_arg_t;

static void *busy_main(void *p)
{
    busy_arg_t *a = p;
    dab_cache_key_t k = key_of(950);
    pthread_barrier_wait(a->bar);
    a->rc = get_timed(a->l2, "s", &k, &a->ms, NULL);
    return NULL;
}

TEST(test_pool_busy)
{
    fake_t f;
    CHECK(fake_start(&f, FAKE_SILENT));
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", f.port);
    faults_t fl;
    faults_init(&fl);
    dab_l2_t *l2 = mk((mkopts_t){.url = url, .timeout_ms = 100, .pool = 1}, &fl);
    if (l2) {
        enum { N = 6 };
        pthread_barrier_t bar;
        pthread_barrier_init(&bar, NULL, N);
        busy_arg_t args[N];
        pthread_t th[N];
        for (int i = 0; i < N; i++) {
            args[i] = (busy_arg_t){.l2 = l2, .bar = &bar};
            pthread_create(&th[i], NULL, busy_main, &args[i]);
        }
        for (int i = 0; i < N; i++) {
            pthread_join(th[i], NULL);
            CHECK(args[i].rc == DAB_EBUSY || args[i].rc == DAB_ETIMEDOUT);
            CHECK(args[i].ms < 1000);
        }
        pthread_barrier_destroy(&bar);
        CHECK(faults_n(&fl, DAB_L2_F_BUSY) >= 1);
        CHECK_EQ_INT(faults_n(&fl, DAB_L2_F_BUSY) + faults_n(&fl, DAB_L2_F_TIMEOUT) +
                         faults_n(&fl, DAB_L2_F_DOWN),
                     N);
        CHECK(faults_last_has(&fl, DAB_L2_F_BUSY, "no free connection"));
    }
    dab_l2_free(l2);
    fake_stop(&f);
}

/* ---- threads ---- */

typedef struct conc_arg {
    dab_l2_t *l2;
    int id, gets, hits;
} conc_arg_t;

static void *conc_main(void *p)
{
    conc_arg_t *a = p;
    dab_cache_val_t *v = val_of(256, (unsigned)a->id);
    for (int i = 0; i < 200; i++) {
        dab_cache_key_t k = key_of(1000 + (uint64_t)((i * 7 + a->id) % 40));
        if (i % 3 == 0) {
            dab_l2_put(a->l2, "conc", &k, v, 60);
        } else {
            dab_cache_val_t *out = NULL;
            int64_t ttl;
            if (dab_l2_get(a->l2, "conc", &k, &out, &ttl) == 0 && out) {
                a->hits++;
                dab_cache_val_release(out);
            }
            a->gets++;
        }
    }
    dab_cache_val_release(v);
    return NULL;
}

TEST(test_concurrent)
{
    char url[128];
    url_of(&g_main, url, sizeof url, NULL);
    faults_t fl;
    faults_init(&fl);
    dab_l2_t *l2 = mk((mkopts_t){.url = url, .timeout_ms = 2000, .pool = 2}, &fl);
    if (!l2)
        return;
    enum { N = 4 };
    conc_arg_t args[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        args[i] = (conc_arg_t){.l2 = l2, .id = i};
        pthread_create(&th[i], NULL, conc_main, &args[i]);
    }
    int gets = 0, hits = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        gets += args[i].gets;
        hits += args[i].hits;
    }
    dab_l2_flush(l2, 5000);
    dab_l2_stats_t st;
    dab_l2_stats(l2, &st);
    CHECK_EQ_INT(st.hits + st.misses, gets);
    CHECK_EQ_INT(st.hits, hits);
    CHECK_EQ_INT(st.writes, N * 67);
    for (int f = 0; f < DAB_L2_N_FAULTS; f++)
        CHECK_EQ_INT(st.faults[f], 0);
    dab_l2_free(l2);
}

/* ---- setup ---- */

TEST(test_start_servers)
{
    /* SIGPIPE keeps its default action: a write to a closed peer in redis.c would
     * kill the test. */
    CHECK(server_start(&g_main));
    CHECK(server_start(&g_flaky));
    g_auth.password = PASSWORD;
    CHECK(server_start(&g_auth));
    if (!g_main.pid || !g_flaky.pid || !g_auth.pid) {
        fprintf(stderr, "redis-server did not start; is it installed?\n");
        printf("%s: %d passed, %d failed\n", __FILE__, t_passed, t_failed + 1);
        exit(1);
    }
}

TEST_LIST(T(test_url_parse), T(test_start_servers), T(test_roundtrip_ttl), T(test_envelope_format),
          T(test_corrupt_values), T(test_purge), T(test_killed_and_restarted),
          T(test_paused_server), T(test_queue_overflow), T(test_server_full), T(test_auth_and_db),
          T(test_fake_servers), T(test_pool_busy), T(test_concurrent))
