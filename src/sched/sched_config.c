/*
 * sched_config.c - the scheduler's view of config.json: max_batch_size and the
 * "dynamic_batching" section (Triton's field names), already checked for types
 * and ranges by the repository's parser, turned into a dab_batching_t.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched.h"

static int64_t int_field(const json_t *o, const char *key, int64_t def)
{
    const json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? json_integer_value(v) : def;
}

static bool bool_field(const json_t *o, const char *key)
{
    return json_is_true(json_object_get(o, key));
}

static void policy_from_json(const json_t *p, dab_queue_policy_t *out)
{
    if (!json_is_object(p))
        return;
    out->max_queue_size = (int)int_field(p, "max_queue_size", out->max_queue_size);
    out->default_timeout_us = int_field(p, "default_timeout_microseconds",
                                        out->default_timeout_us);
    if (json_object_get(p, "allow_timeout_override"))
        out->allow_timeout_override = bool_field(p, "allow_timeout_override");
    const char *action = json_string_value(json_object_get(p, "timeout_action"));
    if (action)
        out->delay_on_timeout = !strcmp(action, "DELAY");
}

static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

int dab_batching_from_json(const json_t *db, int max_batch_size, dab_batching_t *b,
                           dab_queue_policy_t **level_policies, dab_err_t *err)
{
    memset(b, 0, sizeof *b);
    *level_policies = NULL;
    b->max_batch_size = max_batch_size > 0 ? max_batch_size : 0;
    if (!json_is_object(db))
        return 0;
    if (b->max_batch_size == 0)
        return dab_err_set(err, DAB_EINVAL,
                           "dynamic_batching needs max_batch_size > 0 (the model does not batch)");
    b->dynamic = true;
    const json_t *pref = json_object_get(db, "preferred_batch_size");
    size_t np = json_array_size(pref);
    if (np > DAB_SCHED_MAX_PREFERRED)
        return dab_err_set(err, DAB_EINVAL,
                           "dynamic_batching.preferred_batch_size lists %zu sizes (at most %d)", np,
                           DAB_SCHED_MAX_PREFERRED);
    for (size_t i = 0; i < np; i++) {
        int64_t v = json_integer_value(json_array_get(pref, i));
        if (v < 1 || v > b->max_batch_size)
            return dab_err_set(err, DAB_EINVAL,
                               "dynamic_batching.preferred_batch_size[%zu] is %lld; it must be "
                               "1 to max_batch_size (%d)",
                               i, (long long)v, b->max_batch_size);
        b->preferred[b->n_preferred++] = (int)v;
    }
    qsort(b->preferred, (size_t)b->n_preferred, sizeof b->preferred[0], cmp_int);
    b->max_queue_delay_us = int_field(db, "max_queue_delay_microseconds", 0);
    b->preserve_ordering = bool_field(db, "preserve_ordering");
    b->priority_levels = (int)int_field(db, "priority_levels", 0);
    if (b->priority_levels < 0 || b->priority_levels > DAB_SCHED_MAX_LEVELS)
        return dab_err_set(err, DAB_EINVAL, "dynamic_batching.priority_levels must be 0 to %d",
                           DAB_SCHED_MAX_LEVELS);
    b->default_priority = (int)int_field(db, "default_priority_level", b->priority_levels);
    policy_from_json(json_object_get(db, "default_queue_policy"), &b->default_policy);
    if (b->priority_levels == 0)
        return 0;
    dab_queue_policy_t *lp = dab_malloc((size_t)b->priority_levels * sizeof *lp);
    if (!lp)
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    const json_t *pqp = json_object_get(db, "priority_queue_policy");
    for (int l = 0; l < b->priority_levels; l++) {
        char key[16];
        snprintf(key, sizeof key, "%d", l + 1);
        const json_t *own = json_object_get(pqp, key);
        /* as in Triton, a level's own policy replaces the default one whole */
        if (own)
            memset(&lp[l], 0, sizeof lp[l]);
        else
            lp[l] = b->default_policy;
        policy_from_json(own, &lp[l]);
    }
    b->level_policies = lp;
    *level_policies = lp;
    return 0;
}
