/*
 * loader.c - ONNX ModelProto -> dab_graph_t.
 *
 * The file is mapped read-only and unpacked by protobuf-c through dabba's
 * allocator. Initializer bytes are then moved out of the message into the
 * graph (the message's pointer is cleared), so a model costs one copy of its
 * weights, not two (4- and 2-bit types, which ONNX packs, are unpacked to a
 * byte per element: see tensor.h). Constant nodes become constant values. Every
 * size read from the file is checked before it is used.
 */
#include "onnx.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx.pb-c.h"

static void *pb_alloc(void *data, size_t size)
{
    (void)data;
    return dab_malloc(size);
}

static void pb_free(void *data, void *ptr)
{
    (void)data;
    dab_free(ptr);
}

static ProtobufCAllocator g_pb_alloc = {pb_alloc, pb_free, NULL};

typedef struct load_ctx {
    const char *base_dir; /* model folder for external data; NULL refuses it */
    dab_graph_t *root;    /* owns mappings */
    int depth;            /* subgraph nesting of the graph being built (0: the model's) */
    bool too_deep;        /* the nesting bound was hit: one short message replaces the chain */
} load_ctx_t;

/* ---- tensors ---- */

/* Resolves an external data location under base_dir; refuses paths that leave it. */
static int external_path(const char *base_dir, const char *location, const char *what,
                         char *out, size_t out_len, dab_err_t *err)
{
    if (!base_dir)
        return dab_err_set(err, DAB_EUNSUPPORTED,
                           "tensor '%s' uses external data, which needs a model file path", what);
    if (!location || !location[0] || location[0] == '/')
        return dab_err_set(err, DAB_EFORMAT,
                           "tensor '%s' has an invalid external data location '%s'", what,
                           location ? location : "");
    /* Refuse ".." components outright; realpath below also catches symlinks out. */
    for (const char *c = location; *c;) {
        size_t seg = strcspn(c, "/\\");
        if (seg == 2 && c[0] == '.' && c[1] == '.')
            return dab_err_set(err, DAB_EFORMAT,
                               "tensor '%s': external data location '%s' leaves the model's folder",
                               what, location);
        c += seg;
        if (*c)
            c++;
    }
    char dir_real[PATH_MAX], joined[PATH_MAX * 2];
    if (!realpath(base_dir, dir_real))
        return dab_err_set(err, DAB_EIO, "cannot resolve model folder %s", base_dir);
    snprintf(joined, sizeof joined, "%s/%s", dir_real, location);
    if (!realpath(joined, out) || strlen(out) >= out_len)
        return dab_err_set(err, DAB_EIO, "tensor '%s': external data file '%s' not found", what,
                           location);
    size_t dl = strlen(dir_real);
    if (strncmp(out, dir_real, dl) || out[dl] != '/')
        return dab_err_set(err, DAB_EFORMAT,
                           "tensor '%s': external data location '%s' leaves the model's folder",
                           what, location);
    return 0;
}

/* Maps the external bytes of tp. *data points into a mapping owned by ctx->root, or
 * into a copy (owned block in *copy) when the offset is misaligned or there is no root. */
