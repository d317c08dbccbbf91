/*
 * config.c - a model's config.json: parsed with jansson, every field dabba knows
 * checked with a sentence naming it, and completed from the model graph (whether it
 * batches, its inputs and outputs, warm-up samples). The schema is documented in
 * docs/repository.md; the field names are Triton's where Triton has one.
 *
 * Two stages, because the loader reads the config before it has the graph:
 * dab_model_config_parse checks the text alone, dab_model_config_complete checks it
 * against one version's graph. Unknown top-level fields are kept (other subsystems add
 * sections); the sections owned here (version_policy, instance_group, response_cache,
 * warmup) refuse unknown keys so that a typo does not pass silently.
 */
#include "repo.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "../tensor/tensor.h"

/* ---- describing and reading JSON values ---- */

/* A short description of a JSON value for error messages: 3, "abc", an object. */
static const char *describe(const json_t *j, char *buf, size_t n)
{
    if (!j)
        return "nothing";
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: {
        const char *s = json_string_value(j);
        size_t len = json_string_length(j);
        if (len > 40)
            snprintf(buf, n, "\"%.40s...\"", s);
        else
            snprintf(buf, n, "\"%s\"", s);
        return buf;
    }
    case JSON_INTEGER: snprintf(buf, n, "%lld", (long long)json_integer_value(j)); return buf;
    case JSON_REAL: snprintf(buf, n, "%g", json_real_value(j)); return buf;
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    case JSON_NULL: return "null";
    }
    return "a value";
}

/* Reads the integer j in [lo, hi] (field names it for messages). Integral reals (8.0)
 * are accepted. */
static int check_int(const json_t *j, const char *field, int64_t lo, int64_t hi, int64_t *out,
                     dab_err_t *err)
{
    char d[64];
    int64_t v;
    if (json_is_integer(j)) {
        v = (int64_t)json_integer_value(j);
    } else if (json_is_real(j) && floor(json_real_value(j)) == json_real_value(j) &&
               fabs(json_real_value(j)) < 9.0e15) {
        v = (int64_t)json_real_value(j);
    } else {
        return dab_err_set(err, DAB_EINVAL, "%s must be an integer from %lld to %lld, not %s",
                           field, (long long)lo, (long long)hi, describe(j, d, sizeof d));
    }
    if (v < lo || v > hi)
        return dab_err_set(err, DAB_EINVAL, "%s must be from %lld to %lld, not %lld", field,
                           (long long)lo, (long long)hi, (long long)v);
    *out = v;
    return 0;
}

/* check_int on the value at key of obj; absent: *out untouched and 0. */
static int get_int(const json_t *obj, const char *key, const char *field, int64_t lo, int64_t hi,
                   int64_t *out, dab_err_t *err)
{
    const json_t *j = json_object_get(obj, key);
    return j ? check_int(j, field, lo, hi, out, err) : 0;
}

static int get_bool(const json_t *obj, const char *key, const char *field, bool *out,
                    dab_err_t *err)
{
    const json_t *j = json_object_get(obj, key);
    if (!j)
        return 0;
    char d[64];
    if (!json_is_boolean(j))
        return dab_err_set(err, DAB_EINVAL, "%s must be true or false, not %s", field,
                           describe(j, d, sizeof d));
    *out = json_is_true(j);
    return 0;
}

/* The value at key must be a string when present; *out points into the JSON. */
static int get_str(const json_t *obj, const char *key, const char *field, const char **out,
                   dab_err_t *err)
{
    const json_t *j = json_object_get(obj, key);
    if (!j)
        return 0;
    char d[64];
    if (!json_is_string(j))
        return dab_err_set(err, DAB_EINVAL, "%s must be a string, not %s", field,
                           describe(j, d, sizeof d));
    *out = json_string_value(j);
    return 0;
}

/* The value at key must be an object when present (*out NULL when absent). */
static int get_obj(const json_t *obj, const char *key, const char *field, json_t **out,
                   dab_err_t *err)
{
    json_t *j = json_object_get(obj, key);
    *out = NULL;
    if (!j)
        return 0;
    char d[64];
    if (!json_is_object(j))
        return dab_err_set(err, DAB_EINVAL, "%s must be an object, not %s", field,
                           describe(j, d, sizeof d));
    *out = j;
    return 0;
}

static int get_arr(const json_t *obj, const char *key, const char *field, json_t **out,
                   dab_err_t *err)
{
    json_t *j = json_object_get(obj, key);
    *out = NULL;
    if (!j)
        return 0;
    char d[64];
    if (!json_is_array(j))
        return dab_err_set(err, DAB_EINVAL, "%s must be an array, not %s", field,
                           describe(j, d, sizeof d));
    *out = j;
    return 0;
}

/* Refuses keys of obj outside the NULL-terminated list `known`. */
static int only_keys(const json_t *obj, const char *field, const char *const *known,
                     dab_err_t *err)
{
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)obj, key, val) {
        (void)val;
        bool ok = false;
        for (int i = 0; known[i]; i++)
            ok = ok || strcmp(key, known[i]) == 0;
        if (!ok) {
            char list[256] = "";
            for (int i = 0; known[i]; i++) {
                strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
                strncat(list, known[i], sizeof list - strlen(list) - 1);
            }
            return dab_err_set(err, DAB_EINVAL, "%s has an unknown field '%.64s' (known: %s)",
                               field, key, list);
        }
    }
    return 0;
}

/* ---- stage 1: the text alone ---- */

