/*
 * metrics.c - the Prometheus metrics registry and its text exposition.
 *
 * Layout. The registry is a list of metrics (g_reg.lock). A metric owns its
 * series: a list in creation order (for rendering) and an open-addressing
 * hash table from label values to series (for lookups), both changed only
 * under the metric's lock. A series is one block: header, value cells, label
 * strings. Cells are striped: a counter or histogram series holds one row of
 * cells per stripe, each row on its own cache lines, and a thread always
 * updates the row of its stripe; rendering sums the rows. Gauges have one row
 * (set must be a single store).
 *
 * Lock-free lookups. Readers probe the table without the lock, so a removed
 * series or a replaced table cannot be freed at once. Each thread that looks
 * up has a record (thread-local, linked in g_readers) holding the global epoch
 * it read when it entered a lookup, 0 when outside. Removing unlinks first,
 * then takes an epoch number R by incrementing the global epoch and parks the
 * object with R; it is freed once every reader is outside or entered with an
 * epoch > R (such a reader entered after the unlink, so cannot reach it).
 * The record store on entry and the table loads are sequentially consistent,
 * which is what makes "the scan saw the reader outside" imply "the reader
 * will see the unlinked table". A thread that cannot get a record falls back
 * to looking up under the metric's lock.
 *
 * Lock order: g_reg.lock > metric lock > g_retire_lock > g_readers_lock.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "observe_int.h"

const double dab_buckets_latency_s[DAB_BUCKETS_LATENCY_N] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1,     0.25,   0.5,     1,      2.5,   5,      10,    30,   60};
const double dab_buckets_size_bytes[DAB_BUCKETS_SIZE_N] = {
    64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864, 268435456};

#define CELLS_PER_LINE 8 /* 64-byte cache line of uint64 cells */
#define MAX_STRIPES 8
#define MAX_SERIES_LIMIT 1000000
#define TABLE_MIN_SLOTS 16

typedef _Atomic uint64_t cell_t;

struct dab_series {
    dab_metric_t *metric;
    dab_series_t *prev, *next;    /* the metric's list; guarded by the metric lock */
    dab_series_t *retired_next;   /* while parked; guarded by g_retire_lock */
    uint64_t retired_epoch;
    uint64_t hash;
    cell_t *cells;                /* n_stripes rows of stride cells, 64-byte aligned */
    char *values[DAB_METRIC_MAX_LABELS];
    uint16_t lens[DAB_METRIC_MAX_LABELS];
};

typedef struct table {
    struct table *retired_next; /* while parked; guarded by g_retire_lock */
    uint64_t retired_epoch;
    size_t mask;
    _Atomic(dab_series_t *) slots[];
} table_t;

struct dab_metric {
    dab_metric_t *next; /* registry list; guarded by g_reg.lock */
    dab_metric_kind_t kind;
    char *name;
    char *help;
    int n_labels;
    char *label_names[DAB_METRIC_MAX_LABELS];
    int n_bounds; /* histogram: bucket i counts v <= bounds[i]; bucket n_bounds is +Inf */
    double *bounds;
    int n_cells;  /* used cells per row: 1, or n_bounds + 1 buckets + 1 sum */
    int stride;   /* cells per row, a whole number of cache lines */
    int n_stripes;
    size_t max_series;

    pthread_mutex_t lock;    /* guards the fields below except the atomics' readers */
    _Atomic(table_t *) table; /* read lock-free, replaced under lock */
    _Atomic size_t n_series;  /* linked series, not counting fixed */
    size_t n_tomb;            /* removed slots in table */
    dab_series_t *head, *tail;
    dab_series_t *fixed;      /* the overflow series, or the only series without labels */
    atomic_bool fixed_used;   /* the overflow series was handed out: render it */
    _Atomic uint64_t overflow_count; /* lookups routed to the overflow series */
};

static struct {
    pthread_mutex_t lock; /* guards head, tail */
    dab_metric_t *head, *tail;
} g_reg = {PTHREAD_MUTEX_INITIALIZER, NULL, NULL};

/* Parked objects waiting for readers to move on. */
static pthread_mutex_t g_retire_lock = PTHREAD_MUTEX_INITIALIZER;
static dab_series_t *g_retired_series;
static table_t *g_retired_tables;
static _Atomic uint64_t g_epoch = 1; /* 0 means "outside" in a reader record */

/* A removed slot: probing continues past it. */
static dab_series_t g_tomb;
#define TOMB (&g_tomb)

/* ------------------------------ readers ------------------------------ */

typedef struct reader {
    _Atomic uint64_t epoch;      /* 0 outside a lookup */
    struct reader *prev, *next;  /* guarded by g_readers_lock */
    int state;                   /* owner thread only: 0 new, 1 linked, -1 use the lock */
} reader_t;

static pthread_mutex_t g_readers_lock = PTHREAD_MUTEX_INITIALIZER;
static reader_t *g_readers;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_key_t g_reader_key;
static int g_key_ok;
static int g_stripes = 1;

