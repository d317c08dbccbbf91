/*
 * test_repo.c - the model repository: config.json checks, version policies, control
 * modes, explicit load/unload, and hot swaps under concurrent acquire/release (no
 * failed acquire, old versions destroyed only after their last release, a broken new
 * version leaving the old one serving). Works on a temp copy of examples/repository.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../src/observe/observe.h"
#include "../../src/onnx/onnx.h"
#include "../../src/repo/repo.h"
#include "test.h"

#define EXAMPLES "examples/repository"

/* ---- files ---- */

static char g_tmp[256];

static void write_file(const char *path, const void *data, size_t n)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        perror(tmp);
        exit(2);
    }
    fwrite(data, 1, n, f);
    fclose(f);
    rename(tmp, path); /* atomically, as the docs recommend */
}

static void write_text(const char *path, const char *s) { write_file(path, s, strlen(s)); }

static char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    *n = fread(buf, 1, (size_t)len, f);
    fclose(f);
    return buf;
}

static void copy_file(const char *from, const char *to)
{
    size_t n;
    char *b = read_all(from, &n);
    write_file(to, b, n);
    free(b);
}

static void mkdirf(const char *fmt, const char *a, const char *b)
{
    char p[1024];
    snprintf(p, sizeof p, fmt, a, b);
    mkdir(p, 0755);
}

/* Copies examples/repository/<model>/<version>/model.onnx into the temp repository. */
static void add_version(const char *model, const char *version)
{
    char from[1024], to[1024];
    mkdirf("%s/%s", g_tmp, model);
    char d[1024];
    snprintf(d, sizeof d, "%s/%s/%s", g_tmp, model, version);
    mkdir(d, 0755);
    snprintf(from, sizeof from, EXAMPLES "/%s/%s/model.onnx", model, version);
    snprintf(to, sizeof to, "%s/model.onnx", d);
    copy_file(from, to);
}