static int parse_version_policy(dab_model_config_t *c, const json_t *root, dab_err_t *err)
{
    json_t *vp;
    int rc = get_obj(root, "version_policy", "version_policy", &vp, err);
    if (rc || !vp)
        return rc;
    static const char *const known[] = {"latest", "all", "specific", NULL};
    if ((rc = only_keys(vp, "version_policy", known, err)))
        return rc;
    if (json_object_size(vp) != 1)
        return dab_err_set(err, DAB_EINVAL,
                           "version_policy must hold exactly one of latest, all or specific");
    json_t *sub;
    if ((rc = get_obj(vp, "latest", "version_policy.latest", &sub, err)))
        return rc;
    if (sub) {
        static const char *const k[] = {"num_versions", NULL};
        int64_t n = 1;
        if ((rc = only_keys(sub, "version_policy.latest", k, err)) ||
            (rc = get_int(sub, "num_versions", "version_policy.latest.num_versions", 1, 1000,
                          &n, err)))
            return rc;
        c->version_policy = DAB_POLICY_LATEST;
        c->latest_n = (int)n;
        return 0;
    }
    if ((rc = get_obj(vp, "all", "version_policy.all", &sub, err)))
        return rc;
    if (sub) {
        if (json_object_size(sub) != 0)
            return dab_err_set(err, DAB_EINVAL, "version_policy.all takes no fields ({})");
        c->version_policy = DAB_POLICY_ALL;
        return 0;
    }
    if ((rc = get_obj(vp, "specific", "version_policy.specific", &sub, err)))
        return rc;
    static const char *const k[] = {"versions", NULL};
    json_t *arr;
    if ((rc = only_keys(sub, "version_policy.specific", k, err)) ||
        (rc = get_arr(sub, "versions", "version_policy.specific.versions", &arr, err)))
        return rc;
    size_t n = arr ? json_array_size(arr) : 0;
    if (n == 0)
        return dab_err_set(err, DAB_EINVAL,
                           "version_policy.specific.versions must list at least one version");
    if (n > 1000)
        return dab_err_set(err, DAB_ELIMIT,
                           "version_policy.specific.versions lists %zu versions (at most 1000)",
                           n);
    c->specific = dab_calloc(n, sizeof *c->specific);
    if (!c->specific)
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    int m = 0;
    for (size_t i = 0; i < n; i++) {
        char field[64];
        snprintf(field, sizeof field, "version_policy.specific.versions[%zu]", i);
        int64_t v = 0;
        if ((rc = check_int(json_array_get(arr, i), field, 1, INT64_MAX / 2, &v, err)))
            return rc;
        /* insertion into the sorted, unique list */
        int at = m;
        while (at > 0 && c->specific[at - 1] > v)
            at--;
        if (at > 0 && c->specific[at - 1] == v)
            continue;
        memmove(c->specific + at + 1, c->specific + at, (size_t)(m - at) * sizeof *c->specific);
        c->specific[at] = v;
        m++;
    }
    c->n_specific = m;
    c->version_policy = DAB_POLICY_SPECIFIC;
    return 0;
}

static int parse_instance_group(dab_model_config_t *c, const json_t *root, dab_err_t *err)
{
    json_t *arr;
    int rc = get_arr(root, "instance_group", "instance_group", &arr, err);
    if (rc || !arr)
        return rc;
    int64_t total = 0;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        char field[64], d[64];
        snprintf(field, sizeof field, "instance_group[%zu]", i);
        json_t *g = json_array_get(arr, i);
        if (!json_is_object(g))
            return dab_err_set(err, DAB_EINVAL, "%s must be an object, not %s", field,
                               describe(g, d, sizeof d));
        static const char *const known[] = {"count", "kind", "name", NULL};
        if ((rc = only_keys(g, field, known, err)))
            return rc;
        char f2[96];
        snprintf(f2, sizeof f2, "%s.count", field);
        int64_t count = 1;
        if ((rc = get_int(g, "count", f2, 1, DAB_REPO_MAX_INSTANCES, &count, err)))
            return rc;
        const char *kind = NULL, *name = NULL;
        snprintf(f2, sizeof f2, "%s.kind", field);
        if ((rc = get_str(g, "kind", f2, &kind, err)))
            return rc;
        if (kind && strcmp(kind, "KIND_CPU") != 0 && strcmp(kind, "KIND_AUTO") != 0)
            return dab_err_set(err, DAB_EINVAL,
                               "%s is \"%.40s\": dabba runs models on the CPU (use KIND_CPU)",
                               f2, kind);
        snprintf(f2, sizeof f2, "%s.name", field);
        if ((rc = get_str(g, "name", f2, &name, err)))
            return rc;
        total += count;
    }
    if (total > DAB_REPO_MAX_INSTANCES)
        return dab_err_set(err, DAB_EINVAL,
                           "instance_group asks for %lld instances in all (at most %d)",
                           (long long)total, DAB_REPO_MAX_INSTANCES);
    if (total > 0)
        c->instance_count = (int)total;
    return 0;
}

static int parse_queue_policy(const json_t *p, const char *field, dab_err_t *err)
{
    char d[64], f[160];
    if (!json_is_object(p))
        return dab_err_set(err, DAB_EINVAL, "%s must be an object, not %s", field,
                           describe(p, d, sizeof d));
    int64_t v;
    bool b;
    const char *action = NULL;
    int rc;
    snprintf(f, sizeof f, "%s.max_queue_size", field);
    if ((rc = get_int(p, "max_queue_size", f, 0, INT32_MAX, &v, err)))
        return rc;
    snprintf(f, sizeof f, "%s.default_timeout_microseconds", field);
    if ((rc = get_int(p, "default_timeout_microseconds", f, 0, INT64_MAX / 1000, &v, err)))
        return rc;
    snprintf(f, sizeof f, "%s.allow_timeout_override", field);
    if ((rc = get_bool(p, "allow_timeout_override", f, &b, err)))
        return rc;
    snprintf(f, sizeof f, "%s.timeout_action", field);
    if ((rc = get_str(p, "timeout_action", f, &action, err)))
        return rc;
    if (action && strcmp(action, "REJECT") != 0 && strcmp(action, "DELAY") != 0)
        return dab_err_set(err, DAB_EINVAL, "%s must be \"REJECT\" or \"DELAY\", not \"%.40s\"",
                           f, action);
    return 0;
}

