/*
 * dnnl.c - float32 matmul, convolution, transposed convolution and pooling on oneDNN.
 *
 * One oneDNN engine serves the process (created on first use, pthread_once). A
 * dab_dnnl_prim_t wraps one primitive for one geometry plus everything a run needs, so
 * that a run only re-binds pointers (dnnl_memory_set_data_handle) and executes:
 *   - memory objects for each argument, created once without storage;
 *   - when the primitive prefers another layout than the ONNX one (blocked activations,
 *     packed weights), reorder primitives whose temporary buffers live in the caller's
 *     scratch, beside the primitive's own user-mode scratchpad;
 *   - constant weights, reordered once at creation into a buffer the prim owns.
 * Nothing here allocates from the heap during dab_dnnl_prim_run.
 */
#include "../kernels.h"

#include <dnnl.h>
#include <dnnl_debug.h>
#include <omp.h>
#include <pthread.h>
#include <string.h>

static pthread_once_t g_engine_once = PTHREAD_ONCE_INIT;
static dnnl_engine_t g_engine; /* written once under g_engine_once, then read-only */
static dnnl_status_t g_engine_status;

static void engine_init(void)
{
    g_engine_status = dnnl_engine_create(&g_engine, dnnl_cpu, 0);
}

static int engine_get(dnnl_engine_t *out, dab_err_t *err)
{
    pthread_once(&g_engine_once, engine_init);
    if (g_engine_status != dnnl_success)
        return dab_err_set(err, DAB_EINTERNAL, "cannot create the oneDNN CPU engine: %s",
                           dnnl_status2str(g_engine_status));
    *out = g_engine;
    return 0;
}

/* oneDNN sizes its work split from the calling thread's OpenMP setting, when the
 * primitive descriptor is created and again when it runs: both happen under the
 * primitive's own team size, restoring the caller's afterwards (a per-thread setting,
 * changing it costs nothing). */
static int threads_enter(int threads)
{
    int cur = omp_get_max_threads();
    if (threads > 0 && threads != cur)
        omp_set_num_threads(threads);
    return cur;
}

static void threads_leave(int threads, int saved)
{
    if (threads > 0 && threads != saved)
        omp_set_num_threads(saved);
}

/* Errors from building a primitive: "unimplemented" and argument rejections mean the
 * caller should use the reference kernel; the rest are real failures. */
static int build_fail(dab_err_t *err, dnnl_status_t st, const char *what)
{
    if (st == dnnl_out_of_memory)
        return dab_err_set(err, DAB_ENOMEM, "oneDNN ran out of memory building %s", what);
    if (st == dnnl_unimplemented || st == dnnl_invalid_arguments)
        return dab_err_set(err, DAB_EUNSUPPORTED, "oneDNN has no %s for this geometry (%s)", what,
                           dnnl_status2str(st));
    return dab_err_set(err, DAB_EINTERNAL, "oneDNN failed building %s: %s", what,
                       dnnl_status2str(st));
}

static int run_fail(dab_err_t *err, dnnl_status_t st, const char *what)
{
    return dab_err_set(err, st == dnnl_out_of_memory ? DAB_ENOMEM : DAB_EINTERNAL,
                       "oneDNN %s failed: %s", what, dnnl_status2str(st));
}

/* A layout conversion between an argument's ONNX layout (user) and the primitive's. */
typedef struct reorder {
    dnnl_primitive_t prim; /* NULL when the layouts agree */
    dnnl_memory_t user;    /* ONNX-layout side; the primitive side is the prim's memory */
    dnnl_memory_t pad;     /* its scratchpad, or NULL */
    size_t pad_off;
} reorder_t;

/*
 * Constant weights in a primitive's layout. Primitives of one node for different shapes
 * usually want the same layout: they share one buffer (dab_dnnl_prim_share_weights).
 * Owned by the node's primitives (refs), used by the one thread running the node.
 */
typedef struct packed {
    int refs;
    size_t bytes;
    void *data;
    const void *from; /* the weights `data` holds now (the constant, or a run's override) */
} packed_t;

static void packed_release(packed_t *pk)
{
    if (pk && --pk->refs == 0) {
        dab_free(pk->data);
        dab_free(pk);
    }
}

