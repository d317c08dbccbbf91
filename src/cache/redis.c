/*
 * redis.c - the cache's second tier: Redis, through hiredis 0.14.
 *
 * Lookups take a connection from a small pool and pipeline GET and PTTL in one
 * round trip; fills are queued and a writer thread pipelines many SETs per round
 * trip on its own connection; purges SCAN and UNLINK on a connection of their own.
 *
 * Redis must never delay an answer beyond the per-call timeout, so this file owns
 * its sockets: they are non-blocking, every wait is a poll() against the call's
 * deadline (a server that drips bytes cannot stretch a call), and writes use
 * MSG_NOSIGNAL (a closed peer cannot raise SIGPIPE in a library). hiredis is used
 * for what it does best, parsing RESP (redisReader); commands are encoded here,
 * straight into dab_buf_t buffers, so that a value is copied once into the output.
 * A connection whose call timed out or broke is closed, since a late reply would
 * answer the next command; it is reopened on a later use.
 *
 * Faults put the tier in backoff (50 ms doubling to 2 s, with jitter). While down,
 * lookups return at once and the writer drops what it dequeues; once the backoff
 * has passed, a single call (the probe) may reach the server, so that a server
 * that accepts connections but never answers costs one timeout per backoff period,
 * not one per request.
 *
 * Nothing from the server is trusted: reply sizes and array lengths are bounded
 * before hiredis allocates for them, and a value must pass its envelope's checks
 * (magic, length, key, XXH3-64) before a caller sees a byte of it.
 *
 * Envelope: "DBC1" | u32 payload length | u64 key lo | u64 key hi | payload |
 * u64 XXH3-64 of all the preceding bytes; integers little-endian.
 */
#define XXH_INLINE_ALL
#include <errno.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "../observe/observe.h"
#include "cache_int.h"

#define L2_MAGIC "DBC1"
#define L2_HEAD_BYTES 24 /* magic, length, key lo, key hi */
#define L2_TAIL_BYTES 8  /* checksum */
/* Redis's own bound on a bulk string (proto-max-bulk-len) is 512 MiB. */
#define L2_MAX_ENVELOPE_BYTES ((size_t)512 << 20)
#define L2_MAX_PAYLOAD_BYTES (L2_MAX_ENVELOPE_BYTES - L2_HEAD_BYTES - L2_TAIL_BYTES)

#define L2_BACKOFF_MIN_NS (50ull * 1000000)
#define L2_BACKOFF_MAX_NS (2000ull * 1000000)

/* Bytes a reply may take, by connection: enough for what each one expects. */
#define L2_GET_MAX_IN (L2_MAX_ENVELOPE_BYTES + 4096)
#define L2_WRITER_MAX_IN ((size_t)1 << 20)
#define L2_PURGE_MAX_IN ((size_t)64 << 20)
#define L2_PURGE_MAX_ARRAY (1 << 20)

/* A writer round trip carries at most this many SETs, or about this many bytes. */
#define L2_BATCH_ITEMS 256
#define L2_BATCH_BYTES ((size_t)4 << 20)

#define L2_PURGE_CALL_MS 2000
#define L2_PURGE_TOTAL_MS 10000
#define L2_FREE_FLUSH_MS 1000

#define L2_MAX_DB 1000000
#define L2_MAX_POOL 1024
#define L2_MAX_PENDING (1 << 20)

/* ---- URL ---- */

/* Decodes the percent-escapes of s[0..n) into out (cap bytes with the NUL). */
static int url_unescape(const char *s, size_t n, char *out, size_t cap, const char *what,
                        dab_err_t *err)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return dab_err_set(err, DAB_EINVAL,
                                   "redis URL: %s has a '%%' without two hex digits", what);
            int hi = dab_hex_digit(s[i + 1]), lo = dab_hex_digit(s[i + 2]);
            if (hi < 0 || lo < 0)
                return dab_err_set(err, DAB_EINVAL,
                                   "redis URL: %s has a '%%' without two hex digits", what);
            c = hi * 16 + lo;
            if (c == 0)
                return dab_err_set(err, DAB_EINVAL, "redis URL: %s contains %%00", what);
            i += 2;
        }
        if (o + 1 >= cap)
            return dab_err_set(err, DAB_EINVAL, "redis URL: %s is longer than %zu bytes", what,
                               cap - 1);
        out[o++] = (char)c;
    }
    out[o] = 0;
    return 0;
}

/* Parses decimal digits s[0..n) into *v when they are a number lo..hi. */
static bool parse_range(const char *s, size_t n, long lo, long hi, long *v)
{
    if (n == 0 || n > 9)
        return false;
    long x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        x = x * 10 + (s[i] - '0');
    }
    if (x < lo || x > hi)
        return false;
    *v = x;
    return true;
}

static bool host_char(char c, bool ipv6)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    if (ipv6)
        return c == ':' || c == '.' || c == '%';
    return c == '.' || c == '-' || c == '_';
}

/*
 * redis://[[user]:password@]host[:port][/db]. The password is never quoted in a
 * message. On error *out is unspecified.
 */
int dab_redis_url_parse(const char *url, dab_redis_url_t *out, dab_err_t *err)
{
    memset(out, 0, sizeof *out);
    out->port = 6379;
    if (!url || !*url)
        return dab_err_set(err, DAB_EINVAL, "redis URL is empty");
    if (strncasecmp(url, "rediss://", 9) == 0)
        return dab_err_set(err, DAB_EINVAL, "redis URL: TLS (rediss://) is not supported");
    if (strncasecmp(url, "redis://", 8) != 0)
        return dab_err_set(err, DAB_EINVAL, "redis URL must start with redis://");
    const char *p = url + 8;
    const char *q = strpbrk(p, "?#");
    if (q)
        return dab_err_set(err, DAB_EINVAL, "redis URL: options after '%c' are not supported", *q);
    const char *slash = strchr(p, '/');
    const char *auth_end = slash ? slash : p + strlen(p);

    /* user info: the last '@' ends it, so that an unescaped '@' in a password still
     * parses */
    const char *at = NULL;
    for (const char *s = p; s < auth_end; s++)
        if (*s == '@')
            at = s;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon)
            return dab_err_set(err, DAB_EINVAL,
                               "redis URL: user info has no ':' (write ':password@' for a "
                               "password alone, 'user:password@' with a user)");
        int rc = url_unescape(p, (size_t)(colon - p), out->user, sizeof out->user, "user", err);
        if (rc)
            return rc;
        rc = url_unescape(colon + 1, (size_t)(at - colon - 1), out->password, sizeof out->password,
                          "password", err);
        if (rc)
            return rc;
        if (!out->password[0])
            return dab_err_set(err, DAB_EINVAL, "redis URL: password is empty");
        p = at + 1;
    }

    /* host */
    const char *h = p, *h_end;
    bool ipv6 = *p == '[';
    if (ipv6) {
        h = p + 1;
        h_end = memchr(h, ']', (size_t)(auth_end - h));
        if (!h_end)
            return dab_err_set(err, DAB_EINVAL, "redis URL: IPv6 host has no closing ']'");
        p = h_end + 1;
        if (p < auth_end && *p != ':')
            return dab_err_set(err, DAB_EINVAL, "redis URL: unexpected '%c' after the IPv6 host",
                               *p);
    } else {
        h_end = memchr(h, ':', (size_t)(auth_end - h));
        if (!h_end)
            h_end = auth_end;
        p = h_end;
    }
    size_t hn = (size_t)(h_end - h);
    if (hn == 0)
        return dab_err_set(err, DAB_EINVAL, "redis URL: host is empty");
    if (hn >= sizeof out->host)
        return dab_err_set(err, DAB_EINVAL, "redis URL: host is longer than %zu bytes",
                           sizeof out->host - 1);
    for (size_t i = 0; i < hn; i++)
        if (!host_char(h[i], ipv6))
            return dab_err_set(err, DAB_EINVAL, "redis URL: host '%.*s' has a bad character '%c'",
                               (int)hn, h, h[i]);
    memcpy(out->host, h, hn);
    out->host[hn] = 0;

    /* port */
    if (p < auth_end) { /* *p == ':' */
        p++;
        size_t pn = (size_t)(auth_end - p);
        long port;
        if (pn == 0)
            return dab_err_set(err, DAB_EINVAL, "redis URL: port is empty");
        if (!parse_range(p, pn, 1, 65535, &port))
            return dab_err_set(err, DAB_EINVAL, "redis URL: port '%.*s' is not 1..65535",
                               (int)DAB_MIN(pn, 32), p);
        out->port = (int)port;
    }

    /* database */
    if (slash && slash[1]) {
        const char *d = slash + 1;
        size_t dn = strlen(d);
        long db;
        if (!parse_range(d, dn, 0, L2_MAX_DB, &db))
            return dab_err_set(err, DAB_EINVAL, "redis URL: database '%.*s' is not 0..%d",
                               (int)DAB_MIN(dn, 32), d, L2_MAX_DB);
        out->db = (int)db;
    }
    return 0;
}

