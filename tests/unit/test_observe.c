/*
 * test_observe.c - the metrics registry, its exposition text and the log lines.
 *
 * Metrics are updated from several threads and must sum exactly; the
 * rendered text is checked line by line against the Prometheus text format
 * 0.0.4 grammar by check_exposition below (and by the python client in
 * tests/e2e/check_metrics.py). Log lines are captured by pointing stderr at a
 * temporary file and each is checked by a small JSON validator.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "observe/observe.h"
#include "test.h"

/* =========================== exposition checker =========================== */

static bool is_name_char(char c, bool first, bool colon)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':') ||
           (!first && c >= '0' && c <= '9');
}

/* Length of a metric (colon) or label name at p; 0 when none. */
static size_t name_len(const char *p, bool colon)
{
    size_t n = 0;
    while (is_name_char(p[n], n == 0, colon))
        n++;
    return n;
}

static bool parse_value(const char *s, size_t n, double *out)
{
    char tmp[64];
    if (n == 0 || n >= sizeof tmp)
        return false;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    if (!strcmp(tmp, "+Inf") || !strcmp(tmp, "Inf")) {
        *out = INFINITY;
        return true;
    }
    if (!strcmp(tmp, "-Inf")) {
        *out = -INFINITY;
        return true;
    }
    if (!strcmp(tmp, "NaN")) {
        *out = NAN;
        return true;
    }
    char *end;
    errno = 0;
    *out = strtod(tmp, &end);
    /* strtod also takes "inf", "nan" and hex, which the format does not. */
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789.eE+-", tmp[i]))
            return false;
    return *end == 0 && errno == 0;
}

typedef struct expo {
    char family[256];
    char type[16];
    bool help_seen, type_seen, samples_seen;
    char done[64][256]; /* families already closed */
    int n_done;
    char *series[4096]; /* "name{labels}" seen, to find duplicates */
    int n_series;
    /* the histogram series being read */
    char hkey[1024];
    double last_le, last_count, inf_count;
    bool inf_seen;
    bool h_open; /* hkey names a histogram series of this family */
} expo_t;

static int fail_at(char *why, int line_no, const char *msg)
{
    snprintf(why, 256, "line %d: %s", line_no, msg);
    return -1;
}

/* Starts family name (from a HELP or TYPE line or an untyped sample). */
static int open_family(expo_t *x, const char *name, char *why, int ln)
{
    if (!strcmp(x->family, name))
        return 0;
    for (int i = 0; i < x->n_done; i++)
        if (!strcmp(x->done[i], name))
            return fail_at(why, ln, "family appears twice, not contiguous");
    if (x->family[0] && x->n_done < 64)
        memcpy(x->done[x->n_done++], x->family, sizeof x->family);
    snprintf(x->family, sizeof x->family, "%s", name);
    strcpy(x->type, "untyped");
    x->help_seen = x->type_seen = x->samples_seen = false;
    x->hkey[0] = 0;
    x->h_open = false;
    return 0;
}

static int check_hist_end(expo_t *x, char *why, int ln)
{
    if (x->h_open && !x->inf_seen)
        return fail_at(why, ln, "histogram series without a +Inf bucket");
    return 0;
}

/*
 * Checks text against the text format 0.0.4: comment, HELP and TYPE lines,
 * sample lines with well-formed names, label sets, escapes and values;
 * families contiguous with TYPE before samples; no duplicate series; each
 * histogram series with increasing le, cumulative counts, a +Inf bucket
 * equal to _count. Returns 0, or -1 with why set.
 */
