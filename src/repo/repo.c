/*
 * repo.c - the model repository: the table of models and versions, the loader that
 * brings it in line with the folder, the atomic swap, and the background thread that
 * destroys drained versions and runs the poller.
 *
 * Locks (see also repo.h):
 *   load_mu   held by whoever is the loader (dab_repo_start, _rescan, _load, _unload,
 *             _close, the poller). Fields marked "loader" are touched only under it.
 *   table_mu  guards r->models, each model's slots, states, reasons and flags marked
 *             "table", and r->started / r->closing. The loader writes them holding
 *             both locks, so it may read them holding load_mu alone. Held only for
 *             lookups and pointer moves: no I/O, no callbacks, no version destruction.
 *   bg_mu     guards the reap list, live_versions, rescan requests and the background
 *             thread's flags; bg_cv wakes the thread and whoever waits in close.
 * Lock order: load_mu, then table_mu or bg_mu (never both of the last two at once).
 *
 * A version's refcount counts the table's reference (while it serves) and every
 * acquired one. The last release queues it on the reap list; the background thread
 * calls runner_destroy and frees it, so no request thread ever runs a destructor.
 */
#include "repo.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "../observe/observe.h"
#include "../onnx/onnx.h"

/* What identifies a file's content cheaply; all zero when the file is absent. */
typedef struct file_id {
    bool exists;
    uint64_t size;
    int64_t mtime_ns;
    uint64_t ino, dev;
} file_id_t;

struct dab_model_version {
    dab_repo_t *repo;
    atomic_int refs;
    char *name;
    int64_t version;
    char *path;
    dab_graph_t *graph;
    dab_model_config_t *config;
    void *runner;
    bool runner_made; /* runner_create succeeded: runner_destroy is owed */
    uint64_t load_ns;
    uint64_t file_bytes;
    uint64_t identity; /* content hash of the model file and config */
    int64_t loaded_unix_s;
    struct dab_model_version *reap_next; /* bg_mu */
};

/* One version number of a model. */
typedef struct vslot {
    int64_t version;
    /* table */
    dab_model_version_t *serving; /* the table's reference, or NULL */
    dab_version_state_t state;
    char *reason; /* NULL = "" */
    /* loader */
    bool on_disk;   /* the version folder exists */
    bool desired;   /* selected by the version policy in the last sync */
    file_id_t disk; /* the model file as last seen */
    file_id_t serving_fid;
    uint64_t serving_hash, serving_cfg;
    bool tried; /* the last load of (tried_fid, tried_cfg) failed: do not retry it */
    file_id_t tried_fid;
    uint64_t tried_cfg;
} vslot_t;

typedef struct model {
    char *name;
    /* table */
    vslot_t *slots; /* ascending versions */
    int n_slots, cap_slots;
    bool wanted;                /* should be loaded: counts for dab_repo_ready */
    dab_version_state_t mstate; /* model-level condition when mreason is set */
    char *mreason;
    /* loader */
    bool on_disk;
    char *override; /* EXPLICIT: the last load's config text */
} model_t;

struct dab_repo {
    char *dir;
    dab_repo_opts_t opts;
    char **startup; /* copies of opts.startup_models */
    pthread_mutex_t load_mu;
    pthread_mutex_t table_mu;
    model_t **models; /* table; sorted by name */
    int n_models, cap_models;
    bool started, closing; /* table */
    pthread_mutex_t bg_mu;
    pthread_cond_t bg_cv;
    dab_model_version_t *reap_head; /* bg */
    int64_t live_versions;          /* bg: versions created and not yet destroyed */
    bool rescan_req, bg_closing, bg_stop, bg_running;
    pthread_t bg;
};

/* ---- small helpers ---- */

static void set_str(char **dst, const char *s)
{
    dab_free(*dst);
    *dst = s && *s ? dab_strdup(s) : NULL;
}

static bool fid_equal(const file_id_t *a, const file_id_t *b)
{
    return a->exists == b->exists && a->size == b->size && a->mtime_ns == b->mtime_ns &&
           a->ino == b->ino && a->dev == b->dev;
}

static file_id_t fid_of(const char *path)
{
    file_id_t f = {0};
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
        f.exists = true;
        f.size = (uint64_t)st.st_size;
        f.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        f.ino = (uint64_t)st.st_ino;
        f.dev = (uint64_t)st.st_dev;
    }
    return f;
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* XXH3-64 of a file's bytes, read in chunks. */
static int hash_file(const char *path, uint64_t *out, dab_err_t *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dab_err_set(err, DAB_EIO, "cannot open %s: %s", path, strerror(errno));
    enum { CHUNK = 1 << 20 };
    char *buf = dab_malloc(CHUNK);
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    int rc = buf ? 0 : dab_err_set(err, DAB_ENOMEM, "out of memory");
    while (!rc) {
        ssize_t n = read(fd, buf, CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = dab_err_set(err, DAB_EIO, "cannot read %s: %s", path, strerror(errno));
        if (n <= 0)
            break;
        XXH3_64bits_update(&st, buf, (size_t)n);
    }
    *out = XXH3_64bits_digest(&st);
    dab_free(buf);
    close(fd);
    return rc;
}

/* Reads a small text file whole (NUL-terminated, dab_malloc'd). DAB_ENOTFOUND when
 * absent. */
static int read_text(const char *path, size_t max_bytes, char **out, size_t *len, dab_err_t *err)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return DAB_ENOTFOUND;
        return dab_err_set(err, DAB_EIO, "cannot open %s: %s", path, strerror(errno));
    }
    dab_buf_t b = {0};
    char chunk[8192];
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = dab_err_set(err, DAB_EIO, "cannot read %s: %s", path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        if (b.len + (size_t)n > max_bytes) {
            rc = dab_err_set(err, DAB_ELIMIT, "%s is larger than %zu bytes", path, max_bytes);
            break;
        }
        if (dab_buf_append(&b, chunk, (size_t)n)) {
            rc = dab_err_set(err, DAB_ENOMEM, "out of memory");
            break;
        }
    }
    close(fd);
    if (!rc && dab_buf_append(&b, "", 1))
        rc = dab_err_set(err, DAB_ENOMEM, "out of memory");
    if (rc) {
        dab_buf_free(&b);
        return rc;
    }
    *out = b.data;
    *len = b.len - 1;
    return 0;
}

/* Model folder names the server can route: [A-Za-z0-9_.-], not hidden, <= 128. */
static bool valid_model_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128 || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

/* Version folder names: a positive decimal without sign or leading zeros. */
static bool parse_version_name(const char *s, int64_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 18 || s[0] == '0')
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, int n)
{
    for (int i = 0; i < n; i++)
        dab_free(names[i]);
    dab_free(names);
}