/* ---- faults ---- */

static const char *const fault_names[DAB_L2_N_FAULTS] = {
    [DAB_L2_F_CONNECT] = "connect", [DAB_L2_F_TIMEOUT] = "timeout",
    [DAB_L2_F_IO] = "io",           [DAB_L2_F_PROTOCOL] = "protocol",
    [DAB_L2_F_REPLY] = "reply",     [DAB_L2_F_CORRUPT] = "corrupt",
    [DAB_L2_F_DOWN] = "down",       [DAB_L2_F_BUSY] = "busy",
    [DAB_L2_F_DROPPED] = "dropped",
};

/* dab_log_limited keys: one budget per kind. */
static const char *const fault_log_keys[DAB_L2_N_FAULTS] = {
    [DAB_L2_F_CONNECT] = "cache_fault_l2_connect", [DAB_L2_F_TIMEOUT] = "cache_fault_l2_timeout",
    [DAB_L2_F_IO] = "cache_fault_l2_io",           [DAB_L2_F_PROTOCOL] = "cache_fault_l2_protocol",
    [DAB_L2_F_REPLY] = "cache_fault_l2_reply",     [DAB_L2_F_CORRUPT] = "cache_fault_l2_corrupt",
    [DAB_L2_F_DOWN] = "cache_fault_l2_down",       [DAB_L2_F_BUSY] = "cache_fault_l2_busy",
    [DAB_L2_F_DROPPED] = "cache_fault_l2_dropped",
};

/* "connect", "timeout", ...; "unknown" out of range. Any thread. */
const char *dab_l2_fault_name(dab_l2_fault_t f)
{
    return (unsigned)f < DAB_L2_N_FAULTS ? fault_names[f] : "unknown";
}

/* What went wrong in a call, before it is reported: the kind, and the detail that
 * follows "redis HOST:PORT: OP: ". */
typedef struct l2_fail {
    dab_l2_fault_t kind;
    bool server_bad; /* the fault says the server cannot be used now (backoff) */
    bool got_bytes;  /* the server sent something on this call */
    char detail[300];
} l2_fail_t;

static void fail_set(l2_fail_t *f, dab_l2_fault_t kind, bool server_bad, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail_set(l2_fail_t *f, dab_l2_fault_t kind, bool server_bad, const char *fmt, ...)
{
    f->kind = kind;
    f->server_bad = server_bad;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->detail, sizeof f->detail, fmt, ap);
    va_end(ap);
}

/* Puts what before the detail ("connect: " + "AUTH: WRONGPASS ..."). */
static void fail_prefix(l2_fail_t *f, const char *what)
{
    char d[sizeof f->detail];
    snprintf(d, sizeof d, "%s%s", what, f->detail);
    memcpy(f->detail, d, sizeof d);
}

/* ---- connections ---- */

/* A connection and what one call on it needs. Owned by one thread at a time: a pool
 * slot by the lookup that took it, the writer's by the writer, a purge's by the purge. */
typedef struct l2_conn {
    int fd; /* -1: closed */
    redisReader *reader;
    uint64_t gen;              /* dab_l2.gen when opened; an older one is reopened */
    int max_array;             /* elements an array reply may have on this connection */
    int array_refused;         /* set by l2_create_array: the length it refused */
    size_t in_bytes, in_limit; /* bytes received in this call, and the bound */
    dab_buf_t out;             /* encoded commands to send */
} l2_conn_t;

typedef struct l2_item {
    char *scope;
    dab_cache_key_t key;
    dab_cache_val_t *v;
    int64_t ttl_s;
} l2_item_t;

struct dab_l2 {
    dab_redis_url_t url;
    char where[300]; /* "host:port" for messages */
    char *prefix;
    int timeout_ms;
    int64_t default_ttl_s;
    void (*on_fault)(void *user, const char *scope, dab_l2_fault_t f, const char *msg);
    void *fault_user;

    /* health: guarded by health_mu */
    pthread_mutex_t health_mu;
    bool down, probing;
    uint64_t down_until_ns, next_backoff_ns, rng;
    atomic_ullong gen; /* bumped (under health_mu) when the server goes down */

    /* lookup pool: free_idx[0..n_free) and the slots' ownership guarded by pool_mu */
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv; /* a slot was returned */
    int pool;
    l2_conn_t *slots;
    int *free_idx;
    int n_free;

    /* write queue: a ring guarded by q_mu */
    pthread_mutex_t q_mu;
    pthread_cond_t q_cv;    /* work queued, or stop */
    pthread_cond_t done_cv; /* a batch was finished */
    l2_item_t *ring;
    int cap, head, n;
    uint64_t enqueued, finished; /* totals, for dab_l2_flush */
    bool stop;
    bool writer_started;
    pthread_t writer;
    l2_conn_t wconn; /* owned by the writer thread */

    /* purges run one at a time under purge_mu, on a connection each opens */
    pthread_mutex_t purge_mu;

    /* counters: atomics, any thread */
    atomic_ullong hits, misses, writes, faults[DAB_L2_N_FAULTS];
    atomic_bool up;
};

/* Counts a fault, tells on_fault and logs it at a bounded rate (skips while down are
 * only counted and told: they would otherwise log once per request). */
static void l2_fault(dab_l2_t *l2, const char *scope, dab_l2_fault_t kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void l2_fault(dab_l2_t *l2, const char *scope, dab_l2_fault_t kind, const char *fmt, ...)
{
    char msg[512];
    int n = snprintf(msg, sizeof msg, "redis %s: ", l2->where);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof msg)
        vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    atomic_fetch_add_explicit(&l2->faults[kind], 1, memory_order_relaxed);
    if (l2->on_fault)
        l2->on_fault(l2->fault_user, scope, kind, msg);
    if (kind != DAB_L2_F_DOWN)
        dab_log_limited(DAB_LOG_WARN, fault_log_keys[kind], 3, "cache_fault",
                        DAB_F_STR("tier", "l2"), DAB_F_STR("kind", fault_names[kind]),
                        DAB_F_STR("scope", scope), DAB_F_STR("error", msg));
}

/* The reader's array constructor, bounded per connection: hiredis would otherwise
 * allocate whatever element count a server claims before any element arrives. */
static redisReplyObjectFunctions g_reply_fns;
static void *(*g_default_create_array)(const redisReadTask *, int);
static pthread_once_t g_reply_fns_once = PTHREAD_ONCE_INIT;

static void *l2_create_array(const redisReadTask *task, int elements)
{
    l2_conn_t *c = task->privdata;
    if (c && elements > c->max_array) {
        c->array_refused = elements;
        return NULL;
    }
    return g_default_create_array(task, elements);
}