static int check_exposition(const char *text, char *why)
{
    static expo_t x;
    for (int i = 0; i < x.n_series; i++)
        dab_free(x.series[i]);
    memset(&x, 0, sizeof x);
    size_t total = strlen(text);
    if (total == 0 || text[total - 1] != '\n')
        return fail_at(why, 0, "text does not end with a newline");
    int ln = 0;
    for (const char *line = text; *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = (size_t)(eol - line);
        ln++;
        char buf[8192];
        if (len >= sizeof buf)
            return fail_at(why, ln, "line too long for the checker");
        memcpy(buf, line, len);
        buf[len] = 0;
        line = eol + 1;
        const char *p = buf;
        if (len == 0)
            continue;
        if (p[0] == '#') {
            bool help = !strncmp(p, "# HELP ", 7), type = !strncmp(p, "# TYPE ", 7);
            if (!help && !type)
                continue; /* a plain comment */
            p += 7;
            size_t n = name_len(p, true);
            if (n == 0 || (type && p[n] != ' ') || (p[n] && p[n] != ' '))
                return fail_at(why, ln, "bad metric name in HELP/TYPE");
            char name[256];
            snprintf(name, sizeof name, "%.*s", (int)n, p);
            if (check_hist_end(&x, why, ln) || open_family(&x, name, why, ln))
                return -1;
            if (help) {
                if (x.help_seen)
                    return fail_at(why, ln, "second HELP for a family");
                x.help_seen = true;
                for (const char *q = p + n; *q; q++)
                    if (*q == '\\' && q[1] != '\\' && q[1] != 'n')
                        return fail_at(why, ln, "bad escape in HELP");
                    else if (*q == '\\')
                        q++;
            } else {
                const char *t = p + n + 1;
                if (x.type_seen || x.samples_seen)
                    return fail_at(why, ln, "TYPE repeated or after samples");
                if (strcmp(t, "counter") && strcmp(t, "gauge") && strcmp(t, "histogram") &&
                    strcmp(t, "summary") && strcmp(t, "untyped"))
                    return fail_at(why, ln, "unknown TYPE");
                snprintf(x.type, sizeof x.type, "%s", t);
                x.type_seen = true;
            }
            continue;
        }
        /* a sample: name [{labels}] value [timestamp] */
        size_t n = name_len(p, true);
        if (n == 0)
            return fail_at(why, ln, "sample line without a metric name");
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)n, p);
        p += n;
        char labels[4096] = "", no_le[4096] = "", le[64] = "";
        bool has_le = false;
        if (*p == '{') {
            p++;
            size_t lo = 0, nlo = 0;
            while (*p != '}') {
                size_t ln_ = name_len(p, false);
                if (ln_ == 0 || p[ln_] != '=' || p[ln_ + 1] != '"')
                    return fail_at(why, ln, "bad label name or missing =\"");
                bool is_le = ln_ == 2 && !strncmp(p, "le", 2);
                char lname[256];
                snprintf(lname, sizeof lname, "%.*s", (int)ln_, p);
                p += ln_ + 2;
                char val[2048];
                size_t vl = 0;
                while (*p != '"') {
                    if (!*p)
                        return fail_at(why, ln, "unterminated label value");
                    if (*p == '\\') {
                        if (p[1] != '\\' && p[1] != '"' && p[1] != 'n')
                            return fail_at(why, ln, "bad escape in label value");
                        if (vl + 2 < sizeof val)
                            val[vl++] = *p++;
                    }
                    if (vl + 1 < sizeof val)
                        val[vl++] = *p;
                    p++;
                }
                val[vl] = 0;
                p++;
                lo += (size_t)snprintf(labels + lo, sizeof labels - lo, "%s=\"%s\",", lname, val);
                if (is_le) {
                    has_le = true;
                    snprintf(le, sizeof le, "%s", val);
                } else {
                    nlo += (size_t)snprintf(no_le + nlo, sizeof no_le - nlo, "%s=\"%s\",", lname,
                                            val);
                }
                if (*p == ',')
                    p++;
                else if (*p != '}')
                    return fail_at(why, ln, "label pairs not separated by ','");
            }
            p++;
        }
        if (*p != ' ')
            return fail_at(why, ln, "no space before the value");
        p++;
        const char *v_end = strchr(p, ' ');
        size_t vlen = v_end ? (size_t)(v_end - p) : strlen(p);
        double value;
        if (!parse_value(p, vlen, &value))
            return fail_at(why, ln, "value is not a float");
        if (v_end) { /* an optional integer timestamp */
            for (const char *q = v_end + 1; *q; q++)
                if (!((*q >= '0' && *q <= '9') || (*q == '-' && q == v_end + 1)))
                    return fail_at(why, ln, "bad timestamp");
        }
        /* the sample must belong to the open family */
        const char *suffix = "";
        if (!strcmp(x.type, "histogram") && !strncmp(name, x.family, strlen(x.family)))
            suffix = name + strlen(x.family);
        if (strcmp(x.type, "histogram") ? strcmp(name, x.family) != 0
                                        : (strncmp(name, x.family, strlen(x.family)) ||
                                           (strcmp(suffix, "_bucket") && strcmp(suffix, "_sum") &&
                                            strcmp(suffix, "_count")))) {
            if (x.type_seen)
                return fail_at(why, ln, "sample outside its family");
            if (open_family(&x, name, why, ln))
                return -1;
        }
        x.samples_seen = true;
        char key[4608];
        snprintf(key, sizeof key, "%s{%s}", name, labels);
        for (int i = 0; i < x.n_series; i++)
            if (!strcmp(x.series[i], key))
                return fail_at(why, ln, "duplicate series");
        if (x.n_series < 4096)
            x.series[x.n_series++] = dab_strdup(key);
        if (!strcmp(x.type, "histogram")) {
            if (!strcmp(suffix, "_bucket")) {
                double lev;
                if (!has_le || !parse_value(le, strlen(le), &lev))
                    return fail_at(why, ln, "bucket without a float le");
                if (!x.h_open || strcmp(x.hkey, no_le)) {
                    if (check_hist_end(&x, why, ln))
                        return -1;
                    snprintf(x.hkey, sizeof x.hkey, "%s", no_le);
                    x.h_open = true;
                    x.last_le = -INFINITY;
                    x.last_count = 0;
                    x.inf_seen = false;
                }
                if (!(lev > x.last_le) || value < x.last_count)
                    return fail_at(why, ln, "buckets not increasing in le or not cumulative");
                x.last_le = lev;
                x.last_count = value;
                if (isinf(lev)) {
                    x.inf_seen = true;
                    x.inf_count = value;
                }
            } else {
                if (has_le)
                    return fail_at(why, ln, "le on _sum or _count");
                if (!x.h_open || strcmp(x.hkey, no_le) || !x.inf_seen)
                    return fail_at(why, ln, "_sum/_count before the series' buckets");
                if (!strcmp(suffix, "_count") && value != x.inf_count)
                    return fail_at(why, ln, "_count differs from the +Inf bucket");
            }
        } else if (has_le && !strcmp(x.type, "histogram")) {
            return fail_at(why, ln, "le outside a histogram bucket");
        }
        if (!strcmp(x.type, "counter") && (value < 0 || isnan(value)))
            return fail_at(why, ln, "negative counter");
    }
    return check_hist_end(&x, why, ln);
}

/* The rendered registry, NUL-terminated; dab_free the data. */
static char *render(void)
{
    dab_buf_t b = {0};
    if (dab_metrics_render(&b) || !b.data)
        return NULL;
    return b.data;
}

/* The value of the sample whose line starts with prefix + " ", or NAN. */
static double sample(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
        if (!strncmp(l, prefix, n) && l[n] == ' ')
            return strtod(l + n + 1, NULL);
    return NAN;
}

/* Renders, checks the grammar, and returns the text (dab_free it). */
static char *render_checked(void)
{
    char *t = render();
    CHECK(t != NULL);
    if (!t)
        return NULL;
    char why[256] = "";
    int rc = check_exposition(t, why);
    if (rc)
        fprintf(stderr, "exposition: %s\n", why);
    CHECK_EQ_INT(rc, 0);
    return t;
}

/* ================================ metrics ================================ */

#define N_THREADS 4
#define N_ITERS 100000

static dab_metric_t *g_c, *g_g, *g_h, *g_lc;

static void *hammer(void *arg)
{
    int id = (int)(intptr_t)arg;
    static const char *const models[] = {"a", "b", "c"};
    dab_series_t *hs = dab_metric_series(g_h, NULL);
    for (int i = 0; i < N_ITERS; i++) {
        dab_metric_add(g_c, NULL, 1);
        dab_metric_add(g_g, NULL, (i & 1) ? -1 : 2); /* +1 per pair */
        dab_series_observe(hs, (i % 4) * 0.5);      /* 0, 0.5, 1, 1.5 */
        const char *lv[] = {models[(i + id) % 3], (i % 2) ? "ok" : "error"};
        dab_metric_add(g_lc, lv, 1);
    }
    return NULL;
}