static void rm_rf(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char p[1024];
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            rm_rf(p);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void fresh_repo(void)
{
    if (g_tmp[0])
        rm_rf(g_tmp);
    snprintf(g_tmp, sizeof g_tmp, "/tmp/dab_test_repo_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        exit(2);
    }
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* ---- a trivial runner that counts ---- */

typedef struct counts {
    atomic_int created, destroyed, changes;
    atomic_int destroyed_by_version[8];
    int fail_version; /* runner_create fails for this version number */
    int64_t live_runners;
} counts_t;

static int runner_create(void *user, dab_model_version_t *v, dab_err_t *err)
{
    counts_t *c = user;
    if (dab_model_version_number(v) == c->fail_version)
        return dab_err_set(err, DAB_EINTERNAL, "test runner refuses version %d", c->fail_version);
    int64_t *tag = dab_malloc(sizeof *tag);
    *tag = dab_model_version_number(v);
    dab_model_version_set_runner(v, tag);
    atomic_fetch_add(&c->created, 1);
    return 0;
}

static void runner_destroy(void *user, dab_model_version_t *v)
{
    counts_t *c = user;
    int64_t *tag = dab_model_version_runner(v);
    if (*tag >= 0 && *tag < 8)
        atomic_fetch_add(&c->destroyed_by_version[*tag], 1);
    dab_free(tag);
    atomic_fetch_add(&c->destroyed, 1);
}

static void on_change(void *user, const char *model)
{
    counts_t *c = user;
    atomic_fetch_add(&c->changes, 1);
}

static dab_repo_t *open_repo(dab_control_mode_t mode, counts_t *c, const char *const *startup,
                             int n_startup, int poll_secs)
{
    dab_repo_opts_t o = {.mode = mode,
                         .poll_secs = poll_secs,
                         .startup_models = startup,
                         .n_startup = n_startup,
                         .runner_create = runner_create,
                         .runner_destroy = runner_destroy,
                         .on_change = on_change,
                         .user = c};
    dab_repo_t *r = NULL;
    dab_err_t err = {0};
    int rc = dab_repo_open(g_tmp, &o, &r, &err);
    CHECK_EQ_INT(rc, 0);
    if (rc) {
        fprintf(stderr, "open: %s\n", err.msg);
        exit(2);
    }
    return r;
}

/* The version number acquire(name, version) gets, or the negative error code. */
static int64_t serving(dab_repo_t *r, const char *name, int64_t version)
{
    dab_err_t err = {0};
    dab_model_version_t *v = dab_repo_acquire(r, name, version, &err);
    if (!v)
        return err.code;
    int64_t n = dab_model_version_number(v);
    dab_model_version_release(v);
    return n;
}

/* The index entry of (name, version) (version NULL: the model-level entry) as
 * "STATE:reason", or "" when absent. */
static const char *index_entry(dab_repo_t *r, const char *name, const char *version,
                               char *out, size_t n)
{
    dab_buf_t b = {0};
    out[0] = 0;
    CHECK_EQ_INT(dab_repo_index(r, &b), 0);
    json_error_t je;
    json_t *arr = json_loadb(b.data, b.len, 0, &je);
    CHECK(json_is_array(arr));
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *e = json_array_get(arr, i);
        const char *nm = json_string_value(json_object_get(e, "name"));
        const char *ver = json_string_value(json_object_get(e, "version"));
        if (strcmp(nm, name) != 0)
            continue;
        if ((version == NULL) != (ver == NULL) || (version && strcmp(version, ver) != 0))
            continue;
        snprintf(out, n, "%s:%s", json_string_value(json_object_get(e, "state")),
                 json_string_value(json_object_get(e, "reason")));
    }
    json_decref(arr);
    dab_buf_free(&b);
    return out;
}

static bool starts_with(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* ---- config.json ---- */

TEST(test_config_defaults)
{
    json_set_alloc_funcs(dab_malloc, dab_free);
    dab_log_init(DAB_LOG_TEXT, DAB_LOG_ERROR);
    dab_model_config_t *c = NULL;
    dab_err_t err = {0};
    CHECK_EQ_INT(dab_model_config_parse("m", NULL, 0, &c, &err), 0);
    CHECK_EQ_INT(c->max_batch_size, -1); /* derived later */
    CHECK_EQ_INT(c->version_policy, DAB_POLICY_LATEST);
    CHECK_EQ_INT(c->latest_n, 1);
    CHECK_EQ_INT(c->instance_count, 1);
    CHECK(strcmp(c->model_filename, "model.onnx") == 0);
    dab_model_config_free(c);

    const char *txt = "{\"name\":\"m\",\"max_batch_size\":8,"
                      "\"version_policy\":{\"specific\":{\"versions\":[3,1,3]}},"
                      "\"instance_group\":[{\"count\":2,\"kind\":\"KIND_CPU\"},{\"count\":1}],"
                      "\"dynamic_batching\":{\"preferred_batch_size\":[4,8],"
                      "\"max_queue_delay_microseconds\":100,\"priority_levels\":2,"
                      "\"default_priority_level\":1,\"default_queue_policy\":"
                      "{\"timeout_action\":\"DELAY\",\"max_queue_size\":10},"
                      "\"priority_queue_policy\":{\"2\":{\"timeout_action\":\"REJECT\"}}},"
                      "\"response_cache\":{\"enable\":true,\"ttl_seconds\":60},"
                      "\"something_else\":{\"kept\":1}}";
    CHECK_EQ_INT(dab_model_config_parse("m", txt, strlen(txt), &c, &err), 0);
    if (c) {
        CHECK_EQ_INT(c->max_batch_size, 8);
        CHECK_EQ_INT(c->version_policy, DAB_POLICY_SPECIFIC);
        CHECK_EQ_INT(c->n_specific, 2);
        CHECK_EQ_INT(c->specific[0], 1);
        CHECK_EQ_INT(c->specific[1], 3);
        CHECK_EQ_INT(c->instance_count, 3);
        CHECK(c->dynamic_batching);
        CHECK(c->response_cache);
        CHECK_EQ_INT(c->response_cache_ttl_s, 60);
        CHECK(json_object_get(c->json, "something_else") != NULL);
    } else {
        fprintf(stderr, "%s\n", err.msg);
    }
    dab_model_config_free(c);
}

TEST(test_config_errors)
{
    static const struct {
        const char *json;
        int code;
        const char *names; /* the message must contain this */
    } cases[] = {
        {"not json", DAB_EFORMAT, "line 1"},
        {"{\"max_batch_size\":1,\"max_batch_size\":2}", DAB_EFORMAT, "duplicate"},
        {"[1,2]", DAB_EINVAL, "JSON object"},
        {"{\"name\":\"other\"}", DAB_EINVAL, "name \"other\""},
        {"{\"max_batch_size\":-1}", DAB_EINVAL, "max_batch_size"},
        {"{\"max_batch_size\":\"8\"}", DAB_EINVAL, "max_batch_size must be an integer"},
        {"{\"max_batch_size\":1.5}", DAB_EINVAL, "max_batch_size"},
        {"{\"platform\":\"tensorflow_savedmodel\"}", DAB_EINVAL, "platform"},
        {"{\"default_model_filename\":\"../x.onnx\"}", DAB_EINVAL, "default_model_filename"},
        {"{\"version_policy\":{\"newest\":{}}}", DAB_EINVAL, "unknown field 'newest'"},
        {"{\"version_policy\":{\"latest\":{\"num_versions\":0}}}", DAB_EINVAL,
         "version_policy.latest.num_versions"},
        {"{\"version_policy\":{\"all\":{},\"latest\":{}}}", DAB_EINVAL, "exactly one"},
        {"{\"version_policy\":{\"specific\":{\"versions\":[]}}}", DAB_EINVAL,
         "version_policy.specific.versions"},
        {"{\"version_policy\":{\"specific\":{\"versions\":[1,\"2\"]}}}", DAB_EINVAL,
         "version_policy.specific.versions[1]"},
        {"{\"instance_group\":[{\"count\":\"two\"}]}", DAB_EINVAL, "instance_group[0].count"},
        {"{\"instance_group\":[{\"count\":0}]}", DAB_EINVAL, "instance_group[0].count"},
        {"{\"instance_group\":[{\"kind\":\"KIND_GPU\"}]}", DAB_EINVAL, "instance_group[0].kind"},
        {"{\"instance_group\":{}}", DAB_EINVAL, "instance_group must be an array"},
        {"{\"max_batch_size\":8,\"dynamic_batching\":{\"preferred_batch_size\":[16]}}",
         DAB_EINVAL, "dynamic_batching.preferred_batch_size[0]"},
        {"{\"max_batch_size\":0,\"dynamic_batching\":{}}", DAB_EINVAL, "max_batch_size > 0"},
        {"{\"dynamic_batching\":{\"max_queue_delay_microseconds\":-5}}", DAB_EINVAL,
         "dynamic_batching.max_queue_delay_microseconds"},
        {"{\"dynamic_batching\":{\"default_queue_policy\":{\"timeout_action\":\"DROP\"}}}",
         DAB_EINVAL, "dynamic_batching.default_queue_policy.timeout_action"},
        {"{\"dynamic_batching\":{\"priority_levels\":2,\"priority_queue_policy\":{\"3\":{}}}}",
         DAB_EINVAL, "priority_queue_policy"},
        {"{\"dynamic_batching\":{\"priority_levels\":2,\"default_priority_level\":5}}",
         DAB_EINVAL, "default_priority_level"},
        {"{\"response_cache\":{\"enable\":1}}", DAB_EINVAL, "response_cache.enable"},
        {"{\"response_cache\":{\"ttl\":5}}", DAB_EINVAL, "unknown field 'ttl'"},
        {"{\"warmup\":{\"inputs\":{\"x\":{\"file\":\"../secret.npy\"}}}}", DAB_EINVAL,
         "warmup.inputs.x.file"},
        {"{\"warmup\":{\"inputs\":{\"x\":{\"fill\":1,\"data\":[1]}}}}", DAB_EINVAL,
         "only one of"},
        {"{\"warmup\":{\"count\":-1}}", DAB_EINVAL, "warmup.count"},
        {"{\"input\":[{\"data_type\":\"TYPE_FP32\"}]}", DAB_EINVAL, "input[0] has no name"},
    };
    for (size_t i = 0; i < DAB_ARRAY_LEN(cases); i++) {
        dab_model_config_t *c = (dab_model_config_t *)1;
        dab_err_t err = {0};
        int rc = dab_model_config_parse("m", cases[i].json, strlen(cases[i].json), &c, &err);
        CHECK_EQ_INT(rc, cases[i].code);
        CHECK(c == NULL);
        if (!strstr(err.msg, cases[i].names)) {
            CHECK(!"message names the field");
            fprintf(stderr, "  case %zu: '%s' lacks '%s'\n", i, err.msg, cases[i].names);
        }
        if (rc == 0)
            dab_model_config_free(c);
    }
    /* too large */
    dab_model_config_t *c = NULL;
    dab_err_t err = {0};
    CHECK_EQ_INT(dab_model_config_parse("m", "{}", (size_t)DAB_REPO_MAX_CONFIG_BYTES + 1, &c, &err),
                 DAB_ELIMIT);
    dab_control_mode_t mode;
    CHECK_EQ_INT(dab_control_mode_parse("poll", &mode, &err), 0);
    CHECK_EQ_INT(mode, DAB_CONTROL_POLL);
    CHECK_EQ_INT(dab_control_mode_parse("sometimes", &mode, &err), DAB_EINVAL);
}

/* Parses and completes txt against digits_mlp/1; returns the config or NULL (err set). */
static dab_model_config_t *complete(const dab_graph_t *g, const char *txt, dab_err_t *err)
{
    dab_model_config_t *c = NULL;
    int rc = dab_model_config_parse("digits_mlp", txt, txt ? strlen(txt) : 0, &c, err);
    if (!rc)
        rc = dab_model_config_complete(c, g, EXAMPLES "/digits_mlp", err);
    if (rc) {
        dab_model_config_free(c);
        return NULL;
    }
    return c;
}

TEST(test_config_complete)
{
    dab_graph_t *g = NULL;
    dab_err_t err = {0};
    CHECK_EQ_INT(dab_onnx_load_file(EXAMPLES "/digits_mlp/1/model.onnx", &g, &err), 0);
    if (!g)
        return;
    dab_model_config_t *c = complete(g, NULL, &err);
    CHECK(c != NULL);
    if (c) {
        CHECK_EQ_INT(c->max_batch_size, DAB_REPO_DEFAULT_MAX_BATCH); /* batch is symbolic */
        CHECK_EQ_INT(c->n_warmup_inputs, 1);
        CHECK_EQ_INT(c->warmup_inputs[0].rank, 2);
        CHECK_EQ_INT(c->warmup_inputs[0].dims[0], 1);
        CHECK_EQ_INT(c->warmup_inputs[0].dims[1], 64);
        CHECK_EQ_INT(((float *)c->warmup_inputs[0].data)[63] == 0.0f, 1);
        json_t *in = json_array_get(json_object_get(c->json, "input"), 0);
        CHECK(strcmp(json_string_value(json_object_get(in, "name")), "pixels") == 0);
        CHECK(strcmp(json_string_value(json_object_get(in, "data_type")), "TYPE_FP32") == 0);
        CHECK_EQ_INT(json_array_size(json_object_get(in, "dims")), 1); /* batch dim left out */
        CHECK_EQ_INT(json_integer_value(json_array_get(json_object_get(in, "dims"), 0)), 64);
        CHECK_EQ_INT(json_integer_value(json_object_get(c->json, "max_batch_size")),
                     DAB_REPO_DEFAULT_MAX_BATCH);
        CHECK(json_object_get(c->json, "output") != NULL);
        CHECK(json_object_get(c->json, "version_policy") != NULL);
    }
    dab_model_config_free(c);

    c = complete(g, "{\"max_batch_size\":0}", &err);
    CHECK(c != NULL);
    if (c) {
        json_t *in = json_array_get(json_object_get(c->json, "input"), 0);
        CHECK_EQ_INT(json_array_size(json_object_get(in, "dims")), 2);
        CHECK_EQ_INT(json_integer_value(json_array_get(json_object_get(in, "dims"), 0)), -1);
    }
    dab_model_config_free(c);

    c = complete(g, "{\"warmup\":{\"count\":3,\"inputs\":{\"pixels\":{\"dims\":[2,64],"
                    "\"fill\":0.5}}}}",
                 &err);
    CHECK(c != NULL);
    if (c) {
        CHECK_EQ_INT(c->warmup_count, 3);
        CHECK_EQ_INT(c->warmup_inputs[0].dims[0], 2);
        CHECK_NEAR(((float *)c->warmup_inputs[0].data)[127], 0.5, 0);
    }
    dab_model_config_free(c);

    c = complete(g, "{\"warmup\":{\"inputs\":{\"pixels\":{\"dims\":[1,4],\"data\":[1,2,3,4]}}}}",
                 &err);
    CHECK(c == NULL);
    CHECK(strstr(err.msg, "warmup.inputs.pixels") && strstr(err.msg, "dim 1"));

    c = complete(g, "{\"warmup\":{\"inputs\":{\"image\":{}}}}", &err);
    CHECK(c == NULL);
    CHECK(strstr(err.msg, "warmup.inputs.image is not an input") != NULL);

    c = complete(g, "{\"warmup\":{\"inputs\":{\"pixels\":{\"data\":[1,2]}}}}", &err);
    CHECK(c == NULL);
    CHECK(strstr(err.msg, "warmup.inputs.pixels.data has 2 numbers") != NULL);

    c = complete(g, "{\"warmup\":{\"inputs\":{\"pixels\":{\"file\":\"missing.npy\"}}}}", &err);
    CHECK(c == NULL);
    CHECK(strstr(err.msg, "warmup.inputs.pixels.file") != NULL);

    c = complete(g, "{\"max_batch_size\":4,\"warmup\":{\"inputs\":{\"pixels\":{\"dims\":[8,64]}}}}",
                 &err);
    CHECK(c == NULL);
    CHECK(strstr(err.msg, "max_batch_size") != NULL);

    c = complete(g, "{\"input\":[{\"name\":\"pixels\",\"data_type\":\"TYPE_INT64\"}]}", &err);
    CHECK(c == NULL);
    CHECK(strstr(err.msg, "input[0].data_type") != NULL);

    c = complete(g, "{\"input\":[{\"name\":\"pixels\",\"dims\":[65]}]}", &err);
    CHECK(c == NULL);
    CHECK(strstr(err.msg, "input[0].dims[0]") != NULL);

    c = complete(g, "{\"output\":[{\"name\":\"logits\"}]}", &err);
    CHECK(c == NULL);
    CHECK(strstr(err.msg, "output[0].name \"logits\"") != NULL);

    c = complete(g, "{\"input\":[{\"name\":\"pixels\",\"data_type\":\"TYPE_FP32\",\"dims\":[64]}]}",
                 &err);
    CHECK(c != NULL);
    dab_model_config_free(c);
    dab_graph_free(g);
}

TEST(test_config_alloc_failures)
{
    /* every allocation failing in turn: an error, never a crash or a leak */
    dab_graph_t *g = NULL;
    dab_err_t err = {0};
    CHECK_EQ_INT(dab_onnx_load_file(EXAMPLES "/digits_mlp/1/model.onnx", &g, &err), 0);
    if (!g)
        return;
    const char *txt = "{\"max_batch_size\":8,\"version_policy\":{\"specific\":{\"versions\":[1]}},"
                      "\"instance_group\":[{\"count\":2}],\"warmup\":{\"inputs\":{\"pixels\":"
                      "{\"fill\":1}}}}";
    dab_alloc_stats_t before, after;
    int failures = 0, n;
    for (n = 1; n < 400; n++) {
        /* jansson's lexer asserts when its allocations fail, so parsing runs clean and
         * the sweep covers dab_model_config_complete (which edits the JSON too) */
        dab_alloc_stats(&before);
        dab_model_config_t *c = NULL;
        CHECK_EQ_INT(dab_model_config_parse("digits_mlp", txt, strlen(txt), &c, &err), 0);
        dab_alloc_fail_after((uint64_t)n);
        int rc = dab_model_config_complete(c, g, EXAMPLES "/digits_mlp", &err);
        dab_alloc_fail_after(0);
        dab_model_config_free(c);
        dab_alloc_stats(&after);
        if (after.live_bytes != before.live_bytes)
            failures++;
        if (rc == 0)
            break; /* n exceeded the allocations made: all succeeded */
        CHECK_EQ_INT(rc, DAB_ENOMEM);
    }
    CHECK(n > 5 && n < 400);
    CHECK_EQ_INT(failures, 0);
    dab_graph_free(g);
}

/* ---- policies and modes ---- */

static bool wait_for(atomic_int *x, int want, int ms)
{
    for (int i = 0; i < ms / 10 && atomic_load(x) != want; i++)
        sleep_ms(10);
    return atomic_load(x) == want;
}

TEST(test_policies)
{
    fresh_repo();
    add_version("digits_mlp", "1");
    add_version("digits_mlp", "2");
    add_version("digits_cnn", "1");
    counts_t c = {0};
    dab_repo_t *r = open_repo(DAB_CONTROL_NONE, &c, NULL, 0, 0);
    CHECK(!dab_repo_ready(r));
    CHECK_EQ_INT(serving(r, "digits_mlp", 0), DAB_EBUSY); /* not started */
    dab_err_t err = {0};
    CHECK_EQ_INT(dab_repo_start(r, &err), 0);
    CHECK(dab_repo_ready(r));
    char e[600];
    /* latest 1 by default */
    CHECK_EQ_INT(serving(r, "digits_mlp", 0), 2);
    CHECK_EQ_INT(serving(r, "digits_mlp", 2), 2);
    CHECK_EQ_INT(serving(r, "digits_mlp", 1), DAB_EBUSY);
    CHECK(starts_with(index_entry(r, "digits_mlp", "1", e, sizeof e), "UNAVAILABLE:not selected"));
    CHECK(strcmp(index_entry(r, "digits_mlp", "2", e, sizeof e), "READY:") == 0);
    CHECK(strcmp(index_entry(r, "digits_cnn", "1", e, sizeof e), "READY:") == 0);
    CHECK_EQ_INT(serving(r, "digits_cnn", 0), 1);
    CHECK_EQ_INT(serving(r, "digits_mlp", 7), DAB_ENOTFOUND);
    CHECK_EQ_INT(serving(r, "nope", 0), DAB_ENOTFOUND);
    CHECK_EQ_INT(c.created, 2);
    CHECK(c.changes > 0);
    /* all */
    char p[1024];
    snprintf(p, sizeof p, "%s/digits_mlp/config.json", g_tmp);
    write_text(p, "{\"version_policy\":{\"all\":{}}}");
    CHECK_EQ_INT(dab_repo_rescan(r, &err), 0);
    CHECK_EQ_INT(serving(r, "digits_mlp", 1), 1);
    CHECK_EQ_INT(serving(r, "digits_mlp", 2), 2);
    /* the config changed: both versions were reloaded with it */
    CHECK_EQ_INT(c.created, 4);
    /* the replaced version is destroyed by the background thread, soon after */
    CHECK(wait_for(&c.destroyed_by_version[2], 1, 5000));
    /* specific */
    write_text(p, "{\"version_policy\":{\"specific\":{\"versions\":[1]}}}");
    CHECK_EQ_INT(dab_repo_rescan(r, &err), 0);
    CHECK_EQ_INT(serving(r, "digits_mlp", 0), 1);
    CHECK_EQ_INT(serving(r, "digits_mlp", 2), DAB_EBUSY);
    /* latest 2 */
    write_text(p, "{\"version_policy\":{\"latest\":{\"num_versions\":2}}}");
    CHECK_EQ_INT(dab_repo_rescan(r, &err), 0);
    CHECK_EQ_INT(serving(r, "digits_mlp", 1), 1);
    CHECK_EQ_INT(serving(r, "digits_mlp", 0), 2);
    /* specific listing a version that does not exist: FAILED naming it, the other serves */
    write_text(p, "{\"version_policy\":{\"specific\":{\"versions\":[2,5]}}}");
    CHECK_EQ_INT(dab_repo_rescan(r, &err), 0);
    index_entry(r, "digits_mlp", "5", e, sizeof e);
    CHECK(strstr(e, "version_policy.specific") != NULL);
    CHECK(starts_with(e, "FAILED:"));
    CHECK_EQ_INT(serving(r, "digits_mlp", 2), 2);
    /* one of two selected versions failed, so one old version is kept serving */
    CHECK_EQ_INT(serving(r, "digits_mlp", 1), 1);
    CHECK(strstr(index_entry(r, "digits_mlp", "1", e, sizeof e), "kept serving") != NULL);
    /* nothing changed: no reload, no retry of the failure */
    int created = c.created, changes = c.changes;
    CHECK_EQ_INT(dab_repo_rescan(r, &err), 0);
    CHECK_EQ_INT(c.created, created);
    CHECK_EQ_INT(c.changes, changes);
    /* status snapshot */
    dab_repo_status_t st;
    CHECK_EQ_INT(dab_repo_status(r, &st), 0);
    CHECK_EQ_INT(st.n_models, 2);
    CHECK(strcmp(st.models[0].name, "digits_cnn") == 0);
    CHECK_EQ_INT(st.models[1].state, DAB_VS_READY);
    CHECK(st.models[0].versions[0].load_ns > 0);
    CHECK(st.models[0].versions[0].file_bytes > 0);
    dab_repo_status_free(&st);
    dab_repo_close(r);
    CHECK_EQ_INT(c.destroyed, c.created);
}

TEST(test_config_error_model)
{
    fresh_repo();
    add_version("digits_mlp", "1");
    add_version("digits_cnn", "1");
    char p[1024];
    snprintf(p, sizeof p, "%s/digits_cnn/config.json", g_tmp);
    write_text(p, "{\"instance_group\":[{\"count\":\"many\"}]}");
    mkdirf("%s/%s", g_tmp, "empty_model");
    counts_t c = {0};
    dab_repo_t *r = open_repo(DAB_CONTROL_NONE, &c, NULL, 0, 0);
    dab_err_t err = {0};
    CHECK_EQ_INT(dab_repo_start(r, &err), 0); /* broken models do not stop the start */
    char e[600];
    CHECK(starts_with(index_entry(r, "digits_cnn", NULL, e, sizeof e), "FAILED:"));
    CHECK(strstr(e, "instance_group[0].count") != NULL);
    CHECK(starts_with(index_entry(r, "empty_model", NULL, e, sizeof e), "FAILED:no version"));
    CHECK_EQ_INT(serving(r, "digits_mlp", 0), 1);
    dab_model_version_t *v = dab_repo_acquire(r, "digits_cnn", 0, &err);
    CHECK(v == NULL);
    CHECK_EQ_INT(err.code, DAB_EBUSY);
    CHECK(strstr(err.msg, "instance_group[0].count") != NULL);
    CHECK(!dab_repo_ready(r)); /* strict: every model must be ready */
    /* fix the config and remove the empty model: ready */
    write_text(p, "{\"instance_group\":[{\"count\":2}]}");
    rm_rf(strcat(strcpy(e, g_tmp), "/empty_model"));
    CHECK_EQ_INT(dab_repo_rescan(r, &err), 0);
    CHECK_EQ_INT(serving(r, "digits_cnn", 0), 1);
    CHECK(dab_repo_ready(r));
    v = dab_repo_acquire(r, "digits_cnn", 0, &err);
    CHECK(v && dab_model_version_config(v)->instance_count == 2);
    dab_model_version_release(v);
    /* a config that becomes invalid leaves the serving version in place */
    write_text(p, "{\"max_batch_size\":1000000}");
    CHECK_EQ_INT(dab_repo_rescan(r, &err), 0);
    CHECK_EQ_INT(serving(r, "digits_cnn", 0), 1);
    CHECK(strstr(index_entry(r, "digits_cnn", NULL, e, sizeof e), "max_batch_size") != NULL);
    /* a config the model cannot satisfy fails the version, naming the field */
    write_text(p, "{\"max_batch_size\":4,\"input\":[{\"name\":\"pixels\"}]}");
    CHECK_EQ_INT(dab_repo_rescan(r, &err), 0);
    CHECK(strstr(index_entry(r, "digits_cnn", "1", e, sizeof e), "input[0].name") != NULL);
    CHECK(strstr(e, "still serving") != NULL);
    CHECK_EQ_INT(serving(r, "digits_cnn", 0), 1);
    dab_repo_close(r);
    CHECK_EQ_INT(c.destroyed, c.created);
}

TEST(test_explicit)
{
    fresh_repo();
    add_version("digits_mlp", "1");
    add_version("digits_mlp", "2");
    add_version("digits_cnn", "1");
    counts_t c = {0};
    dab_err_t err = {0};
    /* a startup model that does not exist fails the start */
    const char *bad[] = {"nope"};
    dab_repo_t *r = open_repo(DAB_CONTROL_EXPLICIT, &c, bad, 1, 0);
    CHECK_EQ_INT(dab_repo_start(r, &err), DAB_ENOTFOUND);
    CHECK(strstr(err.msg, "nope") != NULL);
    dab_repo_close(r);

    const char *startup[] = {"digits_cnn"};
    r = open_repo(DAB_CONTROL_EXPLICIT, &c, startup, 1, 0);
    CHECK_EQ_INT(dab_repo_start(r, &err), 0);
    CHECK(dab_repo_ready(r));
    CHECK_EQ_INT(serving(r, "digits_cnn", 0), 1);
    CHECK_EQ_INT(serving(r, "digits_mlp", 0), DAB_EBUSY);
    char e[600];
    CHECK(strcmp(index_entry(r, "digits_mlp", NULL, e, sizeof e), "UNAVAILABLE:not loaded") == 0);
    /* load from disk */
    CHECK_EQ_INT(dab_repo_load(r, "digits_mlp", NULL, &err), 0);
    CHECK_EQ_INT(serving(r, "digits_mlp", 0), 2);
    CHECK(dab_repo_ready(r));
    /* load with a config in the request */
    CHECK_EQ_INT(dab_repo_load(r, "digits_mlp",
                               "{\"version_policy\":{\"specific\":{\"versions\":[1]}}}", &err),
                 0);
    CHECK_EQ_INT(serving(r, "digits_mlp", 0), 1);
    CHECK_EQ_INT(serving(r, "digits_mlp", 2), DAB_EBUSY);
    /* a bad config in the request changes nothing */
    int created = c.created;
    CHECK_EQ_INT(dab_repo_load(r, "digits_mlp", "{\"max_batch_size\":true}", &err), DAB_EINVAL);
    CHECK(strstr(err.msg, "max_batch_size") != NULL);
    CHECK_EQ_INT(serving(r, "digits_mlp", 0), 1);
    CHECK_EQ_INT(c.created, created);
    /* a load the model cannot satisfy reports why */
    CHECK_EQ_INT(dab_repo_load(r, "digits_mlp",
                               "{\"version_policy\":{\"specific\":{\"versions\":[1,9]}}}", &err),
                 DAB_ENOTFOUND);
    CHECK(strstr(err.msg, "version 9") != NULL);
    CHECK_EQ_INT(serving(r, "digits_mlp", 0), 1);
    /* unload */
    CHECK_EQ_INT(dab_repo_unload(r, "digits_mlp", &err), 0);
    CHECK_EQ_INT(serving(r, "digits_mlp", 0), DAB_EBUSY);
    CHECK(strcmp(index_entry(r, "digits_mlp", NULL, e, sizeof e), "UNAVAILABLE:unloaded") == 0);
    CHECK(dab_repo_ready(r)); /* unloaded models are not expected */
    CHECK_EQ_INT(dab_repo_unload(r, "digits_mlp", &err), 0); /* twice is fine */
    CHECK_EQ_INT(dab_repo_unload(r, "nope", &err), DAB_ENOTFOUND);
    CHECK_EQ_INT(dab_repo_load(r, "nope", NULL, &err), DAB_ENOTFOUND);
    CHECK_EQ_INT(dab_repo_load(r, "../digits_mlp", NULL, &err), DAB_ENOTFOUND);
    /* reload after unload */
    CHECK_EQ_INT(dab_repo_load(r, "digits_mlp", NULL, &err), 0);
    CHECK_EQ_INT(serving(r, "digits_mlp", 0), 2);
    /* rescan in explicit mode loads nothing new */
    add_version("digits_mlp", "1"); /* unchanged content, new file */
    created = c.created;
    CHECK_EQ_INT(dab_repo_rescan(r, &err), 0);
    CHECK_EQ_INT(c.created, created);
    dab_repo_close(r);
    CHECK_EQ_INT(c.destroyed, c.created);

    /* load/unload need explicit mode */
    r = open_repo(DAB_CONTROL_NONE, &c, NULL, 0, 0);
    CHECK_EQ_INT(dab_repo_start(r, &err), 0);
    CHECK_EQ_INT(dab_repo_load(r, "digits_mlp", NULL, &err), DAB_EUNSUPPORTED);
    CHECK_EQ_INT(dab_repo_unload(r, "digits_mlp", &err), DAB_EUNSUPPORTED);
    dab_repo_close(r);
}

/* ---- hot swap ---- */

typedef struct hammer {
    dab_repo_t *r;
    atomic_bool stop;
    atomic_long ok, failed;
    atomic_long seen[8];
} hammer_t;

static void *hammer_main(void *arg)
{
    hammer_t *h = arg;
    while (!atomic_load(&h->stop)) {
        dab_err_t err = {0};
        dab_model_version_t *v = dab_repo_acquire(h->r, "digits_mlp", 0, &err);
        if (!v) {
            atomic_fetch_add(&h->failed, 1);
            fprintf(stderr, "acquire failed: %s\n", err.msg);
            continue;
        }
        int64_t n = dab_model_version_number(v);
        int64_t *tag = dab_model_version_runner(v);
        /* the runner is there and belongs to this version */
        if (!tag || *tag != n || !dab_model_version_graph(v))
            atomic_fetch_add(&h->failed, 1);
        else
            atomic_fetch_add(&h->ok, 1);
        if (n >= 0 && n < 8)
            atomic_fetch_add(&h->seen[n], 1);
        sched_yield();
        dab_model_version_release(v);
    }
    return NULL;
}


TEST(test_hot_swap)
{
    fresh_repo();
    add_version("digits_mlp", "1");
    counts_t c = {0};
    c.fail_version = 4;
    dab_repo_t *r = open_repo(DAB_CONTROL_NONE, &c, NULL, 0, 0);
    dab_err_t err = {0};
    CHECK_EQ_INT(dab_repo_start(r, &err), 0);
    dab_model_version_t *held = dab_repo_acquire(r, "digits_mlp", 0, &err);
    CHECK(held && dab_model_version_number(held) == 1);

    hammer_t h = {.r = r};
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, hammer_main, &h);
    sleep_ms(50);
    /* a new version appears: loaded beside v1, swapped in */
    add_version("digits_mlp", "2");
    CHECK_EQ_INT(dab_repo_rescan(r, &err), 0);
    CHECK_EQ_INT(serving(r, "digits_mlp", 0), 2);
    CHECK_EQ_INT(c.created, 2);
    sleep_ms(50);
    /* v1 was unloaded but this test still holds it: not destroyed */
    CHECK_EQ_INT(c.destroyed_by_version[1], 0);
    CHECK(dab_model_version_graph(held) != NULL);
    CHECK_EQ_INT(*(int64_t *)dab_model_version_runner(held), 1);

    /* a broken new version leaves v2 serving */
    char p[1024], d[1024];
    snprintf(d, sizeof d, "%s/digits_mlp/3", g_tmp);
    mkdir(d, 0755);
    snprintf(p, sizeof p, "%s/model.onnx", d);
    write_text(p, "this is not an onnx file");
    CHECK_EQ_INT(dab_repo_rescan(r, &err), 0);
    char e[600];
    CHECK(starts_with(index_entry(r, "digits_mlp", "3", e, sizeof e), "FAILED:"));
    CHECK(strlen(e) > strlen("FAILED:"));
    CHECK(starts_with(index_entry(r, "digits_mlp", "2", e, sizeof e), "READY:"));
    CHECK_EQ_INT(serving(r, "digits_mlp", 0), 2);
    CHECK(dab_repo_ready(r));
    /* a runner that fails (warm-up failing, say) also leaves v2 serving */
    rm_rf(d);
    snprintf(d, sizeof d, "%s/digits_mlp/4", g_tmp);
    mkdir(d, 0755);
    snprintf(p, sizeof p, "%s/model.onnx", d);
    copy_file(EXAMPLES "/digits_mlp/2/model.onnx", p);
    int created = c.created;
    CHECK_EQ_INT(dab_repo_rescan(r, &err), 0);
    CHECK(strstr(index_entry(r, "digits_mlp", "4", e, sizeof e), "test runner refuses") != NULL);
    CHECK(strstr(index_entry(r, "digits_mlp", "2", e, sizeof e), "kept serving") != NULL);
    CHECK_EQ_INT(serving(r, "digits_mlp", 0), 2);
    CHECK_EQ_INT(c.created, created);
    rm_rf(d);
    CHECK_EQ_INT(dab_repo_rescan(r, &err), 0);
    CHECK(strcmp(index_entry(r, "digits_mlp", "4", e, sizeof e), "") == 0); /* forgotten */
    CHECK(strcmp(index_entry(r, "digits_mlp", "2", e, sizeof e), "READY:") == 0);
    CHECK(strcmp(index_entry(r, "digits_mlp", "1", e, sizeof e), "UNAVAILABLE:not selected by "
                                                                   "the version policy") == 0);

    /* a changed model file in place: reloaded beside and swapped */
    dab_model_version_t *v2 = dab_repo_acquire(r, "digits_mlp", 2, &err);
    snprintf(p, sizeof p, "%s/digits_mlp/2/model.onnx", g_tmp);
    copy_file(EXAMPLES "/digits_mlp/1/model.onnx", p);
    CHECK_EQ_INT(dab_repo_rescan(r, &err), 0);
    dab_model_version_t *v2b = dab_repo_acquire(r, "digits_mlp", 2, &err);
    CHECK(v2 && v2b && v2 != v2b);
    CHECK_EQ_INT(c.created, created + 1);
    /* a broken file in place: the previous one keeps serving */
    write_text(p, "garbage");
    CHECK_EQ_INT(dab_repo_rescan(r, &err), 0);
    dab_model_version_t *v2c = dab_repo_acquire(r, "digits_mlp", 2, &err);
    CHECK(v2c == v2b);
    CHECK(strstr(index_entry(r, "digits_mlp", "2", e, sizeof e), "still serving") != NULL);
    CHECK(starts_with(e, "READY:"));
    dab_model_version_release(v2c);
    dab_model_version_release(v2b);

    atomic_store(&h.stop, true);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ_INT(h.failed, 0);
    CHECK(h.ok > 100);
    CHECK(h.seen[1] > 0 && h.seen[2] > 0);
    CHECK_EQ_INT(h.seen[3] + h.seen[4], 0);

    /* the old ones go when their last reference goes, exactly once */
    CHECK_EQ_INT(c.destroyed_by_version[1], 0);
    dab_model_version_release(held);
    CHECK(wait_for(&c.destroyed_by_version[1], 1, 5000));
    dab_model_version_release(v2); /* the first v2, replaced by the in-place change */
    CHECK(wait_for(&c.destroyed_by_version[2], 1, 5000));
    sleep_ms(20);
    CHECK_EQ_INT(c.destroyed_by_version[1], 1);
    CHECK_EQ_INT(c.destroyed_by_version[2], 1);
    dab_repo_close(r);
    CHECK_EQ_INT(c.destroyed, c.created);
}

/* The model being served flips between v1 and v2 files many times while threads
 * acquire and release: no acquire fails, every version is destroyed once. */
TEST(test_swap_storm)
{
    fresh_repo();
    add_version("digits_mlp", "1");
    counts_t c = {0};
    dab_repo_t *r = open_repo(DAB_CONTROL_NONE, &c, NULL, 0, 0);
    dab_err_t err = {0};
    CHECK_EQ_INT(dab_repo_start(r, &err), 0);
    hammer_t h = {.r = r};
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, hammer_main, &h);
    char p[1024];
    snprintf(p, sizeof p, "%s/digits_mlp/1/model.onnx", g_tmp);
    for (int i = 0; i < 20; i++) {
        copy_file(i % 2 ? EXAMPLES "/digits_mlp/1/model.onnx" : EXAMPLES "/digits_mlp/2/model.onnx",
                  p);
        CHECK_EQ_INT(dab_repo_rescan(r, &err), 0);
    }
    atomic_store(&h.stop, true);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ_INT(h.failed, 0);
    CHECK_EQ_INT(c.created, 21);
    dab_repo_close(r);
    CHECK_EQ_INT(c.destroyed, 21);
}