static _Thread_local reader_t tl_reader;
static _Thread_local unsigned tl_stripe; /* 1 + stripe number; 0 before first use */
static _Atomic unsigned g_next_stripe;

static void reader_unlink(reader_t *r)
{
    pthread_mutex_lock(&g_readers_lock);
    if (r->prev)
        r->prev->next = r->next;
    else
        g_readers = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    pthread_mutex_unlock(&g_readers_lock);
}

/* Thread exit: the record lives in the thread's TLS, which goes away next. */
static void reader_destroy(void *p)
{
    reader_t *r = p;
    reader_unlink(r);
    r->state = 0;
}

static void once_init(void)
{
    g_key_ok = pthread_key_create(&g_reader_key, reader_destroy) == 0;
    int n = 1;
    while (n < dab_cpu_count() && n < MAX_STRIPES)
        n *= 2;
    g_stripes = n;
}

static int reader_register(reader_t *r)
{
    pthread_once(&g_once, once_init);
    if (!g_key_ok) {
        r->state = -1;
        return -1;
    }
    pthread_mutex_lock(&g_readers_lock);
    r->prev = NULL;
    r->next = g_readers;
    if (g_readers)
        g_readers->prev = r;
    g_readers = r;
    pthread_mutex_unlock(&g_readers_lock);
    if (pthread_setspecific(g_reader_key, r) != 0) {
        /* Without the destructor the record would dangle after exit. */
        reader_unlink(r);
        r->state = -1;
        return -1;
    }
    r->state = 1;
    return 0;
}

/* Enters a lock-free lookup; NULL when this thread must use the locked path. */
static reader_t *guard_enter(void)
{
    reader_t *r = &tl_reader;
    if (r->state != 1 && (r->state == -1 || reader_register(r) != 0))
        return NULL;
    atomic_store(&r->epoch, atomic_load(&g_epoch));
    return r;
}

static void guard_exit(reader_t *r)
{
    atomic_store_explicit(&r->epoch, 0, memory_order_release);
}

static unsigned stripe_of_thread(void)
{
    if (!tl_stripe)
        tl_stripe = 1 + atomic_fetch_add_explicit(&g_next_stripe, 1, memory_order_relaxed);
    return tl_stripe - 1;
}

/* Frees parked objects no reader can still hold. */
static void reclaim(void)
{
    pthread_mutex_lock(&g_retire_lock);
    if (!g_retired_series && !g_retired_tables) {
        pthread_mutex_unlock(&g_retire_lock);
        return;
    }
    uint64_t min = UINT64_MAX;
    pthread_mutex_lock(&g_readers_lock);
    for (reader_t *r = g_readers; r; r = r->next) {
        uint64_t e = atomic_load(&r->epoch);
        if (e && e < min)
            min = e;
    }
    pthread_mutex_unlock(&g_readers_lock);
    for (dab_series_t **pp = &g_retired_series; *pp;) {
        dab_series_t *s = *pp;
        if (s->retired_epoch < min) {
            *pp = s->retired_next;
            dab_free(s);
        } else {
            pp = &s->retired_next;
        }
    }
    for (table_t **pp = &g_retired_tables; *pp;) {
        table_t *t = *pp;
        if (t->retired_epoch < min) {
            *pp = t->retired_next;
            dab_free(t);
        } else {
            pp = &t->retired_next;
        }
    }
    pthread_mutex_unlock(&g_retire_lock);
}

/* Parks objects already unlinked from every table. */
static void retire(dab_series_t *series_chain, table_t *table)
{
    if (!series_chain && !table)
        return;
    uint64_t r = atomic_fetch_add(&g_epoch, 1);
    pthread_mutex_lock(&g_retire_lock);
    while (series_chain) {
        dab_series_t *next = series_chain->retired_next;
        series_chain->retired_epoch = r;
        series_chain->retired_next = g_retired_series;
        g_retired_series = series_chain;
        series_chain = next;
    }
    if (table) {
        table->retired_epoch = r;
        table->retired_next = g_retired_tables;
        g_retired_tables = table;
    }
    pthread_mutex_unlock(&g_retire_lock);
}

/* ----------------------------- label values ----------------------------- */

/* Label values as the registry keys them: cut, valid UTF-8. */
typedef struct canon {
    const char *v[DAB_METRIC_MAX_LABELS];
    size_t len[DAB_METRIC_MAX_LABELS];
    uint64_t hash;
    bool is_overflow; /* every value is DAB_METRIC_OVERFLOW_VALUE */
    char buf[DAB_METRIC_MAX_LABELS][DAB_METRIC_LABEL_VALUE_MAX];
} canon_t;

/* Copies src into dst (cap bytes), replacing invalid bytes by U+FFFD and
 * stopping before a character that would not fit. Returns the length. */
static size_t sanitize(const char *src, size_t n, char *dst, size_t cap)
{
    const unsigned char *p = (const unsigned char *)src;
    size_t i = 0, o = 0;
    while (i < n) {
        int l = dab_obs_utf8_len(p + i, n - i);
        const char *unit = l ? src + i : DAB_OBS_REPLACEMENT;
        size_t ul = l ? (size_t)l : 3;
        if (o + ul > cap)
            break;
        memcpy(dst + o, unit, ul);
        o += ul;
        i += l ? (size_t)l : 1;
    }
    return o;
}