TEST(test_threads_sum_exactly)
{
    dab_metrics_reset();
    static const char *const labels[] = {"model", "outcome"};
    static const double bounds[] = {0.5, 1};
    g_c = dab_metric_counter("t_requests_total", "Requests.", 0, NULL);
    g_g = dab_metric_gauge("t_in_flight", "In flight.", 0, NULL);
    g_h = dab_metric_histogram("t_latency_seconds", "Latency.", 0, NULL, bounds, 2);
    g_lc = dab_metric_counter("t_by_model_total", "By model.", 2, labels);
    CHECK(g_c && g_g && g_h && g_lc);
    pthread_t th[N_THREADS];
    for (int i = 0; i < N_THREADS; i++)
        pthread_create(&th[i], NULL, hammer, (void *)(intptr_t)i);
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(th[i], NULL);
    char *t = render_checked();
    if (!t)
        return;
    double total = (double)N_THREADS * N_ITERS;
    CHECK_NEAR(sample(t, "t_requests_total"), total, 0);
    CHECK_NEAR(sample(t, "t_in_flight"), total / 2, 0);
    CHECK_NEAR(sample(t, "t_latency_seconds_bucket{le=\"0.5\"}"), total / 2, 0);
    CHECK_NEAR(sample(t, "t_latency_seconds_bucket{le=\"1\"}"), total * 3 / 4, 0);
    CHECK_NEAR(sample(t, "t_latency_seconds_bucket{le=\"+Inf\"}"), total, 0);
    CHECK_NEAR(sample(t, "t_latency_seconds_count"), total, 0);
    CHECK_NEAR(sample(t, "t_latency_seconds_sum"), total / 4 * 3, 0);
    double by_model = 0;
    const char *ms[] = {"a", "b", "c"}, *os[] = {"ok", "error"};
    for (int m = 0; m < 3; m++)
        for (int o = 0; o < 2; o++) {
            char k[128];
            snprintf(k, sizeof k, "t_by_model_total{model=\"%s\",outcome=\"%s\"}", ms[m], os[o]);
            double v = sample(t, k);
            CHECK(v > 0);
            by_model += v;
        }
    CHECK_NEAR(by_model, total, 0);
    /* dab_series_read agrees with the text */
    uint64_t count;
    CHECK_NEAR(dab_series_read(dab_metric_series(g_h, NULL), &count), total / 4 * 3, 0);
    CHECK_EQ_INT(count, (uint64_t)total);
    CHECK_NEAR(dab_series_read(dab_metric_series(g_c, NULL), NULL), total, 0);
    dab_free(t);
}

/* Threads racing to create the same 500 series. */
static void *creator(void *arg)
{
    (void)arg;
    for (int i = 0; i < 500; i++) {
        char v[16];
        snprintf(v, sizeof v, "m%d", i);
        const char *lv[] = {v};
        for (int k = 0; k < 10; k++)
            dab_metric_add(g_lc, lv, 1);
    }
    return NULL;
}

TEST(test_concurrent_series_creation)
{
    dab_metrics_reset();
    static const char *const labels[] = {"model"};
    g_lc = dab_metric_counter("t_created_total", "Created.", 1, labels);
    pthread_t th[N_THREADS];
    for (int i = 0; i < N_THREADS; i++)
        pthread_create(&th[i], NULL, creator, NULL);
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(th[i], NULL);
    char *t = render_checked();
    if (!t)
        return;
    int lines = 0;
    bool exact = true;
    for (int i = 0; i < 500; i++) {
        char k[64];
        snprintf(k, sizeof k, "t_created_total{model=\"m%d\"}", i);
        exact = exact && sample(t, k) == 10.0 * N_THREADS;
        lines += !isnan(sample(t, k));
    }
    CHECK_EQ_INT(lines, 500);
    CHECK(exact);
    CHECK(!strstr(t, "__overflow__"));
    dab_free(t);
}

TEST(test_bucket_math)
{
    dab_metrics_reset();
    static const double bounds[] = {1, 2, 5};
    dab_metric_t *h = dab_metric_histogram("t_size", "Sizes.", 0, NULL, bounds, 3);
    const double obs[] = {0.5, 1, -1, 1.5, 2, 2.0000001, 5, 6, 1e300, NAN};
    for (size_t i = 0; i < DAB_ARRAY_LEN(obs); i++)
        dab_metric_observe(h, NULL, obs[i]);
    dab_metric_add(h, NULL, 3); /* wrong kind: ignored */
    char *t = render_checked();
    if (!t)
        return;
    CHECK_NEAR(sample(t, "t_size_bucket{le=\"1\"}"), 3, 0); /* le is inclusive */
    CHECK_NEAR(sample(t, "t_size_bucket{le=\"2\"}"), 5, 0);
    CHECK_NEAR(sample(t, "t_size_bucket{le=\"5\"}"), 7, 0);
    CHECK_NEAR(sample(t, "t_size_bucket{le=\"+Inf\"}"), 9, 0); /* NaN dropped */
    CHECK_NEAR(sample(t, "t_size_count"), 9, 0);
    CHECK_NEAR(sample(t, "t_size_sum"), 1e300, 1e285);
    CHECK(strstr(t, "# TYPE t_size histogram\n") != NULL);
    dab_free(t);

    /* default buckets render with their exact decimal spelling */
    dab_metric_t *lat = dab_metric_histogram("t_lat_seconds", "L.", 0, NULL, NULL, 0);
    dab_metric_observe(lat, NULL, 0.00005);
    dab_metric_observe(lat, NULL, 0.003);
    dab_metric_observe(lat, NULL, 100);
    t = render_checked();
    CHECK_NEAR(sample(t, "t_lat_seconds_bucket{le=\"5e-05\"}"), 1, 0);
    CHECK_NEAR(sample(t, "t_lat_seconds_bucket{le=\"0.0025\"}"), 1, 0);
    CHECK_NEAR(sample(t, "t_lat_seconds_bucket{le=\"0.005\"}"), 2, 0);
    CHECK_NEAR(sample(t, "t_lat_seconds_bucket{le=\"60\"}"), 2, 0);
    CHECK_NEAR(sample(t, "t_lat_seconds_bucket{le=\"+Inf\"}"), 3, 0);
    dab_free(t);
}

TEST(test_gauges_and_counters)
{
    dab_metrics_reset();
    static const char *const labels[] = {"model"};
    dab_metric_t *g = dab_metric_gauge("t_state", "State.", 1, labels);
    dab_metric_t *c = dab_metric_counter("t_c_total", "C.", 1, labels);
    const char *a[] = {"a"};
    dab_metric_set(g, a, 3.25);
    dab_metric_add(g, a, -1);
    dab_metric_add(c, a, 2.5);
    dab_metric_add(c, a, -7);  /* counters only go up */
    dab_metric_add(c, a, NAN); /* ignored */
    dab_metric_set(c, a, 100); /* not a gauge: ignored */
    dab_metric_observe(c, a, 1);
    dab_metric_add(NULL, a, 1); /* a failed registration is a no-op */
    CHECK(dab_metric_series(NULL, a) == NULL);
    char *t = render_checked();
    CHECK_NEAR(sample(t, "t_state{model=\"a\"}"), 2.25, 0);
    CHECK_NEAR(sample(t, "t_c_total{model=\"a\"}"), 2.5, 0);
    CHECK(strstr(t, "# HELP t_state State.\n# TYPE t_state gauge\n") != NULL);
    dab_free(t);
}