static void reply_fns_init(void)
{
    /* hiredis keeps its default constructors private; a reader made with them lends
     * them to us. */
    redisReader *r = redisReaderCreate();
    if (!r)
        return;
    g_reply_fns = *r->fn;
    g_default_create_array = g_reply_fns.createArray;
    g_reply_fns.createArray = l2_create_array;
    redisReaderFree(r);
}

static void conn_init(l2_conn_t *c, int max_array, size_t in_limit)
{
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->max_array = max_array;
    c->in_limit = in_limit;
}

static void conn_close(l2_conn_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    if (c->reader)
        redisReaderFree(c->reader);
    c->reader = NULL;
}

static void conn_free(l2_conn_t *c)
{
    conn_close(c);
    dab_buf_free(&c->out);
}

/* Milliseconds left before deadline_ns, rounded up; 0 when it has passed. */
static int ms_left(uint64_t deadline_ns)
{
    uint64_t now = dab_now_ns();
    if (now >= deadline_ns)
        return 0;
    uint64_t ms = (deadline_ns - now + 999999) / 1000000;
    return ms > 86400000 ? 86400000 : (int)ms;
}

/* Waits for events on fd until the deadline: 1 ready (revents in *rev), 0 timed out,
 * -1 poll failed (errno). */
static int wait_fd(int fd, short events, uint64_t deadline_ns, short *rev)
{
    for (;;) {
        int ms = ms_left(deadline_ns);
        if (ms == 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, ms);
        if (r > 0) {
            *rev = p.revents;
            return 1;
        }
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

/* Reads what is available into the reader. 0, or -1 with f set. */
static int conn_recv(l2_conn_t *c, l2_fail_t *f)
{
    char buf[16384];
    ssize_t n = recv(c->fd, buf, sizeof buf, 0);
    if (n == 0) {
        fail_set(f, DAB_L2_F_IO, true, "server closed the connection");
        return -1;
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return 0;
        fail_set(f, DAB_L2_F_IO, true, "read: %s", strerror(errno));
        return -1;
    }
    f->got_bytes = true;
    c->in_bytes += (size_t)n;
    if (c->in_bytes > c->in_limit) {
        fail_set(f, DAB_L2_F_PROTOCOL, true, "reply larger than %zu bytes", c->in_limit);
        return -1;
    }
    if (redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK) {
        fail_set(f, DAB_L2_F_PROTOCOL, true, "bad reply: %s", c->reader->errstr);
        return -1;
    }
    return 0;
}

/* Sends c->out before the deadline. What the server sends meanwhile is fed to the
 * reader, so that a long pipeline cannot deadlock against a server whose replies
 * fill the socket. 0, or -1 with f set (the connection must then be closed). */
static int conn_send(l2_conn_t *c, uint64_t deadline_ns, int timeout_ms, l2_fail_t *f)
{
    size_t off = 0;
    c->in_bytes = 0;
    while (off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + off, c->out.len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            fail_set(f, DAB_L2_F_IO, true, "write: %s", strerror(errno));
            return -1;
        }
        short rev = 0;
        int w = wait_fd(c->fd, POLLOUT | POLLIN, deadline_ns, &rev);
        if (w == 0) {
            fail_set(f, DAB_L2_F_TIMEOUT, true, "no progress writing within %d ms", timeout_ms);
            return -1;
        }
        if (w < 0) {
            fail_set(f, DAB_L2_F_IO, true, "poll: %s", strerror(errno));
            return -1;
        }
        if ((rev & (POLLIN | POLLHUP | POLLERR)) && !(rev & POLLOUT) && conn_recv(c, f))
            return -1;
    }
    return 0;
}

/* Reads the next reply before the deadline into *out (free with freeReplyObject).
 * 0, or -1 with f set (the connection must then be closed). */
static int conn_read(l2_conn_t *c, redisReply **out, uint64_t deadline_ns, int timeout_ms,
                     l2_fail_t *f)
{
    *out = NULL;
    for (;;) {
        void *r = NULL;
        if (redisReaderGetReply(c->reader, &r) != REDIS_OK) {
            if (c->array_refused)
                fail_set(f, DAB_L2_F_PROTOCOL, true,
                         "array reply of %d elements (at most %d expected)", c->array_refused,
                         c->max_array);
            else
                fail_set(f, DAB_L2_F_PROTOCOL, true, "bad reply: %s", c->reader->errstr);
            return -1;
        }
        if (r) {
            *out = r;
            return 0;
        }
        short rev = 0;
        int w = wait_fd(c->fd, POLLIN, deadline_ns, &rev);
        if (w == 0) {
            fail_set(f, DAB_L2_F_TIMEOUT, true, "no reply within %d ms", timeout_ms);
            return -1;
        }
        if (w < 0) {
            fail_set(f, DAB_L2_F_IO, true, "poll: %s", strerror(errno));
            return -1;
        }
        if (conn_recv(c, f))
            return -1;
    }
}

/* ---- RESP encoding ---- */

static int resp_array(dab_buf_t *b, int argc)
{
    return dab_buf_printf(b, "*%d\r\n", argc);
}

static int resp_arg(dab_buf_t *b, const void *p, size_t n)
{
    if (dab_buf_printf(b, "$%zu\r\n", n) || dab_buf_append(b, p, n) || dab_buf_append(b, "\r\n", 2))
        return DAB_ENOMEM;
    return 0;
}

static int resp_str(dab_buf_t *b, const char *s)
{
    return resp_arg(b, s, strlen(s));
}

static int resp_i64(dab_buf_t *b, int64_t v)
{
    char s[24];
    int n = snprintf(s, sizeof s, "%lld", (long long)v);
    return resp_arg(b, s, (size_t)n);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Appends the envelope of (key, v) as one bulk argument; the checksum is taken over
 * the bytes as they lie in the buffer. */
static int resp_envelope(dab_buf_t *b, const dab_cache_key_t *key, const dab_cache_val_t *v)
{
    size_t total = L2_HEAD_BYTES + v->len + L2_TAIL_BYTES;
    uint8_t head[L2_HEAD_BYTES], tail[L2_TAIL_BYTES];
    memcpy(head, L2_MAGIC, 4);
    put_le32(head + 4, (uint32_t)v->len);
    put_le64(head + 8, key->lo);
    put_le64(head + 16, key->hi);
    if (dab_buf_printf(b, "$%zu\r\n", total) || dab_buf_reserve(b, total + 2))
        return DAB_ENOMEM;
    size_t start = b->len;
    dab_buf_append(b, head, sizeof head);
    dab_buf_append(b, v->data, v->len);
    put_le64(tail, XXH3_64bits(b->data + start, L2_HEAD_BYTES + v->len));
    dab_buf_append(b, tail, sizeof tail);
    dab_buf_append(b, "\r\n", 2);
    return 0;
}

/* The Redis key of (scope, key): prefix + scope + ":" + 32 hex digits. */
static int redis_key(const dab_l2_t *l2, const char *scope, const dab_cache_key_t *key,
                     dab_buf_t *out)
{
    char hex[33];
    dab_cache_key_hex(key, hex);
    dab_buf_reset(out);
    if (dab_buf_puts(out, l2->prefix) || dab_buf_puts(out, scope ? scope : "") ||
        dab_buf_append(out, ":", 1) || dab_buf_append(out, hex, 32))
        return DAB_ENOMEM;
    return 0;
}

/* ---- health and backoff ---- */

/* Whether a call may go to the server now. While down, only one call (the probe,
 * *probe set) goes once the backoff has passed; the caller must then report its
 * outcome with l2_health or l2_probe_cancel. */
static bool l2_admit(dab_l2_t *l2, bool *probe, uint64_t *retry_ms)
{
    bool ok;
    *probe = false;
    pthread_mutex_lock(&l2->health_mu);
    uint64_t now = dab_now_ns();
    if (!l2->down) {
        ok = true;
    } else if (!l2->probing && now >= l2->down_until_ns) {
        l2->probing = true;
        *probe = true;
        ok = true;
    } else {
        ok = false;
        *retry_ms = l2->down_until_ns > now ? (l2->down_until_ns - now) / 1000000 : 0;
    }
    pthread_mutex_unlock(&l2->health_mu);
    return ok;
}

static void l2_probe_cancel(dab_l2_t *l2, bool probe)
{
    if (!probe)
        return;
    pthread_mutex_lock(&l2->health_mu);
    l2->probing = false;
    pthread_mutex_unlock(&l2->health_mu);
}

/* Records the outcome of a call that went to the server: reached (it answered,
 * even with an error) or not (connect, timeout, broken connection, garbage). */
static void l2_health(dab_l2_t *l2, bool probe, bool reached)
{
    pthread_mutex_lock(&l2->health_mu);
    if (probe)
        l2->probing = false;
    if (reached) {
        l2->down = false;
        l2->next_backoff_ns = L2_BACKOFF_MIN_NS;
    } else if (!l2->down || probe) {
        /* A new fault while up, or a failed probe; calls that were already under way
         * when the server went down do not extend the backoff. */
        uint64_t b = l2->next_backoff_ns;
        l2->rng ^= l2->rng << 13;
        l2->rng ^= l2->rng >> 7;
        l2->rng ^= l2->rng << 17;
        uint64_t jitter = b / 10 ? l2->rng % (b / 5 + 1) : 0; /* +-10% */
        l2->down = true;
        l2->down_until_ns = dab_now_ns() + b - b / 10 + jitter;
        l2->next_backoff_ns = DAB_MIN(b * 2, L2_BACKOFF_MAX_NS);
        /* Idle pooled connections may be as dead as the one that failed. */
        atomic_fetch_add(&l2->gen, 1);
    }
    atomic_store(&l2->up, reached);
    pthread_mutex_unlock(&l2->health_mu);
}

/* ---- connecting ---- */

/* Reads n replies to an AUTH / SELECT handshake; each must be +OK. */
static int handshake_check(l2_conn_t *c, const char *const *what, int n, uint64_t deadline_ns,
                           int timeout_ms, l2_fail_t *f)
{
    for (int i = 0; i < n; i++) {
        redisReply *r;
        if (conn_read(c, &r, deadline_ns, timeout_ms, f)) {
            fail_prefix(f, what[i]);
            return -1;
        }
        bool ok = r->type == REDIS_REPLY_STATUS;
        if (!ok) {
            if (r->type == REDIS_REPLY_ERROR)
                fail_set(f, DAB_L2_F_CONNECT, true, "%s%.*s", what[i], (int)DAB_MIN(r->len, 200),
                         r->str);
            else
                fail_set(f, DAB_L2_F_CONNECT, true, "%sunexpected reply of type %d", what[i],
                         r->type);
        }
        freeReplyObject(r);
        if (!ok)
            return -1;
    }
    return 0;
}

/* Opens c: a non-blocking TCP connection, then AUTH and SELECT as the URL asks, all
 * before the deadline. 0, or -1 with f set and c closed. The name lookup is
 * getaddrinfo's and is not bounded by the deadline (an address or a name in
 * /etc/hosts is immediate). */
static int l2_connect(dab_l2_t *l2, l2_conn_t *c, uint64_t deadline_ns, int timeout_ms,
                      l2_fail_t *f)
{
    conn_close(c);
    f->got_bytes = false;
    char port[8];
    snprintf(port, sizeof port, "%d", l2->url.port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int g = getaddrinfo(l2->url.host, port, &hints, &ai);
    if (g) {
        fail_set(f, DAB_L2_F_CONNECT, true, "connect: cannot resolve '%s': %s", l2->url.host,
                 gai_strerror(g));
        return -1;
    }
    int fd = -1;
    fail_set(f, DAB_L2_F_CONNECT, true, "connect: no address");
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            fail_set(f, DAB_L2_F_CONNECT, true, "connect: socket: %s", strerror(errno));
            continue;
        }
        int e = 0;
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            e = errno;
            if (e == EINPROGRESS || e == EINTR) {
                short rev = 0;
                int w = wait_fd(fd, POLLOUT, deadline_ns, &rev);
                if (w == 0) {
                    fail_set(f, DAB_L2_F_TIMEOUT, true, "connect: timed out after %d ms",
                             timeout_ms);
                    close(fd);
                    fd = -1;
                    break; /* the deadline has passed for every address */
                }
                socklen_t len = sizeof e;
                if (w < 0)
                    e = errno;
                else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0)
                    e = errno;
            }
        }
        if (e) {
            fail_set(f, DAB_L2_F_CONNECT, true, "connect: %s", strerror(e));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

    pthread_once(&g_reply_fns_once, reply_fns_init);
    c->reader = g_default_create_array ? redisReaderCreateWithFunctions(&g_reply_fns) : NULL;
    if (!c->reader) {
        close(fd);
        fail_set(f, DAB_L2_F_CONNECT, false, "connect: out of memory");
        return -1;
    }
    c->reader->privdata = c;
    c->array_refused = 0;
    c->fd = fd;
    c->gen = atomic_load(&l2->gen);

    const char *what[2];
    int n = 0;
    dab_buf_reset(&c->out);
    if (l2->url.password[0]) {
        bool user = l2->url.user[0] != 0;
        resp_array(&c->out, user ? 3 : 2);
        resp_str(&c->out, "AUTH");
        if (user)
            resp_str(&c->out, l2->url.user);
        resp_str(&c->out, l2->url.password);
        what[n++] = "AUTH: ";
    }
    if (l2->url.db) {
        resp_array(&c->out, 2);
        resp_str(&c->out, "SELECT");
        resp_i64(&c->out, l2->url.db);
        what[n++] = "SELECT: ";
    }
    if (n) {
        size_t limit = c->in_limit;
        c->in_limit = 65536;
        int rc = conn_send(c, deadline_ns, timeout_ms, f);
        if (rc == 0)
            rc = handshake_check(c, what, n, deadline_ns, timeout_ms, f);
        c->in_limit = limit;
        if (rc) {
            fail_prefix(f, "connect: ");
            conn_close(c);
            return -1;
        }
    }
    return 0;
}

/* ---- lookups ---- */

/* Takes a free pool slot, waiting at most until the deadline; -1 when none. */
static int pool_acquire(dab_l2_t *l2, uint64_t deadline_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(deadline_ns / 1000000000),
                          .tv_nsec = (long)(deadline_ns % 1000000000)};
    int slot = -1;
    bool late = false;
    pthread_mutex_lock(&l2->pool_mu);
    while (l2->n_free == 0 && !late)
        late = pthread_cond_timedwait(&l2->pool_cv, &l2->pool_mu, &ts) == ETIMEDOUT;
    /* A slot freed just as the deadline passed is of no use to this call. */
    if (l2->n_free > 0 && !late)
        slot = l2->free_idx[--l2->n_free];
    else if (l2->n_free > 0) /* pass on a wake-up this waiter may have taken */
        pthread_cond_signal(&l2->pool_cv);
    pthread_mutex_unlock(&l2->pool_mu);
    return slot;
}