TEST(test_poll)
{
    fresh_repo();
    add_version("digits_mlp", "1");
    counts_t c = {0};
    dab_repo_t *r = open_repo(DAB_CONTROL_POLL, &c, NULL, 0, 1);
    dab_err_t err = {0};
    CHECK_EQ_INT(dab_repo_start(r, &err), 0);
    CHECK_EQ_INT(serving(r, "digits_mlp", 0), 1);
    add_version("digits_mlp", "2");
    int64_t got = 0;
    for (int i = 0; i < 50 && got != 2; i++) {
        sleep_ms(100);
        got = serving(r, "digits_mlp", 0);
    }
    CHECK_EQ_INT(got, 2);
    CHECK(wait_for(&c.destroyed_by_version[1], 1, 5000));
    /* a new model appears, then the first one is removed */
    add_version("digits_cnn", "1");
    char p[1024];
    snprintf(p, sizeof p, "%s/digits_mlp", g_tmp);
    rm_rf(p);
    for (int i = 0; i < 50 && (got = serving(r, "digits_mlp", 0)) != DAB_ENOTFOUND; i++)
        sleep_ms(100);
    CHECK_EQ_INT(got, DAB_ENOTFOUND);
    CHECK_EQ_INT(serving(r, "digits_cnn", 0), 1);
    dab_repo_close(r);
    CHECK_EQ_INT(c.destroyed, c.created);
}