TEST(test_label_escaping)
{
    dab_metrics_reset();
    static const char *const labels[] = {"model", "path"};
    dab_metric_t *c =
        dab_metric_counter("t_esc_total", "Help with \\ backslash\nand newline.", 2, labels);
    const char *lv[] = {"a\"b\\c\nd", "x\xff\xfey"};
    dab_metric_add(c, lv, 1);
    char longv[1000];
    memset(longv, 'z', sizeof longv - 1);
    longv[sizeof longv - 1] = 0;
    const char *lv2[] = {longv, NULL};
    dab_metric_add(c, lv2, 1);
    char *t = render_checked();
    if (!t)
        return;
    CHECK(strstr(t, "# HELP t_esc_total Help with \\\\ backslash\\nand newline.\n") != NULL);
    CHECK_NEAR(
        sample(t, "t_esc_total{model=\"a\\\"b\\\\c\\nd\",path=\"x\xEF\xBF\xBD\xEF\xBF\xBDy\"}"), 1,
        0);
    char want[400];
    snprintf(want, sizeof want, "t_esc_total{model=\"%.*s\",path=\"\"}", DAB_METRIC_LABEL_VALUE_MAX,
             longv);
    CHECK_NEAR(sample(t, want), 1, 0);
    /* the same hostile value finds the same series */
    dab_metric_add(c, lv, 1);
    dab_free(t);
    t = render_checked();
    CHECK_NEAR(
        sample(t, "t_esc_total{model=\"a\\\"b\\\\c\\nd\",path=\"x\xEF\xBF\xBD\xEF\xBF\xBDy\"}"), 2,
        0);
    dab_free(t);
}

TEST(test_checker_rejects)
{
    /* the checker itself must be able to fail */
    char why[256];
    CHECK(check_exposition("a 1\n", why) == 0);
    CHECK(check_exposition("a 1", why) != 0);
    CHECK(check_exposition("a{b=\"x\\q\"} 1\n", why) != 0);
    CHECK(check_exposition("a{b=\"x\" 1\n", why) != 0);
    CHECK(check_exposition("# TYPE a counter\na -1\n", why) != 0);
    CHECK(check_exposition("a one\n", why) != 0);
    CHECK(check_exposition("# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n", why) != 0);
    CHECK(check_exposition("a{x=\"1\"} 1\na{x=\"1\"} 2\n", why) != 0);
    CHECK(check_exposition("# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
                           "h_sum 1\nh_count 1\n",
                           why) != 0);
    CHECK(check_exposition("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
                           "h_sum 1\nh_count 3\n",
                           why) != 0);
    CHECK(check_exposition("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", why) !=
          0);
    CHECK(check_exposition("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
                           "h_sum 1\nh_count 2\n",
                           why) == 0);
}

TEST(test_series_bound_and_overflow)
{
    dab_metrics_reset();
    static const char *const labels[] = {"model"};
    dab_metric_opts_t o = {.kind = DAB_METRIC_COUNTER,
                           .name = "t_bounded_total",
                           .help = "Bounded.",
                           .n_labels = 1,
                           .label_names = labels,
                           .max_series = 3};
    dab_metric_t *c;
    dab_err_t err = {0};
    CHECK_EQ_INT(dab_metric_register(&o, &c, &err), 0);
    for (int i = 0; i < 5; i++) {
        char v[8];
        snprintf(v, sizeof v, "m%d", i);
        const char *lv[] = {v};
        dab_metric_add(c, lv, 1);
    }
    const char *ov[] = {DAB_METRIC_OVERFLOW_VALUE};
    dab_metric_add(c, ov, 10); /* the literal overflow values name the overflow series */
    char *t = render_checked();
    if (!t)
        return;
    CHECK_NEAR(sample(t, "t_bounded_total{model=\"m2\"}"), 1, 0);
    CHECK(isnan(sample(t, "t_bounded_total{model=\"m3\"}")));
    CHECK_NEAR(sample(t, "t_bounded_total{model=\"__overflow__\"}"), 12, 0);
    CHECK_NEAR(sample(t, "dabba_metric_series_overflow_total{metric=\"t_bounded_total\"}"), 2, 0);
    dab_free(t);
    /* removing one makes room again */
    const char *m0[] = {"m0"};
    CHECK_EQ_INT(dab_metric_remove(c, m0), 1);
    const char *m4[] = {"m4"};
    dab_metric_add(c, m4, 1);
    t = render_checked();
    CHECK_NEAR(sample(t, "t_bounded_total{model=\"m4\"}"), 1, 0);
    CHECK(isnan(sample(t, "t_bounded_total{model=\"m0\"}")));
    dab_free(t);
}

TEST(test_remove)
{
    dab_metrics_reset();
    static const char *const labels[] = {"model", "version"};
    dab_metric_t *h = dab_metric_histogram("t_rm_seconds", "R.", 2, labels, NULL, 0);
    const char *a1[] = {"a", "1"}, *a2[] = {"a", "2"}, *b1[] = {"b", "1"};
    dab_metric_observe(h, a1, 0.1);
    dab_metric_observe(h, a2, 0.1);
    dab_series_t *s = dab_metric_series(h, b1);
    dab_series_observe(s, 0.2);
    const char *any_a[] = {"a", NULL};
    CHECK_EQ_INT(dab_metric_remove(h, any_a), 2);
    CHECK_EQ_INT(dab_metric_remove(h, any_a), 0);
    char *t = render_checked();
    CHECK(!strstr(t, "model=\"a\""));
    CHECK_NEAR(sample(t, "t_rm_seconds_count{model=\"b\",version=\"1\"}"), 1, 0);
    dab_free(t);
    /* a series created again starts from zero */
    dab_metric_observe(h, a1, 0.3);
    t = render_checked();
    CHECK_NEAR(sample(t, "t_rm_seconds_count{model=\"a\",version=\"1\"}"), 1, 0);
    CHECK_NEAR(sample(t, "t_rm_seconds_sum{model=\"a\",version=\"1\"}"), 0.3, 0);
    dab_free(t);
    CHECK_EQ_INT(dab_metric_remove(h, NULL), 2);
    t = render_checked();
    CHECK(!strstr(t, "t_rm_seconds_bucket"));
    CHECK(strstr(t, "# TYPE t_rm_seconds histogram\n") != NULL);
    dab_free(t);
}