/* The subfolders of path (following links, hidden ones skipped), sorted; dab_malloc'd. */
static int list_subdirs(const char *path, char ***out, int *n_out, dab_err_t *err)
{
    *out = NULL;
    *n_out = 0;
    DIR *d = opendir(path);
    if (!d)
        return dab_err_set(err, errno == ENOENT ? DAB_ENOTFOUND : DAB_EIO,
                           "cannot read the folder %s: %s", path, strerror(errno));
    char **names = NULL;
    int n = 0, cap = 0, rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char sub[PATH_MAX];
        if ((size_t)snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) >= sizeof sub ||
            !is_dir(sub))
            continue;
        if (n == cap) {
            int nc = cap ? cap * 2 : 16;
            char **nn = dab_realloc(names, (size_t)nc * sizeof *nn);
            if (!nn) {
                rc = dab_err_set(err, DAB_ENOMEM, "out of memory");
                break;
            }
            names = nn;
            cap = nc;
        }
        if (!(names[n] = dab_strdup(e->d_name))) {
            rc = dab_err_set(err, DAB_ENOMEM, "out of memory");
            break;
        }
        n++;
    }
    closedir(d);
    if (rc) {
        free_names(names, n);
        return rc;
    }
    if (n > 1)
        qsort(names, (size_t)n, sizeof *names, cmp_str);
    *out = names;
    *n_out = n;
    return 0;
}

static void notify(dab_repo_t *r, const char *model)
{
    if (r->opts.on_change)
        r->opts.on_change(r->opts.user, model);
}

/* ---- versions ---- */

const char *dab_model_version_name(const dab_model_version_t *v) { return v->name; }
int64_t dab_model_version_number(const dab_model_version_t *v) { return v->version; }
const dab_graph_t *dab_model_version_graph(const dab_model_version_t *v) { return v->graph; }
const dab_model_config_t *dab_model_version_config(const dab_model_version_t *v)
{
    return v->config;
}
const char *dab_model_version_path(const dab_model_version_t *v) { return v->path; }
uint64_t dab_model_version_file_bytes(const dab_model_version_t *v) { return v->file_bytes; }
uint64_t dab_model_version_load_ns(const dab_model_version_t *v) { return v->load_ns; }
uint64_t dab_model_version_identity(const dab_model_version_t *v) { return v->identity; }
void *dab_model_version_runner(const dab_model_version_t *v) { return v->runner; }
void dab_model_version_set_runner(dab_model_version_t *v, void *runner) { v->runner = runner; }

dab_model_version_t *dab_model_version_retain(dab_model_version_t *v)
{
    atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
    return v;
}

/* Frees a version; on the background thread, or on the loader for one never published. */
static void version_destroy(dab_model_version_t *v)
{
    dab_repo_t *r = v->repo;
    if (v->runner_made && r->opts.runner_destroy)
        r->opts.runner_destroy(r->opts.user, v);
    dab_graph_free(v->graph);
    dab_model_config_free(v->config);
    dab_free(v->name);
    dab_free(v->path);
    dab_free(v);
    pthread_mutex_lock(&r->bg_mu);
    r->live_versions--;
    pthread_cond_broadcast(&r->bg_cv);
    pthread_mutex_unlock(&r->bg_mu);
}

void dab_model_version_release(dab_model_version_t *v)
{
    if (!v)
        return;
    if (atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) != 1)
        return;
    dab_repo_t *r = v->repo;
    pthread_mutex_lock(&r->bg_mu);
    v->reap_next = r->reap_head;
    r->reap_head = v;
    pthread_cond_broadcast(&r->bg_cv);
    pthread_mutex_unlock(&r->bg_mu);
}

int dab_model_version_warmup(const dab_model_version_t *v, dab_session_t *s, dab_err_t *err)
{
    const dab_model_config_t *c = v->config;
    const dab_graph_t *g = v->graph;
    const dab_tensor_t **in = dab_calloc((size_t)DAB_MAX(g->n_inputs, 1), sizeof *in);
    const dab_tensor_t **outs = dab_calloc((size_t)DAB_MAX(g->n_outputs, 1), sizeof *outs);
    int rc = in && outs ? 0 : dab_err_set(err, DAB_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < g->n_inputs; i++)
        in[i] = i < c->n_warmup_inputs && c->warmup_inputs[i].data ? &c->warmup_inputs[i] : NULL;
    for (int k = 0; !rc && k < c->warmup_count; k++) {
        if ((rc = dab_session_run(s, in, outs, err)))
            dab_err_prefix(err, "warm-up run %d of %d: ", k + 1, c->warmup_count);
    }
    dab_free(in);
    dab_free(outs);
    return rc;
}

/* The check made when the caller gives no runner_create: the model must run its warm-up. */
static int default_check(dab_model_version_t *v, dab_err_t *err)
{
    dab_session_opts_t so = {.threads = 1, .max_value_bytes = 0};
    dab_session_t *s = NULL;
    int rc = dab_session_create(v->graph, &so, &s, err);
    if (!rc)
        rc = dab_model_version_warmup(v, s, err);
    dab_session_free(s);
    return rc;
}

/*
 * Loads one version from its file with the config text given, and builds its runner.
 * Loader only; touches no table state. On success *out holds one reference (the one
 * the table will own); on error nothing is left behind.
 */
static int version_load(dab_repo_t *r, const model_t *m, int64_t version, const char *cfg_text,
                        size_t cfg_len, uint64_t file_bytes, dab_model_version_t **out,
                        dab_err_t *err)
{
    *out = NULL;
    uint64_t t0 = dab_now_ns();
    dab_model_version_t *v = dab_calloc(1, sizeof *v);
    if (!v)
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    v->repo = r;
    atomic_init(&v->refs, 1);
    v->version = version;
    v->file_bytes = file_bytes;
    pthread_mutex_lock(&r->bg_mu);
    r->live_versions++;
    pthread_mutex_unlock(&r->bg_mu);
    int rc;
    char model_dir[PATH_MAX], path[PATH_MAX];
    snprintf(model_dir, sizeof model_dir, "%s/%s", r->dir, m->name);
    if (!(v->name = dab_strdup(m->name))) {
        rc = dab_err_set(err, DAB_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = dab_model_config_parse(m->name, cfg_text, cfg_len, &v->config, err))) {
        dab_err_prefix(err, "config: ");
        goto fail;
    }
    if ((size_t)snprintf(path, sizeof path, "%s/%lld/%s", model_dir, (long long)version,
                         v->config->model_filename) >= sizeof path) {
        rc = dab_err_set(err, DAB_EINVAL, "the path of version %lld is too long",
                         (long long)version);
        goto fail;
    }
    if (!(v->path = dab_strdup(path))) {
        rc = dab_err_set(err, DAB_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = dab_onnx_load_file(path, &v->graph, err)) ||
        (rc = dab_graph_optimize(v->graph, r->opts.optimize, err)))
        goto fail;
    if ((rc = dab_model_config_complete(v->config, v->graph, model_dir, err))) {
        dab_err_prefix(err, "config: ");
        goto fail;
    }
    if (r->opts.runner_create) {
        if ((rc = r->opts.runner_create(r->opts.user, v, err)))
            goto fail;
        v->runner_made = true;
    } else if ((rc = default_check(v, err))) {
        goto fail;
    }
    v->load_ns = dab_now_ns() - t0;
    *out = v;
    return 0;
fail:
    if (!err || !err->code)
        dab_err_set(err, rc, "%s", dab_strerror(rc));
    version_destroy(v);
    return rc;
}

