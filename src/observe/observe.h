/*
 * observe.h - what dabba tells operators: Prometheus metrics and structured logs.
 *
 * Metrics. One process-wide registry holds counters, gauges and histograms.
 * Each metric has fixed label names; a series (one combination of label
 * values) is created on first use, up to a bound per metric, after which new
 * combinations share one overflow series whose label values are all
 * "__overflow__" (and are counted in dabba_metric_series_overflow_total).
 * Updating an existing series is lock-free and does not touch the heap:
 * counters and histograms are striped per thread group, gauges are one atomic.
 * Looking a series up by label values is lock-free too; hot paths may resolve
 * a dab_series_t handle once and skip the lookup. dab_metrics_render writes
 * the whole registry, plus process metrics, in the Prometheus text exposition
 * format 0.0.4. Metric names are given in full by the callers ("dabba_...").
 *
 * Logs. dab_log writes one line per call to stderr with a single write(2):
 * JSON ({"time":"2024-05-01T12:34:56.789Z","level":"info","event":"request",...})
 * or a readable key=value text form. Fields are typed (DAB_F_STR, DAB_F_INT, ...).
 * dab_log_limited caps repeated lines per key per second and reports how many
 * it dropped.
 */
#ifndef DAB_OBSERVE_H
#define DAB_OBSERVE_H

#include <stdbool.h>
#include <stdint.h>

#include "../base/base.h"

#ifndef DABBA_VERSION
#define DABBA_VERSION "0.1.0"
#endif

/* ================================ metrics ================================ */

typedef enum dab_metric_kind {
    DAB_METRIC_COUNTER,
    DAB_METRIC_GAUGE,
    DAB_METRIC_HISTOGRAM,
} dab_metric_kind_t;

typedef struct dab_metric dab_metric_t; /* lives until dab_metrics_reset (i.e. forever) */
typedef struct dab_series dab_series_t; /* one label-value combination of a metric */

#define DAB_METRIC_MAX_LABELS 8           /* label names per metric */
#define DAB_METRIC_MAX_BOUNDS 64          /* histogram bucket bounds */
#define DAB_METRIC_MAX_SERIES 10000       /* default bound on series per metric */
#define DAB_METRIC_LABEL_VALUE_MAX 256    /* longer label values are cut (bytes) */
#define DAB_METRIC_OVERFLOW_VALUE "__overflow__"

/* The Content-Type to serve dab_metrics_render's text with. */
#define DAB_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Default histogram bounds: latency in seconds from 50 us to 60 s, and sizes in
 * bytes from 64 B to 256 MiB (powers of 4). */
#define DAB_BUCKETS_LATENCY_N 19
#define DAB_BUCKETS_SIZE_N 12
extern const double dab_buckets_latency_s[DAB_BUCKETS_LATENCY_N];
extern const double dab_buckets_size_bytes[DAB_BUCKETS_SIZE_N];

typedef struct dab_metric_opts {
    dab_metric_kind_t kind;
    const char *name;               /* [a-zA-Z_:][a-zA-Z0-9_:]* */
    const char *help;               /* any text; NULL = "" */
    int n_labels;                   /* 0..DAB_METRIC_MAX_LABELS */
    const char *const *label_names; /* [a-zA-Z_][a-zA-Z0-9_]*, not "__...", no "le" in histograms */
    const double *bounds;           /* histograms: finite, strictly increasing; NULL = latency */
    int n_bounds;                   /* 1..DAB_METRIC_MAX_BOUNDS when bounds is given */
    int max_series;                 /* 0 = DAB_METRIC_MAX_SERIES */
} dab_metric_opts_t;

/*
 * Registers a metric and stores it in *out. Registering a name again with the
 * same kind, label names and bounds returns the existing metric (so modules may
 * each declare what they use); a different definition, a name whose samples
 * would collide with another metric's (x_count vs histogram x), a reserved
 * process metric name, or a malformed name is DAB_EINVAL with err naming it.
 * DAB_ENOMEM when out of memory. On error *out is NULL and nothing is changed.
 * The registry copies every string and array. Any thread.
 */
int dab_metric_register(const dab_metric_opts_t *opts, dab_metric_t **out, dab_err_t *err);

/*
 * Shorthands for dab_metric_register. They return NULL on error after logging
 * the reason (event "metric_register_failed"); every update function treats a
 * NULL metric as a no-op, so a bad declaration never takes the server down.
 * dab_metric_histogram takes bounds = NULL for dab_buckets_latency_s.
 */