struct dab_dnnl_prim {
    const char *what; /* "matmul", "convolution", ... for messages */
    int threads;      /* OpenMP team size it was planned for and runs with */
    dnnl_primitive_t prim;
    dnnl_stream_t stream;
    dnnl_memory_t src, wei, bias, dst,
        pad; /* in the primitive's layouts; wei/bias/pad may be NULL */
    reorder_t src_r, wei_r, dst_r;
    size_t src_off, wei_off, dst_off, pad_off; /* offsets into the caller's scratch */
    size_t scratch_bytes;
    packed_t *packed;    /* constant weights in the primitive's layout, or NULL */
    const void *const_w; /* the constant they were packed from */
};

/* Reserves bytes (64-aligned) in the scratch layout; returns the offset. */
static size_t take(size_t *total, size_t bytes)
{
    size_t off = DAB_ALIGN_UP(*total, 64);
    *total = off + DAB_ALIGN_UP(bytes, 64);
    return off;
}

static void dense_strides(int nd, const dnnl_dims_t dims, dnnl_dims_t strides)
{
    dnnl_dim_t s = 1;
    for (int d = nd - 1; d >= 0; d--) {
        strides[d] = s;
        s *= dims[d] > 0 ? dims[d] : 1;
    }
}

static dnnl_status_t md_dense(dnnl_memory_desc_t *md, int nd, const dnnl_dims_t dims)
{
    dnnl_dims_t st;
    dense_strides(nd, dims, st);
    return dnnl_memory_desc_init_by_strides(md, nd, dims, dnnl_f32, st);
}

static int mem_new(dnnl_memory_t *m, const dnnl_memory_desc_t *md, dab_err_t *err)
{
    dnnl_status_t st = dnnl_memory_create(m, md, g_engine, DNNL_MEMORY_NONE);
    return st == dnnl_success ? 0 : run_fail(err, st, "memory creation");
}

static void reorder_free(reorder_t *r)
{
    if (r->prim)
        dnnl_primitive_destroy(r->prim);
    if (r->user)
        dnnl_memory_destroy(r->user);
    if (r->pad)
        dnnl_memory_destroy(r->pad);
    memset(r, 0, sizeof *r);
}

/* Builds a reorder from -> to (user side `user_md` is `from` when to_prim, else `to`). */
static int reorder_new(reorder_t *r, const dnnl_memory_desc_t *user_md,
                       const dnnl_memory_desc_t *prim_md, int to_prim, size_t *total,
                       dab_err_t *err)
{
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_primitive_attr_create(&attr);
    if (st == dnnl_success)
        st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (st == dnnl_success)
        st = dnnl_reorder_primitive_desc_create(&pd, to_prim ? user_md : prim_md, g_engine,
                                                to_prim ? prim_md : user_md, g_engine, attr);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success)
        return build_fail(err, st, "reorder");
    int rc = 0;
    st = dnnl_primitive_create(&r->prim, pd);
    if (st != dnnl_success) {
        r->prim = NULL;
        rc = run_fail(err, st, "reorder creation");
        goto out;
    }
    rc = mem_new(&r->user, user_md, err);
    if (rc)
        goto out;
    const dnnl_memory_desc_t *pmd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t pbytes = pmd ? dnnl_memory_desc_get_size(pmd) : 0;
    if (pbytes > 0) {
        rc = mem_new(&r->pad, pmd, err);
        r->pad_off = take(total, pbytes);
    }
out:
    dnnl_primitive_desc_destroy(pd);
    return rc;
}

static dnnl_status_t reorder_exec(const reorder_t *r, dnnl_memory_t prim_mem, int to_prim,
                                  dnnl_stream_t stream, char *scratch)
{
    dnnl_exec_arg_t args[3];
    int n = 0;
    args[n++] = (dnnl_exec_arg_t){DNNL_ARG_FROM, to_prim ? r->user : prim_mem};
    args[n++] = (dnnl_exec_arg_t){DNNL_ARG_TO, to_prim ? prim_mem : r->user};
    if (r->pad) {
        dnnl_memory_set_data_handle(r->pad, scratch + r->pad_off);
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, r->pad};
    }
    return dnnl_primitive_execute(r->prim, stream, n, args);
}