/* ---- the table ---- */

static model_t *find_model(dab_repo_t *r, const char *name)
{
    for (int i = 0; i < r->n_models; i++)
        if (strcmp(r->models[i]->name, name) == 0)
            return r->models[i];
    return NULL;
}

static vslot_t *find_slot(model_t *m, int64_t version)
{
    for (int i = 0; i < m->n_slots; i++)
        if (m->slots[i].version == version)
            return &m->slots[i];
    return NULL;
}

/* Adds a model entry (loader; takes table_mu). NULL on out of memory. */
static model_t *add_model(dab_repo_t *r, const char *name)
{
    model_t *m = dab_calloc(1, sizeof *m);
    if (!m || !(m->name = dab_strdup(name))) {
        dab_free(m);
        return NULL;
    }
    pthread_mutex_lock(&r->table_mu);
    if (r->n_models == r->cap_models) {
        int nc = r->cap_models ? r->cap_models * 2 : 8;
        model_t **nm = dab_realloc(r->models, (size_t)nc * sizeof *nm);
        if (!nm) {
            pthread_mutex_unlock(&r->table_mu);
            dab_free(m->name);
            dab_free(m);
            return NULL;
        }
        r->models = nm;
        r->cap_models = nc;
    }
    int at = r->n_models;
    while (at > 0 && strcmp(r->models[at - 1]->name, name) > 0)
        at--;
    memmove(r->models + at + 1, r->models + at, (size_t)(r->n_models - at) * sizeof *r->models);
    r->models[at] = m;
    r->n_models++;
    pthread_mutex_unlock(&r->table_mu);
    return m;
}

static void free_model(model_t *m)
{
    for (int i = 0; i < m->n_slots; i++)
        dab_free(m->slots[i].reason);
    dab_free(m->slots);
    dab_free(m->mreason);
    dab_free(m->override);
    dab_free(m->name);
    dab_free(m);
}

/* Removes a model with nothing serving from the table and frees it (loader). */
static void remove_model(dab_repo_t *r, model_t *m)
{
    pthread_mutex_lock(&r->table_mu);
    for (int i = 0; i < r->n_models; i++) {
        if (r->models[i] == m) {
            memmove(r->models + i, r->models + i + 1,
                    (size_t)(r->n_models - i - 1) * sizeof *r->models);
            r->n_models--;
            break;
        }
    }
    pthread_mutex_unlock(&r->table_mu);
    free_model(m);
}

/* The slot for `version`, created (UNAVAILABLE) when absent (loader; takes table_mu).
 * NULL on out of memory. Pointers into m->slots are valid until the next slot change. */
static vslot_t *add_slot(dab_repo_t *r, model_t *m, int64_t version)
{
    vslot_t *s = find_slot(m, version);
    if (s)
        return s;
    pthread_mutex_lock(&r->table_mu);
    if (m->n_slots == m->cap_slots) {
        int nc = m->cap_slots ? m->cap_slots * 2 : 4;
        vslot_t *ns = dab_realloc(m->slots, (size_t)nc * sizeof *ns);
        if (!ns) {
            pthread_mutex_unlock(&r->table_mu);
            return NULL;
        }
        m->slots = ns;
        m->cap_slots = nc;
    }
    int at = m->n_slots;
    while (at > 0 && m->slots[at - 1].version > version)
        at--;
    memmove(m->slots + at + 1, m->slots + at, (size_t)(m->n_slots - at) * sizeof *m->slots);
    memset(&m->slots[at], 0, sizeof m->slots[at]);
    m->slots[at].version = version;
    m->slots[at].state = DAB_VS_UNAVAILABLE;
    m->n_slots++;
    pthread_mutex_unlock(&r->table_mu);
    return &m->slots[at];
}

/* Sets a slot's state and reason (loader; takes table_mu). */
static void slot_set(dab_repo_t *r, vslot_t *s, dab_version_state_t st, const char *reason)
{
    pthread_mutex_lock(&r->table_mu);
    s->state = st;
    set_str(&s->reason, reason);
    pthread_mutex_unlock(&r->table_mu);
}

static void model_set(dab_repo_t *r, model_t *m, dab_version_state_t st, const char *reason)
{
    pthread_mutex_lock(&r->table_mu);
    m->mstate = st;
    set_str(&m->mreason, reason);
    pthread_mutex_unlock(&r->table_mu);
}

/* Takes the slot's serving version out of the table and drops the table's reference
 * (loader). Requests holding it finish on it. */
static void slot_unload(dab_repo_t *r, vslot_t *s, const char *reason)
{
    pthread_mutex_lock(&r->table_mu);
    dab_model_version_t *old = s->serving;
    s->serving = NULL;
    s->state = DAB_VS_UNAVAILABLE;
    set_str(&s->reason, reason);
    pthread_mutex_unlock(&r->table_mu);
    if (old)
        dab_log(DAB_LOG_INFO, "model_unloaded", DAB_F_STR("model", old->name),
                DAB_F_INT("version", old->version));
    dab_model_version_release(old);
}

/* ---- bringing one model in line with its folder ---- */

/* Reads the config text for m: the override, config.json, or none (text NULL). */
static int read_config(dab_repo_t *r, model_t *m, char **text, size_t *len, dab_err_t *err)
{
    if (m->override) {
        *len = strlen(m->override);
        *text = dab_strndup(m->override, *len);
        return *text ? 0 : dab_err_set(err, DAB_ENOMEM, "out of memory");
    }
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s/config.json", r->dir, m->name) >= sizeof path)
        return dab_err_set(err, DAB_EINVAL, "the path of model '%s' is too long", m->name);
    int rc = read_text(path, DAB_REPO_MAX_CONFIG_BYTES, text, len, err);
    return rc == DAB_ENOTFOUND ? 0 : rc;
}