dab_metric_t *dab_metric_counter(const char *name, const char *help, int n_labels,
                                 const char *const *label_names);
dab_metric_t *dab_metric_gauge(const char *name, const char *help, int n_labels,
                               const char *const *label_names);
dab_metric_t *dab_metric_histogram(const char *name, const char *help, int n_labels,
                                   const char *const *label_names, const double *bounds,
                                   int n_bounds);

/*
 * Updates the series named by label_values (n_labels strings, in the order of
 * the label names; NULL array when the metric has no labels; a NULL string
 * reads as ""). Values longer than DAB_METRIC_LABEL_VALUE_MAX bytes are cut
 * and invalid UTF-8 is replaced by U+FFFD, so hostile input cannot break the
 * exposition. Creates the series on first use (or routes to the overflow
 * series past max_series or when out of memory). Any thread, lock-free once
 * the series exists.
 *   add:     counters (v < 0 and NaN are ignored: counters only go up) and gauges.
 *   set:     gauges only.
 *   observe: histograms only; v lands in the first bucket with v <= bound
 *            (NaN is ignored).
 * A call on the wrong kind of metric does nothing.
 */
void dab_metric_add(dab_metric_t *m, const char *const *label_values, double v);
void dab_metric_set(dab_metric_t *m, const char *const *label_values, double v);
void dab_metric_observe(dab_metric_t *m, const char *const *label_values, double v);

/*
 * Resolves (creating when needed) the series for label_values, for callers
 * that update it often. Never NULL unless m is NULL (past the bound it is the
 * overflow series). The handle stays valid until the series is removed with
 * dab_metric_remove; the caller that removes it must make sure no thread
 * still uses a handle to it (e.g. a model version's handles are dropped when
 * the version has drained). Any thread.
 */
dab_series_t *dab_metric_series(dab_metric_t *m, const char *const *label_values);
void dab_series_add(dab_series_t *s, double v);
void dab_series_set(dab_series_t *s, double v);
void dab_series_observe(dab_series_t *s, double v);

/*
 * Reads a series: the value of a counter or gauge, or the sum of a histogram's
 * observations. *count_out (may be NULL) receives a histogram's observation
 * count (0 for other kinds). Any thread; concurrent updates may or may not be
 * included.
 */
double dab_series_read(const dab_series_t *s, uint64_t *count_out);

/*
 * Removes every series of m whose label values match label_values, where a
 * NULL entry matches any value (a NULL array matches every series); used when
 * a model or version goes away. Returns the number removed (0 or more).
 * Threads updating the metric by label values concurrently are safe: memory
 * is reclaimed only once no such update can still hold it. Handles to a
 * removed series must no longer be used (see dab_metric_series). The overflow
 * series and the one series of a metric without labels are never removed.
 * Any thread.
 */
int dab_metric_remove(dab_metric_t *m, const char *const *label_values);

/*
 * Appends the exposition text of every metric, then the process metrics
 * (dabba_process_resident_memory_bytes, dabba_process_cpu_seconds_total,
 * dabba_process_start_time_seconds, dabba_process_open_fds,
 * dabba_heap_live_bytes, dabba_build_info{version=DABBA_VERSION}) and
 * dabba_metric_series_overflow_total{metric=...}, to out. Returns 0, or
 * DAB_ENOMEM with out holding a cut text. Any thread.
 */
int dab_metrics_render(dab_buf_t *out);

/*
 * Frees every metric and series (tests only): no other thread may use the
 * registry or any metric or series handle during or after the call. The
 * registry is usable again afterwards, empty.
 */
void dab_metrics_reset(void);

/* ================================== logs ================================== */

typedef enum dab_log_level {
    DAB_LOG_DEBUG,
    DAB_LOG_INFO,
    DAB_LOG_WARN,
    DAB_LOG_ERROR,
} dab_log_level_t;

typedef enum dab_log_format {
    DAB_LOG_JSON,
    DAB_LOG_TEXT,
} dab_log_format_t;

/* Sets the output format and the lowest level written (defaults: JSON, info).
 * Any thread; lines being written at the time use either setting. */
void dab_log_init(dab_log_format_t format, dab_log_level_t level);

/* Parse "json"/"text" and "debug"/"info"/"warn"/"error" (flags, environment);
 * DAB_EINVAL with err quoting the bad value. */