void dab_dnnl_prim_free(dab_dnnl_prim_t *p)
{
    if (!p)
        return;
    reorder_free(&p->src_r);
    reorder_free(&p->wei_r);
    reorder_free(&p->dst_r);
    dnnl_memory_t mems[] = {p->src, p->wei, p->bias, p->dst, p->pad};
    for (size_t i = 0; i < DAB_ARRAY_LEN(mems); i++)
        if (mems[i])
            dnnl_memory_destroy(mems[i]);
    if (p->prim)
        dnnl_primitive_destroy(p->prim);
    if (p->stream)
        dnnl_stream_destroy(p->stream);
    packed_release(p->packed);
    dab_free(p);
}

/*
 * Second half of every create: from the primitive descriptor, makes the primitive, its
 * memories and the reorders between the ONNX layouts (user_*) and the chosen ones, lays
 * out the scratch, and packs constant weights. Takes ownership of pd (destroys it).
 */
static int prim_finish(dab_dnnl_prim_t *p, dnnl_primitive_desc_t pd,
                       const dnnl_memory_desc_t *user_src, const dnnl_memory_desc_t *user_wei,
                       int has_bias, const dnnl_memory_desc_t *user_dst, const float *const_w,
                       dab_err_t *err)
{
    int rc = 0;
    size_t total = 0;
    dnnl_status_t st = dnnl_primitive_create(&p->prim, pd);
    if (st != dnnl_success) {
        p->prim = NULL;
        rc = run_fail(err, st, "primitive creation");
        goto out;
    }
    st = dnnl_stream_create(&p->stream, g_engine, dnnl_stream_default_flags);
    if (st != dnnl_success) {
        p->stream = NULL;
        rc = run_fail(err, st, "stream creation");
        goto out;
    }

    const dnnl_memory_desc_t *src_md = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *dst_md = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    if ((rc = mem_new(&p->src, src_md, err)) || (rc = mem_new(&p->dst, dst_md, err)))
        goto out;
    if (!dnnl_memory_desc_equal(src_md, user_src)) {
        if ((rc = reorder_new(&p->src_r, user_src, src_md, 1, &total, err)))
            goto out;
        p->src_off = take(&total, dnnl_memory_desc_get_size(src_md));
    }
    if (!dnnl_memory_desc_equal(dst_md, user_dst)) {
        if ((rc = reorder_new(&p->dst_r, user_dst, dst_md, 0, &total, err)))
            goto out;
        p->dst_off = take(&total, dnnl_memory_desc_get_size(dst_md));
    }

    if (user_wei) {
        const dnnl_memory_desc_t *wei_md =
            dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        if ((rc = mem_new(&p->wei, wei_md, err)))
            goto out;
        if (!dnnl_memory_desc_equal(wei_md, user_wei)) {
            if ((rc = reorder_new(&p->wei_r, user_wei, wei_md, 1, &total, err)))
                goto out;
            size_t wbytes = dnnl_memory_desc_get_size(wei_md);
            if (const_w) {
                p->packed = dab_calloc(1, sizeof *p->packed);
                if (p->packed) {
                    p->packed->refs = 1;
                    p->packed->bytes = wbytes;
                    p->packed->data = dab_malloc_aligned(wbytes, 64);
                }
                if (!p->packed || !p->packed->data) {
                    rc = dab_err_set(err, DAB_ENOMEM, "no memory for %zu bytes of packed weights",
                                     wbytes);
                    goto out;
                }
                dnnl_memory_set_data_handle(p->wei, p->packed->data);
            } else {
                p->wei_off = take(&total, wbytes);
            }
        }
        if (has_bias) {
            const dnnl_memory_desc_t *b_md =
                dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1);
            if ((rc = mem_new(&p->bias, b_md, err)))
                goto out;
        }
    }

    const dnnl_memory_desc_t *pad_md =
        dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t pad_bytes = pad_md ? dnnl_memory_desc_get_size(pad_md) : 0;
    if (pad_bytes > 0) {
        if ((rc = mem_new(&p->pad, pad_md, err)))
            goto out;
        p->pad_off = take(&total, pad_bytes);
    }
    p->scratch_bytes = total;

    if (p->packed) {
        /* Pack the constant weights now; the reorder's own scratchpad is temporary. */
        void *tmp = NULL;
        if (p->wei_r.pad) {
            tmp = dab_malloc_aligned(total, 64);
            if (!tmp) {
                rc = dab_err_set(err, DAB_ENOMEM, "no memory for %zu bytes of reorder scratch",
                                 total);
                goto out;
            }
        }
        dnnl_memory_set_data_handle(p->wei_r.user, (void *)const_w);
        int saved = threads_enter(p->threads);
        st = reorder_exec(&p->wei_r, p->wei, 1, p->stream, tmp);
        if (st == dnnl_success)
            st = dnnl_stream_wait(p->stream);
        threads_leave(p->threads, saved);
        dab_free(tmp);
        if (st != dnnl_success) {
            rc = run_fail(err, st, "weights reorder");
            goto out;
        }
        p->const_w = const_w;
        p->packed->from = const_w;
    }