/* Whether s (n bytes) needs sanitize: too long or not UTF-8. */
static bool needs_sanitize(const char *s, size_t n)
{
    if (n > DAB_METRIC_LABEL_VALUE_MAX)
        return true;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        int l = dab_obs_utf8_len(p + i, n - i);
        if (!l)
            return true;
        i += (size_t)l;
    }
    return false;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* Canonical form of one value into c slot i (used for lookups and matching). */
static void canon_one(canon_t *c, int i, const char *s)
{
    if (!s)
        s = "";
    size_t n = strlen(s);
    if (needs_sanitize(s, n)) {
        n = sanitize(s, n, c->buf[i], sizeof c->buf[i]);
        s = c->buf[i];
    }
    c->v[i] = s;
    c->len[i] = n;
}

static void canon_labels(const dab_metric_t *m, const char *const *values, canon_t *c)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    bool ovf = true;
    for (int i = 0; i < m->n_labels; i++) {
        canon_one(c, i, values ? values[i] : NULL);
        /* 0xFF never occurs in UTF-8, so the separator keeps the key unambiguous. */
        h = fnv1a(h, c->v[i], c->len[i]);
        h = fnv1a(h, "\xFF", 1);
        ovf = ovf && c->len[i] == sizeof DAB_METRIC_OVERFLOW_VALUE - 1 &&
              !memcmp(c->v[i], DAB_METRIC_OVERFLOW_VALUE, c->len[i]);
    }
    c->hash = h;
    c->is_overflow = ovf;
}

static bool series_matches(const dab_series_t *s, const canon_t *c, int n_labels)
{
    if (s->hash != c->hash)
        return false;
    for (int i = 0; i < n_labels; i++)
        if (s->lens[i] != c->len[i] || memcmp(s->values[i], c->v[i], c->len[i]))
            return false;
    return true;
}

/* -------------------------------- series -------------------------------- */

static size_t series_header_bytes(void)
{
    return DAB_ALIGN_UP(sizeof(dab_series_t), 64);
}

static dab_series_t *series_new(dab_metric_t *m, const canon_t *c)
{
    size_t cells_bytes = (size_t)m->n_stripes * (size_t)m->stride * sizeof(cell_t);
    size_t strings = 0;
    for (int i = 0; i < m->n_labels; i++)
        strings += c->len[i] + 1;
    size_t total = series_header_bytes() + cells_bytes + strings;
    char *block = dab_malloc_aligned(total, 64);
    if (!block)
        return NULL;
    memset(block, 0, series_header_bytes() + cells_bytes);
    dab_series_t *s = (dab_series_t *)block;
    s->metric = m;
    s->hash = c->hash;
    s->cells = (cell_t *)(block + series_header_bytes());
    char *str = block + series_header_bytes() + cells_bytes;
    for (int i = 0; i < m->n_labels; i++) {
        memcpy(str, c->v[i], c->len[i]);
        str[c->len[i]] = 0;
        s->values[i] = str;
        s->lens[i] = (uint16_t)c->len[i];
        str += c->len[i] + 1;
    }
    return s;
}

static void add_double(cell_t *cell, double v)
{
    uint64_t old = atomic_load_explicit(cell, memory_order_relaxed), next;
    do {
        double d;
        memcpy(&d, &old, sizeof d);
        d += v;
        memcpy(&next, &d, sizeof next);
    } while (!atomic_compare_exchange_weak_explicit(cell, &old, next, memory_order_relaxed,
                                                    memory_order_relaxed));
}