static int cmp_i64_desc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Records the first failure of a sync for the caller. */
static void keep_first(dab_err_t *first, const dab_err_t *e)
{
    if (first && !first->code)
        *first = *e;
}

/*
 * Makes model m serve what its folder and config say (loader). force retries versions
 * whose last load failed even when nothing changed. Returns 0 when every version the
 * policy selects is READY; else the first failure (also in first_err).
 */
static int sync_model(dab_repo_t *r, model_t *m, bool force, dab_err_t *first_err)
{
    dab_err_t e = {0};
    char *text = NULL;
    size_t len = 0;
    dab_model_config_t *cfg = NULL;
    char **vnames = NULL;
    int n_vnames = 0;
    int64_t *desired = NULL;
    int n_desired = 0;
    bool changed = false;
    int rc = read_config(r, m, &text, &len, &e);
    if (!rc && (rc = dab_model_config_parse(m->name, text, len, &cfg, &e)))
        dab_err_prefix(&e, m->override ? "the load request's config: " : "config.json: ");
    if (rc) {
        dab_err_prefix(&e, "model '%s': ", m->name);
        keep_first(first_err, &e);
        if (!m->mreason || strcmp(m->mreason, e.msg) != 0) { /* say it once, not every poll */
            dab_log(DAB_LOG_ERROR, "model_config_invalid", DAB_F_STR("model", m->name),
                    DAB_F_STR("error", e.msg));
            model_set(r, m, DAB_VS_FAILED, e.msg);
            notify(r, m->name);
        }
        goto done;
    }
    uint64_t cfg_hash = text ? XXH3_64bits_withSeed(text, len, 1) : 0;
    char mdir[PATH_MAX];
    snprintf(mdir, sizeof mdir, "%s/%s", r->dir, m->name);
    if ((rc = list_subdirs(mdir, &vnames, &n_vnames, &e))) {
        model_set(r, m, DAB_VS_FAILED, e.msg);
        keep_first(first_err, &e);
        goto done;
    }
    /* what is on disk */
    for (int i = 0; i < m->n_slots; i++)
        m->slots[i].on_disk = false;
    for (int i = 0; i < n_vnames; i++) {
        int64_t ver;
        if (!parse_version_name(vnames[i], &ver))
            continue;
        vslot_t *s = add_slot(r, m, ver);
        if (!s) {
            rc = dab_err_set(&e, DAB_ENOMEM, "out of memory");
            keep_first(first_err, &e);
            goto done;
        }
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s/%s", mdir, vnames[i], cfg->model_filename);
        s->on_disk = true;
        s->disk = fid_of(path);
    }
    for (int i = 0; i < m->n_slots; i++)
        if (!m->slots[i].on_disk)
            memset(&m->slots[i].disk, 0, sizeof m->slots[i].disk);
    /* what the policy selects */
    desired = dab_calloc((size_t)DAB_MAX(m->n_slots + cfg->n_specific, 1), sizeof *desired);
    if (!desired) {
        rc = dab_err_set(&e, DAB_ENOMEM, "out of memory");
        keep_first(first_err, &e);
        goto done;
    }
    if (cfg->version_policy == DAB_POLICY_SPECIFIC) {
        for (int i = 0; i < cfg->n_specific; i++)
            desired[n_desired++] = cfg->specific[i];
    } else {
        for (int i = m->n_slots - 1; i >= 0; i--) {
            if (!m->slots[i].on_disk)
                continue;
            if (cfg->version_policy == DAB_POLICY_LATEST && n_desired >= cfg->latest_n)
                break;
            desired[n_desired++] = m->slots[i].version;
        }
    }
    qsort(desired, (size_t)n_desired, sizeof *desired, cmp_i64_desc);
    if (n_desired == 0)
        model_set(r, m, DAB_VS_FAILED, "no version folders (<model>/<version>/model.onnx)");
    else
        model_set(r, m, DAB_VS_UNAVAILABLE, NULL);
    for (int i = 0; i < n_desired; i++)
        if (!add_slot(r, m, desired[i])) {
            rc = dab_err_set(&e, DAB_ENOMEM, "out of memory");
            keep_first(first_err, &e);
            goto done;
        }
    for (int i = 0; i < m->n_slots; i++) {
        vslot_t *s = &m->slots[i];
        s->desired = false;
        for (int k = 0; k < n_desired; k++)
            s->desired = s->desired || desired[k] == s->version;
    }
    /* load what is new or changed, newest first: slots do not move from here on */
    int n_ready = 0;
    for (int k = 0; k < n_desired; k++) {
        vslot_t *s = find_slot(m, desired[k]);
        if (s->serving && fid_equal(&s->serving_fid, &s->disk) && s->serving_cfg == cfg_hash) {
            if (s->reason) /* a stale note (kept serving, a reload that failed) */
                slot_set(r, s, DAB_VS_READY, NULL);
            s->tried = false;
            n_ready++;
            continue;
        }
        if (!force && s->tried && fid_equal(&s->tried_fid, &s->disk) && s->tried_cfg == cfg_hash) {
            if (s->serving)
                n_ready++;
            else if (!rc) {
                rc = dab_err_set(&e, DAB_EINVAL, "model '%s' version %lld: %s", m->name,
                                 (long long)s->version, s->reason ? s->reason : "failed");
            }
            continue;
        }
        dab_err_t le = {0};
        int lrc = 0;
        uint64_t hash = 0;
        file_id_t fid = s->disk;
        if (!s->on_disk)
            lrc = dab_err_set(&le, DAB_ENOTFOUND,
                              "version_policy.specific lists version %lld but there is no "
                              "folder %s/%lld",
                              (long long)s->version, mdir, (long long)s->version);
        else if (!fid.exists)
            lrc = dab_err_set(&le, DAB_ENOTFOUND, "version folder %lld has no %s",
                              (long long)s->version, cfg->model_filename);
        if (!lrc) {
            char path[PATH_MAX];
            snprintf(path, sizeof path, "%s/%lld/%s", mdir, (long long)s->version,
                     cfg->model_filename);
            lrc = hash_file(path, &hash, &le);
        }
        if (!lrc && s->serving && hash == s->serving_hash && s->serving_cfg == cfg_hash) {
            s->serving_fid = fid; /* touched, or changed back: the same bytes */
            if (s->reason)
                slot_set(r, s, DAB_VS_READY, NULL);
            s->tried = false;
            n_ready++;
            continue;
        }
        dab_model_version_t *nv = NULL;
        if (!lrc) {
            if (!s->serving)
                slot_set(r, s, DAB_VS_LOADING, NULL);
            lrc = version_load(r, m, s->version, text, len, fid.size, &nv, &le);
        }
        changed = true;
        if (!lrc) {
            pthread_mutex_lock(&r->table_mu);
            dab_model_version_t *old = s->serving;
            nv->loaded_unix_s = (int64_t)time(NULL);
            nv->identity = hash ^ (cfg_hash * 0x9E3779B97F4A7C15ull);
            s->serving = nv;
            s->state = DAB_VS_READY;
            set_str(&s->reason, NULL);
            pthread_mutex_unlock(&r->table_mu);
            dab_log(DAB_LOG_INFO, "model_loaded", DAB_F_STR("model", m->name),
                    DAB_F_INT("version", s->version), DAB_F_BOOL("replaced", old != NULL),
                    DAB_F_DBL("load_ms", (double)nv->load_ns / 1e6),
                    DAB_F_UINT("file_bytes", nv->file_bytes));
            dab_model_version_release(old);
            s->serving_fid = fid;
            s->serving_hash = hash;
            s->serving_cfg = cfg_hash;
            s->tried = false;
            n_ready++;
        } else {
            char msg[sizeof le.msg + 128];
            s->tried = true;
            s->tried_fid = fid;
            s->tried_cfg = cfg_hash;
            dab_log(DAB_LOG_ERROR, "model_load_failed", DAB_F_STR("model", m->name),
                    DAB_F_INT("version", s->version), DAB_F_BOOL("still_serving", s->serving),
                    DAB_F_STR("error", le.msg));
            if (s->serving) {
                snprintf(msg, sizeof msg, "%s failed to load (still serving the previous one): %s",
                         s->serving_cfg != cfg_hash ? "the new config" : "the changed model file",
                         le.msg);
                slot_set(r, s, DAB_VS_READY, msg);
                n_ready++;
            } else {
                slot_set(r, s, DAB_VS_FAILED, le.msg);
            }
            dab_err_prefix(&le, "model '%s' version %lld: ", m->name, (long long)s->version);
            keep_first(first_err, &le);
            if (!rc) {
                rc = le.code;
                e = le;
            }
        }
        notify(r, m->name);
    }
    /* unload what the policy no longer selects, keeping as many of the newest as there
     * are selected versions not ready, so that a failed replacement leaves the old one */
    int keep = n_desired - n_ready;
    for (int i = m->n_slots - 1; i >= 0; i--) {
        vslot_t *s = &m->slots[i];
        if (s->desired)
            continue;
        if (s->serving && keep > 0) {
            keep--;
            slot_set(r, s, DAB_VS_READY,
                     "kept serving until the versions the version policy selects are ready");
            continue;
        }
        if (s->serving) {
            slot_unload(r, s, NULL);
            changed = true;
        }
        if (s->on_disk)
            slot_set(r, s, DAB_VS_UNAVAILABLE, "not selected by the version policy");
        s->tried = false;
    }
    /* forget versions that are neither on disk, selected nor serving */
    pthread_mutex_lock(&r->table_mu);
    int w = 0;
    for (int i = 0; i < m->n_slots; i++) {
        vslot_t *s = &m->slots[i];
        if (!s->on_disk && !s->desired && !s->serving) {
            dab_free(s->reason);
            continue;
        }
        m->slots[w++] = *s;
    }
    m->n_slots = w;
    pthread_mutex_unlock(&r->table_mu);
    if (changed)
        notify(r, m->name);
    if (n_desired == 0 && !rc) {
        rc = dab_err_set(&e, DAB_ENOTFOUND, "model '%s' has no version folders", m->name);
        keep_first(first_err, &e);
    }
done:
    dab_model_config_free(cfg);
    dab_free(desired);
    free_names(vnames, n_vnames);
    dab_free(text);
    return rc;
}