out:
    dnnl_primitive_desc_destroy(pd);
    return rc;
}

/* oneDNN's eltwise algorithm for a fused activation (0 for none). */
static dnnl_alg_kind_t act_alg(const dab_act_t *act)
{
    switch (act ? act->kind : DAB_ACT_NONE) {
    case DAB_ACT_RELU: return dnnl_eltwise_relu;
    case DAB_ACT_SIGMOID: return dnnl_eltwise_logistic;
    case DAB_ACT_TANH: return dnnl_eltwise_tanh;
    case DAB_ACT_CLIP: return dnnl_eltwise_clip_v2;
    case DAB_ACT_GELU_ERF: return dnnl_eltwise_gelu_erf;
    case DAB_ACT_GELU_TANH: return dnnl_eltwise_gelu_tanh;
    case DAB_ACT_HARDSWISH: return dnnl_eltwise_hardswish;
    default: return (dnnl_alg_kind_t)0;
    }
}

static dnnl_status_t attr_new(dnnl_primitive_attr_t *attr, float alpha, int sum,
                              const dab_act_t *act)
{
    dnnl_status_t st = dnnl_primitive_attr_create(attr);
    if (st != dnnl_success)
        return st;
    st = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
    if (st == dnnl_success && alpha != 1.0f)
        st = dnnl_primitive_attr_set_output_scales(*attr, 1, 0, &alpha);
    dnnl_alg_kind_t alg = act_alg(act);
    if (st == dnnl_success && (sum || alg)) {
        dnnl_post_ops_t po;
        st = dnnl_post_ops_create(&po);
        if (st == dnnl_success) {
            if (sum)
                st = dnnl_post_ops_append_sum(po, 1.0f);
            if (st == dnnl_success && alg)
                st = dnnl_post_ops_append_eltwise(po, 1.0f, alg, act->alpha, act->beta);
            if (st == dnnl_success)
                st = dnnl_primitive_attr_set_post_ops(*attr, po);
            dnnl_post_ops_destroy(po);
        }
    }
    if (st != dnnl_success) {
        dnnl_primitive_attr_destroy(*attr);
        *attr = NULL;
    }
    return st;
}

static dab_dnnl_prim_t *prim_alloc(const char *what, int threads, dab_err_t *err)
{
    dab_dnnl_prim_t *p = dab_calloc(1, sizeof *p);
    if (!p) {
        dab_err_set(err, DAB_ENOMEM, "no memory for a oneDNN %s", what);
    } else {
        p->what = what;
        p->threads = threads;
    }
    return p;
}

/* dnnl_primitive_desc_create under the primitive's team size. */
static dnnl_status_t pd_create(dnnl_primitive_desc_t *pd, const void *desc,
                               dnnl_primitive_attr_t attr, dnnl_engine_t eng, int threads)
{
    int saved = threads_enter(threads);
    dnnl_status_t st = dnnl_primitive_desc_create(pd, desc, attr, eng, NULL);
    threads_leave(threads, saved);
    return st;
}