static double load_double(const cell_t *cell)
{
    uint64_t bits = atomic_load_explicit((cell_t *)cell, memory_order_relaxed);
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

static cell_t *my_row(const dab_series_t *s)
{
    const dab_metric_t *m = s->metric;
    unsigned k = m->n_stripes == 1 ? 0 : stripe_of_thread() & (unsigned)(m->n_stripes - 1);
    return s->cells + (size_t)k * (size_t)m->stride;
}

enum { OP_ADD, OP_SET, OP_OBSERVE };

static void apply(dab_series_t *s, int op, double v)
{
    const dab_metric_t *m = s->metric;
    switch (m->kind) {
    case DAB_METRIC_COUNTER:
        if (op == OP_ADD && v >= 0) /* also rejects NaN */
            add_double(my_row(s), v);
        break;
    case DAB_METRIC_GAUGE:
        if (op == OP_ADD) {
            add_double(s->cells, v);
        } else if (op == OP_SET) {
            uint64_t bits;
            memcpy(&bits, &v, sizeof bits);
            atomic_store_explicit(s->cells, bits, memory_order_relaxed);
        }
        break;
    case DAB_METRIC_HISTOGRAM:
        if (op == OP_OBSERVE && !isnan(v)) {
            /* First bound >= v; n_bounds (the +Inf bucket) when none. */
            int lo = 0, hi = m->n_bounds;
            while (lo < hi) {
                int mid = (lo + hi) / 2;
                if (v <= m->bounds[mid])
                    hi = mid;
                else
                    lo = mid + 1;
            }
            cell_t *row = my_row(s);
            atomic_fetch_add_explicit(&row[lo], 1, memory_order_relaxed);
            add_double(&row[m->n_bounds + 1], v);
        }
        break;
    }
}

/* ------------------------------ hash table ------------------------------ */

static dab_series_t *table_find(const dab_metric_t *m, const canon_t *c)
{
    table_t *t = atomic_load(&((dab_metric_t *)m)->table);
    if (!t)
        return NULL;
    for (size_t i = c->hash & t->mask;; i = (i + 1) & t->mask) {
        dab_series_t *s = atomic_load(&t->slots[i]);
        if (!s)
            return NULL;
        if (s != TOMB && series_matches(s, c, m->n_labels))
            return s;
    }
}

/* Under the metric lock: a table with room for one more series. */
static int table_make_room(dab_metric_t *m)
{
    table_t *t = atomic_load(&m->table);
    size_t n = atomic_load(&m->n_series);
    if (t && (n + m->n_tomb + 1) * 2 <= t->mask + 1)
        return 0;
    size_t slots = TABLE_MIN_SLOTS;
    while (slots < (n + 1) * 4)
        slots *= 2;
    table_t *nt = dab_calloc(1, sizeof *nt + slots * sizeof nt->slots[0]);
    if (!nt)
        return DAB_ENOMEM;
    nt->mask = slots - 1;
    for (dab_series_t *s = m->head; s; s = s->next) {
        size_t i = s->hash & nt->mask;
        while (atomic_load_explicit(&nt->slots[i], memory_order_relaxed))
            i = (i + 1) & nt->mask;
        atomic_store_explicit(&nt->slots[i], s, memory_order_relaxed);
    }
    atomic_store(&m->table, nt);
    m->n_tomb = 0;
    retire(NULL, t);
    return 0;
}

/* The overflow series, counted as one lookup that fell to it. */
static dab_series_t *overflowed(dab_metric_t *m)
{
    atomic_fetch_add_explicit(&m->overflow_count, 1, memory_order_relaxed);
    atomic_store_explicit(&m->fixed_used, true, memory_order_relaxed);
    return m->fixed;
}

/* Under the metric lock: the series for c, created when missing. */
static dab_series_t *find_or_create_locked(dab_metric_t *m, const canon_t *c)
{
    dab_series_t *s = table_find(m, c);
    if (s)
        return s;
    if (atomic_load(&m->n_series) >= m->max_series || table_make_room(m))
        return overflowed(m);
    s = series_new(m, c);
    if (!s)
        return overflowed(m);
    table_t *t = atomic_load(&m->table);
    size_t i = c->hash & t->mask;
    for (;; i = (i + 1) & t->mask) {
        dab_series_t *cur = atomic_load(&t->slots[i]);
        if (!cur)
            break;
        if (cur == TOMB) {
            m->n_tomb--;
            break;
        }
    }
    s->prev = m->tail;
    if (m->tail)
        m->tail->next = s;
    else
        m->head = s;
    m->tail = s;
    atomic_fetch_add(&m->n_series, 1);
    atomic_store(&t->slots[i], s); /* publishes the initialized series */
    return s;
}

/*
 * Finds or creates the series for values and, when op >= 0, applies it.
 * Returns the series (only meaningful to callers that keep it as a handle).
 */
static dab_series_t *resolve(dab_metric_t *m, const char *const *values, int op, double v)
{
    if (m->n_labels == 0) {
        if (op >= 0)
            apply(m->fixed, op, v);
        return m->fixed;
    }
    canon_t c;
    canon_labels(m, values, &c);
    if (c.is_overflow) {
        atomic_store_explicit(&m->fixed_used, true, memory_order_relaxed);
        if (op >= 0)
            apply(m->fixed, op, v);
        return m->fixed;
    }
    reader_t *r = guard_enter();
    if (r) {
        dab_series_t *s = table_find(m, &c);
        if (!s && atomic_load_explicit(&m->n_series, memory_order_relaxed) >= m->max_series)
            s = overflowed(m);
        if (s) {
            if (op >= 0)
                apply(s, op, v);
            guard_exit(r);
            return s;
        }
        guard_exit(r);
    }
    pthread_mutex_lock(&m->lock);
    dab_series_t *s = find_or_create_locked(m, &c);
    /* Applied under the lock: a thread without a reader record is protected
     * from reclamation only by holding it. */
    if (op >= 0)
        apply(s, op, v);
    pthread_mutex_unlock(&m->lock);
    return s;
}

void dab_metric_add(dab_metric_t *m, const char *const *label_values, double v)
{
    if (m)
        resolve(m, label_values, OP_ADD, v);
}

void dab_metric_set(dab_metric_t *m, const char *const *label_values, double v)
{
    if (m && m->kind == DAB_METRIC_GAUGE)
        resolve(m, label_values, OP_SET, v);
}

void dab_metric_observe(dab_metric_t *m, const char *const *label_values, double v)
{
    if (m && m->kind == DAB_METRIC_HISTOGRAM)
        resolve(m, label_values, OP_OBSERVE, v);
}

dab_series_t *dab_metric_series(dab_metric_t *m, const char *const *label_values)
{
    return m ? resolve(m, label_values, -1, 0) : NULL;
}

void dab_series_add(dab_series_t *s, double v)
{
    if (s)
        apply(s, OP_ADD, v);
}

void dab_series_set(dab_series_t *s, double v)
{
    if (s)
        apply(s, OP_SET, v);
}

void dab_series_observe(dab_series_t *s, double v)
{
    if (s)
        apply(s, OP_OBSERVE, v);
}

/* Sums a series' rows: buckets (n_bounds + 1, not cumulative) and the value or sum. */
static double series_totals(const dab_series_t *s, uint64_t *buckets)
{
    const dab_metric_t *m = s->metric;
    double total = 0;
    if (buckets)
        memset(buckets, 0, (size_t)(m->n_bounds + 1) * sizeof *buckets);
    for (int k = 0; k < m->n_stripes; k++) {
        const cell_t *row = s->cells + (size_t)k * (size_t)m->stride;
        if (m->kind == DAB_METRIC_HISTOGRAM) {
            for (int b = 0; b <= m->n_bounds; b++) {
                uint64_t n = atomic_load_explicit((cell_t *)&row[b], memory_order_relaxed);
                if (buckets)
                    buckets[b] += n;
            }
            total += load_double(&row[m->n_bounds + 1]);
        } else {
            total += load_double(&row[0]);
        }
    }
    return total;
}

double dab_series_read(const dab_series_t *s, uint64_t *count_out)
{
    if (count_out)
        *count_out = 0;
    if (!s)
        return 0;
    const dab_metric_t *m = s->metric;
    if (m->kind != DAB_METRIC_HISTOGRAM)
        return series_totals(s, NULL);
    uint64_t buckets[DAB_METRIC_MAX_BOUNDS + 1];
    double sum = series_totals(s, buckets);
    if (count_out)
        for (int b = 0; b <= m->n_bounds; b++)
            *count_out += buckets[b];
    return sum;
}

int dab_metric_remove(dab_metric_t *m, const char *const *label_values)
{
    if (!m || m->n_labels == 0)
        return 0;
    canon_t c;
    bool any[DAB_METRIC_MAX_LABELS];
    for (int i = 0; i < m->n_labels; i++) {
        any[i] = !label_values || !label_values[i];
        if (!any[i])
            canon_one(&c, i, label_values[i]);
    }
    dab_series_t *chain = NULL;
    int removed = 0;
    pthread_mutex_lock(&m->lock);
    table_t *t = atomic_load(&m->table);
    for (dab_series_t *s = m->head, *next; s; s = next) {
        next = s->next;
        bool match = true;
        for (int i = 0; i < m->n_labels && match; i++)
            match = any[i] || (s->lens[i] == c.len[i] && !memcmp(s->values[i], c.v[i], c.len[i]));
        if (!match)
            continue;
        for (size_t i = s->hash & t->mask;; i = (i + 1) & t->mask) {
            if (atomic_load(&t->slots[i]) == s) {
                atomic_store(&t->slots[i], TOMB);
                break;
            }
        }
        m->n_tomb++;
        if (s->prev)
            s->prev->next = s->next;
        else
            m->head = s->next;
        if (s->next)
            s->next->prev = s->prev;
        else
            m->tail = s->prev;
        atomic_fetch_sub(&m->n_series, 1);
        s->retired_next = chain;
        chain = s;
        removed++;
    }
    pthread_mutex_unlock(&m->lock);
    retire(chain, NULL);
    reclaim();
    return removed;
}

/* ----------------------------- registration ----------------------------- */

static bool valid_name(const char *s, bool colons)
{
    if (!s || !*s)
        return false;
    for (const char *p = s; *p; p++) {
        char ch = *p;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
                  (colons && ch == ':') || (p > s && ch >= '0' && ch <= '9');
        if (!ok)
            return false;
    }
    return true;
}

/* The sample names a metric writes (the family name included). */
static int sample_names(dab_metric_kind_t kind, const char *name, char out[4][256])
{
    snprintf(out[0], 256, "%s", name);
    if (kind != DAB_METRIC_HISTOGRAM)
        return 1;
    snprintf(out[1], 256, "%s_bucket", name);
    snprintf(out[2], 256, "%s_sum", name);
    snprintf(out[3], 256, "%s_count", name);
    return 4;
}

static bool same_definition(const dab_metric_t *m, const dab_metric_opts_t *o, const double *bounds,
                            int n_bounds)
{
    if (m->kind != o->kind || m->n_labels != o->n_labels)
        return false;
    for (int i = 0; i < m->n_labels; i++)
        if (strcmp(m->label_names[i], o->label_names[i]))
            return false;
    if (m->kind == DAB_METRIC_HISTOGRAM) {
        if (m->n_bounds != n_bounds)
            return false;
        for (int i = 0; i < n_bounds; i++)
            if (m->bounds[i] != bounds[i])
                return false;
    }
    return true;
}

static int check_opts(const dab_metric_opts_t *o, const double **bounds, int *n_bounds,
                      dab_err_t *err)
{
    if (o->kind != DAB_METRIC_COUNTER && o->kind != DAB_METRIC_GAUGE &&
        o->kind != DAB_METRIC_HISTOGRAM)
        return dab_err_set(err, DAB_EINVAL, "metric kind %d is not a counter, gauge or histogram",
                           (int)o->kind);
    if (!valid_name(o->name, true) || strlen(o->name) > 200)
        return dab_err_set(err, DAB_EINVAL,
                           "metric name '%s' is not [a-zA-Z_:][a-zA-Z0-9_:]* of at most 200 bytes",
                           o->name ? o->name : "(null)");
    if (dab_obs_reserved_name(o->name))
        return dab_err_set(err, DAB_EINVAL, "metric name '%s' is reserved for process metrics",
                           o->name);
    if (o->n_labels < 0 || o->n_labels > DAB_METRIC_MAX_LABELS ||
        (o->n_labels > 0 && !o->label_names))
        return dab_err_set(err, DAB_EINVAL, "metric '%s': %d labels (0..%d, names required)",
                           o->name, o->n_labels, DAB_METRIC_MAX_LABELS);
    for (int i = 0; i < o->n_labels; i++) {
        const char *l = o->label_names[i];
        if (!valid_name(l, false) || strlen(l) > 200 || !strncmp(l, "__", 2))
            return dab_err_set(err, DAB_EINVAL,
                               "metric '%s': label name '%s' is not [a-zA-Z_][a-zA-Z0-9_]* "
                               "(without a leading '__')",
                               o->name, l ? l : "(null)");
        if (o->kind == DAB_METRIC_HISTOGRAM && !strcmp(l, "le"))
            return dab_err_set(err, DAB_EINVAL, "histogram '%s' may not have a label 'le'",
                               o->name);
        for (int j = 0; j < i; j++)
            if (!strcmp(l, o->label_names[j]))
                return dab_err_set(err, DAB_EINVAL, "metric '%s': label '%s' appears twice",
                                   o->name, l);
    }
    if (o->max_series < 0 || o->max_series > MAX_SERIES_LIMIT)
        return dab_err_set(err, DAB_EINVAL, "metric '%s': max_series %d is not in 0..%d", o->name,
                           o->max_series, MAX_SERIES_LIMIT);
    *bounds = NULL;
    *n_bounds = 0;
    if (o->kind != DAB_METRIC_HISTOGRAM)
        return 0;
    if (!o->bounds) {
        *bounds = dab_buckets_latency_s;
        *n_bounds = DAB_BUCKETS_LATENCY_N;
        return 0;
    }
    if (o->n_bounds < 1 || o->n_bounds > DAB_METRIC_MAX_BOUNDS)
        return dab_err_set(err, DAB_EINVAL, "histogram '%s': %d bucket bounds (1..%d)", o->name,
                           o->n_bounds, DAB_METRIC_MAX_BOUNDS);
    for (int i = 0; i < o->n_bounds; i++) {
        if (!isfinite(o->bounds[i]) || (i > 0 && !(o->bounds[i] > o->bounds[i - 1])))
            return dab_err_set(err, DAB_EINVAL,
                               "histogram '%s': bucket bound %d (%g) is not finite and above the "
                               "one before",
                               o->name, i, o->bounds[i]);
    }
    *bounds = o->bounds;
    *n_bounds = o->n_bounds;
    return 0;
}

static void metric_free(dab_metric_t *m)
{
    if (!m)
        return;
    for (dab_series_t *s = m->head, *next; s; s = next) {
        next = s->next;
        dab_free(s);
    }
    dab_free(m->fixed);
    dab_free(atomic_load(&m->table));
    for (int i = 0; i < m->n_labels; i++)
        dab_free(m->label_names[i]);
    dab_free(m->bounds);
    dab_free(m->name);
    dab_free(m->help);
    pthread_mutex_destroy(&m->lock);
    dab_free(m);
}

static dab_metric_t *metric_new(const dab_metric_opts_t *o, const double *bounds, int n_bounds)
{
    dab_metric_t *m = dab_calloc(1, sizeof *m);
    if (!m)
        return NULL;
    if (pthread_mutex_init(&m->lock, NULL)) {
        dab_free(m);
        return NULL;
    }
    m->kind = o->kind;
    m->name = dab_strdup(o->name);
    m->help = dab_strdup(o->help ? o->help : "");
    m->n_labels = o->n_labels;
    if (!m->name || !m->help)
        goto fail;
    for (int i = 0; i < o->n_labels; i++)
        if (!(m->label_names[i] = dab_strdup(o->label_names[i])))
            goto fail;
    if (n_bounds) {
        m->bounds = dab_malloc((size_t)n_bounds * sizeof *m->bounds);
        if (!m->bounds)
            goto fail;
        memcpy(m->bounds, bounds, (size_t)n_bounds * sizeof *m->bounds);
    }
    m->n_bounds = n_bounds;
    m->n_cells = o->kind == DAB_METRIC_HISTOGRAM ? n_bounds + 2 : 1;
    m->stride = (int)DAB_ALIGN_UP((size_t)m->n_cells, CELLS_PER_LINE);
    m->n_stripes = o->kind == DAB_METRIC_GAUGE ? 1 : g_stripes;
    m->max_series = o->max_series ? (size_t)o->max_series : DAB_METRIC_MAX_SERIES;
    canon_t c;
    for (int i = 0; i < m->n_labels; i++) {
        c.v[i] = DAB_METRIC_OVERFLOW_VALUE;
        c.len[i] = sizeof DAB_METRIC_OVERFLOW_VALUE - 1;
    }
    c.hash = 0;
    m->fixed = series_new(m, &c);
    if (!m->fixed)
        goto fail;
    return m;
fail:
    metric_free(m);
    return NULL;
}

int dab_metric_register(const dab_metric_opts_t *opts, dab_metric_t **out, dab_err_t *err)
{
    *out = NULL;
    pthread_once(&g_once, once_init);
    const double *bounds;
    int n_bounds, rc = check_opts(opts, &bounds, &n_bounds, err);
    if (rc)
        return rc;
    char mine[4][256], theirs[4][256];
    int n_mine = sample_names(opts->kind, opts->name, mine);
    pthread_mutex_lock(&g_reg.lock);
    for (dab_metric_t *m = g_reg.head; m; m = m->next) {
        if (!strcmp(m->name, opts->name)) {
            if (same_definition(m, opts, bounds, n_bounds)) {
                *out = m;
                rc = 0;
            } else {
                rc = dab_err_set(err, DAB_EINVAL,
                                 "metric '%s' is already registered with another kind, labels "
                                 "or buckets",
                                 opts->name);
            }
            goto done;
        }
        int n_theirs = sample_names(m->kind, m->name, theirs);
        for (int i = 0; i < n_mine; i++)
            for (int j = 0; j < n_theirs; j++)
                if (!strcmp(mine[i], theirs[j])) {
                    rc = dab_err_set(err, DAB_EINVAL,
                                     "metric '%s' would write samples named '%s', as metric "
                                     "'%s' does",
                                     opts->name, mine[i], m->name);
                    goto done;
                }
    }
    dab_metric_t *m = metric_new(opts, bounds, n_bounds);
    if (!m) {
        rc = dab_err_set(err, DAB_ENOMEM, "out of memory registering metric '%s'", opts->name);
        goto done;
    }
    if (g_reg.tail)
        g_reg.tail->next = m;
    else
        g_reg.head = m;
    g_reg.tail = m;
    *out = m;
done:
    pthread_mutex_unlock(&g_reg.lock);
    return rc;
}

static dab_metric_t *register_or_log(const dab_metric_opts_t *o)
{
    dab_metric_t *m;
    dab_err_t err = {0};
    if (dab_metric_register(o, &m, &err)) {
        dab_log(DAB_LOG_ERROR, "metric_register_failed", DAB_F_STR("metric", o->name),
                DAB_F_STR("error", err.msg));
        return NULL;
    }
    return m;
}

dab_metric_t *dab_metric_counter(const char *name, const char *help, int n_labels,
                                 const char *const *label_names)
{
    dab_metric_opts_t o = {.kind = DAB_METRIC_COUNTER,
                           .name = name,
                           .help = help,
                           .n_labels = n_labels,
                           .label_names = label_names};
    return register_or_log(&o);
}

dab_metric_t *dab_metric_gauge(const char *name, const char *help, int n_labels,
                               const char *const *label_names)
{
    dab_metric_opts_t o = {.kind = DAB_METRIC_GAUGE,
                           .name = name,
                           .help = help,
                           .n_labels = n_labels,
                           .label_names = label_names};
    return register_or_log(&o);
}

dab_metric_t *dab_metric_histogram(const char *name, const char *help, int n_labels,
                                   const char *const *label_names, const double *bounds,
                                   int n_bounds)
{
    dab_metric_opts_t o = {.kind = DAB_METRIC_HISTOGRAM,
                           .name = name,
                           .help = help,
                           .n_labels = n_labels,
                           .label_names = label_names,
                           .bounds = bounds,
                           .n_bounds = n_bounds};
    return register_or_log(&o);
}

void dab_metrics_reset(void)
{
    pthread_mutex_lock(&g_reg.lock);
    for (dab_metric_t *m = g_reg.head, *next; m; m = next) {
        next = m->next;
        metric_free(m);
    }
    g_reg.head = g_reg.tail = NULL;
    pthread_mutex_unlock(&g_reg.lock);
    pthread_mutex_lock(&g_retire_lock);
    while (g_retired_series) {
        dab_series_t *s = g_retired_series;
        g_retired_series = s->retired_next;
        dab_free(s);
    }
    while (g_retired_tables) {
        table_t *t = g_retired_tables;
        g_retired_tables = t->retired_next;
        dab_free(t);
    }
    pthread_mutex_unlock(&g_retire_lock);
}

/* ------------------------------- rendering ------------------------------- */

/* Appends s (n bytes) escaped for a label value (escape_quote) or HELP text. */
static int put_escaped(dab_buf_t *b, const char *s, size_t n, bool escape_quote)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        const char *esc = NULL;
        if (s[i] == '\\')
            esc = "\\\\";
        else if (s[i] == '\n')
            esc = "\\n";
        else if (s[i] == '"' && escape_quote)
            esc = "\\\"";
        if (!esc)
            continue;
        if (dab_buf_append(b, s + start, i - start) || dab_buf_puts(b, esc))
            return DAB_ENOMEM;
        start = i + 1;
    }
    return dab_buf_append(b, s + start, n - start);
}