/* Updaters by label values racing a thread that removes the same series. */
static _Atomic int g_stop;

static void *updater(void *arg)
{
    (void)arg;
    unsigned i = 0;
    while (!atomic_load(&g_stop)) {
        char v[8];
        snprintf(v, sizeof v, "m%u", i++ % 8);
        const char *lv[] = {v};
        dab_metric_add(g_lc, lv, 1);
    }
    return NULL;
}

TEST(test_remove_while_updating)
{
    dab_metrics_reset();
    static const char *const labels[] = {"model"};
    g_lc = dab_metric_counter("t_race_total", "Race.", 1, labels);
    atomic_store(&g_stop, 0);
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, updater, NULL);
    int removed = 0;
    uint64_t t0 = dab_now_ns();
    for (int k = 0; dab_now_ns() - t0 < 300000000ull; k++) {
        char v[8];
        snprintf(v, sizeof v, "m%d", k % 8);
        const char *lv[] = {v};
        removed += dab_metric_remove(g_lc, lv);
        if (k % 64 == 0) {
            char *t = render();
            dab_free(t);
        }
    }
    atomic_store(&g_stop, 1);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    CHECK(removed > 0);
    char *t = render_checked();
    CHECK(!strstr(t, "__overflow__"));
    dab_free(t);
    /* everything parked is freed once no reader is inside */
    dab_alloc_stats_t before, after;
    dab_metric_remove(g_lc, NULL);
    dab_alloc_stats(&before);
    dab_metrics_reset();
    dab_alloc_stats(&after);
    CHECK(after.live_bytes < before.live_bytes);
}

TEST(test_no_malloc_on_hot_path)
{
    dab_metrics_reset();
    static const char *const labels[] = {"model", "outcome"};
    dab_metric_t *c = dab_metric_counter("t_hot_total", "Hot.", 2, labels);
    dab_metric_t *h = dab_metric_histogram("t_hot_seconds", "Hot.", 2, labels, NULL, 0);
    const char *lv[] = {"digits", "ok"};
    dab_metric_add(c, lv, 1);
    dab_metric_observe(h, lv, 1);
    dab_series_t *s = dab_metric_series(h, lv);
    dab_alloc_stats_t a, b;
    dab_alloc_stats(&a);
    for (int i = 0; i < 1000; i++) {
        dab_metric_add(c, lv, 1);
        dab_metric_observe(h, lv, 0.001 * i);
        dab_series_observe(s, 0.5);
    }
    dab_alloc_stats(&b);
    CHECK_EQ_INT(b.calls, a.calls);
    CHECK_EQ_INT(b.live_bytes, a.live_bytes);
    uint64_t n;
    dab_series_read(s, &n);
    CHECK_EQ_INT(n, 2001);
}

TEST(test_alloc_failure)
{
    dab_metrics_reset();
    static const char *const labels[] = {"model"};
    dab_metric_t *c = dab_metric_counter("t_oom_total", "OOM.", 1, labels);
    const char *lv[] = {"x"};
    dab_alloc_fail_after(1); /* the table or the series fails */
    dab_metric_add(c, lv, 1);
    dab_alloc_fail_after(0);
    dab_metric_add(c, lv, 1);
    char *t = render_checked();
    CHECK_NEAR(sample(t, "t_oom_total{model=\"__overflow__\"}"), 1, 0);
    CHECK_NEAR(sample(t, "t_oom_total{model=\"x\"}"), 1, 0);
    dab_free(t);
    /* registration under allocation failure leaves nothing behind */
    for (uint64_t k = 1; k < 12; k++) {
        dab_metric_t *m;
        dab_metric_opts_t o = {.kind = DAB_METRIC_HISTOGRAM,
                               .name = "t_oom_hist",
                               .n_labels = 1,
                               .label_names = labels};
        dab_alloc_fail_after(k);
        int rc = dab_metric_register(&o, &m, NULL);
        dab_alloc_fail_after(0);
        CHECK(rc == 0 || (rc == DAB_ENOMEM && m == NULL));
        if (rc == 0)
            break;
    }
}