int dab_dnnl_matmul_create(const dab_matmul_geom_t *g, int bias, const float *const_b, int threads,
                           dab_dnnl_prim_t **out, dab_err_t *err)
{
    dnnl_engine_t eng = NULL;
    int rc = engine_get(&eng, err);
    if (rc)
        return rc;
    const int r = g->batch_rank + 2;
    if (r > DNNL_MAX_NDIMS)
        return dab_err_set(err, DAB_EUNSUPPORTED, "oneDNN matmul takes at most %d dims",
                           DNNL_MAX_NDIMS);
    if (bias && g->alpha != 1.0)
        return dab_err_set(err, DAB_EUNSUPPORTED, "oneDNN matmul bias needs alpha == 1 here");
    dnnl_dims_t ad, as, bd, bs, cd, biasd;
    int b_batched = 0;
    dnnl_dim_t a_run = g->m * g->k, b_run = g->k * g->n;
    ad[r - 2] = g->m, ad[r - 1] = g->k, as[r - 2] = g->a_rs, as[r - 1] = g->a_cs;
    bd[r - 2] = g->k, bd[r - 1] = g->n, bs[r - 2] = g->b_rs, bs[r - 1] = g->b_cs;
    cd[r - 2] = g->m, cd[r - 1] = g->n;
    biasd[r - 2] = 1, biasd[r - 1] = g->n;
    for (int d = g->batch_rank - 1; d >= 0; d--) {
        ad[d] = g->a_bstride[d] ? g->batch[d] : 1;
        bd[d] = g->b_bstride[d] ? g->batch[d] : 1;
        b_batched |= bd[d] != 1;
        as[d] = g->a_bstride[d] ? g->a_bstride[d] : a_run;
        bs[d] = g->b_bstride[d] ? g->b_bstride[d] : b_run;
        a_run = as[d] * ad[d];
        b_run = bs[d] * bd[d];
        cd[d] = g->batch[d];
        biasd[d] = 1;
    }
    if (b_batched)
        const_b = NULL;

    dnnl_memory_desc_t a_md, b_md, b_prim_md, c_md, bias_md;
    dnnl_status_t st = dnnl_memory_desc_init_by_strides(&a_md, r, ad, dnnl_f32, as);
    if (st == dnnl_success)
        st = dnnl_memory_desc_init_by_strides(&b_md, r, bd, dnnl_f32, bs);
    if (st == dnnl_success)
        st = md_dense(&c_md, r, cd);
    if (st == dnnl_success)
        st = md_dense(&bias_md, r, biasd);
    b_prim_md = b_md;
    if (st == dnnl_success && const_b)
        st = dnnl_memory_desc_init_by_tag(&b_prim_md, r, bd, dnnl_f32, dnnl_format_tag_any);
    if (st != dnnl_success)
        return build_fail(err, st, "matmul memory descriptor");

    dnnl_matmul_desc_t desc;
    st = dnnl_matmul_desc_init(&desc, &a_md, &b_prim_md, bias ? &bias_md : NULL, &c_md);
    if (st != dnnl_success)
        return build_fail(err, st, "matmul");
    dnnl_primitive_attr_t attr;
    st = attr_new(&attr, (float)g->alpha, g->accumulate, &g->act);
    if (st != dnnl_success)
        return build_fail(err, st, "matmul attributes");
    dnnl_primitive_desc_t pd;
    st = pd_create(&pd, &desc, attr, eng, threads);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success)
        return build_fail(err, st, "matmul");

    dab_dnnl_prim_t *p = prim_alloc("matmul", threads, err);
    if (!p) {
        dnnl_primitive_desc_destroy(pd);
        return DAB_ENOMEM;
    }
    rc = prim_finish(p, pd, &a_md, &b_md, bias, &c_md, const_b, err);
    if (rc) {
        dab_dnnl_prim_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

/*
 * Whether a convolution lets oneDNN pick blocked activation layouts (nChw16c...,
 * reordered through scratch on every run) or runs on the plain NC[D]HW tensors. Blocked
 * kernels win for spatial kernels even after paying both reorders (3x3 64->64 at 56x56:
 * 1.3 ms vs 1.8 ms on one core); a pointwise stride-1 convolution is a plain GEMM on
 * NCHW, where the reorders cost more than they save (1x1 256->64 at 56x56: 0.49 ms
 * plain vs 0.96 ms blocked).
 */
static int conv_blocked_layout(const dab_conv_geom_t *g, int transposed)
{
    if (transposed)
        return 1;
    for (int i = 0; i < g->nsp; i++)
        if (g->k[i] != 1 || g->stride[i] != 1 || g->pad_lo[i] || g->pad_hi[i])
            return 1;
    return 0;
}

int dab_dnnl_conv_create(const dab_conv_geom_t *g, int transposed, int bias, const float *const_w,
                         int threads, dab_dnnl_prim_t **out, dab_err_t *err)
{
    dnnl_engine_t eng = NULL;
    int rc = engine_get(&eng, err);
    if (rc)
        return rc;
    const char *what = transposed ? "deconvolution" : "convolution";
    const int nsp = g->nsp, nd = nsp + 2;
    const int64_t G = g->group, icg = g->c_in / G, ocg = g->c_out / G;
    dnnl_dims_t sd, dd, wd, ws, bd, strides, dil, pl, pr;
    sd[0] = dd[0] = g->n;
    sd[1] = g->c_in;
    dd[1] = g->c_out;
    bd[0] = g->c_out;
    int64_t ksz = 1;
    for (int i = 0; i < nsp; i++) {
        sd[2 + i] = g->in[i];
        dd[2 + i] = g->out[i];
        strides[i] = g->stride[i];
        dil[i] = g->dil[i] - 1;
        pl[i] = g->pad_lo[i];
        int64_t kd = (g->k[i] - 1) * g->dil[i] + 1;
        if (!transposed) {
            int64_t r = (g->out[i] - 1) * g->stride[i] + kd - g->in[i] - g->pad_lo[i];
            pr[i] = r > 0 ? r : 0;
        } else {
            pr[i] = (g->in[i] - 1) * g->stride[i] + kd - g->pad_lo[i] - g->out[i];
            if (pl[i] < 0 || pr[i] < 0)
                return dab_err_set(err, DAB_EUNSUPPORTED,
                                   "oneDNN deconvolution takes no negative padding");
        }
        ksz *= g->k[i];
    }
    /* Weights: logical [G,] OC/G, IC/G, k... over the ONNX layouts
     * Conv [OC, IC/G, k...] and ConvTranspose [IC, OC/G, k...]. */
    int wnd = G > 1 ? nd + 1 : nd, w0 = G > 1 ? 1 : 0;
    if (G > 1) {
        wd[0] = G;
        ws[0] = icg * ocg * ksz;
    }
    wd[w0] = ocg;
    wd[w0 + 1] = icg;
    ws[w0] = transposed ? ksz : icg * ksz;
    ws[w0 + 1] = transposed ? ocg * ksz : ksz;
    {
        int64_t s = 1;
        for (int i = nsp - 1; i >= 0; i--) {
            wd[w0 + 2 + i] = g->k[i];
            ws[w0 + 2 + i] = s;
            s *= g->k[i];
        }
    }
    dnnl_memory_desc_t s_md, d_md, w_md, b_md, s_any, d_any, w_any;
    dnnl_status_t st = md_dense(&s_md, nd, sd);
    if (st == dnnl_success)
        st = md_dense(&d_md, nd, dd);
    if (st == dnnl_success)
        st = dnnl_memory_desc_init_by_strides(&w_md, wnd, wd, dnnl_f32, ws);
    if (st == dnnl_success)
        st = md_dense(&b_md, 1, bd);
    s_any = s_md, d_any = d_md, w_any = w_md;
    const int blocked = conv_blocked_layout(g, transposed);
    if (st == dnnl_success && blocked)
        st = dnnl_memory_desc_init_by_tag(&s_any, nd, sd, dnnl_f32, dnnl_format_tag_any);
    if (st == dnnl_success && blocked)
        st = dnnl_memory_desc_init_by_tag(&d_any, nd, dd, dnnl_f32, dnnl_format_tag_any);
    if (st == dnnl_success && const_w)
        st = dnnl_memory_desc_init_by_tag(&w_any, wnd, wd, dnnl_f32, dnnl_format_tag_any);
    if (st != dnnl_success)
        return build_fail(err, st, "convolution memory descriptor");

    union {
        dnnl_convolution_desc_t c;
        dnnl_deconvolution_desc_t d;
    } desc;
    if (!transposed)
        st = dnnl_dilated_convolution_forward_desc_init(
            &desc.c, dnnl_forward_inference, dnnl_convolution_direct, &s_any, &w_any,
            bias ? &b_md : NULL, &d_any, strides, dil, pl, pr);
    else
        st = dnnl_dilated_deconvolution_forward_desc_init(
            &desc.d, dnnl_forward_inference, dnnl_deconvolution_direct, &s_any, &w_any,
            bias ? &b_md : NULL, &d_any, strides, dil, pl, pr);
    if (st != dnnl_success)
        return build_fail(err, st, what);
    dnnl_primitive_attr_t attr;
    st = attr_new(&attr, 1.0f, 0, &g->act);
    if (st != dnnl_success)
        return build_fail(err, st, "convolution attributes");
    dnnl_primitive_desc_t pd;
    st = pd_create(&pd, &desc, attr, eng, threads);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success)
        return build_fail(err, st, what);

    dab_dnnl_prim_t *p = prim_alloc(what, threads, err);
    if (!p) {
        dnnl_primitive_desc_destroy(pd);
        return DAB_ENOMEM;
    }
    rc = prim_finish(p, pd, &s_md, &w_md, bias, &d_md, const_w, err);
    if (rc) {
        dab_dnnl_prim_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int dab_dnnl_pool_create(const dab_pool_geom_t *g, int is_max, int threads, dab_dnnl_prim_t **out,
                         dab_err_t *err)
{
    dnnl_engine_t eng = NULL;
    int rc = engine_get(&eng, err);
    if (rc)
        return rc;
    const int nsp = g->nsp, nd = nsp + 2;
    dnnl_dims_t sd, dd, k, strides, dil, pl, pr;
    sd[0] = dd[0] = g->n;
    sd[1] = dd[1] = g->c;
    for (int i = 0; i < nsp; i++) {
        sd[2 + i] = g->in[i];
        dd[2 + i] = g->out[i];
        k[i] = g->k[i];
        strides[i] = g->stride[i];
        dil[i] = g->dil[i] - 1;
        pl[i] = g->pad_lo[i];
        int64_t kd = (g->k[i] - 1) * g->dil[i] + 1;
        int64_t r = (g->out[i] - 1) * g->stride[i] + kd - g->in[i] - g->pad_lo[i];
        pr[i] = r > 0 ? r : 0;
        /* oneDNN would count the ceil_mode extension past the model's padding. */
        if (!is_max && g->count_include_pad && pr[i] > g->pad_hi[i])
            return dab_err_set(err, DAB_EUNSUPPORTED,
                               "oneDNN average pooling would count the ceil_mode extension");
    }
    dnnl_alg_kind_t alg = is_max                 ? dnnl_pooling_max
                          : g->count_include_pad ? dnnl_pooling_avg_include_padding
                                                 : dnnl_pooling_avg_exclude_padding;
    dnnl_memory_desc_t s_md, d_md;
    dnnl_status_t st = md_dense(&s_md, nd, sd);
    if (st == dnnl_success)
        st = md_dense(&d_md, nd, dd);
    if (st != dnnl_success)
        return build_fail(err, st, "pooling memory descriptor");
    dnnl_pooling_v2_desc_t desc;
    st = dnnl_pooling_v2_forward_desc_init(&desc, dnnl_forward_inference, alg, &s_md, &d_md,
                                           strides, k, dil, pl, pr);
    if (st != dnnl_success)
        return build_fail(err, st, "pooling");
    dnnl_primitive_attr_t attr;
    st = attr_new(&attr, 1.0f, 0, NULL);
    if (st != dnnl_success)
        return build_fail(err, st, "pooling attributes");
    dnnl_primitive_desc_t pd;
    st = pd_create(&pd, &desc, attr, eng, threads);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success)
        return build_fail(err, st, "pooling");
    dab_dnnl_prim_t *p = prim_alloc("pooling", threads, err);
    if (!p) {
        dnnl_primitive_desc_destroy(pd);
        return DAB_ENOMEM;
    }
    rc = prim_finish(p, pd, &s_md, NULL, 0, &d_md, NULL, err);
    if (rc) {
        dab_dnnl_prim_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int dab_dnnl_prim_share_weights(dab_dnnl_prim_t *p, dab_dnnl_prim_t *peer)
{
    if (!p->packed || !peer || peer == p || !peer->packed || peer->packed == p->packed ||
        peer->const_w != p->const_w)
        return 0;
    const dnnl_memory_desc_t *mine = NULL, *theirs = NULL;
    if (dnnl_memory_get_memory_desc(p->wei, &mine) != dnnl_success ||
        dnnl_memory_get_memory_desc(peer->wei, &theirs) != dnnl_success ||
        !dnnl_memory_desc_equal(mine, theirs))
        return 0;
    packed_release(p->packed);
    p->packed = peer->packed;
    p->packed->refs++;
    dnnl_memory_set_data_handle(p->wei, p->packed->data);
    return 1;
}

size_t dab_dnnl_prim_scratch_bytes(const dab_dnnl_prim_t *p)
{
    return p->scratch_bytes;
}

static int prim_exec(dab_dnnl_prim_t *p, const void *src, const void *wei, const void *bias,
                     void *dst, void *scratch, dab_err_t *err)
{
    char *s = scratch;
    dnnl_status_t st = dnnl_success;
    dnnl_exec_arg_t args[6];
    int n = 0;

    if (p->src_r.prim) {
        dnnl_memory_set_data_handle(p->src_r.user, (void *)src);
        dnnl_memory_set_data_handle(p->src, s + p->src_off);
        st = reorder_exec(&p->src_r, p->src, 1, p->stream, s);
        if (st != dnnl_success)
            return run_fail(err, st, "source reorder");
    } else {
        dnnl_memory_set_data_handle(p->src, (void *)src);
    }
    args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, p->src};

    if (p->wei) {
        if (p->packed) {
            /* Repack only when the weights are not the constant already packed. */
            if (!(wei == p->const_w && p->packed->from == p->const_w)) {
                dnnl_memory_set_data_handle(p->wei_r.user, (void *)wei);
                p->packed->from = NULL; /* unknown if the reorder fails half-way */
                st = reorder_exec(&p->wei_r, p->wei, 1, p->stream, s);
                if (st != dnnl_success)
                    return run_fail(err, st, "weights reorder");
                p->packed->from = wei;
            }
        } else if (p->wei_r.prim) {
            dnnl_memory_set_data_handle(p->wei_r.user, (void *)wei);
            dnnl_memory_set_data_handle(p->wei, s + p->wei_off);
            st = reorder_exec(&p->wei_r, p->wei, 1, p->stream, s);
            if (st != dnnl_success)
                return run_fail(err, st, "weights reorder");
        } else {
            dnnl_memory_set_data_handle(p->wei, (void *)wei);
        }
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, p->wei};
    }
    if (p->bias) {
        dnnl_memory_set_data_handle(p->bias, (void *)bias);
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, p->bias};
    }
    dnnl_memory_set_data_handle(p->dst, p->dst_r.prim ? s + p->dst_off : dst);
    args[n++] = (dnnl_exec_arg_t){DNNL_ARG_DST, p->dst};
    if (p->pad) {
        dnnl_memory_set_data_handle(p->pad, s + p->pad_off);
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->pad};
    }
    st = dnnl_primitive_execute(p->prim, p->stream, n, args);
    if (st != dnnl_success)
        return run_fail(err, st, p->what);
    if (p->dst_r.prim) {
        dnnl_memory_set_data_handle(p->dst_r.user, dst);
        st = reorder_exec(&p->dst_r, p->dst, 0, p->stream, s);
        if (st != dnnl_success)
            return run_fail(err, st, "destination reorder");
    }
    st = dnnl_stream_wait(p->stream);
    return st == dnnl_success ? 0 : run_fail(err, st, "stream wait");
}

int dab_dnnl_prim_run(dab_dnnl_prim_t *p, const void *src, const void *wei, const void *bias,
                      void *dst, void *scratch, dab_err_t *err)
{
    int saved = threads_enter(p->threads);
    int rc = prim_exec(p, src, wei, bias, dst, scratch, err);
    threads_leave(p->threads, saved);
    return rc;
}