static void pool_release(dab_l2_t *l2, int slot)
{
    pthread_mutex_lock(&l2->pool_mu);
    l2->free_idx[l2->n_free++] = slot;
    pthread_cond_signal(&l2->pool_cv);
    pthread_mutex_unlock(&l2->pool_mu);
}

/* What a GET's reply is when it is not a value. */
static const char *reply_type_name(int type)
{
    switch (type) {
    case REDIS_REPLY_STRING: return "a string";
    case REDIS_REPLY_ARRAY: return "an array";
    case REDIS_REPLY_INTEGER: return "an integer";
    case REDIS_REPLY_NIL: return "nil";
    case REDIS_REPLY_STATUS: return "a status";
    case REDIS_REPLY_ERROR: return "an error";
    default: return "of an unknown type";
    }
}

/* Checks an envelope and copies its payload into *out. 0, DAB_ENOMEM, or
 * DAB_EFORMAT with f describing the fault. */
static int envelope_open(const uint8_t *p, size_t len, const dab_cache_key_t *key,
                         dab_cache_val_t **out, l2_fail_t *f)
{
    if (len < L2_HEAD_BYTES + L2_TAIL_BYTES) {
        fail_set(f, DAB_L2_F_CORRUPT, false, "value of %zu bytes is shorter than an envelope", len);
        return DAB_EFORMAT;
    }
    if (memcmp(p, L2_MAGIC, 4) != 0) {
        fail_set(f, DAB_L2_F_CORRUPT, false, "value does not start with \"" L2_MAGIC "\"");
        return DAB_EFORMAT;
    }
    uint64_t plen = get_le32(p + 4);
    if (plen != len - L2_HEAD_BYTES - L2_TAIL_BYTES) {
        fail_set(f, DAB_L2_F_CORRUPT, false,
                 "envelope says %llu payload bytes, the value holds %zu", (unsigned long long)plen,
                 len - L2_HEAD_BYTES - L2_TAIL_BYTES);
        return DAB_EFORMAT;
    }
    if (get_le64(p + 8) != key->lo || get_le64(p + 16) != key->hi) {
        fail_set(f, DAB_L2_F_CORRUPT, false, "envelope holds another key");
        return DAB_EFORMAT;
    }
    uint64_t sum = XXH3_64bits(p, L2_HEAD_BYTES + plen);
    if (get_le64(p + L2_HEAD_BYTES + plen) != sum) {
        fail_set(f, DAB_L2_F_CORRUPT, false, "envelope checksum does not match");
        return DAB_EFORMAT;
    }
    *out = dab_cache_val_copy(p + L2_HEAD_BYTES, plen);
    return *out ? 0 : DAB_ENOMEM;
}