/* name{labels[,le="bound"]} value\n */
static int put_sample(dab_buf_t *b, const dab_metric_t *m, const char *suffix,
                      const dab_series_t *s, const char *le, double value)
{
    int rc = dab_buf_puts(b, m->name);
    rc = rc ? rc : dab_buf_puts(b, suffix);
    if (m->n_labels > 0 || le) {
        rc = rc ? rc : dab_buf_puts(b, "{");
        for (int i = 0; i < m->n_labels && !rc; i++) {
            rc = dab_buf_printf(b, "%s%s=\"", i ? "," : "", m->label_names[i]);
            rc = rc ? rc : put_escaped(b, s->values[i], s->lens[i], true);
            rc = rc ? rc : dab_buf_puts(b, "\"");
        }
        if (le && !rc)
            rc = dab_buf_printf(b, "%sle=\"%s\"", m->n_labels ? "," : "", le);
        rc = rc ? rc : dab_buf_puts(b, "}");
    }
    char num[40];
    dab_obs_fmt_double(num, sizeof num, value);
    return rc ? rc : dab_buf_printf(b, " %s\n", num);
}

static int render_series(dab_buf_t *b, const dab_metric_t *m, const dab_series_t *s)
{
    if (m->kind != DAB_METRIC_HISTOGRAM)
        return put_sample(b, m, "", s, NULL, series_totals(s, NULL));
    uint64_t buckets[DAB_METRIC_MAX_BOUNDS + 1];
    double sum = series_totals(s, buckets);
    uint64_t cum = 0;
    int rc = 0;
    char le[40];
    for (int i = 0; i <= m->n_bounds && !rc; i++) {
        cum += buckets[i];
        if (i < m->n_bounds)
            dab_obs_fmt_double(le, sizeof le, m->bounds[i]);
        else
            strcpy(le, "+Inf");
        rc = put_sample(b, m, "_bucket", s, le, (double)cum);
    }
    rc = rc ? rc : put_sample(b, m, "_sum", s, NULL, sum);
    /* The count is the +Inf bucket, so the two always agree. */
    return rc ? rc : put_sample(b, m, "_count", s, NULL, (double)cum);
}