TEST(test_registration_errors)
{
    dab_metrics_reset();
    dab_metric_t *m;
    dab_err_t err = {0};
    static const char *const dup[] = {"a", "a"};
    static const char *const le[] = {"le"};
    static const char *const bad[] = {"1x"};
    static const char *const under[] = {"__x"};
    static const char *const ab[] = {"a", "b"};
    static const double nonincr[] = {1, 1};
    static const double inf[] = {1, INFINITY};
    struct {
        dab_metric_opts_t o;
        const char *needle;
    } cases[] = {
        {{.kind = DAB_METRIC_COUNTER, .name = "9abc"}, "9abc"},
        {{.kind = DAB_METRIC_COUNTER, .name = "a-b"}, "a-b"},
        {{.kind = DAB_METRIC_COUNTER, .name = NULL}, "(null)"},
        {{.kind = 7, .name = "x"}, "kind"},
        {{.kind = DAB_METRIC_GAUGE, .name = "x", .n_labels = 2, .label_names = dup}, "twice"},
        {{.kind = DAB_METRIC_HISTOGRAM, .name = "x", .n_labels = 1, .label_names = le}, "'le'"},
        {{.kind = DAB_METRIC_GAUGE, .name = "x", .n_labels = 1, .label_names = bad}, "'1x'"},
        {{.kind = DAB_METRIC_GAUGE, .name = "x", .n_labels = 1, .label_names = under}, "'__x'"},
        {{.kind = DAB_METRIC_GAUGE, .name = "x", .n_labels = 9, .label_names = ab}, "9 labels"},
        {{.kind = DAB_METRIC_HISTOGRAM, .name = "x", .bounds = nonincr, .n_bounds = 2}, "bound 1"},
        {{.kind = DAB_METRIC_HISTOGRAM, .name = "x", .bounds = inf, .n_bounds = 2}, "bound 1"},
        {{.kind = DAB_METRIC_HISTOGRAM, .name = "x", .bounds = inf, .n_bounds = 0}, "0 bucket"},
        {{.kind = DAB_METRIC_GAUGE, .name = "dabba_build_info"}, "reserved"},
        {{.kind = DAB_METRIC_GAUGE, .name = "x", .max_series = -1}, "max_series"},
    };
    for (size_t i = 0; i < DAB_ARRAY_LEN(cases); i++) {
        dab_err_clear(&err);
        int rc = dab_metric_register(&cases[i].o, &m, &err);
        CHECK_EQ_INT(rc, DAB_EINVAL);
        CHECK(m == NULL);
        if (!strstr(err.msg, cases[i].needle))
            fprintf(stderr, "case %zu: '%s' lacks '%s'\n", i, err.msg, cases[i].needle);
        CHECK(strstr(err.msg, cases[i].needle) != NULL);
    }
    /* the same definition again is the same metric; another one is refused */
    dab_metric_t *h1 = dab_metric_histogram("t_h", "H.", 2, ab, NULL, 0);
    dab_metric_t *h2 = dab_metric_histogram("t_h", "other help", 2, ab, NULL, 0);
    CHECK(h1 && h1 == h2);
    dab_metric_opts_t o = {.kind = DAB_METRIC_HISTOGRAM, .name = "t_h", .n_labels = 1,
                           .label_names = ab};
    CHECK_EQ_INT(dab_metric_register(&o, &m, &err), DAB_EINVAL);
    CHECK(strstr(err.msg, "already registered") != NULL);
    o = (dab_metric_opts_t){.kind = DAB_METRIC_COUNTER, .name = "t_h_count"};
    CHECK_EQ_INT(dab_metric_register(&o, &m, &err), DAB_EINVAL);
    CHECK(strstr(err.msg, "t_h_count") != NULL);
    o = (dab_metric_opts_t){.kind = DAB_METRIC_HISTOGRAM, .name = "t"};
    dab_metric_t *c = dab_metric_counter("t_sum", "S.", 0, NULL);
    CHECK(c != NULL);
    CHECK_EQ_INT(dab_metric_register(&o, &m, &err), DAB_EINVAL);
}

TEST(test_process_metrics)
{
    dab_metrics_reset();
    char *t = render_checked();
    if (!t)
        return;
    CHECK(sample(t, "dabba_process_resident_memory_bytes") > 1e5);
    CHECK(sample(t, "dabba_process_cpu_seconds_total") >= 0);
    double start = sample(t, "dabba_process_start_time_seconds");
    CHECK(start > 1.6e9 && start <= (double)time(NULL) + 1);
    CHECK(sample(t, "dabba_process_open_fds") >= 3);
    CHECK(sample(t, "dabba_heap_live_bytes") > 0);
    char bi[64];
    snprintf(bi, sizeof bi, "dabba_build_info{version=\"%s\"}", DABBA_VERSION);
    CHECK_NEAR(sample(t, bi), 1, 0);
    CHECK(strstr(t, "# TYPE dabba_process_cpu_seconds_total counter\n") != NULL);
    dab_free(t);
}

/* The python client's parser (tests/e2e/check_metrics.py) reads the text too;
 * skipped where python3-prometheus-client is not installed. */
TEST(test_python_client_parses)
{
    if (access("tests/e2e/check_metrics.py", R_OK) ||
        system("/usr/bin/python3 -c 'import prometheus_client' 2>/dev/null")) {
        printf("test_python_client_parses: skipped (no python3-prometheus-client)\n");
        return;
    }
    dab_metrics_reset();
    static const char *const labels[] = {"model", "version", "outcome"};
    dab_metric_t *c =
        dab_metric_counter("dabba_requests_total", "Requests \\ by\nmodel.", 3, labels);
    dab_metric_t *h = dab_metric_histogram("dabba_request_duration_seconds", "Latency.", 2, labels,
                                           NULL, 0);
    dab_metric_t *s = dab_metric_histogram("dabba_request_size_bytes", "Size.", 0, NULL,
                                           dab_buckets_size_bytes, DAB_BUCKETS_SIZE_N);
    dab_metric_t *g = dab_metric_gauge("dabba_in_flight", "In flight.", 0, NULL);
    const char *v1[] = {"digits_mlp", "1", "ok"}, *v2[] = {"we\"ird\\na\nme\xff", "2", "error"};
    dab_metric_add(c, v1, 3);
    dab_metric_add(c, v2, 1);
    dab_metric_observe(h, v1, 0.0012);
    dab_metric_observe(h, v2, 7);
    dab_metric_observe(s, NULL, 1234);
    dab_metric_set(g, NULL, -2.5);
    char *t = render_checked();
    if (!t)
        return;
    fflush(stdout);
    FILE *py = popen("/usr/bin/python3 tests/e2e/check_metrics.py dabba_requests_total "
                     "'dabba_requests_total{model=\"digits_mlp\",outcome=\"ok\"}' "
                     "dabba_request_duration_seconds dabba_request_size_bytes dabba_in_flight "
                     "dabba_process_cpu_seconds_total dabba_build_info dabba_heap_live_bytes",
                     "w");
    CHECK(py != NULL);
    if (py) {
        fputs(t, py);
        CHECK_EQ_INT(pclose(py), 0);
    }
    /* and it can fail */
    py = popen("/usr/bin/python3 tests/e2e/check_metrics.py dabba_absent >/dev/null", "w");
    if (py) {
        fputs(t, py);
        CHECK(pclose(py) != 0);
    }
    dab_free(t);
}

/* ================================== logs ================================== */

/* A minimal JSON validator: the whole of s (n bytes) is one value. */
static const char *json_value(const char *p, const char *end);

static const char *json_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static const char *json_string(const char *p, const char *end)
{
    if (p >= end || *p != '"')
        return NULL;
    for (p++; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return p + 1;
        if (c < 0x20)
            return NULL;
        if (c == '\\') {
            p++;
            if (p >= end)
                return NULL;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (p + i >= end || !strchr("0123456789abcdefABCDEF", p[i]))
                        return NULL;
                p += 4;
            } else if (!strchr("\"\\/bfnrt", *p)) {
                return NULL;
            }
        } else if (c >= 0x80) {
            int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
            if (!len || p + len > end)
                return NULL;
            for (int i = 1; i < len; i++)
                if (((unsigned char)p[i] & 0xC0) != 0x80)
                    return NULL;
            p += len - 1;
        }
    }
    return NULL;
}