/* Checks the dynamic_batching fields' types and ranges; the scheduler reads the values
 * from the json. Unknown keys are allowed here (the scheduler owns this section). */
static int parse_dynamic_batching(dab_model_config_t *c, const json_t *root, dab_err_t *err)
{
    json_t *db;
    int rc = get_obj(root, "dynamic_batching", "dynamic_batching", &db, err);
    if (rc || !db)
        return rc;
    c->dynamic_batching = true;
    json_t *pref;
    if ((rc = get_arr(db, "preferred_batch_size", "dynamic_batching.preferred_batch_size", &pref,
                      err)))
        return rc;
    for (size_t i = 0; pref && i < json_array_size(pref); i++) {
        char f[80];
        snprintf(f, sizeof f, "dynamic_batching.preferred_batch_size[%zu]", i);
        int64_t v;
        if ((rc = check_int(json_array_get(pref, i), f, 1, DAB_REPO_MAX_BATCH_LIMIT, &v, err)))
            return rc;
        if (c->max_batch_size >= 0 && v > c->max_batch_size)
            return dab_err_set(err, DAB_EINVAL, "%s is %lld, more than max_batch_size (%d)", f,
                               (long long)v, c->max_batch_size);
    }
    int64_t v, levels = 0;
    bool b;
    if ((rc = get_int(db, "max_queue_delay_microseconds",
                      "dynamic_batching.max_queue_delay_microseconds", 0, 3600LL * 1000000, &v,
                      err)) ||
        (rc = get_bool(db, "preserve_ordering", "dynamic_batching.preserve_ordering", &b, err)) ||
        (rc = get_int(db, "priority_levels", "dynamic_batching.priority_levels", 0, 1000,
                      &levels, err)))
        return rc;
    if (json_object_get(db, "default_priority_level")) {
        int64_t lo = levels > 0 ? 1 : 0;
        if ((rc = get_int(db, "default_priority_level", "dynamic_batching.default_priority_level",
                          lo, levels, &v, err)))
            return rc;
    }
    json_t *qp = json_object_get(db, "default_queue_policy");
    if (qp && (rc = parse_queue_policy(qp, "dynamic_batching.default_queue_policy", err)))
        return rc;
    json_t *pqp;
    if ((rc = get_obj(db, "priority_queue_policy", "dynamic_batching.priority_queue_policy", &pqp,
                      err)))
        return rc;
    const char *key;
    json_t *val;
    json_object_foreach(pqp, key, val) {
        char *end = NULL;
        long long lvl = strtoll(key, &end, 10);
        if (!*key || *end || lvl < 1 || lvl > levels)
            return dab_err_set(err, DAB_EINVAL,
                               "dynamic_batching.priority_queue_policy has key \"%.40s\": keys "
                               "must be priority levels from 1 to priority_levels (%lld)",
                               key, (long long)levels);
        char f[128];
        snprintf(f, sizeof f, "dynamic_batching.priority_queue_policy.%.40s", key);
        if ((rc = parse_queue_policy(val, f, err)))
            return rc;
    }
    return 0;
}

static int parse_response_cache(dab_model_config_t *c, const json_t *root, dab_err_t *err)
{
    json_t *rc_obj;
    int rc = get_obj(root, "response_cache", "response_cache", &rc_obj, err);
    if (rc || !rc_obj)
        return rc;
    static const char *const known[] = {"enable", "ttl_seconds", NULL};
    if ((rc = only_keys(rc_obj, "response_cache", known, err)) ||
        (rc = get_bool(rc_obj, "enable", "response_cache.enable", &c->response_cache, err)) ||
        (rc = get_int(rc_obj, "ttl_seconds", "response_cache.ttl_seconds", 0, 10LL * 365 * 86400,
                      &c->response_cache_ttl_s, err)))
        return rc;
    return 0;
}

/* A warm-up file name must stay inside the model's folder. */
static bool safe_relative_path(const char *p)
{
    if (!*p || p[0] == '/')
        return false;
    const char *s = p;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 0 || (n == 2 && s[0] == '.' && s[1] == '.'))
            return false;
        s += n + (e ? 1 : 0);
    }
    return true;
}

