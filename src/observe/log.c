/*
 * log.c - structured log lines on stderr.
 *
 * Each call builds its whole line in a stack buffer and hands it to one
 * write(2), so lines from different threads never interleave (a pipe keeps
 * writes of up to PIPE_BUF = 4096 bytes whole, hence the line bound). The
 * line never touches the heap. The rate limiter keeps a small table of keys
 * under a mutex; it is meant for error paths, not for every request.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "observe_int.h"

#define LINE_BYTES 4096
#define LINE_RESERVE 40 /* kept free for closing a cut line: "\",\"truncated\":true}\n" */
#define MAX_FIELDS 64

static _Atomic int g_format = DAB_LOG_JSON;
static _Atomic int g_level = DAB_LOG_INFO;

static const char *const g_level_names[] = {"debug", "info", "warn", "error"};
static const char *const g_level_text[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};

void dab_log_init(dab_log_format_t format, dab_log_level_t level)
{
    atomic_store(&g_format, format == DAB_LOG_TEXT ? DAB_LOG_TEXT : DAB_LOG_JSON);
    if (level < DAB_LOG_DEBUG)
        level = DAB_LOG_DEBUG;
    if (level > DAB_LOG_ERROR)
        level = DAB_LOG_ERROR;
    atomic_store(&g_level, level);
}

int dab_log_parse_format(const char *s, dab_log_format_t *out, dab_err_t *err)
{
    if (s && !strcmp(s, "json")) {
        *out = DAB_LOG_JSON;
        return 0;
    }
    if (s && !strcmp(s, "text")) {
        *out = DAB_LOG_TEXT;
        return 0;
    }
    return dab_err_set(err, DAB_EINVAL, "log format '%s' is not 'json' or 'text'",
                       s ? s : "(null)");
}

int dab_log_parse_level(const char *s, dab_log_level_t *out, dab_err_t *err)
{
    for (int i = 0; s && i < (int)DAB_ARRAY_LEN(g_level_names); i++) {
        if (!strcmp(s, g_level_names[i])) {
            *out = (dab_log_level_t)i;
            return 0;
        }
    }
    if (s && !strcmp(s, "warning")) {
        *out = DAB_LOG_WARN;
        return 0;
    }
    return dab_err_set(err, DAB_EINVAL, "log level '%s' is not debug, info, warn or error",
                       s ? s : "(null)");
}

bool dab_log_enabled(dab_log_level_t level)
{
    return (int)level >= atomic_load_explicit(&g_level, memory_order_relaxed);
}

/* ------------------------------ line building ------------------------------ */

typedef struct line {
    char buf[LINE_BYTES];
    size_t len;
    bool json;
    bool cut; /* something did not fit: the rest of the fields are dropped */
} line_t;

static bool room(const line_t *l, size_t n)
{
    return l->len + n <= LINE_BYTES - LINE_RESERVE;
}

static bool put(line_t *l, const char *p, size_t n)
{
    if (l->cut || !room(l, n)) {
        l->cut = true;
        return false;
    }
    memcpy(l->buf + l->len, p, n);
    l->len += n;
    return true;
}

static bool puts_(line_t *l, const char *s)
{
    return put(l, s, strlen(s));
}

/* Whether a text-format value must be quoted to read back as one token. */
static bool text_needs_quotes(const char *s, size_t n)
{
    if (n == 0)
        return true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f)
            return true;
    }
    return false;
}

/*
 * Writes s (n bytes) escaped: JSON string rules (also used for quoted text
 * values), invalid UTF-8 as U+FFFD. quoted adds the surrounding quotes. When
 * the line fills up the string is cut at a character boundary, closed, and
 * the line marked cut.
 */
static void put_string(line_t *l, const char *s, size_t n, bool quoted)
{
    if (quoted && !put(l, "\"", 1))
        return;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        /* A run of printable ASCII needing no escape is copied whole. */
        size_t run = 0;
        while (i + run < n && p[i + run] >= 0x20 && p[i + run] < 0x7f && p[i + run] != '"' &&
               p[i + run] != '\\')
            run++;
        if (run) {
            size_t fit = LINE_BYTES - LINE_RESERVE - l->len;
            if (run > fit) {
                run = fit;
                l->cut = true;
            }
            memcpy(l->buf + l->len, s + i, run);
            l->len += run;
            i += run;
            if (l->cut)
                break;
            continue;
        }
        char esc[8];
        const char *unit = esc;
        size_t ul, adv;
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c, ul = 2, adv = 1;
        } else if (c < 0x20 || c == 0x7f) {
            const char *named = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
            if (named)
                memcpy(esc, named, 3), ul = 2;
            else
                ul = (size_t)snprintf(esc, sizeof esc, "\\u%04x", c);
            adv = 1;
        } else if (c < 0x80) {
            unit = s + i, ul = 1, adv = 1;
        } else {
            int u = dab_obs_utf8_len(p + i, n - i);
            if (u)
                unit = s + i, ul = (size_t)u, adv = (size_t)u;
            else
                unit = DAB_OBS_REPLACEMENT, ul = 3, adv = 1;
        }
        if (!room(l, ul)) {
            l->cut = true;
            break;
        }
        memcpy(l->buf + l->len, unit, ul);
        l->len += ul;
        i += adv;
    }
    if (quoted) {
        /* The reserve always leaves room for the closing quote. */
        l->buf[l->len++] = '"';
    }
}