static const char *json_number(const char *p, const char *end)
{
    const char *s = p;
    if (p < end && *p == '-')
        p++;
    if (p < end && *p == '0')
        p++;
    else if (p < end && *p >= '1' && *p <= '9')
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    else
        return NULL;
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9')
            return NULL;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || *p < '0' || *p > '9')
            return NULL;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    return p > s ? p : NULL;
}

static const char *json_value(const char *p, const char *end)
{
    p = json_ws(p, end);
    if (p >= end)
        return NULL;
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        bool obj = *p == '{';
        p = json_ws(p + 1, end);
        if (p < end && *p == close)
            return p + 1;
        for (;;) {
            if (obj) {
                p = json_string(json_ws(p, end), end);
                if (!p)
                    return NULL;
                p = json_ws(p, end);
                if (p >= end || *p != ':')
                    return NULL;
                p++;
            }
            p = json_value(p, end);
            if (!p)
                return NULL;
            p = json_ws(p, end);
            if (p < end && *p == ',') {
                p++;
                continue;
            }
            return p < end && *p == close ? p + 1 : NULL;
        }
    }
    if (*p == '"')
        return json_string(p, end);
    if (!strncmp(p, "true", 4) || !strncmp(p, "null", 4))
        return p + 4;
    if (!strncmp(p, "false", 5))
        return p + 5;
    return json_number(p, end);
}

static bool json_valid(const char *s, size_t n)
{
    const char *p = json_value(s, s + n);
    return p && json_ws(p, s + n) == s + n;
}

/* stderr redirected into a temporary file while capturing. */
static int g_saved_fd = -1;
static char g_cap_path[64];

static void capture_start(void)
{
    snprintf(g_cap_path, sizeof g_cap_path, "/tmp/test_observe_XXXXXX");
    int fd = mkstemp(g_cap_path);
    fflush(stderr);
    g_saved_fd = dup(2);
    dup2(fd, 2);
    close(fd);
}

/* Stops capturing; returns what was written (dab_free it). */
static char *capture_end(void)
{
    fflush(stderr);
    dup2(g_saved_fd, 2);
    close(g_saved_fd);
    int fd = open(g_cap_path, O_RDONLY);
    dab_buf_t b = {0};
    char chunk[4096];
    ssize_t n;
    while ((n = read(fd, chunk, sizeof chunk)) > 0)
        dab_buf_append(&b, chunk, (size_t)n);
    close(fd);
    unlink(g_cap_path);
    dab_buf_append(&b, "", 0);
    return b.data;
}

/* Counts lines and checks each is valid JSON; returns the count or -1. */
static int json_lines(const char *text)
{
    int n = 0;
    for (const char *l = text; *l;) {
        const char *eol = strchr(l, '\n');
        if (!eol)
            return -1;
        if (!json_valid(l, (size_t)(eol - l))) {
            fprintf(stderr, "invalid JSON line: %.*s\n", (int)(eol - l), l);
            return -1;
        }
        n++;
        l = eol + 1;
    }
    return n;
}

TEST(test_json_validator)
{
    const char *good[] = {"{}", "{\"a\":[1,-2.5e3,true,null,\"x\\u00e9\"]}", "\"\xc3\xa9\""};
    const char *bad[] = {"{", "{\"a\":}", "\"\x01\"", "{\"a\":1,}", "\"\\x\"", "01", "nul"};
    for (size_t i = 0; i < DAB_ARRAY_LEN(good); i++)
        CHECK(json_valid(good[i], strlen(good[i])));
    for (size_t i = 0; i < DAB_ARRAY_LEN(bad); i++)
        CHECK(!json_valid(bad[i], strlen(bad[i])));
}