static int parse_warmup(dab_model_config_t *c, const json_t *root, dab_err_t *err)
{
    json_t *w;
    int rc = get_obj(root, "warmup", "warmup", &w, err);
    if (rc || !w)
        return rc;
    static const char *const known[] = {"count", "inputs", NULL};
    int64_t count = 1;
    json_t *inputs;
    if ((rc = only_keys(w, "warmup", known, err)) ||
        (rc = get_int(w, "count", "warmup.count", 0, 1000, &count, err)) ||
        (rc = get_obj(w, "inputs", "warmup.inputs", &inputs, err)))
        return rc;
    c->warmup_count = (int)count;
    const char *name;
    json_t *spec;
    json_object_foreach(inputs, name, spec) {
        char f[128], d[64];
        snprintf(f, sizeof f, "warmup.inputs.%.64s", name);
        if (!json_is_object(spec))
            return dab_err_set(err, DAB_EINVAL, "%s must be an object, not %s", f,
                               describe(spec, d, sizeof d));
        static const char *const k[] = {"dims", "fill", "data", "file", NULL};
        if ((rc = only_keys(spec, f, k, err)))
            return rc;
        int sources = !!json_object_get(spec, "fill") + !!json_object_get(spec, "data") +
                      !!json_object_get(spec, "file");
        if (sources > 1)
            return dab_err_set(err, DAB_EINVAL, "%s may give only one of fill, data and file", f);
        char f2[160];
        json_t *dims, *data;
        snprintf(f2, sizeof f2, "%s.dims", f);
        if ((rc = get_arr(spec, "dims", f2, &dims, err)))
            return rc;
        if (dims && json_array_size(dims) > DAB_MAX_RANK)
            return dab_err_set(err, DAB_EINVAL, "%s has %zu dims (at most %d)", f2,
                               json_array_size(dims), DAB_MAX_RANK);
        for (size_t i = 0; dims && i < json_array_size(dims); i++) {
            json_t *x = json_array_get(dims, i);
            if (!json_is_integer(x) || json_integer_value(x) < 0)
                return dab_err_set(err, DAB_EINVAL, "%s[%zu] must be an integer >= 0, not %s",
                                   f2, i, describe(x, d, sizeof d));
        }
        json_t *fill = json_object_get(spec, "fill");
        if (fill && !json_is_number(fill))
            return dab_err_set(err, DAB_EINVAL, "%s.fill must be a number, not %s", f,
                               describe(fill, d, sizeof d));
        snprintf(f2, sizeof f2, "%s.data", f);
        if ((rc = get_arr(spec, "data", f2, &data, err)))
            return rc;
        for (size_t i = 0; data && i < json_array_size(data); i++) {
            if (!json_is_number(json_array_get(data, i)))
                return dab_err_set(err, DAB_EINVAL, "%s[%zu] must be a number, not %s", f2, i,
                                   describe(json_array_get(data, i), d, sizeof d));
        }
        const char *file = NULL;
        snprintf(f2, sizeof f2, "%s.file", f);
        if ((rc = get_str(spec, "file", f2, &file, err)))
            return rc;
        if (file && !safe_relative_path(file))
            return dab_err_set(err, DAB_EINVAL,
                               "%s \"%.64s\" must be a path inside the model's folder (relative, "
                               "without ..)",
                               f2, file);
    }
    return 0;
}

/* Triton's "input"/"output" lists: types only here; checked against the model later. */
static int parse_io_list(const json_t *root, const char *key, dab_err_t *err)
{
    json_t *arr;
    int rc = get_arr(root, key, key, &arr, err);
    if (rc || !arr)
        return rc;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        char f[64], f2[96], d[64];
        snprintf(f, sizeof f, "%s[%zu]", key, i);
        json_t *e = json_array_get(arr, i);
        if (!json_is_object(e))
            return dab_err_set(err, DAB_EINVAL, "%s must be an object, not %s", f,
                               describe(e, d, sizeof d));
        const char *s = NULL;
        snprintf(f2, sizeof f2, "%s.name", f);
        if ((rc = get_str(e, "name", f2, &s, err)))
            return rc;
        if (!s)
            return dab_err_set(err, DAB_EINVAL, "%s has no name", f);
        snprintf(f2, sizeof f2, "%s.data_type", f);
        if ((rc = get_str(e, "data_type", f2, &s, err)))
            return rc;
        json_t *dims;
        snprintf(f2, sizeof f2, "%s.dims", f);
        if ((rc = get_arr(e, "dims", f2, &dims, err)))
            return rc;
        for (size_t k = 0; dims && k < json_array_size(dims); k++) {
            json_t *x = json_array_get(dims, k);
            if (!json_is_integer(x) || json_integer_value(x) < -1)
                return dab_err_set(err, DAB_EINVAL, "%s[%zu] must be an integer >= -1, not %s",
                                   f2, k, describe(x, d, sizeof d));
        }
    }
    return 0;
}