static int load_external(load_ctx_t *ctx, const Onnx__TensorProto *tp, const char *what,
                         size_t bytes, void **data, void **copy, dab_err_t *err)
{
    const char *location = NULL;
    long long offset = 0, length = -1;
    for (size_t i = 0; i < tp->n_external_data; i++) {
        const char *k = tp->external_data[i]->key, *v = tp->external_data[i]->value;
        if (!k || !v)
            continue;
        char *end;
        if (!strcmp(k, "location")) {
            location = v;
        } else if (!strcmp(k, "offset") || !strcmp(k, "length")) {
            errno = 0;
            long long x = strtoll(v, &end, 10);
            if (errno || *end || x < 0)
                return dab_err_set(err, DAB_EFORMAT, "tensor '%s': bad external data %s '%s'",
                                   what, k, v);
            if (!strcmp(k, "offset"))
                offset = x;
            else
                length = x;
        }
    }
    char path[PATH_MAX];
    int rc = external_path(ctx->base_dir, location, what, path, sizeof path, err);
    if (rc)
        return rc;
    if (length >= 0 && (size_t)length != bytes)
        return dab_err_set(err, DAB_EFORMAT,
                           "tensor '%s': external data length %lld does not match its shape "
                           "(%zu bytes)",
                           what, length, bytes);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dab_err_set(err, DAB_EIO, "tensor '%s': cannot open external data '%s'", what,
                           location);
    struct stat st;
    if (fstat(fd, &st) || (unsigned long long)offset > (unsigned long long)st.st_size ||
        bytes > (size_t)st.st_size - (size_t)offset) {
        close(fd);
        return dab_err_set(err, DAB_EFORMAT,
                           "tensor '%s': external data '%s' is shorter than offset %lld + %zu "
                           "bytes",
                           what, location, offset, bytes);
    }
    *copy = NULL;
    if (bytes == 0) {
        close(fd);
        *copy = dab_malloc(1);
        *data = *copy;
        return *copy ? 0 : dab_err_set(err, DAB_ENOMEM, "out of memory");
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t map_off = (size_t)offset / page * page;
    size_t map_len = bytes + ((size_t)offset - map_off);
    void *m = mmap(NULL, map_len, PROT_READ, MAP_PRIVATE, fd, (off_t)map_off);
    close(fd);
    if (m == MAP_FAILED)
        return dab_err_set(err, DAB_EIO, "tensor '%s': cannot map external data '%s'", what,
                           location);
    char *p = (char *)m + ((size_t)offset - map_off);
    if (ctx->root && ((uintptr_t)p % 64) == 0) {
        if (dab_graph_own_mapping(ctx->root, m, map_len)) {
            munmap(m, map_len);
            return dab_err_set(err, DAB_ENOMEM, "out of memory");
        }
        *data = p;
        return 0;
    }
    *copy = dab_malloc(bytes);
    if (*copy)
        memcpy(*copy, p, bytes);
    munmap(m, map_len);
    if (!*copy)
        return dab_err_set(err, DAB_ENOMEM, "out of memory reading tensor '%s'", what);
    *data = *copy;
    return 0;
}

/*
 * Unpacks n elements of a 4- or 2-bit dtype from ONNX's packed form (first element in the
 * low bits) into one byte each, as tensor.h lays them out. in and out may not overlap.
 */
static void unpack_sub_byte(dab_dtype_t dt, const uint8_t *in, int64_t n, uint8_t *out)
{
    int bits = dab_dtype_packed_bits(dt), per = 8 / bits;
    unsigned mask = (1u << bits) - 1;
    bool is_signed = dt == DAB_DT_INT4 || dt == DAB_DT_INT2;
    for (int64_t i = 0; i < n; i++) {
        unsigned v = (unsigned)(in[i / per] >> (i % per * bits)) & mask;
        if (is_signed && (v >> (bits - 1)))
            v |= ~mask; /* sign-extend; the cast keeps the low byte */
        out[i] = (uint8_t)v;
    }
}

/* Bytes of numel elements of dt in ONNX's raw encoding (packed for 4- and 2-bit types). */
static size_t raw_bytes(dab_dtype_t dt, int64_t numel)
{
    int bits = dab_dtype_packed_bits(dt);
    if (bits >= 8)
        return (size_t)numel * (size_t)(bits / 8);
    return (size_t)((numel + 8 / bits - 1) / (8 / bits));
}

/* Copies a typed repeated field into a new block of numel elements. */
static int typed_data(Onnx__TensorProto *tp, dab_dtype_t dt, int64_t numel, const char *what,
                      size_t bytes, void **out, dab_err_t *err)
{
    int bits = dab_dtype_packed_bits(dt);
    if (bits < 8) {
        /* int32_data holds the packed bytes, one per value */
        size_t want = raw_bytes(dt, numel);
        if (tp->n_int32_data != want)
            return dab_err_set(err, DAB_EFORMAT,
                               "tensor '%s' holds %zu packed bytes but its shape needs %zu", what,
                               tp->n_int32_data, want);
        uint8_t *packed = dab_malloc(want ? want : 1), *d = dab_malloc(bytes ? bytes : 1);
        if (!packed || !d) {
            dab_free(packed);
            dab_free(d);
            return dab_err_set(err, DAB_ENOMEM, "out of memory reading tensor '%s'", what);
        }
        for (size_t i = 0; i < want; i++)
            packed[i] = (uint8_t)tp->int32_data[i];
        unpack_sub_byte(dt, packed, numel, d);
        dab_free(packed);
        *out = d;
        return 0;
    }
    size_t have;
    switch (dt) {
    case DAB_DT_FLOAT: have = tp->n_float_data; break;
    case DAB_DT_DOUBLE: have = tp->n_double_data; break;
    case DAB_DT_INT64: have = tp->n_int64_data; break;
    case DAB_DT_UINT32:
    case DAB_DT_UINT64: have = tp->n_uint64_data; break;
    case DAB_DT_INT32:
    case DAB_DT_INT16:
    case DAB_DT_INT8:
    case DAB_DT_UINT16:
    case DAB_DT_UINT8:
    case DAB_DT_BOOL:
    case DAB_DT_FLOAT16:
    case DAB_DT_BFLOAT16:
    case DAB_DT_FLOAT8E4M3FN:
    case DAB_DT_FLOAT8E4M3FNUZ:
    case DAB_DT_FLOAT8E5M2:
    case DAB_DT_FLOAT8E5M2FNUZ:
    case DAB_DT_FLOAT8E8M0: have = tp->n_int32_data; break;
    default:
        return dab_err_set(err, DAB_EUNSUPPORTED, "tensor '%s' has unsupported data type %s",
                           what, dab_dtype_name(dt));
    }
    if (have != (size_t)numel)
        return dab_err_set(err, DAB_EFORMAT,
                           "tensor '%s' holds %zu values but its shape needs %lld", what, have,
                           (long long)numel);
    void *d = dab_malloc(bytes ? bytes : 1);
    if (!d)
        return dab_err_set(err, DAB_ENOMEM, "out of memory reading tensor '%s'", what);
    for (int64_t i = 0; i < numel; i++) {
        switch (dt) {
        case DAB_DT_FLOAT: ((float *)d)[i] = tp->float_data[i]; break;
        case DAB_DT_DOUBLE: ((double *)d)[i] = tp->double_data[i]; break;
        case DAB_DT_INT64: ((int64_t *)d)[i] = tp->int64_data[i]; break;
        case DAB_DT_UINT32: ((uint32_t *)d)[i] = (uint32_t)tp->uint64_data[i]; break;
        case DAB_DT_UINT64: ((uint64_t *)d)[i] = tp->uint64_data[i]; break;
        case DAB_DT_INT32: ((int32_t *)d)[i] = tp->int32_data[i]; break;
        case DAB_DT_INT16: ((int16_t *)d)[i] = (int16_t)tp->int32_data[i]; break;
        case DAB_DT_INT8: ((int8_t *)d)[i] = (int8_t)tp->int32_data[i]; break;
        case DAB_DT_UINT16:
        case DAB_DT_FLOAT16:
        case DAB_DT_BFLOAT16: ((uint16_t *)d)[i] = (uint16_t)tp->int32_data[i]; break;
        case DAB_DT_UINT8:
        case DAB_DT_FLOAT8E4M3FN:
        case DAB_DT_FLOAT8E4M3FNUZ:
        case DAB_DT_FLOAT8E5M2:
        case DAB_DT_FLOAT8E5M2FNUZ:
        case DAB_DT_FLOAT8E8M0: ((uint8_t *)d)[i] = (uint8_t)tp->int32_data[i]; break;
        case DAB_DT_BOOL: ((uint8_t *)d)[i] = tp->int32_data[i] != 0; break;
        default: break;
        }
    }
    *out = d;
    return 0;
}

/*
 * A 4- or 2-bit tensor stored as raw or external bytes: unpacked into a new block of
 * numel bytes in *out (the caller owns it). A mapping made for external data stays with
 * ctx->root as load_external leaves it.
 */
static int packed_data(load_ctx_t *ctx, Onnx__TensorProto *tp, dab_tensor_t *t,
                       const char *what, void **out, dab_err_t *err)
{
    int64_t numel = dab_tensor_numel(t);
    size_t want = raw_bytes(t->dtype, numel);
    const void *src;
    void *copy = NULL;
    char shape_buf[128];
    if (tp->has_data_location &&
        tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
        void *ext;
        int rc = load_external(ctx, tp, what, want, &ext, &copy, err);
        if (rc)
            return rc;
        src = ext;
    } else {
        if (tp->raw_data.len != want)
            return dab_err_set(err, DAB_EFORMAT,
                               "tensor '%s' has %zu bytes of raw data but %s %s needs %zu",
                               what, tp->raw_data.len, dab_dtype_name(t->dtype),
                               dab_shape_str(t, shape_buf, sizeof shape_buf), want);
        src = tp->raw_data.data;
    }
    uint8_t *d = dab_malloc(numel ? (size_t)numel : 1);
    if (d)
        unpack_sub_byte(t->dtype, src, numel, d);
    dab_free(copy);
    if (!d)
        return dab_err_set(err, DAB_ENOMEM, "out of memory reading tensor '%s'", what);
    *out = d;
    return 0;
}

/* One block: dab_str_t[numel] followed by the NUL-terminated bytes. */
static int string_data(Onnx__TensorProto *tp, int64_t numel, const char *what, void **out,
                       dab_err_t *err)
{
    if (tp->n_string_data != (size_t)numel)
        return dab_err_set(err, DAB_EFORMAT,
                           "tensor '%s' holds %zu strings but its shape needs %lld", what,
                           tp->n_string_data, (long long)numel);
    size_t total = (size_t)numel * sizeof(dab_str_t);
    for (int64_t i = 0; i < numel; i++)
        total += tp->string_data[i].len + 1;
    char *block = dab_malloc(total ? total : 1);
    if (!block)
        return dab_err_set(err, DAB_ENOMEM, "out of memory reading tensor '%s'", what);
    dab_str_t *strs = (dab_str_t *)block;
    char *bytes = block + (size_t)numel * sizeof(dab_str_t);
    for (int64_t i = 0; i < numel; i++) {
        size_t l = tp->string_data[i].len;
        if (l)
            memcpy(bytes, tp->string_data[i].data, l);
        bytes[l] = 0;
        strs[i].ptr = bytes;
        strs[i].len = l;
        bytes += l + 1;
    }
    *out = block;
    return 0;
}

/*
 * Fills t from tp. The data block is returned in *owned (dab_malloc'd; the caller owns it)
 * unless it lives in a mapping owned by ctx->root (then *owned is NULL). raw_data is moved
 * out of tp.
 */
static int tensor_from_proto(load_ctx_t *ctx, Onnx__TensorProto *tp, const char *what,
                             dab_tensor_t *t, void **owned, dab_err_t *err)
{
    *owned = NULL;
    memset(t, 0, sizeof *t);
    if (!what || !what[0])
        what = tp->name && tp->name[0] ? tp->name : "(unnamed)";
    if (!tp->has_data_type || !dab_dtype_valid(tp->data_type))
        return dab_err_set(err, tp->has_data_type && tp->data_type > 0 ? DAB_EUNSUPPORTED : DAB_EFORMAT,
                           "tensor '%s' has unsupported or missing data type %d", what,
                           (int)tp->data_type);
    if (tp->segment)
        return dab_err_set(err, DAB_EUNSUPPORTED, "tensor '%s' is segmented", what);
    dab_dtype_t dt = (dab_dtype_t)tp->data_type;
    if (tp->n_dims > DAB_MAX_RANK)
        return dab_err_set(err, DAB_ELIMIT, "tensor '%s' has rank %zu; at most %d is supported",
                           what, tp->n_dims, DAB_MAX_RANK);
    size_t bytes;
    char label[300];
    snprintf(label, sizeof label, "tensor '%s'", what);
    int rc = dab_shape_check(label, dt == DAB_DT_STRING ? DAB_DT_UINT8 : dt, (int)tp->n_dims,
                             tp->dims, 0, &bytes, err);
    if (rc)
        return rc;
    dab_tensor_set_shape(t, dt, (int)tp->n_dims, tp->dims);
    int64_t numel = dab_tensor_numel(t);
    if (dt != DAB_DT_STRING)
        bytes = (size_t)numel * dab_dtype_size(dt);
    void *data = NULL;
    char shape_buf[128];
    bool external = tp->has_data_location &&
                    tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    if (dt == DAB_DT_STRING) {
        rc = string_data(tp, numel, what, owned, err);
        data = *owned;
    } else if (dab_dtype_packed_bits(dt) < 8 && (external || tp->has_raw_data)) {
        rc = packed_data(ctx, tp, t, what, owned, err);
        data = *owned;
    } else if (external) {
        rc = load_external(ctx, tp, what, bytes, &data, owned, err);
    } else if (tp->has_raw_data) {
        if (tp->raw_data.len != bytes)
            return dab_err_set(err, DAB_EFORMAT,
                               "tensor '%s' has %zu bytes of raw data but %s %s needs %zu",
                               what, tp->raw_data.len, dab_dtype_name(dt),
                               dab_shape_str(t, shape_buf, sizeof shape_buf), bytes);
        if (bytes == 0 || ((uintptr_t)tp->raw_data.data % 64) != 0) {
            *owned = dab_malloc(bytes ? bytes : 1);
            if (!*owned)
                return dab_err_set(err, DAB_ENOMEM, "out of memory reading tensor '%s'", what);
            if (bytes)
                memcpy(*owned, tp->raw_data.data, bytes);
        } else {
            /* Moved: protobuf-c allocated it with dab_malloc, so it is ours to free. */
            *owned = tp->raw_data.data;
            tp->raw_data.data = NULL;
            tp->raw_data.len = 0;
            tp->has_raw_data = 0;
        }
        data = *owned;
    } else {
        rc = typed_data(tp, dt, numel, what, bytes, owned, err);
        data = *owned;
    }
    if (rc)
        return rc;
    t->data = data;
    return 0;
}

/* A graph-owned tensor built from tp. */
static int graph_tensor(load_ctx_t *ctx, dab_graph_t *g, Onnx__TensorProto *tp, const char *what,
                        dab_tensor_t **out, dab_err_t *err)
{
    dab_tensor_t *t = dab_malloc(sizeof *t);
    if (!t || dab_graph_own(g, t))
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    void *owned;
    int rc = tensor_from_proto(ctx, tp, what, t, &owned, err);
    if (rc)
        return rc;
    if (dab_graph_own(g, owned))
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    *out = t;
    return 0;
}

/* ---- value types ---- */

static int set_value_type(dab_value_t *v, const Onnx__TypeProto *tp, bool required,
                          const char *role, dab_err_t *err)
{
    if (!tp)
        return 0;
    if (tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE) {
        if (!required)
            return 0;
        const char *kind = tp->value_case == ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE ? "a sequence"
                           : tp->value_case == ONNX__TYPE_PROTO__VALUE_MAP_TYPE    ? "a map"
                           : tp->value_case == ONNX__TYPE_PROTO__VALUE_OPTIONAL_TYPE
                               ? "an optional"
                           : tp->value_case == ONNX__TYPE_PROTO__VALUE_SPARSE_TENSOR_TYPE
                               ? "a sparse tensor"
                               : "of no type";
        return dab_err_set(err, DAB_EUNSUPPORTED, "%s '%s' is %s; only tensors are supported",
                           role, v->name, kind);
    }
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    if (!tt)
        return 0;
    if (tt->has_elem_type && tt->elem_type != 0) {
        if (!dab_dtype_valid(tt->elem_type)) {
            if (!required)
                return 0;
            return dab_err_set(err, DAB_EUNSUPPORTED, "%s '%s' has unsupported data type %d",
                               role, v->name, (int)tt->elem_type);
        }
        v->dtype = (dab_dtype_t)tt->elem_type;
    }
    if (tt->shape) {
        if (tt->shape->n_dim > DAB_MAX_RANK)
            return dab_err_set(err, DAB_ELIMIT, "%s '%s' has rank %zu; at most %d is supported",
                               role, v->name, tt->shape->n_dim, DAB_MAX_RANK);
        v->rank = (int)tt->shape->n_dim;
        for (int d = 0; d < v->rank; d++) {
            const Onnx__TensorShapeProto__Dimension *dim = tt->shape->dim[d];
            v->dims[d] = -1;
            if (dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
                if (dim->dim_value < 0)
                    return dab_err_set(err, DAB_EFORMAT,
                                       "%s '%s' has negative dimension %lld at axis %d", role,
                                       v->name, (long long)dim->dim_value, d);
                v->dims[d] = dim->dim_value;
            } else if (dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM &&
                       dim->dim_param && dim->dim_param[0]) {
                dab_free(v->dim_params[d]);
                v->dim_params[d] = dab_strdup(dim->dim_param);
                if (!v->dim_params[d])
                    return dab_err_set(err, DAB_ENOMEM, "out of memory");
            }
        }
    }
    return 0;
}

/* ---- attributes and nodes ---- */

static int build_graph(load_ctx_t *ctx, dab_graph_t *g, Onnx__GraphProto *gp, dab_err_t *err);

/* A graph attribute (If branch, Loop or Scan body): a graph of its own whose parent is g,
 * so that its nodes may read g's values by name. Nesting is bounded: files are outside
 * input, and every level costs a session and stack at run time. */
static int sub_graph(load_ctx_t *ctx, dab_graph_t *g, Onnx__GraphProto *gp,
                     const dab_graph_t **out, dab_err_t *err)
{
    if (ctx->depth >= DAB_GRAPH_MAX_DEPTH) {
        ctx->too_deep = true;
        return dab_err_set(err, DAB_ELIMIT, "subgraphs nest deeper than %d levels",
                           DAB_GRAPH_MAX_DEPTH);
    }
    dab_graph_t *sub = dab_graph_new(gp->name);
    if (!sub || dab_graph_own_subgraph(g, sub))
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    sub->parent = g;
    *out = sub;
    ctx->depth++;
    int rc = build_graph(ctx, sub, gp, err);
    ctx->depth--;
    if (rc && ctx->too_deep && !ctx->depth) /* the chain of names would hide the reason */
        dab_err_set(err, DAB_ELIMIT, "subgraph '%s' nests graphs deeper than %d levels",
                    sub->name, DAB_GRAPH_MAX_DEPTH);
    else if (rc && !ctx->too_deep)
        dab_err_prefix(err, "subgraph '%s': ", sub->name);
    return rc;
}

static char *own_str(dab_graph_t *g, const char *s, size_t len)
{
    char *p = dab_malloc(len + 1);
    if (!p || dab_graph_own(g, p))
        return NULL;
    if (len)
        memcpy(p, s, len);
    p[len] = 0;
    return p;
}

static void *own_copy(dab_graph_t *g, const void *src, size_t bytes)
{
    void *p = dab_malloc(bytes ? bytes : 1);
    if (!p || dab_graph_own(g, p))
        return NULL;
    if (bytes)
        memcpy(p, src, bytes);
    return p;
}

static int attr_from_proto(load_ctx_t *ctx, dab_graph_t *g, Onnx__AttributeProto *ap,
                           dab_attr_t *a, dab_err_t *err)
{
    const char *aname = ap->name ? ap->name : "";
    a->name = own_str(g, aname, strlen(aname));
    if (!a->name)
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    if (ap->ref_attr_name && ap->ref_attr_name[0])
        return dab_err_set(err, DAB_EUNSUPPORTED,
                           "attribute '%s' refers to a function attribute, which is only valid "
                           "inside functions",
                           aname);
    int type = ap->has_type ? (int)ap->type : 0;
    if (!type) { /* very old files omit the type: infer it from the field present */
        type = ap->has_f ? DAB_ATTR_FLOAT : ap->has_i ? DAB_ATTR_INT : ap->has_s ? DAB_ATTR_STRING
               : ap->t ? DAB_ATTR_TENSOR : ap->g ? DAB_ATTR_GRAPH : ap->n_floats ? DAB_ATTR_FLOATS
               : ap->n_ints ? DAB_ATTR_INTS : ap->n_strings ? DAB_ATTR_STRINGS
               : ap->n_tensors ? DAB_ATTR_TENSORS : ap->n_graphs ? DAB_ATTR_GRAPHS : 0;
    }
    a->type = (dab_attr_type_t)type;
    int rc = 0;
    switch (type) {
    case DAB_ATTR_FLOAT: a->f = ap->f; break;
    case DAB_ATTR_INT: a->i = ap->i; break;
    case DAB_ATTR_STRING:
        a->s = own_str(g, (const char *)ap->s.data, ap->s.len);
        a->s_len = ap->s.len;
        if (!a->s)
            return dab_err_set(err, DAB_ENOMEM, "out of memory");
        break;
    case DAB_ATTR_TENSOR:
        if (!ap->t)
            return dab_err_set(err, DAB_EFORMAT, "attribute '%s' has no tensor", aname);
        rc = graph_tensor(ctx, g, ap->t, aname, (dab_tensor_t **)&a->t, err);
        break;
    case DAB_ATTR_GRAPH:
        if (!ap->g)
            return dab_err_set(err, DAB_EFORMAT, "attribute '%s' has no graph", aname);
        rc = sub_graph(ctx, g, ap->g, &a->g, err);
        break;
    case DAB_ATTR_FLOATS:
        a->n = (int)ap->n_floats;
        a->floats = own_copy(g, ap->floats, ap->n_floats * sizeof(float));
        if (!a->floats)
            return dab_err_set(err, DAB_ENOMEM, "out of memory");
        break;
    case DAB_ATTR_INTS:
        a->n = (int)ap->n_ints;
        a->ints = own_copy(g, ap->ints, ap->n_ints * sizeof(int64_t));
        if (!a->ints)
            return dab_err_set(err, DAB_ENOMEM, "out of memory");
        break;
    case DAB_ATTR_STRINGS: {
        char **list = dab_calloc(ap->n_strings + 1, sizeof *list);
        if (!list || dab_graph_own(g, list))
            return dab_err_set(err, DAB_ENOMEM, "out of memory");
        for (size_t i = 0; i < ap->n_strings; i++)
            if (!(list[i] = own_str(g, (const char *)ap->strings[i].data, ap->strings[i].len)))
                return dab_err_set(err, DAB_ENOMEM, "out of memory");
        a->n = (int)ap->n_strings;
        a->strings = (const char *const *)list;
        break;
    }
    case DAB_ATTR_TENSORS: {
        dab_tensor_t *ts = dab_calloc(ap->n_tensors + 1, sizeof *ts);
        if (!ts || dab_graph_own(g, ts))
            return dab_err_set(err, DAB_ENOMEM, "out of memory");
        for (size_t i = 0; i < ap->n_tensors && !rc; i++) {
            void *owned;
            rc = tensor_from_proto(ctx, ap->tensors[i], aname, &ts[i], &owned, err);
            if (!rc && dab_graph_own(g, owned))
                return dab_err_set(err, DAB_ENOMEM, "out of memory");
        }
        a->n = (int)ap->n_tensors;
        a->tensors = ts;
        break;
    }
    case DAB_ATTR_GRAPHS: {
        const dab_graph_t **gs = dab_calloc(ap->n_graphs + 1, sizeof *gs);
        if (!gs || dab_graph_own(g, gs))
            return dab_err_set(err, DAB_ENOMEM, "out of memory");
        for (size_t i = 0; i < ap->n_graphs && !rc; i++)
            rc = sub_graph(ctx, g, ap->graphs[i], &gs[i], err);
        a->n = (int)ap->n_graphs;
        a->graphs = (const dab_graph_t *const *)gs;
        break;
    }
    default:
        return dab_err_set(err, DAB_EUNSUPPORTED, "attribute '%s' has unsupported type %d", aname,
                           type);
    }
    return rc;
}

/* Turns a Constant node into a constant value. */
static int fold_constant(load_ctx_t *ctx, dab_graph_t *g, Onnx__NodeProto *np, const char *desc,
                         dab_err_t *err)
{
    if (np->n_output != 1 || !np->output[0][0])
        return dab_err_set(err, DAB_EFORMAT, "%s must have exactly one output", desc);
    if (np->n_attribute != 1)
        return dab_err_set(err, DAB_EFORMAT, "%s must have exactly one value attribute", desc);
    Onnx__AttributeProto *ap = np->attribute[0];
    const char *an = ap->name ? ap->name : "";
    int vi = dab_graph_value(g, np->output[0]);
    if (vi < 0)
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    dab_value_t *v = &g->values[vi];
    if (v->const_data || v->is_input)
        return dab_err_set(err, DAB_EFORMAT, "%s writes '%s', which is already defined", desc,
                           v->name);
    if (!strcmp(an, "value")) {
        if (!ap->t)
            return dab_err_set(err, DAB_EFORMAT, "%s: attribute 'value' has no tensor", desc);
        int rc = graph_tensor(ctx, g, ap->t, v->name, &v->const_data, err);
        if (rc)
            return rc;
    } else {
        dab_tensor_t *t = dab_calloc(1, sizeof *t);
        if (!t || dab_graph_own(g, t))
            return dab_err_set(err, DAB_ENOMEM, "out of memory");
        int64_t n = 1;
        const void *src = NULL;
        size_t elem = 0;
        if (!strcmp(an, "value_float")) {
            t->dtype = DAB_DT_FLOAT, src = &ap->f, elem = 4;
        } else if (!strcmp(an, "value_int")) {
            t->dtype = DAB_DT_INT64, src = &ap->i, elem = 8;
        } else if (!strcmp(an, "value_floats")) {
            t->dtype = DAB_DT_FLOAT, src = ap->floats, elem = 4, n = (int64_t)ap->n_floats;
            t->rank = 1;
        } else if (!strcmp(an, "value_ints")) {
            t->dtype = DAB_DT_INT64, src = ap->ints, elem = 8, n = (int64_t)ap->n_ints;
            t->rank = 1;
        } else {
            return dab_err_set(err, DAB_EUNSUPPORTED, "%s: value attribute '%s' is not supported",
                               desc, an);
        }
        t->dims[0] = n;
        t->data = own_copy(g, src, (size_t)n * elem);
        if (!t->data)
            return dab_err_set(err, DAB_ENOMEM, "out of memory");
        v->const_data = t;
    }
    v->dtype = v->const_data->dtype;
    v->rank = v->const_data->rank;
    for (int d = 0; d < v->rank; d++)
        v->dims[d] = v->const_data->dims[d];
    return 0;
}

static int add_node(load_ctx_t *ctx, dab_graph_t *g, Onnx__NodeProto *np, int index,
                    dab_err_t *err)
{
    const char *op_type = np->op_type ? np->op_type : "";
    const char *domain = np->domain ? np->domain : "";
    char desc[256];
    const char *nname = np->name && np->name[0] ? np->name
                        : np->n_output && np->output[0][0] ? np->output[0]
                                                           : "";
    snprintf(desc, sizeof desc, "node '%s' (%s)", nname, op_type);
    if (!op_type[0])
        return dab_err_set(err, DAB_EFORMAT, "node %d has no op_type", index);
    if ((!domain[0] || !strcmp(domain, "ai.onnx")) && !strcmp(op_type, "Constant"))
        return fold_constant(ctx, g, np, desc, err);

    int ni = dab_graph_add_node(g);
    if (ni < 0)
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    dab_gnode_t *n = &g->nodes[ni];
    n->name = dab_strdup(nname);
    n->op_type = dab_strdup(op_type);
    n->domain = dab_strdup(domain);
    n->inputs = dab_malloc((np->n_input + 1) * sizeof *n->inputs);
    n->outputs = dab_malloc((np->n_output + 1) * sizeof *n->outputs);
    n->attrs = dab_calloc(np->n_attribute + 1, sizeof *n->attrs);
    if (!n->name || !n->op_type || !n->domain || !n->inputs || !n->outputs || !n->attrs)
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    for (size_t i = 0; i < np->n_input; i++) {
        int v = -1;
        if (np->input[i][0] && (v = dab_graph_value(g, np->input[i])) < 0)
            return dab_err_set(err, DAB_ENOMEM, "out of memory");
        n->inputs[n->n_inputs++] = v;
    }
    for (size_t i = 0; i < np->n_output; i++) {
        int v = -1;
        if (np->output[i][0] && (v = dab_graph_value(g, np->output[i])) < 0)
            return dab_err_set(err, DAB_ENOMEM, "out of memory");
        /* values may move when the array grows: re-fetch the node */
        g->nodes[ni].outputs[g->nodes[ni].n_outputs++] = v;
    }
    for (size_t i = 0; i < np->n_attribute; i++) {
        dab_attr_t *a = &g->nodes[ni].attrs[i];
        int rc = attr_from_proto(ctx, g, np->attribute[i], a, err);
        g->nodes[ni].n_attrs = (int)i + 1;
        if (rc)
            return dab_err_prefix(err, "%s: ", desc);
    }
    return 0;
}

static int build_graph(load_ctx_t *ctx, dab_graph_t *g, Onnx__GraphProto *gp, dab_err_t *err)
{
    int rc;
    if (gp->n_sparse_initializer)
        return dab_err_set(err, DAB_EUNSUPPORTED, "sparse initializers are not supported");
    for (size_t i = 0; i < gp->n_initializer; i++) {
        Onnx__TensorProto *tp = gp->initializer[i];
        if (!tp->name || !tp->name[0])
            return dab_err_set(err, DAB_EFORMAT, "initializer %zu has no name", i);
        int vi = dab_graph_value(g, tp->name);
        if (vi < 0)
            return dab_err_set(err, DAB_ENOMEM, "out of memory");
        if (g->values[vi].const_data)
            return dab_err_set(err, DAB_EFORMAT, "initializer '%s' is defined twice", tp->name);
        dab_tensor_t *t;
        rc = graph_tensor(ctx, g, tp, tp->name, &t, err);
        if (rc)
            return rc;
        dab_value_t *v = &g->values[vi];
        v->const_data = t;
        v->dtype = t->dtype;
        v->rank = t->rank;
        for (int d = 0; d < t->rank; d++)
            v->dims[d] = t->dims[d];
    }
    g->inputs = dab_malloc((gp->n_input + 1) * sizeof *g->inputs);
    g->outputs = dab_malloc((gp->n_output + 1) * sizeof *g->outputs);
    if (!g->inputs || !g->outputs)
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    for (size_t i = 0; i < gp->n_input; i++) {
        Onnx__ValueInfoProto *vp = gp->input[i];
        if (!vp->name || !vp->name[0])
            return dab_err_set(err, DAB_EFORMAT, "graph input %zu has no name", i);
        int vi = dab_graph_value(g, vp->name);
        if (vi < 0)
            return dab_err_set(err, DAB_ENOMEM, "out of memory");
        dab_value_t *v = &g->values[vi];
        if (v->const_data)
            continue; /* an initializer listed as input: served as the constant it is */
        if (v->is_input)
            return dab_err_set(err, DAB_EFORMAT, "graph input '%s' is declared twice", v->name);
        rc = set_value_type(v, vp->type, true, "input", err);
        if (rc)
            return rc;
        v->is_input = true;
        g->inputs[g->n_inputs++] = vi;
    }
    for (size_t i = 0; i < gp->n_value_info; i++) {
        Onnx__ValueInfoProto *vp = gp->value_info[i];
        if (!vp->name || !vp->name[0])
            continue;
        int vi = dab_graph_value(g, vp->name);
        if (vi < 0)
            return dab_err_set(err, DAB_ENOMEM, "out of memory");
        if (!g->values[vi].const_data && !g->values[vi].is_input &&
            (rc = set_value_type(&g->values[vi], vp->type, false, "value", err)))
            return rc;
    }
    for (size_t i = 0; i < gp->n_node; i++)
        if ((rc = add_node(ctx, g, gp->node[i], (int)i, err)))
            return rc;
    for (size_t i = 0; i < gp->n_output; i++) {
        Onnx__ValueInfoProto *vp = gp->output[i];
        if (!vp->name || !vp->name[0])
            return dab_err_set(err, DAB_EFORMAT, "graph output %zu has no name", i);
        int vi = dab_graph_value(g, vp->name);
        if (vi < 0)
            return dab_err_set(err, DAB_ENOMEM, "out of memory");
        dab_value_t *v = &g->values[vi];
        if (!v->const_data && !v->is_input && (rc = set_value_type(v, vp->type, true, "output", err)))
            return rc;
        v->is_output = true;
        g->outputs[g->n_outputs++] = vi;
    }
    return 0;
}

static int finalize_all(dab_graph_t *g, dab_err_t *err)
{
    int rc = dab_graph_finalize(g, err);
    for (int i = 0; !rc && i < g->n_subgraphs; i++) {
        rc = finalize_all(g->subgraphs[i], err);
        if (rc)
            dab_err_prefix(err, "subgraph '%s': ", g->subgraphs[i]->name);
    }
    return rc;
}

/* ---- nesting, before protobuf-c sees the bytes ---- */

/* Message types of onnx.proto that can nest without bound: graphs hold nodes, nodes
 * attributes, attributes graphs; types hold types (sequence, map, optional). */
enum { W_NONE, W_MODEL, W_TRAINING, W_FUNCTION, W_GRAPH, W_NODE, W_ATTR, W_VALUE, W_TYPE,
       W_TYPE_ELEM, W_TYPE_MAP };

/* The type of field `field` of a `type` message where it is one of the above, else W_NONE
 * (field numbers as in onnx.proto). */
static int wire_child(int type, uint64_t field)
{
    switch (type) {
    case W_MODEL: return field == 7 ? W_GRAPH : field == 20 ? W_TRAINING
                         : field == 25 ? W_FUNCTION : W_NONE;
    case W_TRAINING: return field == 1 || field == 2 ? W_GRAPH : W_NONE;
    case W_FUNCTION: return field == 7 ? W_NODE : W_NONE;
    case W_GRAPH: return field == 1 ? W_NODE : field >= 11 && field <= 13 ? W_VALUE : W_NONE;
    case W_NODE: return field == 5 ? W_ATTR : W_NONE;
    case W_ATTR: return field == 6 || field == 11 ? W_GRAPH
                        : field == 14 || field == 15 ? W_TYPE : W_NONE;
    case W_VALUE: return field == 2 ? W_TYPE : W_NONE;
    case W_TYPE: return field == 4 || field == 9 ? W_TYPE_ELEM : field == 5 ? W_TYPE_MAP
                        : W_NONE;
    case W_TYPE_ELEM: return field == 1 ? W_TYPE : W_NONE;
    case W_TYPE_MAP: return field == 2 ? W_TYPE : W_NONE;
    default: return W_NONE;
    }
}

static bool wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return true;
    }
    return false;
}