/* Unloads every version of m (loader). */
static void unload_model(dab_repo_t *r, model_t *m, const char *reason)
{
    bool any = false;
    for (int i = 0; i < m->n_slots; i++) {
        vslot_t *s = &m->slots[i];
        if (s->serving) {
            slot_unload(r, s, reason);
            any = true;
        }
        s->tried = false;
    }
    if (any)
        notify(r, m->name);
}

/* Drops the slots of a model that is not loaded, leaving a model-level entry (loader). */
static void clear_slots(dab_repo_t *r, model_t *m)
{
    pthread_mutex_lock(&r->table_mu);
    int w = 0;
    for (int i = 0; i < m->n_slots; i++) {
        if (m->slots[i].serving)
            m->slots[w++] = m->slots[i];
        else
            dab_free(m->slots[i].reason);
    }
    m->n_slots = w;
    pthread_mutex_unlock(&r->table_mu);
}

/* The rescan itself (loader, load_mu held). */
static int rescan_locked(dab_repo_t *r, dab_err_t *err)
{
    char **names = NULL;
    int n = 0;
    int rc = list_subdirs(r->dir, &names, &n, err);
    if (rc)
        return rc;
    for (int i = 0; i < r->n_models; i++)
        r->models[i]->on_disk = false;
    for (int i = 0; i < n; i++) {
        if (!valid_model_name(names[i]))
            continue;
        model_t *m = find_model(r, names[i]);
        if (!m) {
            if (!(m = add_model(r, names[i]))) {
                rc = dab_err_set(err, DAB_ENOMEM, "out of memory");
                break;
            }
            if (r->opts.mode == DAB_CONTROL_EXPLICIT)
                model_set(r, m, DAB_VS_UNAVAILABLE, "not loaded");
        }
        m->on_disk = true;
    }
    free_names(names, n);
    if (rc)
        return rc;
    for (int i = 0; i < r->n_models; i++) {
        model_t *m = r->models[i];
        if (!m->on_disk) {
            if (r->opts.mode == DAB_CONTROL_EXPLICIT && m->wanted)
                continue; /* stays loaded until unloaded */
            unload_model(r, m, NULL);
            remove_model(r, m);
            i--;
            continue;
        }
        if (r->opts.mode == DAB_CONTROL_EXPLICIT)
            continue;
        if (!m->wanted) {
            pthread_mutex_lock(&r->table_mu);
            m->wanted = true;
            pthread_mutex_unlock(&r->table_mu);
        }
        sync_model(r, m, false, NULL);
    }
    return 0;
}

static bool closing(dab_repo_t *r)
{
    pthread_mutex_lock(&r->table_mu);
    bool c = r->closing;
    pthread_mutex_unlock(&r->table_mu);
    return c;
}

/* Why the loader may not run now (load_mu held), or NULL: before dab_repo_start there is
 * no background thread to destroy replaced versions. */