static int render_metric(dab_buf_t *b, dab_metric_t *m)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    int rc = dab_buf_printf(b, "# HELP %s ", m->name);
    rc = rc ? rc : put_escaped(b, m->help, strlen(m->help), false);
    rc = rc ? rc : dab_buf_printf(b, "\n# TYPE %s %s\n", m->name, types[m->kind]);
    pthread_mutex_lock(&m->lock);
    if (m->n_labels == 0) {
        rc = rc ? rc : render_series(b, m, m->fixed);
    } else {
        for (const dab_series_t *s = m->head; s && !rc; s = s->next)
            rc = render_series(b, m, s);
        if (!rc && atomic_load_explicit(&m->fixed_used, memory_order_relaxed))
            rc = render_series(b, m, m->fixed);
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

static int render_overflow(dab_buf_t *b)
{
    bool header = false;
    int rc = 0;
    for (dab_metric_t *m = g_reg.head; m && !rc; m = m->next) {
        uint64_t n = atomic_load_explicit(&m->overflow_count, memory_order_relaxed);
        if (!n)
            continue;
        if (!header) {
            rc = dab_buf_puts(b, "# HELP dabba_metric_series_overflow_total Lookups that found a "
                                 "metric at its series bound and used its overflow series.\n"
                                 "# TYPE dabba_metric_series_overflow_total counter\n");
            header = true;
        }
        rc = rc ? rc
                : dab_buf_printf(b, "dabba_metric_series_overflow_total{metric=\"%s\"} %llu\n",
                                 m->name, (unsigned long long)n);
    }
    return rc;
}

int dab_metrics_render(dab_buf_t *out)
{
    reclaim();
    int rc = 0;
    pthread_mutex_lock(&g_reg.lock);
    for (dab_metric_t *m = g_reg.head; m && !rc; m = m->next)
        rc = render_metric(out, m);
    rc = rc ? rc : render_overflow(out);
    pthread_mutex_unlock(&g_reg.lock);
    return rc ? rc : dab_obs_render_process(out);
}