int dab_model_config_parse(const char *model_name, const char *text, size_t len,
                           dab_model_config_t **out, dab_err_t *err)
{
    *out = NULL;
    if (text && len > DAB_REPO_MAX_CONFIG_BYTES)
        return dab_err_set(err, DAB_ELIMIT, "the config is %zu bytes (at most %d)", len,
                           DAB_REPO_MAX_CONFIG_BYTES);
    dab_model_config_t *c = dab_calloc(1, sizeof *c);
    if (!c)
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    c->max_batch_size = -1; /* not given: derived from the model */
    c->version_policy = DAB_POLICY_LATEST;
    c->latest_n = 1;
    c->instance_count = 1;
    c->warmup_count = 1;
    int rc;
    c->name = dab_strdup(model_name);
    if (!c->name) {
        rc = dab_err_set(err, DAB_ENOMEM, "out of memory");
        goto fail;
    }
    if (text) {
        json_error_t je;
        c->json = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
        if (!c->json) {
            rc = dab_err_set(err, DAB_EFORMAT, "not valid JSON at line %d, column %d: %s",
                             je.line, je.column, je.text);
            goto fail;
        }
        if (!json_is_object(c->json)) {
            char d[64];
            rc = dab_err_set(err, DAB_EINVAL, "the config must be a JSON object, not %s",
                             describe(c->json, d, sizeof d));
            goto fail;
        }
    } else {
        c->json = json_object();
        if (!c->json) {
            rc = dab_err_set(err, DAB_ENOMEM, "out of memory");
            goto fail;
        }
    }
    const json_t *root = c->json;
    const char *s = NULL;
    if ((rc = get_str(root, "name", "name", &s, err)))
        goto fail;
    if (s && strcmp(s, model_name) != 0) {
        rc = dab_err_set(err, DAB_EINVAL, "name \"%.64s\" does not match the model folder '%s'",
                         s, model_name);
        goto fail;
    }
    s = NULL;
    if ((rc = get_str(root, "platform", "platform", &s, err)))
        goto fail;
    if (s && strcmp(s, "onnx") != 0 && strcmp(s, "onnxruntime_onnx") != 0) {
        rc = dab_err_set(err, DAB_EINVAL,
                         "platform \"%.40s\" is not supported: dabba serves ONNX models (\"onnx\")",
                         s);
        goto fail;
    }
    s = NULL;
    if ((rc = get_str(root, "backend", "backend", &s, err)))
        goto fail;
    if (s && strcmp(s, "onnx") != 0 && strcmp(s, "onnxruntime") != 0 && strcmp(s, "dabba") != 0) {
        rc = dab_err_set(err, DAB_EINVAL,
                         "backend \"%.40s\" is not supported: dabba serves ONNX models (\"onnx\")",
                         s);
        goto fail;
    }
    s = "model.onnx";
    if ((rc = get_str(root, "default_model_filename", "default_model_filename", &s, err)))
        goto fail;
    if (!*s || strchr(s, '/') || strcmp(s, ".") == 0 || strcmp(s, "..") == 0 || strlen(s) > 255) {
        rc = dab_err_set(err, DAB_EINVAL,
                         "default_model_filename \"%.64s\" must be a file name (no '/')", s);
        goto fail;
    }
    c->model_filename = dab_strdup(s);
    if (!c->model_filename) {
        rc = dab_err_set(err, DAB_ENOMEM, "out of memory");
        goto fail;
    }
    int64_t mbs = -1;
    if ((rc = get_int(root, "max_batch_size", "max_batch_size", 0, DAB_REPO_MAX_BATCH_LIMIT, &mbs,
                      err)))
        goto fail;
    c->max_batch_size = (int)mbs;
    if ((rc = parse_version_policy(c, root, err)) || (rc = parse_instance_group(c, root, err)) ||
        (rc = parse_dynamic_batching(c, root, err)) || (rc = parse_response_cache(c, root, err)) ||
        (rc = parse_warmup(c, root, err)) || (rc = parse_io_list(root, "input", err)) ||
        (rc = parse_io_list(root, "output", err)))
        goto fail;
    if (c->dynamic_batching && c->max_batch_size == 0) {
        rc = dab_err_set(err, DAB_EINVAL,
                         "dynamic_batching needs max_batch_size > 0 (it is 0: the model does not "
                         "batch)");
        goto fail;
    }
    *out = c;
    return 0;
fail:
    dab_model_config_free(c);
    return rc;
}

/* ---- stage 2: against the graph ---- */

static const char *triton_type(dab_dtype_t dt)
{
    switch (dt) {
    case DAB_DT_FLOAT: return "TYPE_FP32";
    case DAB_DT_DOUBLE: return "TYPE_FP64";
    case DAB_DT_FLOAT16: return "TYPE_FP16";
    case DAB_DT_BFLOAT16: return "TYPE_BF16";
    case DAB_DT_INT8: return "TYPE_INT8";
    case DAB_DT_INT16: return "TYPE_INT16";
    case DAB_DT_INT32: return "TYPE_INT32";
    case DAB_DT_INT64: return "TYPE_INT64";
    case DAB_DT_UINT8: return "TYPE_UINT8";
    case DAB_DT_UINT16: return "TYPE_UINT16";
    case DAB_DT_UINT32: return "TYPE_UINT32";
    case DAB_DT_UINT64: return "TYPE_UINT64";
    case DAB_DT_BOOL: return "TYPE_BOOL";
    case DAB_DT_STRING: return "TYPE_STRING";
    default: return "TYPE_INVALID";
    }
}

/* The graph input named `name` (not one with a default initializer) or -1. */
static int find_input(const dab_graph_t *g, const char *name)
{
    for (int i = 0; i < g->n_inputs; i++) {
        const dab_value_t *v = &g->values[g->inputs[i]];
        if (strcmp(v->name, name) == 0)
            return i;
    }
    return -1;
}

static int find_output(const dab_graph_t *g, const char *name)
{
    for (int i = 0; i < g->n_outputs; i++)
        if (strcmp(g->values[g->outputs[i]].name, name) == 0)
            return i;
    return -1;
}

/* Names the first input or output that keeps the model from batching on its first
 * dimension, or returns NULL when every one has a symbolic first dimension. */
static const char *batch_blocker(const dab_graph_t *g, char *why, size_t n)
{
    for (int i = 0; i < g->n_inputs; i++) {
        const dab_value_t *v = &g->values[g->inputs[i]];
        if (v->const_data)
            continue;
        if (v->rank < 0)
            snprintf(why, n, "input '%s' has an unknown rank", v->name);
        else if (v->rank == 0)
            snprintf(why, n, "input '%s' is a scalar", v->name);
        else if (v->dims[0] >= 0)
            snprintf(why, n, "input '%s' has a fixed first dimension (%lld)", v->name,
                     (long long)v->dims[0]);
        else
            continue;
        return why;
    }
    for (int i = 0; i < g->n_outputs; i++) {
        const dab_value_t *v = &g->values[g->outputs[i]];
        if (v->rank == 0)
            snprintf(why, n, "output '%s' is a scalar", v->name);
        else if (v->rank > 0 && v->dims[0] >= 0)
            snprintf(why, n, "output '%s' has a fixed first dimension (%lld)", v->name,
                     (long long)v->dims[0]);
        else
            continue;
        return why;
    }
    return NULL;
}