/* The code a get returns for a fault of kind k. */
static int fault_code(dab_l2_fault_t k)
{
    switch (k) {
    case DAB_L2_F_TIMEOUT: return DAB_ETIMEDOUT;
    case DAB_L2_F_PROTOCOL:
    case DAB_L2_F_CORRUPT: return DAB_EFORMAT;
    case DAB_L2_F_DOWN:
    case DAB_L2_F_BUSY: return DAB_EBUSY;
    default: return DAB_EIO;
    }
}

/* One GET + PTTL round trip on c. 0 (hit or miss), DAB_ENOMEM, or a fault code with
 * f set; *close_conn when the connection can no longer be trusted. */
static int get_roundtrip(dab_l2_t *l2, l2_conn_t *c, const dab_buf_t *k, const dab_cache_key_t *key,
                         uint64_t deadline_ns, dab_cache_val_t **out, int64_t *ttl_s, l2_fail_t *f,
                         bool *close_conn)
{
    *close_conn = true;
    dab_buf_reset(&c->out);
    if (resp_array(&c->out, 2) || resp_str(&c->out, "GET") || resp_arg(&c->out, k->data, k->len) ||
        resp_array(&c->out, 2) || resp_str(&c->out, "PTTL") || resp_arg(&c->out, k->data, k->len)) {
        *close_conn = false;
        return DAB_ENOMEM;
    }
    redisReply *r = NULL, *t = NULL;
    if (conn_send(c, deadline_ns, l2->timeout_ms, f) ||
        conn_read(c, &r, deadline_ns, l2->timeout_ms, f))
        return fault_code(f->kind);

    /* The GET reply is judged before waiting for PTTL's: a server that answered
     * wrongly may never answer again. */
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR) {
        /* WRONGTYPE: something other than our string lives under our key. */
        bool wrongtype = r->len >= 9 && memcmp(r->str, "WRONGTYPE", 9) == 0;
        fail_set(f, wrongtype ? DAB_L2_F_CORRUPT : DAB_L2_F_REPLY, false, "%.*s",
                 (int)DAB_MIN(r->len, 200), r->str);
        rc = fault_code(f->kind);
    } else if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL) {
        fail_set(f, DAB_L2_F_PROTOCOL, true, "reply is %s, expected a string",
                 reply_type_name(r->type));
        freeReplyObject(r);
        return DAB_EFORMAT;
    }
    if (conn_read(c, &t, deadline_ns, l2->timeout_ms, f)) {
        freeReplyObject(r);
        return fault_code(f->kind);
    }
    if (t->type == REDIS_REPLY_INTEGER) {
        if (t->integer >= 0)
            *ttl_s = t->integer / 1000 + (t->integer % 1000 != 0);
    } else if (t->type != REDIS_REPLY_ERROR && rc == 0) {
        fail_set(f, DAB_L2_F_PROTOCOL, true, "PTTL reply is %s, expected an integer",
                 reply_type_name(t->type));
        rc = DAB_EFORMAT;
    }
    freeReplyObject(t);
    if (rc) {
        *close_conn = f->kind == DAB_L2_F_PROTOCOL;
        freeReplyObject(r);
        return rc;
    }
    *close_conn = false;
    if (r->type == REDIS_REPLY_STRING)
        rc = envelope_open((const uint8_t *)r->str, r->len, key, out, f);
    freeReplyObject(r);
    return rc;
}

/*
 * GET prefix + scope + ":" + hex(key), with the key's remaining TTL. See cache_int.h.
 * One deadline covers the wait for a pooled connection, connecting and the round
 * trip. Any thread.
 */
int dab_l2_get(dab_l2_t *l2, const char *scope, const dab_cache_key_t *key, dab_cache_val_t **out,
               int64_t *ttl_s)
{
    *out = NULL;
    *ttl_s = -1;
    uint64_t start = dab_now_ns();
    uint64_t deadline = start + (uint64_t)l2->timeout_ms * 1000000;
    bool probe;
    uint64_t retry_ms = 0;
    if (!l2_admit(l2, &probe, &retry_ms)) {
        l2_fault(l2, scope, DAB_L2_F_DOWN,
                 "GET in scope '%s': skipped, server down (retry in %llu ms)", scope ? scope : "",
                 (unsigned long long)retry_ms);
        return DAB_EBUSY;
    }
    int slot = pool_acquire(l2, deadline);
    if (slot < 0) {
        l2_probe_cancel(l2, probe);
        l2_fault(l2, scope, DAB_L2_F_BUSY, "GET in scope '%s': no free connection within %d ms",
                 scope ? scope : "", l2->timeout_ms);
        return DAB_EBUSY;
    }
    l2_conn_t *c = &l2->slots[slot];
    /* The key is built per call (not in the slot) because the fault is reported
     * after the slot has gone back to the pool. */
    dab_buf_t k = {0};
    int rc = redis_key(l2, scope, key, &k);
    if (rc) {
        dab_buf_free(&k);
        pool_release(l2, slot);
        l2_probe_cancel(l2, probe);
        return rc;
    }
    if (c->fd >= 0 && c->gen != atomic_load(&l2->gen))
        conn_close(c);
    /* A timeout on a call that had little of its budget left (it waited for a
     * connection) says little about the server: it is counted, not backed off. */
    bool full_budget = dab_now_ns() - start < (uint64_t)l2->timeout_ms * 500000;

    l2_fail_t f = {0};
    const char *op = "GET";
    bool reused = c->fd >= 0;
    bool close_conn = false;
    for (int attempt = 0;; attempt++) {
        if (c->fd < 0) {
            op = "connect";
            if (l2_connect(l2, c, deadline, l2->timeout_ms, &f)) {
                rc = fault_code(f.kind);
                break;
            }
            op = "GET";
        }
        f.got_bytes = false;
        rc = get_roundtrip(l2, c, &k, key, deadline, out, ttl_s, &f, &close_conn);
        if (close_conn)
            conn_close(c);
        /* A pooled connection the server has since closed (a restart, an idle
         * timeout) fails at once without a byte: that is worth one retry on a new
         * connection. GET is idempotent. */
        if (rc && rc != DAB_ENOMEM && reused && attempt == 0 && f.kind == DAB_L2_F_IO &&
            !f.got_bytes) {
            conn_close(c);
            reused = false;
            continue;
        }
        break;
    }
    pool_release(l2, slot);

    if (rc == 0 || rc == DAB_ENOMEM) {
        l2_health(l2, probe, true);
        if (rc == 0)
            atomic_fetch_add_explicit(*out ? &l2->hits : &l2->misses, 1, memory_order_relaxed);
    } else {
        if (!f.server_bad)
            l2_health(l2, probe, true);
        else if (f.kind == DAB_L2_F_TIMEOUT && !full_budget)
            l2_probe_cancel(l2, probe);
        else
            l2_health(l2, probe, false);
        if (strcmp(op, "connect") == 0) /* the detail names it */
            l2_fault(l2, scope, f.kind, "%s", f.detail);
        else
            l2_fault(l2, scope, f.kind, "GET %.*s: %s", (int)DAB_MIN(k.len, 200), k.data, f.detail);
    }
    dab_buf_free(&k);
    return rc;
}