/* Deepest message nesting accepted: 3 levels per subgraph (graph, node, attribute) for
 * DAB_GRAPH_MAX_DEPTH of them, and room for types. */
#define WIRE_MAX_DEPTH (4 * DAB_GRAPH_MAX_DEPTH + 32)

/*
 * True when the message in [p, end) of `type` nests messages deeper than WIRE_MAX_DEPTH
 * along the recursive fields. protobuf-c unpacks recursively with no bound, so a small
 * file of deeply nested graphs would overflow the stack; this walk recurses only
 * WIRE_MAX_DEPTH deep. Malformed bytes end the walk (protobuf-c then refuses them).
 */
static bool wire_too_deep(const uint8_t *p, const uint8_t *end, int type, int depth)
{
    if (depth > WIRE_MAX_DEPTH)
        return true;
    while (p < end) {
        uint64_t key, v;
        if (!wire_varint(&p, end, &key))
            return false;
        switch (key & 7) {
        case 0:
            if (!wire_varint(&p, end, &v))
                return false;
            break;
        case 1:
            if (end - p < 8)
                return false;
            p += 8;
            break;
        case 5:
            if (end - p < 4)
                return false;
            p += 4;
            break;
        case 2: {
            if (!wire_varint(&p, end, &v) || v > (uint64_t)(end - p))
                return false;
            int child = wire_child(type, key >> 3);
            if (child != W_NONE && wire_too_deep(p, p + v, child, depth + 1))
                return true;
            p += v;
            break;
        }
        default: return false;
        }
    }
    return false;
}