static int not_now(dab_repo_t *r, dab_err_t *err)
{
    if (!r->bg_running)
        return dab_err_set(err, DAB_EINVAL, "the repository is not started");
    if (closing(r))
        return dab_err_set(err, DAB_EBUSY, "the repository is closing");
    return 0;
}

int dab_repo_rescan(dab_repo_t *r, dab_err_t *err)
{
    pthread_mutex_lock(&r->load_mu);
    int rc = not_now(r, err);
    if (!rc)
        rc = rescan_locked(r, err);
    pthread_mutex_unlock(&r->load_mu);
    return rc;
}

/* Loads model `name` (loader, load_mu held). */
static int load_locked(dab_repo_t *r, const char *name, const char *config_json, dab_err_t *err)
{
    char path[PATH_MAX];
    if (!valid_model_name(name) ||
        (size_t)snprintf(path, sizeof path, "%s/%s", r->dir, name) >= sizeof path || !is_dir(path))
        return dab_err_set(err, DAB_ENOTFOUND, "model '%.128s' is not in the repository %s", name,
                           r->dir);
    if (config_json) {
        /* a bad config in the request changes nothing */
        dab_model_config_t *c = NULL;
        int rc = dab_model_config_parse(name, config_json, strlen(config_json), &c, err);
        dab_model_config_free(c);
        if (rc)
            return dab_err_prefix(err, "model '%s': the load request's config: ", name);
    }
    model_t *m = find_model(r, name);
    if (!m && !(m = add_model(r, name)))
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    m->on_disk = true;
    char *ov = config_json ? dab_strdup(config_json) : NULL;
    if (config_json && !ov)
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    dab_free(m->override);
    m->override = ov;
    pthread_mutex_lock(&r->table_mu);
    m->wanted = true;
    pthread_mutex_unlock(&r->table_mu);
    dab_err_t first = {0};
    int rc = sync_model(r, m, true, &first);
    if (rc) {
        if (err)
            *err = first.code ? first : (dab_err_t){.code = rc};
        if (err && !err->msg[0])
            dab_err_set(err, rc, "model '%s' failed to load", name);
    }
    return rc;
}

int dab_repo_load(dab_repo_t *r, const char *name, const char *config_json, dab_err_t *err)
{
    if (r->opts.mode != DAB_CONTROL_EXPLICIT)
        return dab_err_set(err, DAB_EUNSUPPORTED,
                           "loading models by request needs --model-control-mode explicit");
    pthread_mutex_lock(&r->load_mu);
    int rc = not_now(r, err);
    if (!rc)
        rc = load_locked(r, name, config_json, err);
    pthread_mutex_unlock(&r->load_mu);
    return rc;
}

int dab_repo_unload(dab_repo_t *r, const char *name, dab_err_t *err)
{
    if (r->opts.mode != DAB_CONTROL_EXPLICIT)
        return dab_err_set(err, DAB_EUNSUPPORTED,
                           "unloading models by request needs --model-control-mode explicit");
    pthread_mutex_lock(&r->load_mu);
    model_t *m = NULL;
    int rc = not_now(r, err);
    if (rc) {
        /* nothing to do */
    } else if (!(m = find_model(r, name))) {
        rc = dab_err_set(err, DAB_ENOTFOUND, "model '%.128s' is not in the repository", name);
    } else {
        pthread_mutex_lock(&r->table_mu);
        m->wanted = false;
        pthread_mutex_unlock(&r->table_mu);
        unload_model(r, m, NULL);
        clear_slots(r, m);
        dab_free(m->override);
        m->override = NULL;
        model_set(r, m, DAB_VS_UNAVAILABLE, "unloaded");
        notify(r, m->name);
        if (!m->on_disk)
            remove_model(r, m);
    }
    pthread_mutex_unlock(&r->load_mu);
    return rc;
}

/* ---- the background thread ---- */

static void *bg_main(void *arg)
{
    dab_repo_t *r = arg;
    int poll_secs = r->opts.poll_secs > 0 ? r->opts.poll_secs : 15;
    uint64_t next_poll = dab_now_ns() + (uint64_t)poll_secs * 1000000000u;
    pthread_mutex_lock(&r->bg_mu);
    for (;;) {
        if (r->reap_head) {
            dab_model_version_t *list = r->reap_head;
            r->reap_head = NULL;
            pthread_mutex_unlock(&r->bg_mu);
            while (list) {
                dab_model_version_t *next = list->reap_next;
                version_destroy(list);
                list = next;
            }
            pthread_mutex_lock(&r->bg_mu);
            continue;
        }
        if (r->bg_stop)
            break;
        if (!r->bg_closing && r->opts.mode == DAB_CONTROL_POLL && dab_now_ns() >= next_poll)
            r->rescan_req = true;
        if (!r->bg_closing && r->rescan_req) {
            r->rescan_req = false;
            pthread_mutex_unlock(&r->bg_mu);
            dab_repo_rescan(r, NULL);
            pthread_mutex_lock(&r->bg_mu);
            next_poll = dab_now_ns() + (uint64_t)poll_secs * 1000000000u;
            continue;
        }
        if (!r->bg_closing && r->opts.mode == DAB_CONTROL_POLL) {
            struct timespec ts;
            ts.tv_sec = (time_t)(next_poll / 1000000000u);
            ts.tv_nsec = (long)(next_poll % 1000000000u);
            pthread_cond_timedwait(&r->bg_cv, &r->bg_mu, &ts);
        } else {
            pthread_cond_wait(&r->bg_cv, &r->bg_mu);
        }
    }
    pthread_mutex_unlock(&r->bg_mu);
    return NULL;
}

void dab_repo_request_rescan(dab_repo_t *r)
{
    pthread_mutex_lock(&r->bg_mu);
    r->rescan_req = true;
    pthread_cond_broadcast(&r->bg_cv);
    pthread_mutex_unlock(&r->bg_mu);
}

/* ---- open, start, close ---- */