TEST(test_json_lines)
{
    dab_log_init(DAB_LOG_JSON, DAB_LOG_INFO);
    capture_start();
    dab_log(DAB_LOG_INFO, "request", DAB_F_STR("method", "GET"), DAB_F_STR("path", "/v2/models"),
            DAB_F_INT("status", 200), DAB_F_DBL("latency_ms", 1.25), DAB_F_UINT("bytes", 42),
            DAB_F_BOOL("cached", true));
    dab_log(DAB_LOG_WARN, "odd", DAB_F_STR("q", "say \"hi\"\\ \n\t\r\x01\x1f\x7f end"),
            DAB_F_STR("bad_utf8", "a\xff\xc3(b"), DAB_F_STR("nil", NULL),
            DAB_F_DBL("nan", NAN), DAB_F_DBL("inf", INFINITY), DAB_F_STRN("part", "abcdef", 3),
            DAB_F_STR("k\"ey", "v"));
    dab_log(DAB_LOG_DEBUG, "hidden");
    dab_log(DAB_LOG_ERROR, "no_fields");
    char big[6000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    big[100] = '\n';
    dab_log(DAB_LOG_INFO, "big", DAB_F_STR("body", big), DAB_F_INT("after", 1));
    dab_log_field_t arr[2] = {{.key = "a", .type = DAB_LOG_F_INT, .i = -5},
                              {.key = "b", .type = DAB_LOG_F_STR, .s = "\xe2\x82\xac"}};
    dab_log_fields(DAB_LOG_INFO, "array", arr, 2);
    char *out = capture_end();
    CHECK_EQ_INT(json_lines(out), 5);
    CHECK(!strstr(out, "hidden"));
    const char *l1 = strstr(out, "\"event\":\"request\"");
    CHECK(l1 != NULL);
    CHECK(!strncmp(out, "{\"time\":\"", 9));
    /* 2024-05-01T12:34:56.789Z */
    CHECK(strlen(out) > 33 && out[13] == '-' && out[19] == 'T' && out[28] == '.' &&
          out[32] == 'Z' && out[33] == '"');
    CHECK(strstr(out, "\"level\":\"info\",\"event\":\"request\",\"method\":\"GET\","
                      "\"path\":\"/v2/models\",\"status\":200,\"latency_ms\":1.25,\"bytes\":42,"
                      "\"cached\":true}\n") != NULL);
    CHECK(strstr(out, "\"q\":\"say \\\"hi\\\"\\\\ \\n\\t\\r\\u0001\\u001f\\u007f end\"") != NULL);
    CHECK(strstr(out, "\"bad_utf8\":\"a\xEF\xBF\xBD\xEF\xBF\xBD(b\"") != NULL);
    CHECK(strstr(out, "\"nil\":null,\"nan\":null,\"inf\":null,\"part\":\"abc\","
                      "\"k\\\"ey\":\"v\"}") != NULL);
    CHECK(strstr(out, "\"level\":\"error\",\"event\":\"no_fields\"}") != NULL);
    CHECK(strstr(out, "\"event\":\"array\",\"a\":-5,\"b\":\"\xe2\x82\xac\"}") != NULL);
    const char *bl = strstr(out, "\"event\":\"big\"");
    CHECK(bl != NULL);
    if (bl) {
        const char *start = bl;
        while (start > out && start[-1] != '\n')
            start--;
        const char *eol = strchr(bl, '\n');
        CHECK(eol - start + 1 <= 4096);
        CHECK(eol - start > 4000);
        CHECK(strstr(bl, "\"truncated\":true}\n") != NULL);
        CHECK(!memmem(start, (size_t)(eol - start), "after", 5));
    }
    dab_free(out);
}

TEST(test_text_lines)
{
    dab_log_init(DAB_LOG_TEXT, DAB_LOG_DEBUG);
    capture_start();
    dab_log(DAB_LOG_DEBUG, "request", DAB_F_STR("method", "GET"), DAB_F_STR("msg", "two words"),
            DAB_F_STR("empty", ""), DAB_F_INT("status", 404), DAB_F_STR("bad key", "x\ny"));
    char *out = capture_end();
    dab_log_init(DAB_LOG_JSON, DAB_LOG_INFO);
    CHECK(strlen(out) > 24 && out[23] == 'Z' && out[24] == ' ');
    CHECK(strstr(out, " DEBUG request method=GET msg=\"two words\" empty=\"\" status=404 "
                      "bad_key=\"x\\ny\"\n") != NULL);
    CHECK_EQ_INT(strchr(out, '\n') - out + 1, (long long)strlen(out));
    dab_free(out);
}

static void *log_spam(void *arg)
{
    int id = (int)(intptr_t)arg;
    char pad[300];
    memset(pad, 'a' + id, sizeof pad - 1);
    pad[sizeof pad - 1] = 0;
    for (int i = 0; i < 300; i++)
        dab_log(DAB_LOG_INFO, "spam", DAB_F_INT("thread", id), DAB_F_INT("i", i),
                DAB_F_STR("pad", pad));
    return NULL;
}

TEST(test_lines_do_not_interleave)
{
    dab_log_init(DAB_LOG_JSON, DAB_LOG_INFO);
    capture_start();
    pthread_t th[N_THREADS];
    for (int i = 0; i < N_THREADS; i++)
        pthread_create(&th[i], NULL, log_spam, (void *)(intptr_t)i);
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(th[i], NULL);
    char *out = capture_end();
    CHECK_EQ_INT(json_lines(out), N_THREADS * 300);
    dab_free(out);
}

/* Sum of the "suppressed":N values in text. */
static long long sum_suppressed(const char *text)
{
    long long s = 0;
    for (const char *p = text; (p = strstr(p, "\"suppressed\":")); p++)
        s += strtoll(p + 13, NULL, 10);
    return s;
}

static int count_lines(const char *text)
{
    int n = 0;
    for (const char *p = text; (p = strchr(p, '\n')); p++)
        n++;
    return n;
}

TEST(test_rate_limited)
{
    dab_log_init(DAB_LOG_JSON, DAB_LOG_INFO);
    capture_start();
    for (int i = 0; i < 100; i++)
        dab_log_limited(DAB_LOG_ERROR, "redis_down", 5, "cache_error", DAB_F_INT("i", i));
    dab_log_limited(DAB_LOG_ERROR, "other_key", 5, "other");
    /* the next second: one more line, carrying the count of dropped ones */
    uint64_t sec = dab_now_ns() / 1000000000ull;
    while (dab_now_ns() / 1000000000ull == sec)
        usleep(10000);
    dab_log_limited(DAB_LOG_ERROR, "redis_down", 5, "cache_error", DAB_F_INT("i", 100));
    char *out = capture_end();
    CHECK(json_lines(out) > 0);
    int lines = count_lines(out) - 1; /* without other_key's */
    CHECK(strstr(out, "\"event\":\"other\"") != NULL);
    CHECK(lines >= 6 && lines <= 11); /* 5 per second, the loop may straddle one boundary */
    CHECK_EQ_INT(lines + sum_suppressed(out), 101);
    CHECK(strstr(out, "\"i\":100,\"suppressed\":") != NULL);
    dab_free(out);
}

TEST(test_parse_flags)
{
    dab_log_format_t f;
    dab_log_level_t l;
    dab_err_t err = {0};
    CHECK_EQ_INT(dab_log_parse_format("text", &f, &err), 0);
    CHECK_EQ_INT(f, DAB_LOG_TEXT);
    CHECK_EQ_INT(dab_log_parse_format("xml", &f, &err), DAB_EINVAL);
    CHECK(strstr(err.msg, "'xml'") != NULL);
    CHECK_EQ_INT(dab_log_parse_level("warn", &l, &err), 0);
    CHECK_EQ_INT(l, DAB_LOG_WARN);
    CHECK_EQ_INT(dab_log_parse_level("loud", &l, &err), DAB_EINVAL);
    CHECK(strstr(err.msg, "'loud'") != NULL);
    dab_log_init(DAB_LOG_JSON, DAB_LOG_ERROR);
    CHECK(!dab_log_enabled(DAB_LOG_WARN));
    CHECK(dab_log_enabled(DAB_LOG_ERROR));
    dab_log_init(DAB_LOG_JSON, DAB_LOG_INFO);
}

TEST(test_register_failure_is_logged)
{
    dab_log_init(DAB_LOG_JSON, DAB_LOG_INFO);
    capture_start();
    dab_metric_t *m = dab_metric_counter("bad name", "x", 0, NULL);
    char *out = capture_end();
    CHECK(m == NULL);
    CHECK_EQ_INT(json_lines(out), 1);
    CHECK(strstr(out, "\"event\":\"metric_register_failed\",\"metric\":\"bad name\"") != NULL);
    dab_free(out);
}

TEST_LIST(T(test_threads_sum_exactly), T(test_concurrent_series_creation), T(test_bucket_math),
          T(test_gauges_and_counters), T(test_label_escaping), T(test_checker_rejects),
          T(test_series_bound_and_overflow), T(test_remove), T(test_remove_while_updating),
          T(test_no_malloc_on_hot_path), T(test_alloc_failure), T(test_registration_errors),
          T(test_process_metrics), T(test_python_client_parses), T(test_json_validator),
          T(test_json_lines),
          T(test_text_lines), T(test_lines_do_not_interleave), T(test_rate_limited),
          T(test_parse_flags), T(test_register_failure_is_logged))