/* A field key: JSON-escaped in JSON; in text, anything but [A-Za-z0-9_.-] becomes '_'. */
static void put_key(line_t *l, const char *key)
{
    if (!key)
        key = "";
    if (l->json) {
        put_string(l, key, strlen(key), true);
        return;
    }
    for (const char *k = key; *k && !l->cut; k++) {
        char c = *k;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        put(l, ok ? k : "_", 1);
    }
}

static void put_value_string(line_t *l, const char *s, size_t n)
{
    if (!s) {
        puts_(l, "null");
        return;
    }
    if (l->json || text_needs_quotes(s, n))
        put_string(l, s, n, true);
    else
        put_string(l, s, n, false);
}

/* v in decimal into out (at least 21 bytes), NUL-terminated. */
static void fmt_u64(char *out, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (int i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = 0;
}

static void put_field(line_t *l, const dab_log_field_t *f)
{
    size_t mark = l->len;
    bool ok = puts_(l, l->json ? "," : " ");
    if (ok)
        put_key(l, f->key);
    ok = !l->cut && puts_(l, l->json ? ":" : "=");
    if (!ok) {
        l->len = mark; /* a field without its value would break the line */
        l->cut = true;
        return;
    }
    char num[48];
    switch (f->type) {
    case DAB_LOG_F_STR:
        put_value_string(l, f->s, f->s ? strlen(f->s) : 0);
        return;
    case DAB_LOG_F_STRN:
        put_value_string(l, f->s, f->n);
        return;
    case DAB_LOG_F_INT:
        if (f->i < 0) {
            num[0] = '-';
            fmt_u64(num + 1, 0 - (uint64_t)f->i);
        } else {
            fmt_u64(num, (uint64_t)f->i);
        }
        break;
    case DAB_LOG_F_UINT:
        fmt_u64(num, f->u);
        break;
    case DAB_LOG_F_DBL:
        if (isfinite(f->d) || !l->json)
            dab_obs_fmt_double(num, sizeof num, f->d);
        else
            strcpy(num, "null");
        break;
    case DAB_LOG_F_BOOL:
        strcpy(num, f->b ? "true" : "false");
        break;
    default:
        strcpy(num, "null");
        break;
    }
    if (!puts_(l, num))
        l->len = mark;
}

/* time (RFC 3339, UTC, milliseconds): the date part is cached per thread and second. */
static void put_time(line_t *l)
{
    static _Thread_local time_t tl_sec = -1;
    static _Thread_local char tl_prefix[32];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != tl_sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        strftime(tl_prefix, sizeof tl_prefix, "%Y-%m-%dT%H:%M:%S", &tm);
        tl_sec = ts.tv_sec;
    }
    int ms = (int)(ts.tv_nsec / 1000000);
    char frac[6] = {'.', (char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10),
                    'Z', 0};
    puts_(l, tl_prefix);
    puts_(l, frac);
}

static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* nowhere to report a failing log */
        p += w;
        n -= (size_t)w;
    }
}

/* Builds and writes one line; extra (may be NULL) goes after the fields. */
static void emit(dab_log_level_t level, const char *event, const dab_log_field_t *const *fields,
                 int n_fields, const dab_log_field_t *extra)
{
    if (level < DAB_LOG_DEBUG || level > DAB_LOG_ERROR)
        level = DAB_LOG_ERROR;
    if (!event)
        event = "";
    line_t l;
    l.len = 0;
    l.cut = false;
    l.json = atomic_load_explicit(&g_format, memory_order_relaxed) == DAB_LOG_JSON;
    if (l.json) {
        puts_(&l, "{\"time\":\"");
        put_time(&l);
        puts_(&l, "\",\"level\":\"");
        puts_(&l, g_level_names[level]);
        puts_(&l, "\",\"event\":");
        put_string(&l, event, strlen(event), true);
    } else {
        put_time(&l);
        puts_(&l, " ");
        puts_(&l, g_level_text[level]);
        puts_(&l, " ");
        put_value_string(&l, event, strlen(event));
    }
    for (int i = 0; i < n_fields && !l.cut; i++)
        if (fields[i])
            put_field(&l, fields[i]);
    if (extra && !l.cut)
        put_field(&l, extra);
    if (l.cut) {
        const char *t = l.json ? ",\"truncated\":true" : " truncated=true";
        memcpy(l.buf + l.len, t, strlen(t));
        l.len += strlen(t);
    }
    if (l.json)
        l.buf[l.len++] = '}';
    l.buf[l.len++] = '\n';
    write_all(l.buf, l.len);
}