int dab_onnx_load_buffer(const void *buf, size_t len, const char *base_dir, dab_graph_t **out,
                         dab_err_t *err)
{
    *out = NULL;
    if (wire_too_deep(buf, (const uint8_t *)buf + len, W_MODEL, 0))
        return dab_err_set(err, DAB_ELIMIT,
                           "the model nests graphs or types deeper than dabba accepts (%d "
                           "levels of subgraphs)",
                           DAB_GRAPH_MAX_DEPTH);
    Onnx__ModelProto *mp = onnx__model_proto__unpack(&g_pb_alloc, len, buf);
    if (!mp)
        return dab_err_set(err, DAB_EFORMAT,
                           "not a valid ONNX model: the protobuf message cannot be parsed "
                           "(truncated or corrupt file?)");
    int rc = 0;
    dab_graph_t *g = NULL;
    if (!mp->graph) {
        rc = dab_err_set(err, DAB_EFORMAT, "the ONNX model has no graph");
        goto done;
    }
    /* Model-local functions are not expanded: a node that calls one is reported as an
     * unknown operator by name. */
    g = dab_graph_new(mp->graph->name);
    if (!g) {
        rc = dab_err_set(err, DAB_ENOMEM, "out of memory");
        goto done;
    }
    g->opsets = dab_calloc(mp->n_opset_import + 1, sizeof *g->opsets);
    if (!g->opsets) {
        rc = dab_err_set(err, DAB_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < mp->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *op = mp->opset_import[i];
        g->opsets[i].domain = dab_strdup(op->domain ? op->domain : "");
        g->opsets[i].version = op->has_version ? op->version : 1;
        g->n_opsets++;
        if (!g->opsets[i].domain) {
            rc = dab_err_set(err, DAB_ENOMEM, "out of memory");
            goto done;
        }
        if (g->opsets[i].version < 1 || g->opsets[i].version > 1000) {
            rc = dab_err_set(err, DAB_EFORMAT, "opset import for domain '%s' has version %lld",
                             g->opsets[i].domain, (long long)g->opsets[i].version);
            goto done;
        }
    }
    if (!mp->n_opset_import) { /* IR version 1-2 files: ai.onnx version 1 */
        g->opsets[0].domain = dab_strdup("");
        g->opsets[0].version = 1;
        if (!g->opsets[0].domain) {
            rc = dab_err_set(err, DAB_ENOMEM, "out of memory");
            goto done;
        }
        g->n_opsets = 1;
    }
    load_ctx_t ctx = {base_dir, g, 0, false};
    rc = build_graph(&ctx, g, mp->graph, err);
    if (!rc)
        rc = finalize_all(g, err);
done:
    onnx__model_proto__free_unpacked(mp, &g_pb_alloc);
    if (rc) {
        dab_graph_free(g);
        return rc;
    }
    *out = g;
    return 0;
}

/* Maps a whole file read-only. */
static int map_file(const char *path, void **addr, size_t *len, dab_err_t *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dab_err_set(err, errno == ENOENT ? DAB_ENOTFOUND : DAB_EIO, "cannot open %s: %s",
                           path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return dab_err_set(err, DAB_EIO, "%s is not a regular file", path);
    }
    *len = (size_t)st.st_size;
    if (*len == 0) {
        close(fd);
        *addr = NULL;
        return 0;
    }
    void *m = mmap(NULL, *len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return dab_err_set(err, DAB_EIO, "cannot map %s", path);
    *addr = m;
    return 0;
}

int dab_onnx_load_file(const char *path, dab_graph_t **out, dab_err_t *err)
{
    *out = NULL;
    void *m = NULL;
    size_t len = 0;
    int rc = map_file(path, &m, &len, err);
    if (rc)
        return rc;
    if (!len)
        return dab_err_set(err, DAB_EFORMAT, "%s is empty", path);
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");
    rc = dab_onnx_load_buffer(m, len, dir, out, err);
    munmap(m, len);
    return rc;
}

int dab_onnx_parse_tensor(const void *buf, size_t len, dab_tensor_t *t, char **name,
                          dab_err_t *err)
{
    if (name)
        *name = NULL;
    Onnx__TensorProto *tp = onnx__tensor_proto__unpack(&g_pb_alloc, len, buf);
    if (!tp)
        return dab_err_set(err, DAB_EFORMAT, "not a valid TensorProto");
    load_ctx_t ctx = {NULL, NULL, 0, false};
    void *owned = NULL;
    int rc = tensor_from_proto(&ctx, tp, NULL, t, &owned, err);
    if (!rc && name && !(*name = dab_strdup(tp->name ? tp->name : ""))) {
        dab_free(owned);
        rc = dab_err_set(err, DAB_ENOMEM, "out of memory");
    }
    if (rc)
        memset(t, 0, sizeof *t);
    onnx__tensor_proto__free_unpacked(tp, &g_pb_alloc);
    return rc;
}

int dab_onnx_read_tensor_file(const char *path, dab_tensor_t *t, char **name, dab_err_t *err)
{
    void *m = NULL;
    size_t len = 0;
    int rc = map_file(path, &m, &len, err);
    if (rc)
        return rc;
    rc = dab_onnx_parse_tensor(m ? m : "", len, t, name, err);
    if (m)
        munmap(m, len);
    if (rc)
        dab_err_prefix(err, "%s: ", path);
    return rc;
}