TEST(test_request_rescan_and_default_runner)
{
    fresh_repo();
    add_version("digits_cnn", "1");
    dab_repo_opts_t o = {.mode = DAB_CONTROL_NONE}; /* no runner: the repository warms up */
    dab_repo_t *r = NULL;
    dab_err_t err = {0};
    CHECK_EQ_INT(dab_repo_open(g_tmp, &o, &r, &err), 0);
    CHECK_EQ_INT(dab_repo_start(r, &err), 0);
    CHECK_EQ_INT(serving(r, "digits_cnn", 0), 1);
    /* a warm-up the model rejects fails the version */
    add_version("digits_mlp", "1");
    char p[1024];
    snprintf(p, sizeof p, "%s/digits_mlp/config.json", g_tmp);
    write_text(p, "{\"warmup\":{\"inputs\":{\"pixels\":{\"data\":[1,2,3,4],\"dims\":[1,4]}}}}");
    dab_repo_request_rescan(r);
    char e[600] = "";
    for (int i = 0; i < 100 && !strstr(e, "warmup"); i++) {
        sleep_ms(20);
        index_entry(r, "digits_mlp", "1", e, sizeof e);
    }
    CHECK(starts_with(e, "FAILED:"));
    CHECK(strstr(e, "warmup.inputs.pixels") != NULL);
    dab_repo_close(r);

    /* bad options */
    CHECK_EQ_INT(dab_repo_open("/nonexistent/dir", &o, &r, &err), DAB_ENOTFOUND);
    CHECK(r == NULL);
}