/* ---- the writer ---- */

/* Counts n fills as dropped, telling why, and lets their values go. */
static void drop_items(dab_l2_t *l2, l2_item_t *it, int n, const char *why)
{
    for (int i = 0; i < n; i++) {
        char hex[33];
        dab_cache_key_hex(&it[i].key, hex);
        l2_fault(l2, it[i].scope, DAB_L2_F_DROPPED, "SET %s%s:%s: dropped, %s", l2->prefix,
                 it[i].scope, hex, why);
    }
}

/* Writes a batch in one pipelined round trip (with one reconnect for a stale
 * connection), counting each SET's outcome. */
static void write_batch(dab_l2_t *l2, l2_item_t *it, int n)
{
    l2_conn_t *c = &l2->wconn;
    bool probe;
    uint64_t retry_ms = 0;
    if (!l2_admit(l2, &probe, &retry_ms)) {
        drop_items(l2, it, n, "server down");
        return;
    }
    if (c->fd >= 0 && c->gen != atomic_load(&l2->gen))
        conn_close(c);
    l2_fail_t f = {0};
    dab_buf_t k = {0};
    bool reused = c->fd >= 0;
    int done = 0;           /* items whose reply was read */
    int bad = -1;           /* index of the item at which the connection failed */
    const char *op = "SET"; /* or "connect" */
    for (int attempt = 0;; attempt++) {
        if (c->fd < 0) {
            uint64_t dl = dab_now_ns() + (uint64_t)l2->timeout_ms * 1000000;
            if (l2_connect(l2, c, dl, l2->timeout_ms, &f)) {
                op = "connect";
                bad = 0;
                break;
            }
        }
        dab_buf_reset(&c->out);
        bool oom = false;
        for (int i = 0; i < n && !oom; i++) {
            int64_t ttl = it[i].ttl_s > 0 ? it[i].ttl_s : l2->default_ttl_s;
            oom = redis_key(l2, it[i].scope, &it[i].key, &k) || resp_array(&c->out, 5) ||
                  resp_str(&c->out, "SET") || resp_arg(&c->out, k.data, k.len) ||
                  resp_envelope(&c->out, &it[i].key, it[i].v) || resp_str(&c->out, "EX") ||
                  resp_i64(&c->out, ttl);
        }
        if (oom) {
            l2_probe_cancel(l2, probe);
            dab_buf_free(&k);
            drop_items(l2, it, n, "out of memory");
            return;
        }
        uint64_t dl = dab_now_ns() + (uint64_t)l2->timeout_ms * 1000000;
        f.got_bytes = false;
        if (conn_send(c, dl, l2->timeout_ms, &f)) {
            bad = 0;
        } else {
            for (int i = 0; i < n; i++) {
                redisReply *r;
                if (conn_read(c, &r, dl, l2->timeout_ms, &f)) {
                    bad = i;
                    break;
                }
                done = i + 1;
                if (r->type == REDIS_REPLY_STATUS) {
                    atomic_fetch_add_explicit(&l2->writes, 1, memory_order_relaxed);
                } else if (r->type == REDIS_REPLY_ERROR) {
                    /* e.g. OOM when Redis is full: the connection stays in step */
                    redis_key(l2, it[i].scope, &it[i].key, &k);
                    l2_fault(l2, it[i].scope, DAB_L2_F_REPLY, "SET %.*s: %.*s",
                             (int)DAB_MIN(k.len, 200), k.data, (int)DAB_MIN(r->len, 200), r->str);
                } else {
                    fail_set(&f, DAB_L2_F_PROTOCOL, true, "reply is %s, expected a status",
                             reply_type_name(r->type));
                    done = i; /* not written: it is dropped below */
                    bad = i;
                    freeReplyObject(r);
                    break;
                }
                freeReplyObject(r);
            }
        }
        if (bad >= 0 && reused && attempt == 0 && done == 0 && f.kind == DAB_L2_F_IO &&
            !f.got_bytes) {
            /* a stale pooled connection: retry once on a new one (SET is idempotent) */
            conn_close(c);
            reused = false;
            bad = -1;
            continue;
        }
        break;
    }
    if (c->out.cap > 2 * L2_BATCH_BYTES + 65536) /* do not hold on to a huge buffer */
        dab_buf_free(&c->out);
    if (bad >= 0) {
        conn_close(c);
        l2_health(l2, probe, !f.server_bad);
        if (strcmp(op, "connect") == 0) { /* the detail names it */
            l2_fault(l2, NULL, f.kind, "%s", f.detail);
        } else {
            redis_key(l2, it[bad].scope, &it[bad].key, &k);
            l2_fault(l2, it[bad].scope, f.kind, "SET %.*s: %s", (int)DAB_MIN(k.len, 200), k.data,
                     f.detail);
        }
        drop_items(l2, it + done, n - done, "the round trip failed");
    } else {
        l2_health(l2, probe, true);
    }
    dab_buf_free(&k);
}

static void *writer_main(void *arg)
{
    dab_l2_t *l2 = arg;
    l2_item_t batch[L2_BATCH_ITEMS];
    pthread_mutex_lock(&l2->q_mu);
    for (;;) {
        while (!l2->stop && l2->n == 0)
            pthread_cond_wait(&l2->q_cv, &l2->q_mu);
        if (l2->stop)
            break;
        int n = 0;
        size_t bytes = 0;
        while (l2->n > 0 && n < L2_BATCH_ITEMS && (n == 0 || bytes < L2_BATCH_BYTES)) {
            batch[n] = l2->ring[l2->head];
            bytes += batch[n].v->len;
            n++;
            l2->head = (l2->head + 1) % l2->cap;
            l2->n--;
        }
        pthread_mutex_unlock(&l2->q_mu);
        write_batch(l2, batch, n);
        for (int i = 0; i < n; i++) {
            dab_cache_val_release(batch[i].v);
            dab_free(batch[i].scope);
        }
        pthread_mutex_lock(&l2->q_mu);
        l2->finished += (uint64_t)n;
        pthread_cond_broadcast(&l2->done_cv);
    }
    /* Stopped: what is left is dropped (dab_l2_free has already flushed a while). */
    int left = l2->n;
    while (l2->n > 0) {
        l2_item_t *it = &l2->ring[l2->head];
        dab_cache_val_release(it->v);
        dab_free(it->scope);
        l2->head = (l2->head + 1) % l2->cap;
        l2->n--;
    }
    l2->finished += (uint64_t)left;
    pthread_cond_broadcast(&l2->done_cv);
    pthread_mutex_unlock(&l2->q_mu);
    if (left) {
        atomic_fetch_add_explicit(&l2->faults[DAB_L2_F_DROPPED], (uint64_t)left - 1,
                                  memory_order_relaxed);
        l2_fault(l2, NULL, DAB_L2_F_DROPPED, "shutdown: %d queued fills dropped", left);
    }
    conn_close(&l2->wconn);
    return NULL;
}