/* Checks a user's "input"/"output" entry against the value it names. */
static int check_io_entry(const json_t *e, const char *field, const dab_value_t *v, int mbs,
                          dab_err_t *err)
{
    const char *dt = json_string_value(json_object_get(e, "data_type"));
    if (dt && v->dtype != DAB_DT_UNDEFINED && strcmp(dt, triton_type(v->dtype)) != 0)
        return dab_err_set(err, DAB_EINVAL, "%s.data_type is \"%.32s\" but the model's '%s' is %s",
                           field, dt, v->name, triton_type(v->dtype));
    const json_t *dims = json_object_get(e, "dims");
    if (!dims || v->rank < 0)
        return 0;
    int skip = mbs > 0 ? 1 : 0;
    int rank = v->rank - skip;
    if ((int)json_array_size(dims) != rank)
        return dab_err_set(err, DAB_EINVAL,
                           "%s.dims has %zu dims but the model's '%s' has %d%s", field,
                           json_array_size(dims), v->name, rank,
                           skip ? " (after the batch dimension)" : "");
    for (int k = 0; k < rank; k++) {
        int64_t want = json_integer_value(json_array_get(dims, (size_t)k));
        int64_t have = v->dims[k + skip];
        if (want >= 0 && have >= 0 && want != have)
            return dab_err_set(err, DAB_EINVAL, "%s.dims[%d] is %lld but the model's '%s' has %lld",
                               field, k, (long long)want, v->name, (long long)have);
    }
    return 0;
}