TEST(test_index_utf8_and_order)
{
    /* a repository path that is not UTF-8 ends up in a reason: the index still parses */
    fresh_repo();
    char base[256];
    snprintf(base, sizeof base, "%s", g_tmp);
    snprintf(g_tmp, sizeof g_tmp, "%s/r\xffx", base);
    mkdir(g_tmp, 0755);
    add_version("digits_mlp", "1");
    char p[1024];
    snprintf(p, sizeof p, "%s/digits_mlp/config.json", g_tmp);
    write_text(p, "{\"version_policy\":{\"specific\":{\"versions\":[1,5]}}}");
    counts_t c = {0};
    dab_repo_t *r = open_repo(DAB_CONTROL_EXPLICIT, &c, NULL, 0, 0);
    dab_err_t err = {0};
    CHECK_EQ_INT(dab_repo_load(r, "digits_mlp", NULL, &err), DAB_EINVAL); /* not started */
    CHECK_EQ_INT(dab_repo_start(r, &err), 0);
    CHECK_EQ_INT(dab_repo_load(r, "digits_mlp", NULL, &err), DAB_ENOTFOUND);
    char e[600];
    CHECK(strstr(index_entry(r, "digits_mlp", "5", e, sizeof e), "r\xef\xbf\xbdx") != NULL);
    CHECK(strcmp(index_entry(r, "digits_mlp", "1", e, sizeof e), "READY:") == 0);
    dab_buf_t b = {0};
    CHECK_EQ_INT(dab_repo_index(r, &b), 0);
    const char *one = strstr(b.data, "\"version\":\"1\"");
    const char *five = strstr(b.data, "\"version\":\"5\"");
    CHECK(one && five && one < five);
    dab_buf_free(&b);
    dab_repo_close(r);
    CHECK_EQ_INT(c.destroyed, c.created);
    snprintf(g_tmp, sizeof g_tmp, "%s", base);
}