/*
 * Queues SET key envelope(v) EX ttl. Takes its own reference on v (the caller keeps
 * its own). A full queue, a value over 512 MiB or no memory drops the fill (fault
 * DROPPED). Returns at once. Any thread.
 */
void dab_l2_put(dab_l2_t *l2, const char *scope, const dab_cache_key_t *key, dab_cache_val_t *v,
                int64_t ttl_s)
{
    char hex[33];
    if (!scope)
        scope = "";
    if (v->len > L2_MAX_PAYLOAD_BYTES) {
        dab_cache_key_hex(key, hex);
        l2_fault(l2, scope, DAB_L2_F_DROPPED,
                 "SET %s%s:%s: dropped, value of %zu bytes is over %zu", l2->prefix, scope, hex,
                 v->len, L2_MAX_PAYLOAD_BYTES);
        return;
    }
    char *sc = dab_strdup(scope);
    const char *why = sc ? NULL : "out of memory";
    if (sc) {
        pthread_mutex_lock(&l2->q_mu);
        if (l2->stop) {
            why = "shutting down";
        } else if (l2->n == l2->cap) {
            why = "write queue full";
        } else {
            dab_cache_val_ref(v);
            l2->ring[(l2->head + l2->n) % l2->cap] =
                (l2_item_t){.scope = sc, .key = *key, .v = v, .ttl_s = ttl_s};
            l2->n++;
            l2->enqueued++;
            pthread_cond_signal(&l2->q_cv);
        }
        pthread_mutex_unlock(&l2->q_mu);
    }
    if (why) {
        dab_free(sc);
        dab_cache_key_hex(key, hex);
        l2_fault(l2, scope, DAB_L2_F_DROPPED, "SET %s%s:%s: dropped, %s", l2->prefix, scope, hex,
                 why);
    }
}

/* Blocks until every fill queued before the call was written or dropped, at most
 * timeout_ms. Any thread but the writer's (i.e. not from on_fault). */
void dab_l2_flush(dab_l2_t *l2, int timeout_ms)
{
    uint64_t deadline = dab_now_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000;
    struct timespec ts = {.tv_sec = (time_t)(deadline / 1000000000),
                          .tv_nsec = (long)(deadline % 1000000000)};
    pthread_mutex_lock(&l2->q_mu);
    uint64_t target = l2->enqueued;
    while (l2->finished < target) {
        if (pthread_cond_timedwait(&l2->done_cv, &l2->q_mu, &ts) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&l2->q_mu);
}

/* ---- purge ---- */

/* Appends s with the glob metacharacters * ? [ ] \ escaped. */
static int glob_escape(dab_buf_t *b, const char *s)
{
    for (; *s; s++) {
        if (strchr("*?[]\\", *s) && dab_buf_append(b, "\\", 1))
            return DAB_ENOMEM;
        if (dab_buf_append(b, s, 1))
            return DAB_ENOMEM;
    }
    return 0;
}

/* Validates a SCAN reply: [cursor, [key, ...]] with a decimal cursor. */
static bool scan_reply_ok(const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
        return false;
    const redisReply *cur = r->element[0], *keys = r->element[1];
    if (cur->type != REDIS_REPLY_STRING || cur->len == 0 || cur->len > 20)
        return false;
    for (size_t i = 0; i < cur->len; i++)
        if (cur->str[i] < '0' || cur->str[i] > '9')
            return false;
    if (keys->type != REDIS_REPLY_ARRAY)
        return false;
    for (size_t i = 0; i < keys->elements; i++)
        if (keys->element[i]->type != REDIS_REPLY_STRING)
            return false;
    return true;
}

/*
 * Deletes every key of scope (NULL: every key under the prefix) with SCAN MATCH and
 * UNLINK on a connection of its own: at most 2 s per round trip (or the tier's
 * timeout when longer) and 10 s in all. *deleted (may be NULL) gets the count, also
 * on failure. DAB_EIO / DAB_ETIMEDOUT / DAB_EFORMAT / DAB_ENOMEM with err naming the
 * fault. Purges run one at a time. Any thread.
 */
int dab_l2_purge(dab_l2_t *l2, const char *scope, int64_t *deleted, dab_err_t *err)
{
    int64_t count = 0;
    int call_ms = DAB_MAX(L2_PURGE_CALL_MS, l2->timeout_ms);
    uint64_t total_deadline = dab_now_ns() + (uint64_t)L2_PURGE_TOTAL_MS * 1000000;
    l2_conn_t c;
    conn_init(&c, L2_PURGE_MAX_ARRAY, L2_PURGE_MAX_IN);
    dab_buf_t pat = {0};
    char cursor[24] = "0";
    l2_fail_t f = {0};
    const char *op = NULL; /* the command at fault; NULL: connecting (the detail says so) */
    int rc = 0;
    if (glob_escape(&pat, l2->prefix) ||
        (scope && (glob_escape(&pat, scope) || dab_buf_append(&pat, ":", 1))))
        rc = DAB_ENOMEM;
    if (scope) {
        /* exactly 32 hex digits, so that scope "m" does not match scope "m:x" */
        for (int i = 0; i < 32 && !rc; i++)
            rc = dab_buf_puts(&pat, "[0-9a-f]");
    } else if (!rc) {
        rc = dab_buf_append(&pat, "*", 1);
    }
    if (rc) {
        dab_buf_free(&pat);
        return dab_err_set(err, DAB_ENOMEM, "redis purge: out of memory");
    }

    pthread_mutex_lock(&l2->purge_mu);
    bool failed =
        l2_connect(l2, &c, DAB_MIN(total_deadline, dab_now_ns() + (uint64_t)call_ms * 1000000),
                   call_ms, &f) != 0;
    bool finished = false;
    while (!failed && !finished) {
        if (dab_now_ns() >= total_deadline) {
            fail_set(&f, DAB_L2_F_TIMEOUT, false, "not finished within %d ms (%lld keys deleted)",
                     L2_PURGE_TOTAL_MS, (long long)count);
            failed = true;
            break;
        }
        uint64_t dl = DAB_MIN(total_deadline, dab_now_ns() + (uint64_t)call_ms * 1000000);
        op = "SCAN";
        redisReply *r = NULL, *u = NULL;
        dab_buf_reset(&c.out);
        if (resp_array(&c.out, 6) || resp_str(&c.out, "SCAN") || resp_str(&c.out, cursor) ||
            resp_str(&c.out, "MATCH") || resp_arg(&c.out, pat.data, pat.len) ||
            resp_str(&c.out, "COUNT") || resp_str(&c.out, "1000")) {
            rc = DAB_ENOMEM;
            break;
        }
        if (conn_send(&c, dl, call_ms, &f) || conn_read(&c, &r, dl, call_ms, &f)) {
            failed = true;
            break;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            fail_set(&f, DAB_L2_F_REPLY, false, "%.*s", (int)DAB_MIN(r->len, 200), r->str);
            freeReplyObject(r);
            failed = true;
            break;
        }
        if (!scan_reply_ok(r)) {
            fail_set(&f, DAB_L2_F_PROTOCOL, false, "reply is not [cursor, [keys]]");
            freeReplyObject(r);
            failed = true;
            break;
        }
        memcpy(cursor, r->element[0]->str, r->element[0]->len);
        cursor[r->element[0]->len] = 0;
        finished = strcmp(cursor, "0") == 0;
        const redisReply *keys = r->element[1];
        if (keys->elements > 0) {
            op = "UNLINK";
            dab_buf_reset(&c.out);
            bool oom = resp_array(&c.out, (int)keys->elements + 1) || resp_str(&c.out, "UNLINK");
            for (size_t i = 0; i < keys->elements && !oom; i++)
                oom = resp_arg(&c.out, keys->element[i]->str, keys->element[i]->len) != 0;
            freeReplyObject(r);
            if (oom) {
                rc = DAB_ENOMEM;
                break;
            }
            dl = DAB_MIN(total_deadline, dab_now_ns() + (uint64_t)call_ms * 1000000);
            if (conn_send(&c, dl, call_ms, &f) || conn_read(&c, &u, dl, call_ms, &f)) {
                failed = true;
                break;
            }
            if (u->type == REDIS_REPLY_INTEGER && u->integer >= 0) {
                count += u->integer;
            } else {
                if (u->type == REDIS_REPLY_ERROR)
                    fail_set(&f, DAB_L2_F_REPLY, false, "%.*s", (int)DAB_MIN(u->len, 200), u->str);
                else
                    fail_set(&f, DAB_L2_F_PROTOCOL, false, "reply is %s, expected an integer",
                             reply_type_name(u->type));
                failed = true;
            }
            freeReplyObject(u);
        } else {
            freeReplyObject(r);
        }
    }
    conn_free(&c);
    pthread_mutex_unlock(&l2->purge_mu);
    if (deleted)
        *deleted = count;
    if (failed) {
        l2_fault(l2, scope, f.kind, "purge of '%.*s': %s%s%s", (int)DAB_MIN(pat.len, 200), pat.data,
                 op ? op : "", op ? ": " : "", f.detail);
        rc = dab_err_set(err, fault_code(f.kind) == DAB_EBUSY ? DAB_EIO : fault_code(f.kind),
                         "redis %s: purge of '%.*s': %s%s%s", l2->where, (int)DAB_MIN(pat.len, 200),
                         pat.data, op ? op : "", op ? ": " : "", f.detail);
    } else if (rc) {
        rc = dab_err_set(err, rc, "redis purge: out of memory");
    }
    dab_buf_free(&pat);
    return rc;
}

/* ---- life cycle ---- */

/*
 * Checks the options, parses the URL and starts the writer thread; nothing connects
 * until the first call. DAB_EINVAL naming the option or URL part at fault,
 * DAB_ENOMEM, DAB_EINTERNAL when the thread cannot start; on error *out is NULL.
 * timeout_ms 0 = 5, pool 0 = 8, prefix NULL = "dabba:", default_ttl_s 0 = 3600,
 * max_pending_writes 0 = 4096. Any thread.
 */
int dab_l2_new(const dab_l2_opts_t *o, dab_l2_t **out, dab_err_t *err)
{
    *out = NULL;
    if (o->timeout_ms < 0 || o->timeout_ms > 3600000)
        return dab_err_set(err, DAB_EINVAL, "redis timeout %d ms is not 0..3600000", o->timeout_ms);
    if (o->pool < 0 || o->pool > L2_MAX_POOL)
        return dab_err_set(err, DAB_EINVAL, "redis pool %d is not 0..%d", o->pool, L2_MAX_POOL);
    if (o->max_pending_writes < 0 || o->max_pending_writes > L2_MAX_PENDING)
        return dab_err_set(err, DAB_EINVAL, "redis max pending writes %d is not 0..%d",
                           o->max_pending_writes, L2_MAX_PENDING);
    if (o->default_ttl_s < 0 || o->default_ttl_s > DAB_CACHE_MAX_TTL_S)
        return dab_err_set(err, DAB_EINVAL, "redis default TTL %lld s is not 0..%lld",
                           (long long)o->default_ttl_s, (long long)DAB_CACHE_MAX_TTL_S);
    dab_redis_url_t url;
    int rc = dab_redis_url_parse(o->url, &url, err);
    if (rc)
        return rc;

    dab_l2_t *l2 = dab_calloc(1, sizeof *l2);
    if (!l2)
        return dab_err_set(err, DAB_ENOMEM, "redis tier: out of memory");
    l2->url = url;
    snprintf(l2->where, sizeof l2->where, strchr(url.host, ':') ? "[%s]:%d" : "%s:%d", url.host,
             url.port);
    l2->timeout_ms = o->timeout_ms ? o->timeout_ms : 5;
    l2->default_ttl_s = o->default_ttl_s ? o->default_ttl_s : 3600;
    l2->on_fault = o->on_fault;
    l2->fault_user = o->fault_user;
    l2->pool = o->pool ? o->pool : 8;
    l2->cap = o->max_pending_writes ? o->max_pending_writes : 4096;
    l2->next_backoff_ns = L2_BACKOFF_MIN_NS;
    l2->rng = dab_now_ns() | 1;
    l2->prefix = dab_strdup(o->prefix ? o->prefix : "dabba:");
    l2->slots = dab_calloc((size_t)l2->pool, sizeof *l2->slots);
    l2->free_idx = dab_calloc((size_t)l2->pool, sizeof *l2->free_idx);
    l2->ring = dab_calloc((size_t)l2->cap, sizeof *l2->ring);
    conn_init(&l2->wconn, 0, L2_WRITER_MAX_IN);
    if (!l2->prefix || !l2->slots || !l2->free_idx || !l2->ring) {
        rc = dab_err_set(err, DAB_ENOMEM, "redis tier: out of memory");
        goto fail;
    }
    for (int i = 0; i < l2->pool; i++) {
        conn_init(&l2->slots[i], 0, L2_GET_MAX_IN);
        l2->free_idx[i] = i;
    }
    l2->n_free = l2->pool;

    /* Deadlines are dab_now_ns (CLOCK_MONOTONIC) times: the condvars wait on it. */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&l2->health_mu, NULL);
    pthread_mutex_init(&l2->pool_mu, NULL);
    pthread_mutex_init(&l2->q_mu, NULL);
    pthread_mutex_init(&l2->purge_mu, NULL);
    pthread_cond_init(&l2->pool_cv, &ca);
    pthread_cond_init(&l2->q_cv, &ca);
    pthread_cond_init(&l2->done_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&l2->writer, NULL, writer_main, l2) != 0) {
        rc = dab_err_set(err, DAB_EINTERNAL, "redis tier: cannot start the writer thread");
        goto fail;
    }
    l2->writer_started = true;
    *out = l2;
    return 0;