int dab_log_parse_format(const char *s, dab_log_format_t *out, dab_err_t *err);
int dab_log_parse_level(const char *s, dab_log_level_t *out, dab_err_t *err);

/* Whether a line at level would be written now. Any thread. */
bool dab_log_enabled(dab_log_level_t level);

typedef enum dab_log_ftype {
    DAB_LOG_F_STR,  /* s: NUL-terminated; NULL writes null */
    DAB_LOG_F_STRN, /* s with n bytes (need not be NUL-terminated) */
    DAB_LOG_F_INT,  /* i */
    DAB_LOG_F_UINT, /* u */
    DAB_LOG_F_DBL,  /* d; NaN and infinities write null in JSON */
    DAB_LOG_F_BOOL, /* b */
} dab_log_ftype_t;

/* One key/value of a log line. Built by the DAB_F_* macros below. */
typedef struct dab_log_field {
    const char *key;
    dab_log_ftype_t type;
    size_t n;
    union {
        const char *s;
        int64_t i;
        uint64_t u;
        double d;
        bool b;
    };
} dab_log_field_t;

#define DAB_F_STR(k, v) (&(const dab_log_field_t){.key = (k), .type = DAB_LOG_F_STR, .s = (v)})
#define DAB_F_STRN(k, v, len) \
    (&(const dab_log_field_t){.key = (k), .type = DAB_LOG_F_STRN, .n = (len), .s = (v)})
#define DAB_F_INT(k, v) (&(const dab_log_field_t){.key = (k), .type = DAB_LOG_F_INT, .i = (v)})
#define DAB_F_UINT(k, v) (&(const dab_log_field_t){.key = (k), .type = DAB_LOG_F_UINT, .u = (v)})
#define DAB_F_DBL(k, v) (&(const dab_log_field_t){.key = (k), .type = DAB_LOG_F_DBL, .d = (v)})
#define DAB_F_BOOL(k, v) (&(const dab_log_field_t){.key = (k), .type = DAB_LOG_F_BOOL, .b = (v)})

/*
 * Writes one line: time, level, event, then the fields in order. Lines are
 * at most 4096 bytes (one atomic write to a pipe); a longer line has its
 * last string cut and the fields past it dropped, with "truncated":true.
 * Strings are escaped (JSON: quotes, backslash, control characters; invalid
 * UTF-8 becomes U+FFFD). Field keys should not repeat "time", "level" or
 * "event". Never allocates; errors writing are ignored. Any thread.
 *   dab_log(DAB_LOG_INFO, "request", DAB_F_STR("method", "GET"), DAB_F_INT("status", 200));
 * The field arguments must be DAB_F_* values (the macro adds the NULL end).
 */
#define dab_log(level, ...)                                                      \
    do {                                                                         \
        dab_log_level_t dab_l_ = (level);                                        \
        if (dab_log_enabled(dab_l_))                                             \
            dab_log_write(dab_l_, __VA_ARGS__, (const dab_log_field_t *)NULL);   \
    } while (0)

/* The function behind dab_log: event, then const dab_log_field_t * arguments
 * ending with NULL. At most 64 fields are written. */
void dab_log_write(dab_log_level_t level, const char *event, ...);

/* The same with an array of n_fields fields, for lines built at run time. */
void dab_log_fields(dab_log_level_t level, const char *event, const dab_log_field_t *fields,
                    int n_fields);

/*
 * Like dab_log, but writes at most max_per_s lines per key per second; the
 * first line written after some were dropped carries "suppressed":N (lines
 * dropped since the last one written for that key). Keys are compared on
 * their first 63 bytes; up to 128 keys are tracked at once (the least recent
 * is forgotten). Any thread.
 *   dab_log_limited(DAB_LOG_ERROR, "infer_fail", 5, "infer_failed", DAB_F_STR("error", msg));
 */
#define dab_log_limited(level, key, max_per_s, ...)                                      \
    do {                                                                                 \
        dab_log_level_t dab_l_ = (level);                                                \
        if (dab_log_enabled(dab_l_))                                                     \
            dab_log_limited_write(dab_l_, (key), (max_per_s), __VA_ARGS__,               \
                                  (const dab_log_field_t *)NULL);                        \
    } while (0)

/* The function behind dab_log_limited. */
void dab_log_limited_write(dab_log_level_t level, const char *key, int max_per_s,
                           const char *event, ...);

#endif