TEST(test_no_leaks)
{
    /* a whole cycle returns every byte (after one cycle for lazy globals) */
    fresh_repo();
    add_version("digits_mlp", "1");
    add_version("digits_mlp", "2");
    counts_t c = {0};
    dab_alloc_stats_t a, b;
    for (int round = 0; round < 2; round++) {
        dab_alloc_stats(&a);
        dab_repo_t *r = open_repo(DAB_CONTROL_NONE, &c, NULL, 0, 0);
        dab_err_t err = {0};
        CHECK_EQ_INT(dab_repo_start(r, &err), 0);
        dab_buf_t idx = {0};
        CHECK_EQ_INT(dab_repo_index(r, &idx), 0);
        dab_buf_free(&idx);
        dab_repo_close(r);
        dab_alloc_stats(&b);
    }
    CHECK_EQ_INT(b.live_bytes, a.live_bytes);
    rm_rf(g_tmp);
}

TEST_LIST(T(test_config_defaults), T(test_config_errors), T(test_config_complete),
          T(test_config_alloc_failures), T(test_policies), T(test_config_error_model),
          T(test_explicit), T(test_hot_swap), T(test_swap_storm), T(test_poll),
          T(test_request_rescan_and_default_runner), T(test_index_utf8_and_order),
          T(test_no_leaks))