/* Collects a NULL-terminated list of field pointers (at most MAX_FIELDS). */
static int collect(va_list ap, const dab_log_field_t **out)
{
    int n = 0;
    const dab_log_field_t *f;
    while ((f = va_arg(ap, const dab_log_field_t *)) != NULL)
        if (n < MAX_FIELDS)
            out[n++] = f;
    return n;
}

void dab_log_write(dab_log_level_t level, const char *event, ...)
{
    const dab_log_field_t *fields[MAX_FIELDS];
    va_list ap;
    va_start(ap, event);
    int n = collect(ap, fields);
    va_end(ap);
    if (dab_log_enabled(level))
        emit(level, event, fields, n, NULL);
}

void dab_log_fields(dab_log_level_t level, const char *event, const dab_log_field_t *fields,
                    int n_fields)
{
    if (!dab_log_enabled(level))
        return;
    const dab_log_field_t *ptrs[MAX_FIELDS];
    int n = 0;
    for (int i = 0; fields && i < n_fields && n < MAX_FIELDS; i++)
        ptrs[n++] = &fields[i];
    emit(level, event, ptrs, n, NULL);
}

/* ------------------------------ rate limiting ------------------------------ */

#define RL_SLOTS 128
#define RL_KEY_BYTES 64

typedef struct rl_slot {
    char key[RL_KEY_BYTES]; /* "" when free */
    uint64_t window_s;      /* the second the counts below belong to */
    uint64_t last_ns;       /* last use, to pick a slot to forget */
    uint64_t written;       /* lines written in window_s */
    uint64_t suppressed;    /* lines dropped since the last one written */
} rl_slot_t;

static pthread_mutex_t g_rl_lock = PTHREAD_MUTEX_INITIALIZER;
static rl_slot_t g_rl[RL_SLOTS]; /* guarded by g_rl_lock */

/* Whether to write now; *suppressed gets the drops to report with the line. */
static bool rl_admit(const char *key, int max_per_s, uint64_t *suppressed)
{
    if (!key || !key[0])
        key = "-";
    if (max_per_s < 1)
        max_per_s = 1;
    uint64_t now = dab_now_ns(), sec = now / 1000000000ull;
    pthread_mutex_lock(&g_rl_lock);
    /* The key's slot; else a free one; else the least recently used. */
    rl_slot_t *slot = NULL, *victim = NULL;
    for (int i = 0; i < RL_SLOTS && !slot; i++) {
        rl_slot_t *s = &g_rl[i];
        if (!s->key[0]) {
            if (!victim || victim->key[0])
                victim = s;
        } else if (!strncmp(s->key, key, RL_KEY_BYTES - 1)) {
            slot = s;
        } else if (!victim || (victim->key[0] && s->last_ns < victim->last_ns)) {
            victim = s;
        }
    }
    if (!slot) {
        slot = victim;
        memset(slot, 0, sizeof *slot);
        snprintf(slot->key, sizeof slot->key, "%s", key);
        slot->window_s = sec;
    }
    slot->last_ns = now;
    if (slot->window_s != sec) {
        slot->window_s = sec;
        slot->written = 0;
    }
    bool admit = slot->written < (uint64_t)max_per_s;
    if (admit) {
        slot->written++;
        *suppressed = slot->suppressed;
        slot->suppressed = 0;
    } else {
        slot->suppressed++;
    }
    pthread_mutex_unlock(&g_rl_lock);
    return admit;
}

void dab_log_limited_write(dab_log_level_t level, const char *key, int max_per_s,
                           const char *event, ...)
{
    if (!dab_log_enabled(level))
        return;
    uint64_t suppressed = 0;
    if (!rl_admit(key, max_per_s, &suppressed))
        return;
    const dab_log_field_t *fields[MAX_FIELDS];
    va_list ap;
    va_start(ap, event);
    int n = collect(ap, fields);
    va_end(ap);
    emit(level, event, fields, n, suppressed ? DAB_F_UINT("suppressed", suppressed) : NULL);
}