int dab_repo_open(const char *dir, const dab_repo_opts_t *opts, dab_repo_t **out, dab_err_t *err)
{
    *out = NULL;
    if (!opts)
        return dab_err_set(err, DAB_EINVAL, "no repository options given");
    if (!dir || !*dir)
        return dab_err_set(err, DAB_EINVAL, "no repository folder given");
    if (!is_dir(dir))
        return dab_err_set(err, DAB_ENOTFOUND, "the repository %s is not a folder", dir);
    if (opts->mode != DAB_CONTROL_NONE && opts->mode != DAB_CONTROL_POLL &&
        opts->mode != DAB_CONTROL_EXPLICIT)
        return dab_err_set(err, DAB_EINVAL, "model control mode %d is unknown", (int)opts->mode);
    if (opts->n_startup < 0 || (opts->n_startup > 0 && !opts->startup_models))
        return dab_err_set(err, DAB_EINVAL, "the startup model list is malformed");
    dab_repo_t *r = dab_calloc(1, sizeof *r);
    if (!r)
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    r->opts = *opts;
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/')
        dl--;
    r->dir = dab_strndup(dir, dl);
    r->startup = dab_calloc((size_t)DAB_MAX(opts->n_startup, 1), sizeof *r->startup);
    bool ok = r->dir && r->startup;
    for (int i = 0; ok && i < opts->n_startup; i++)
        ok = (r->startup[i] = dab_strdup(opts->startup_models[i])) != NULL;
    r->opts.startup_models = (const char *const *)r->startup;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&r->load_mu, NULL);
    pthread_mutex_init(&r->table_mu, NULL);
    pthread_mutex_init(&r->bg_mu, NULL);
    pthread_cond_init(&r->bg_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (!ok) {
        dab_repo_close(r);
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    }
    *out = r;
    return 0;
}

int dab_repo_start(dab_repo_t *r, dab_err_t *err)
{
    pthread_mutex_lock(&r->load_mu);
    int rc = 0;
    if (r->bg_running) {
        rc = dab_err_set(err, DAB_EINVAL, "the repository is already started");
        goto out;
    }
    if (r->opts.mode == DAB_CONTROL_EXPLICIT) {
        for (int i = 0; i < r->opts.n_startup; i++) {
            char path[PATH_MAX];
            const char *name = r->startup[i];
            if (!valid_model_name(name) ||
                (size_t)snprintf(path, sizeof path, "%s/%s", r->dir, name) >= sizeof path ||
                !is_dir(path)) {
                rc = dab_err_set(err, DAB_ENOTFOUND,
                                 "startup model '%.128s' is not in the repository %s", name,
                                 r->dir);
                goto out;
            }
        }
    }
    char **names = NULL;
    int n = 0;
    if ((rc = list_subdirs(r->dir, &names, &n, err)))
        goto out;
    free_names(names, n);
    if (pthread_create(&r->bg, NULL, bg_main, r) != 0) {
        rc = dab_err_set(err, DAB_EINTERNAL, "cannot start the repository's thread");
        goto out;
    }
    r->bg_running = true;
    rc = rescan_locked(r, err);
    for (int i = 0; !rc && r->opts.mode == DAB_CONTROL_EXPLICIT && i < r->opts.n_startup; i++) {
        dab_err_t le;
        load_locked(r, r->startup[i], NULL, &le); /* failures are in the index */
    }
    pthread_mutex_lock(&r->table_mu);
    r->started = rc == 0;
    pthread_mutex_unlock(&r->table_mu);
out:
    pthread_mutex_unlock(&r->load_mu);
    return rc;
}

void dab_repo_close(dab_repo_t *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->bg_mu);
    r->bg_closing = true;
    pthread_cond_broadcast(&r->bg_cv);
    pthread_mutex_unlock(&r->bg_mu);
    pthread_mutex_lock(&r->load_mu);
    pthread_mutex_lock(&r->table_mu);
    r->closing = true;
    pthread_mutex_unlock(&r->table_mu);
    for (int i = 0; i < r->n_models; i++)
        unload_model(r, r->models[i], "the repository is closing");
    pthread_mutex_unlock(&r->load_mu);
    pthread_mutex_lock(&r->bg_mu);
    if (r->bg_running) {
        while (r->live_versions > 0 || r->reap_head)
            pthread_cond_wait(&r->bg_cv, &r->bg_mu);
        r->bg_stop = true;
        pthread_cond_broadcast(&r->bg_cv);
    }
    pthread_mutex_unlock(&r->bg_mu);
    if (r->bg_running)
        pthread_join(r->bg, NULL);
    for (int i = 0; i < r->n_models; i++)
        free_model(r->models[i]);
    dab_free(r->models);
    for (int i = 0; r->startup && i < r->opts.n_startup; i++)
        dab_free(r->startup[i]);
    dab_free(r->startup);
    pthread_mutex_destroy(&r->load_mu);
    pthread_mutex_destroy(&r->table_mu);
    pthread_mutex_destroy(&r->bg_mu);
    pthread_cond_destroy(&r->bg_cv);
    dab_free(r->dir);
    dab_free(r);
}

/* ---- readers ---- */

dab_model_version_t *dab_repo_acquire(dab_repo_t *r, const char *name, int64_t version,
                                      dab_err_t *err)
{
    dab_model_version_t *v = NULL;
    pthread_mutex_lock(&r->table_mu);
    model_t *m = NULL;
    if (!r->started) {
        dab_err_set(err, DAB_EBUSY, "the repository is still loading its models");
    } else if (r->closing) {
        dab_err_set(err, DAB_EBUSY, "the server is shutting down");
    } else if (!(m = find_model(r, name))) {
        dab_err_set(err, DAB_ENOTFOUND, "unknown model '%.128s'", name);
    } else if (version == 0) {
        for (int i = m->n_slots - 1; i >= 0 && !v; i--)
            v = m->slots[i].serving;
        if (!v) {
            const char *why = m->mreason;
            for (int i = m->n_slots - 1; i >= 0 && !why; i--)
                why = m->slots[i].reason;
            dab_err_set(err, DAB_EBUSY, "model '%s' is not ready: %s", m->name,
                        why ? why : m->n_slots ? "loading" : "no version is loaded");
        }
    } else {
        vslot_t *s = find_slot(m, version);
        if (!s) {
            dab_err_set(err, DAB_ENOTFOUND, "model '%s' has no version %lld", m->name,
                        (long long)version);
        } else if (!(v = s->serving)) {
            dab_err_set(err, DAB_EBUSY, "model '%s' version %lld is not ready (%s%s%s)", m->name,
                        (long long)version, dab_version_state_name(s->state),
                        s->reason ? ": " : "", s->reason ? s->reason : "");
        }
    }
    if (v)
        atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&r->table_mu);
    return v;
}

bool dab_repo_ready(dab_repo_t *r)
{
    pthread_mutex_lock(&r->table_mu);
    bool ready = r->started && !r->closing;
    for (int i = 0; ready && i < r->n_models; i++) {
        model_t *m = r->models[i];
        if (!m->wanted)
            continue;
        bool any = false;
        for (int k = 0; k < m->n_slots && !any; k++)
            any = m->slots[k].serving != NULL;
        ready = any;
    }
    pthread_mutex_unlock(&r->table_mu);
    return ready;
}