fail:
    dab_l2_free(l2);
    return rc;
}

/* Flushes queued fills for at most a second, stops the writer (dropping what is
 * left) and frees everything. No other call may be in progress. NULL is fine. */
void dab_l2_free(dab_l2_t *l2)
{
    if (!l2)
        return;
    if (l2->writer_started) {
        dab_l2_flush(l2, L2_FREE_FLUSH_MS);
        pthread_mutex_lock(&l2->q_mu);
        l2->stop = true;
        pthread_cond_signal(&l2->q_cv);
        pthread_mutex_unlock(&l2->q_mu);
        pthread_join(l2->writer, NULL);
        pthread_mutex_destroy(&l2->health_mu);
        pthread_mutex_destroy(&l2->pool_mu);
        pthread_mutex_destroy(&l2->q_mu);
        pthread_mutex_destroy(&l2->purge_mu);
        pthread_cond_destroy(&l2->pool_cv);
        pthread_cond_destroy(&l2->q_cv);
        pthread_cond_destroy(&l2->done_cv);
    }
    conn_free(&l2->wconn);
    if (l2->slots)
        for (int i = 0; i < l2->pool; i++)
            conn_free(&l2->slots[i]);
    dab_free(l2->slots);
    dab_free(l2->free_idx);
    dab_free(l2->ring);
    dab_free(l2->prefix);
    dab_free(l2);
}

/* Reads the counters. Any thread. */
void dab_l2_stats(dab_l2_t *l2, dab_l2_stats_t *out)
{
    memset(out, 0, sizeof *out);
    out->hits = atomic_load_explicit(&l2->hits, memory_order_relaxed);
    out->misses = atomic_load_explicit(&l2->misses, memory_order_relaxed);
    out->writes = atomic_load_explicit(&l2->writes, memory_order_relaxed);
    for (int i = 0; i < DAB_L2_N_FAULTS; i++)
        out->faults[i] = atomic_load_explicit(&l2->faults[i], memory_order_relaxed);
    out->up = atomic_load(&l2->up);
}