static int check_io_lists(const dab_model_config_t *c, const dab_graph_t *g, dab_err_t *err)
{
    static const char *const keys[2] = {"input", "output"};
    for (int which = 0; which < 2; which++) {
        const json_t *arr = json_object_get(c->json, keys[which]);
        for (size_t i = 0; arr && i < json_array_size(arr); i++) {
            const json_t *e = json_array_get(arr, i);
            const char *name = json_string_value(json_object_get(e, "name"));
            int at = which == 0 ? find_input(g, name) : find_output(g, name);
            char field[64];
            snprintf(field, sizeof field, "%s[%zu]", keys[which], i);
            if (at < 0)
                return dab_err_set(err, DAB_EINVAL, "%s.name \"%.64s\" is not an %s of the model",
                                   field, name, keys[which]);
            const dab_value_t *v =
                &g->values[which == 0 ? g->inputs[at] : g->outputs[at]];
            int rc = check_io_entry(e, field, v, c->max_batch_size, err);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* Builds Triton's form of a value: {"name","data_type","dims"} (dims after the batch
 * dimension when the model batches; -1 for symbolic; absent when the rank is unknown). */
static json_t *io_json(const dab_value_t *v, int mbs)
{
    json_t *e = json_object();
    if (!e)
        return NULL;
    int bad = json_object_set_new(e, "name", json_string(v->name));
    bad |= json_object_set_new(e, "data_type", json_string(triton_type(v->dtype)));
    if (v->rank >= 0) {
        json_t *dims = json_array();
        for (int k = mbs > 0 ? 1 : 0; dims && k < v->rank; k++)
            bad |= json_array_append_new(dims, json_integer(v->dims[k] >= 0 ? v->dims[k] : -1));
        bad |= json_object_set_new(e, "dims", dims);
    }
    if (bad) {
        json_decref(e);
        return NULL;
    }
    return e;
}

/* Stores x into element i of t, refusing values the dtype cannot hold. */
static int set_elem(dab_tensor_t *t, int64_t i, double x, const char *field, dab_err_t *err)
{
    void *d = t->data;
    double lo = 0, hi = 0;
    bool is_int = true;
    switch (t->dtype) {
    case DAB_DT_FLOAT: ((float *)d)[i] = (float)x; is_int = false; break;
    case DAB_DT_DOUBLE: ((double *)d)[i] = x; is_int = false; break;
    case DAB_DT_FLOAT16: ((uint16_t *)d)[i] = dab_f32_to_f16((float)x); is_int = false; break;
    case DAB_DT_BFLOAT16: ((uint16_t *)d)[i] = dab_f32_to_bf16((float)x); is_int = false; break;
    case DAB_DT_BOOL: ((uint8_t *)d)[i] = x != 0; is_int = false; break;
    case DAB_DT_INT8: lo = INT8_MIN; hi = INT8_MAX; break;
    case DAB_DT_UINT8: lo = 0; hi = UINT8_MAX; break;
    case DAB_DT_INT16: lo = INT16_MIN; hi = INT16_MAX; break;
    case DAB_DT_UINT16: lo = 0; hi = UINT16_MAX; break;
    case DAB_DT_INT32: lo = INT32_MIN; hi = INT32_MAX; break;
    case DAB_DT_UINT32: lo = 0; hi = UINT32_MAX; break;
    case DAB_DT_INT64: lo = -9223372036854775808.0; hi = 9223372036854774784.0; break;
    case DAB_DT_UINT64: lo = 0; hi = 18446744073709549568.0; break;
    default:
        return dab_err_set(err, DAB_EINVAL, "%s: %s inputs can only be warmed up with zeros", field,
                           dab_dtype_name(t->dtype));
    }
    if (!is_int)
        return 0;
    if (!(x >= lo && x <= hi) || floor(x) != x)
        return dab_err_set(err, DAB_EINVAL, "%s: %g does not fit the input's type %s", field, x,
                           dab_dtype_name(t->dtype));
    switch (t->dtype) {
    case DAB_DT_INT8: ((int8_t *)d)[i] = (int8_t)x; break;
    case DAB_DT_UINT8: ((uint8_t *)d)[i] = (uint8_t)x; break;
    case DAB_DT_INT16: ((int16_t *)d)[i] = (int16_t)x; break;
    case DAB_DT_UINT16: ((uint16_t *)d)[i] = (uint16_t)x; break;
    case DAB_DT_INT32: ((int32_t *)d)[i] = (int32_t)x; break;
    case DAB_DT_UINT32: ((uint32_t *)d)[i] = (uint32_t)x; break;
    case DAB_DT_INT64: ((int64_t *)d)[i] = (int64_t)x; break;
    case DAB_DT_UINT64: ((uint64_t *)d)[i] = (uint64_t)x; break;
    default: break;
    }
    return 0;
}

/* Checks a warm-up shape against the declared one: same rank, fixed dims equal, and a
 * batch no larger than max_batch_size. */
static int check_warmup_shape(const dab_value_t *v, int rank, const int64_t *dims, int mbs,
                              const char *field, dab_err_t *err)
{
    if (v->rank >= 0 && rank != v->rank)
        return dab_err_set(err, DAB_EINVAL, "%s has rank %d but input '%s' has rank %d", field,
                           rank, v->name, v->rank);
    for (int k = 0; v->rank >= 0 && k < rank; k++)
        if (v->dims[k] >= 0 && dims[k] != v->dims[k])
            return dab_err_set(err, DAB_EINVAL, "%s has dim %d = %lld but input '%s' has %lld",
                               field, k, (long long)dims[k], v->name, (long long)v->dims[k]);
    if (mbs > 0 && rank > 0 && dims[0] > mbs)
        return dab_err_set(err, DAB_EINVAL, "%s has a batch of %lld, more than max_batch_size %d",
                           field, (long long)dims[0], mbs);
    return 0;
}

static int build_warmup_input(dab_model_config_t *c, const dab_value_t *v, const json_t *spec,
                              const char *model_dir, dab_tensor_t *t, dab_err_t *err)
{
    char field[128];
    snprintf(field, sizeof field, "warmup.inputs.%.64s", v->name);
    int rc;
    const char *file = spec ? json_string_value(json_object_get(spec, "file")) : NULL;
    if (file) {
        if (!model_dir)
            return dab_err_set(err, DAB_EINVAL, "%s.file: files are not allowed here", field);
        char path[4096];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", model_dir, file) >= sizeof path)
            return dab_err_set(err, DAB_EINVAL, "%s.file: the path is too long", field);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            return dab_err_set(err, DAB_EINVAL, "%s.file \"%.64s\" is not a file in the model's "
                               "folder", field, file);
        if ((uint64_t)st.st_size > DAB_REPO_MAX_WARMUP_BYTES + 4096)
            return dab_err_set(err, DAB_ELIMIT, "%s.file \"%.64s\" is larger than %zu bytes",
                               field, file, DAB_REPO_MAX_WARMUP_BYTES);
        if ((rc = dab_npy_read(path, t, err)))
            return dab_err_prefix(err, "%s.file: ", field);
        if (t->dtype != v->dtype) {
            rc = dab_err_set(err, DAB_EINVAL, "%s.file holds %s but input '%s' is %s", field,
                             dab_dtype_name(t->dtype), v->name, dab_dtype_name(v->dtype));
            dab_tensor_free(t);
            return rc;
        }
        if ((rc = check_warmup_shape(v, t->rank, t->dims, c->max_batch_size, field, err)))
            dab_tensor_free(t);
        return rc;
    }
    if (v->dtype == DAB_DT_UNDEFINED || !dab_dtype_valid(v->dtype))
        return dab_err_set(err, DAB_EINVAL, "input '%s' has no declared type: warm-up cannot "
                           "build it", v->name);
    int64_t dims[DAB_MAX_RANK];
    int rank;
    const json_t *jd = spec ? json_object_get(spec, "dims") : NULL;
    if (jd) {
        rank = (int)json_array_size(jd);
        for (int k = 0; k < rank; k++)
            dims[k] = json_integer_value(json_array_get(jd, (size_t)k));
        if ((rc = check_warmup_shape(v, rank, dims, c->max_batch_size, field, err)))
            return rc;
    } else {
        if (v->rank < 0)
            return dab_err_set(err, DAB_EINVAL, "input '%s' has an unknown rank: give %s.dims in "
                               "the config", v->name, field);
        rank = v->rank;
        for (int k = 0; k < rank; k++)
            dims[k] = v->dims[k] >= 0 ? v->dims[k] : 1;
    }
    size_t bytes;
    if ((rc = dab_shape_check(field, v->dtype, rank, dims, DAB_REPO_MAX_WARMUP_BYTES, &bytes, err)))
        return rc;
    if ((rc = dab_tensor_alloc(t, v->dtype, rank, dims, err)))
        return rc;
    int64_t n = dab_tensor_numel(t);
    const json_t *fill = spec ? json_object_get(spec, "fill") : NULL;
    const json_t *data = spec ? json_object_get(spec, "data") : NULL;
    if (fill && json_number_value(fill) != 0) {
        for (int64_t i = 0; i < n && !rc; i++)
            rc = set_elem(t, i, json_number_value(fill), field, err);
    } else if (data) {
        if ((int64_t)json_array_size(data) != n)
            rc = dab_err_set(err, DAB_EINVAL, "%s.data has %zu numbers but the shape holds %lld",
                             field, json_array_size(data), (long long)n);
        for (int64_t i = 0; i < n && !rc; i++)
            rc = set_elem(t, i, json_number_value(json_array_get(data, (size_t)i)), field, err);
    }
    if (rc)
        dab_tensor_free(t);
    return rc;
}

static int build_warmup(dab_model_config_t *c, const dab_graph_t *g, const char *model_dir,
                        dab_err_t *err)
{
    const json_t *inputs = json_object_get(json_object_get(c->json, "warmup"), "inputs");
    const char *name;
    json_t *spec;
    json_object_foreach((json_t *)inputs, name, spec) {
        (void)spec;
        if (find_input(g, name) < 0)
            return dab_err_set(err, DAB_EINVAL, "warmup.inputs.%.64s is not an input of the model",
                               name);
    }
    c->warmup_inputs = dab_calloc((size_t)DAB_MAX(g->n_inputs, 1), sizeof *c->warmup_inputs);
    if (!c->warmup_inputs)
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    c->n_warmup_inputs = g->n_inputs;
    for (int i = 0; i < g->n_inputs; i++) {
        const dab_value_t *v = &g->values[g->inputs[i]];
        const json_t *s = json_object_get(inputs, v->name);
        if (v->const_data && !s)
            continue; /* its default initializer feeds it */
        int rc = build_warmup_input(c, v, s, model_dir, &c->warmup_inputs[i], err);
        if (rc)
            return rc;
    }
    return 0;
}

/* Adds the defaults to the effective json, keeping whatever the user wrote. */
static int fill_json(dab_model_config_t *c, const dab_graph_t *g)
{
    json_t *j = c->json;
    int bad = json_object_set_new(j, "name", json_string(c->name));
    if (!json_object_get(j, "platform"))
        bad |= json_object_set_new(j, "platform", json_string("onnx"));
    bad |= json_object_set_new(j, "max_batch_size", json_integer(c->max_batch_size));
    bad |= json_object_set_new(j, "default_model_filename", json_string(c->model_filename));
    if (!json_object_get(j, "version_policy")) {
        json_t *vp = json_pack("{s:{s:i}}", "latest", "num_versions", c->latest_n);
        bad |= json_object_set_new(j, "version_policy", vp);
    }
    if (!json_object_get(j, "instance_group")) {
        json_t *ig = json_pack("[{s:i,s:s}]", "count", c->instance_count, "kind", "KIND_CPU");
        bad |= json_object_set_new(j, "instance_group", ig);
    }
    /* arrays are filled before they are attached: a failed set frees its value */
    if (!json_object_get(j, "input")) {
        json_t *arr = json_array();
        for (int i = 0; arr && i < g->n_inputs; i++) {
            const dab_value_t *v = &g->values[g->inputs[i]];
            if (!v->const_data)
                bad |= json_array_append_new(arr, io_json(v, c->max_batch_size));
        }
        bad |= json_object_set_new(j, "input", arr);
    }
    if (!json_object_get(j, "output")) {
        json_t *arr = json_array();
        for (int i = 0; arr && i < g->n_outputs; i++)
            bad |= json_array_append_new(arr,
                                         io_json(&g->values[g->outputs[i]], c->max_batch_size));
        bad |= json_object_set_new(j, "output", arr);
    }
    return bad ? DAB_ENOMEM : 0;
}

int dab_model_config_complete(dab_model_config_t *c, const dab_graph_t *g, const char *model_dir,
                              dab_err_t *err)
{
    char why[256];
    const char *blocker = batch_blocker(g, why, sizeof why);
    if (c->max_batch_size < 0) {
        c->max_batch_size = blocker ? 0 : DAB_REPO_DEFAULT_MAX_BATCH;
        if (c->dynamic_batching && blocker)
            return dab_err_set(err, DAB_EINVAL,
                               "dynamic_batching needs a model that batches on its first "
                               "dimension, but %s",
                               blocker);
        /* preferred sizes were checked against an explicit max only */
        const json_t *pref =
            json_object_get(json_object_get(c->json, "dynamic_batching"), "preferred_batch_size");
        for (size_t i = 0; pref && i < json_array_size(pref); i++)
            if (json_number_value(json_array_get(pref, i)) > c->max_batch_size)
                return dab_err_set(err, DAB_EINVAL,
                                   "dynamic_batching.preferred_batch_size[%zu] is more than "
                                   "max_batch_size (%d by default)",
                                   i, c->max_batch_size);
    } else if (c->max_batch_size > 0 && blocker) {
        return dab_err_set(err, DAB_EINVAL,
                           "max_batch_size is %d but %s: batching needs a symbolic first "
                           "dimension (set max_batch_size to 0)",
                           c->max_batch_size, blocker);
    }
    int rc = check_io_lists(c, g, err);
    if (rc)
        return rc;
    if ((rc = build_warmup(c, g, model_dir, err)))
        return rc;
    if (fill_json(c, g))
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    return 0;
}

void dab_model_config_free(dab_model_config_t *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n_warmup_inputs; i++)
        dab_tensor_free(&c->warmup_inputs[i]);
    dab_free(c->warmup_inputs);
    dab_free(c->specific);
    dab_free(c->model_filename);
    dab_free(c->name);
    json_decref(c->json);
    dab_free(c);
}

int dab_control_mode_parse(const char *s, dab_control_mode_t *out, dab_err_t *err)
{
    if (s && strcmp(s, "none") == 0)
        *out = DAB_CONTROL_NONE;
    else if (s && strcmp(s, "poll") == 0)
        *out = DAB_CONTROL_POLL;
    else if (s && strcmp(s, "explicit") == 0)
        *out = DAB_CONTROL_EXPLICIT;
    else
        return dab_err_set(err, DAB_EINVAL,
                           "model control mode \"%.40s\" is not one of none, poll, explicit",
                           s ? s : "");
    return 0;
}