const char *dab_version_state_name(dab_version_state_t s)
{
    switch (s) {
    case DAB_VS_UNAVAILABLE: return "UNAVAILABLE";
    case DAB_VS_LOADING: return "LOADING";
    case DAB_VS_READY: return "READY";
    case DAB_VS_FAILED: return "FAILED";
    }
    return "UNKNOWN";
}

/* A model's overall state (table_mu held). */
static dab_version_state_t model_state(const model_t *m)
{
    bool loading = false, failed = m->mreason && m->mstate == DAB_VS_FAILED;
    for (int i = 0; i < m->n_slots; i++) {
        if (m->slots[i].serving)
            return DAB_VS_READY;
        loading = loading || m->slots[i].state == DAB_VS_LOADING;
        failed = failed || m->slots[i].state == DAB_VS_FAILED;
    }
    return loading ? DAB_VS_LOADING : failed ? DAB_VS_FAILED : DAB_VS_UNAVAILABLE;
}

void dab_repo_status_free(dab_repo_status_t *s)
{
    for (int i = 0; s->models && i < s->n_models; i++) {
        dab_repo_model_status_t *m = &s->models[i];
        for (int k = 0; m->versions && k < m->n_versions; k++)
            dab_free(m->versions[k].reason);
        dab_free(m->versions);
        dab_free(m->name);
        dab_free(m->reason);
    }
    dab_free(s->models);
    s->models = NULL;
    s->n_models = 0;
}

int dab_repo_status(dab_repo_t *r, dab_repo_status_t *out)
{
    out->n_models = 0;
    pthread_mutex_lock(&r->table_mu);
    out->models = dab_calloc((size_t)DAB_MAX(r->n_models, 1), sizeof *out->models);
    bool ok = out->models != NULL;
    for (int i = 0; ok && i < r->n_models; i++) {
        const model_t *m = r->models[i];
        dab_repo_model_status_t *o = &out->models[i];
        out->n_models++;
        o->name = dab_strdup(m->name);
        o->state = model_state(m);
        o->reason = dab_strdup(m->mreason ? m->mreason : "");
        o->versions = dab_calloc((size_t)DAB_MAX(m->n_slots, 1), sizeof *o->versions);
        ok = o->name && o->reason && o->versions;
        for (int k = 0; ok && k < m->n_slots; k++) {
            const vslot_t *s = &m->slots[k];
            dab_repo_version_status_t *ov = &o->versions[k];
            o->n_versions++;
            ov->version = s->version;
            ov->state = s->state;
            ok = (ov->reason = dab_strdup(s->reason ? s->reason : "")) != NULL;
            if (s->serving) {
                ov->load_ns = s->serving->load_ns;
                ov->file_bytes = s->serving->file_bytes;
                ov->loaded_unix_s = s->serving->loaded_unix_s;
            }
        }
    }
    pthread_mutex_unlock(&r->table_mu);
    if (!ok) {
        dab_repo_status_free(out);
        return DAB_ENOMEM;
    }
    return 0;
}

/* Length of the valid UTF-8 sequence at p (1-4), or 0 when it is not one. */
static int utf8_len(const unsigned char *p)
{
    int n = p[0] < 0x80 ? 1 : (p[0] & 0xe0) == 0xc0 ? 2 : (p[0] & 0xf0) == 0xe0 ? 3
                        : (p[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (n == 0 || (n == 2 && p[0] < 0xc2) || (n == 4 && p[0] > 0xf4))
        return 0;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    if ((n == 3 && p[0] == 0xe0 && p[1] < 0xa0) || (n == 3 && p[0] == 0xed && p[1] >= 0xa0) ||
        (n == 4 && p[0] == 0xf0 && p[1] < 0x90) || (n == 4 && p[0] == 0xf4 && p[1] >= 0x90))
        return 0; /* overlong, surrogate, beyond U+10FFFF */
    return n;
}

/* Appends s as a JSON string; bytes that are not UTF-8 (paths, file contents quoted in
 * an error) become U+FFFD so that the index always parses. */
static int buf_json_str(dab_buf_t *b, const char *s)
{
    int rc = dab_buf_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; !rc && *p;) {
        int n = utf8_len(p);
        if (*p == '"' || *p == '\\')
            rc = dab_buf_printf(b, "\\%c", *p);
        else if (*p < 0x20)
            rc = dab_buf_printf(b, "\\u%04x", *p);
        else if (n == 0)
            rc = dab_buf_puts(b, "\xef\xbf\xbd");
        else
            rc = dab_buf_append(b, p, (size_t)n);
        p += n ? n : 1;
    }
    return rc ? rc : dab_buf_puts(b, "\"");
}

int dab_repo_index(dab_repo_t *r, dab_buf_t *json_out)
{
    dab_repo_status_t st;
    if (dab_repo_status(r, &st))
        return DAB_ENOMEM;
    int rc = dab_buf_puts(json_out, "[");
    bool first = true;
    for (int i = 0; !rc && i < st.n_models; i++) {
        const dab_repo_model_status_t *m = &st.models[i];
        if (m->reason[0] || m->n_versions == 0) {
            rc = dab_buf_puts(json_out, first ? "{\"name\":" : ",{\"name\":");
            rc = rc ? rc : buf_json_str(json_out, m->name);
            rc = rc ? rc
                    : dab_buf_printf(json_out, ",\"state\":\"%s\",\"reason\":",
                                     dab_version_state_name(m->state == DAB_VS_READY
                                                                ? DAB_VS_FAILED
                                                                : m->state));
            rc = rc ? rc : buf_json_str(json_out, m->reason);
            rc = rc ? rc : dab_buf_puts(json_out, "}");
            first = false;
        }
        for (int k = 0; !rc && k < m->n_versions; k++) {
            const dab_repo_version_status_t *v = &m->versions[k];
            rc = dab_buf_puts(json_out, first ? "{\"name\":" : ",{\"name\":");
            rc = rc ? rc : buf_json_str(json_out, m->name);
            rc = rc ? rc
                    : dab_buf_printf(json_out, ",\"version\":\"%lld\",\"state\":\"%s\",\"reason\":",
                                     (long long)v->version, dab_version_state_name(v->state));
            rc = rc ? rc : buf_json_str(json_out, v->reason);
            rc = rc ? rc : dab_buf_puts(json_out, "}");
            first = false;
        }
    }
    rc = rc ? rc : dab_buf_puts(json_out, "]");
    dab_repo_status_free(&st);
    return rc;
}

const char *dab_repo_dir(const dab_repo_t *r) { return r->dir; }
dab_control_mode_t dab_repo_mode(const dab_repo_t *r) { return r->opts.mode; }
