/*
 * transformer_einsum.c - Einsum (opset 12): Einstein summation over any number of inputs,
 * with implicit ("ij,jk") and explicit ("ij,jk->ik") outputs, an ellipsis standing for
 * broadcast leading dims, and repeated labels within a term (diagonals, traces).
 *
 * Labels are numbered 0..51 for A-Z, a-z (ASCII order, which is also the implicit output
 * order numpy and the ONNX reference use) and 52.. for the dims an ellipsis covers, aligned
 * from the right across inputs as numpy broadcasting aligns them.
 *
 * Each input is first seen as a strided view with one stride per distinct label (a
 * repeated label adds its strides: the diagonal, without copying). Inputs are then
 * contracted left to right, each pair as one batched matrix product
 *   C[batch, m, n] = sum_k A[batch, m, k] * B[batch, k, n]
 * where batch labels are shared and still needed later, k labels are shared and not, and
 * m / n are needed labels of one side only; labels of one side needed nowhere later are
 * summed while that side is gathered into [batch, m, k] order. An operand already in that
 * order is used in place, and the last product writes the output directly when its label
 * order is the output's, so "bij,bjk->bik" is a single matmul call with no copies.
 * A final gather (transpose and/or sum) turns the last view into the output otherwise.
 * The same walk sizes scratch in reshape and runs in compute, so the two agree.
 */
#include "transformer_int.h"

#include <stdio.h>

#include "../kernels/kernels.h"

#define EIN_LETTERS 52
#define EIN_MAX_LABELS (EIN_LETTERS + DAB_MAX_RANK)
#define EIN_MAX_TERM 64 /* letters a term may have; more than any tensor's rank anyway */

typedef struct ein_term {
    int n;       /* letters in the term (the ellipsis excluded) */
    int ell_pos; /* letters before the "...", or -1 when there is none */
    int8_t lab[EIN_MAX_TERM];
} ein_term_t;

/* An operand as a strided view: one size and stride per distinct label. */
typedef struct ein_view {
    int n;
    int8_t id[EIN_MAX_LABELS];
    int64_t st[EIN_MAX_LABELS];
    const char *data;
} ein_view_t;

typedef struct ein_priv {
    int n_in;
    bool implicit;
    ein_term_t out;
    /* from the last reshape */
    int ell_rank;                   /* dims the widest ellipsis covers */
    int64_t size[EIN_MAX_LABELS];   /* size of each label */
    int n_out;                      /* labels of the output, in order */
    int8_t out_id[EIN_MAX_LABELS];
    ein_term_t in[]; /* [n_in] */
} ein_priv_t;

static int ein_letter(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return 26 + (c - 'a');
    return -1;
}

/* Parses one term from s[0..len) (spaces already removed). */
static int ein_parse_term(const char *s, size_t len, ein_term_t *t, const char *what,
                          dab_err_t *err)
{
    t->n = 0;
    t->ell_pos = -1;
    for (size_t i = 0; i < len;) {
        if (s[i] == '.') {
            if (len - i < 3 || s[i + 1] != '.' || s[i + 2] != '.' || t->ell_pos >= 0)
                return dab_err_set(err, DAB_EINVAL,
                                   "equation: %s has a '.' that is not one \"...\"", what);
            t->ell_pos = t->n;
            i += 3;
            continue;
        }
        int l = ein_letter(s[i]);
        if (l < 0)
            return dab_err_set(err, DAB_EINVAL, "equation: %s has the character '%c'", what,
                               s[i]);
        if (t->n >= EIN_MAX_TERM)
            return dab_err_set(err, DAB_ELIMIT, "equation: %s has too many labels", what);
        t->lab[t->n++] = (int8_t)l;
        i++;
    }
    return 0;
}

/* Parses equation eq for p->n_in inputs into p's terms. */
static int ein_parse(ein_priv_t *p, const char *eq, dab_err_t *err)
{
    char buf[1024];
    size_t len = 0;
    for (const char *c = eq; *c; c++) {
        if (*c == ' ' || *c == '\t' || *c == '\n' || *c == '\r')
            continue;
        if (len + 1 >= sizeof buf)
            return dab_err_set(err, DAB_ELIMIT, "attribute equation is too long");
        buf[len++] = *c;
    }
    buf[len] = 0;
    const char *arrow = strstr(buf, "->");
    size_t lhs_len = arrow ? (size_t)(arrow - buf) : len;
    int term = 0;
    size_t start = 0;
    for (size_t i = 0; i <= lhs_len; i++) {
        if (i < lhs_len && buf[i] != ',')
            continue;
        if (term >= p->n_in)
            return dab_err_set(err, DAB_EINVAL, "equation '%s' has more terms than the %d inputs",
                               eq, p->n_in);
        char what[32];
        snprintf(what, sizeof what, "term %d", term);
        int rc = ein_parse_term(buf + start, i - start, &p->in[term], what, err);
        if (rc)
            return rc;
        term++;
        start = i + 1;
    }
    if (term != p->n_in)
        return dab_err_set(err, DAB_EINVAL, "equation '%s' has %d terms for %d inputs", eq, term,
                           p->n_in);
    int count[EIN_LETTERS] = {0};
    bool any_ell = false;
    for (int i = 0; i < p->n_in; i++) {
        for (int j = 0; j < p->in[i].n; j++)
            count[p->in[i].lab[j]]++;
        any_ell |= p->in[i].ell_pos >= 0;
    }
    p->implicit = !arrow;
    if (arrow) {
        int rc = ein_parse_term(arrow + 2, strlen(arrow + 2), &p->out, "the output", err);
        if (rc)
            return rc;
        bool seen[EIN_LETTERS] = {0};
        for (int j = 0; j < p->out.n; j++) {
            int l = p->out.lab[j];
            if (!count[l] || seen[l])
                return dab_err_set(err, DAB_EINVAL,
                                   "equation '%s': output label %d is %s", eq, j,
                                   seen[l] ? "repeated" : "in no input");
            seen[l] = true;
        }
        if (p->out.ell_pos >= 0 && !any_ell)
            return dab_err_set(err, DAB_EINVAL,
                               "equation '%s': the output has \"...\" but no input does", eq);
    } else {
        /* the broadcast dims, then the labels used once, in ASCII order */
        p->out.n = 0;
        p->out.ell_pos = any_ell ? 0 : -1;
        for (int l = 0; l < EIN_LETTERS; l++)
            if (count[l] == 1)
                p->out.lab[p->out.n++] = (int8_t)l;
    }
    return 0;
}

int dab_tf_einsum_init(dab_node_t *node, dab_err_t *err)
{
    const char *eq = dab_attr_string(node, "equation", NULL);
    if (!eq)
        return dab_err_set(err, DAB_EINVAL, "attribute equation is required");
    ein_priv_t *p = dab_calloc(1, sizeof *p + (size_t)node->n_inputs * sizeof(ein_term_t));
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "out of memory for the operator's state");
    p->n_in = node->n_inputs;
    int rc = ein_parse(p, eq, err);
    if (rc) {
        dab_free(p);
        return rc;
    }
    node->priv = p;
    return 0;
}

/* Labels of input i's dims in order (ellipsis dims expanded), into ids; count returned. */
static int ein_input_ids(const ein_priv_t *p, int i, int rank, int8_t *ids)
{
    const ein_term_t *t = &p->in[i];
    int e = t->ell_pos >= 0 ? rank - t->n : 0, n = 0;
    for (int j = 0; j <= t->n; j++) {
        if (j == t->ell_pos)
            for (int k = 0; k < e; k++)
                ids[n++] = (int8_t)(EIN_LETTERS + (p->ell_rank - e) + k);
        if (j < t->n)
            ids[n++] = t->lab[j];
    }
    return n;
}

/* The strided view of input i (labels merged; broadcast dims get stride 0). */
static void ein_view_of(const ein_priv_t *p, const dab_tensor_t *t, int i, ein_view_t *v)
{
    int8_t ids[DAB_MAX_RANK + EIN_MAX_TERM];
    int n = ein_input_ids(p, i, t->rank, ids);
    int64_t stride = 1, st[DAB_MAX_RANK];
    for (int d = t->rank - 1; d >= 0; d--) {
        st[d] = stride;
        stride *= t->dims[d];
    }
    v->n = 0;
    v->data = t->data;
    for (int d = 0; d < n; d++) {
        int64_t s = t->dims[d] == 1 && p->size[ids[d]] != 1 ? 0 : st[d];
        int k = 0;
        while (k < v->n && v->id[k] != ids[d])
            k++;
        if (k == v->n) {
            v->id[v->n] = ids[d];
            v->st[v->n++] = s;
        } else {
            v->st[k] += s;
        }
    }
}

static uint64_t ein_mask(const ein_view_t *v)
{
    uint64_t m = 0;
    for (int k = 0; k < v->n; k++)
        m |= 1ull << v->id[k];
    return m;
}

/* Stride of label id in view v (0 when absent). */
static int64_t ein_stride(const ein_view_t *v, int id)
{
    for (int k = 0; k < v->n; k++)
        if (v->id[k] == id)
            return v->st[k];
    return 0;
}

/* ---- gathers: dst (contiguous, labels `order`) = sum over v's other labels ---- */

#define EIN_GATHER_DEFINE(T, U, SUF)                                                           \
    static void ein_walk_##SUF(int nd, const int64_t *sz, const int64_t *ss, const int64_t *ds, \
                               const T *src, T *dst, bool acc)                                 \
    {                                                                                          \
        int64_t idx[EIN_MAX_LABELS] = {0}, so = 0, dof = 0;                                    \
        for (int d = 0; d < nd; d++)                                                           \
            if (sz[d] == 0)                                                                    \
                return;                                                                        \
        if (nd == 0) {                                                                         \
            dst[0] = acc ? (T)((U)dst[0] + (U)src[0]) : src[0];                                \
            return;                                                                            \
        }                                                                                      \
        const int64_t n = sz[nd - 1], sst = ss[nd - 1], dst_st = ds[nd - 1];                   \
        for (;;) {                                                                             \
            if (acc) {                                                                         \
                for (int64_t j = 0; j < n; j++)                                                \
                    dst[dof + j * dst_st] = (T)((U)dst[dof + j * dst_st] + (U)src[so + j * sst]); \
            } else {                                                                           \
                for (int64_t j = 0; j < n; j++)                                                \
                    dst[dof + j * dst_st] = src[so + j * sst];                                 \
            }                                                                                  \
            int d = nd - 2;                                                                    \
            for (; d >= 0; d--) {                                                              \
                so += ss[d];                                                                   \
                dof += ds[d];                                                                  \
                if (++idx[d] < sz[d])                                                          \
                    break;                                                                     \
                so -= ss[d] * sz[d];                                                           \
                dof -= ds[d] * sz[d];                                                          \
                idx[d] = 0;                                                                    \
            }                                                                                  \
            if (d < 0)                                                                         \
                return;                                                                        \
        }                                                                                      \
    }

EIN_GATHER_DEFINE(float, float, f32)
EIN_GATHER_DEFINE(double, double, f64)
EIN_GATHER_DEFINE(uint8_t, uint8_t, u8)
EIN_GATHER_DEFINE(uint16_t, uint16_t, u16)
EIN_GATHER_DEFINE(uint32_t, uint32_t, u32)
EIN_GATHER_DEFINE(uint64_t, uint64_t, u64)

static void ein_gather(const ein_priv_t *p, dab_dtype_t dt, const ein_view_t *v, int n_order,
                       const int8_t *order, void *dst)
{
    int64_t sz[EIN_MAX_LABELS], ss[EIN_MAX_LABELS], ds[EIN_MAX_LABELS], dst_st[EIN_MAX_LABELS];
    int64_t stride = 1, total = 1;
    for (int k = n_order - 1; k >= 0; k--) {
        dst_st[k] = stride;
        stride *= p->size[order[k]];
    }
    total = stride;
    /* summed labels outermost, then the destination's in its order */
    int nd = 0;
    uint64_t in_order = 0;
    for (int k = 0; k < n_order; k++)
        in_order |= 1ull << order[k];
    for (int k = 0; k < v->n; k++)
        if (!(in_order >> v->id[k] & 1)) {
            sz[nd] = p->size[v->id[k]];
            ss[nd] = v->st[k];
            ds[nd++] = 0;
        }
    bool acc = nd > 0;
    for (int k = 0; k < n_order; k++) {
        sz[nd] = p->size[order[k]];
        ss[nd] = ein_stride(v, order[k]);
        ds[nd++] = dst_st[k];
    }
    size_t es = dab_dtype_size(dt);
    if (acc && total > 0)
        memset(dst, 0, (size_t)total * es);
    bool sgn_int = dt != DAB_DT_FLOAT && dt != DAB_DT_DOUBLE;
    /* integers add as unsigned of the same width (wrapping) */
    if (dt == DAB_DT_FLOAT)
        ein_walk_f32(nd, sz, ss, ds, (const float *)v->data, dst, acc);
    else if (dt == DAB_DT_DOUBLE)
        ein_walk_f64(nd, sz, ss, ds, (const double *)v->data, dst, acc);
    else if (sgn_int && es == 1)
        ein_walk_u8(nd, sz, ss, ds, (const uint8_t *)v->data, dst, acc);
    else if (sgn_int && es == 2)
        ein_walk_u16(nd, sz, ss, ds, (const uint16_t *)v->data, dst, acc);
    else if (sgn_int && es == 4)
        ein_walk_u32(nd, sz, ss, ds, (const uint32_t *)v->data, dst, acc);
    else
        ein_walk_u64(nd, sz, ss, ds, (const uint64_t *)v->data, dst, acc);
}

/* True when v is exactly the contiguous layout of labels `order` (nothing to sum). */
static bool ein_is_layout(const ein_priv_t *p, const ein_view_t *v, int n_order,
                          const int8_t *order)
{
    if (v->n != n_order)
        return false;
    int64_t stride = 1;
    for (int k = n_order - 1; k >= 0; k--) {
        int64_t sz = p->size[order[k]];
        if (sz != 1 && ein_stride(v, order[k]) != stride)
            return false;
        if (ein_mask(v) >> order[k] & 1) {
            stride *= sz;
            continue;
        }
        return false;
    }
    return true;
}

/* Appends the labels of `set` to list, ordered by their place in the output, then by id. */
static int ein_ordered(const ein_priv_t *p, uint64_t set, int8_t *list, int n)
{
    for (int k = 0; k < p->n_out; k++)
        if (set >> p->out_id[k] & 1) {
            list[n++] = p->out_id[k];
            set &= ~(1ull << p->out_id[k]);
        }
    for (int l = 0; l < EIN_MAX_LABELS; l++)
        if (set >> l & 1)
            list[n++] = (int8_t)l;
    return n;
}

/* Product of the sizes of labels list[0..n), or -1 on overflow. */
static int64_t ein_prod(const ein_priv_t *p, const int8_t *list, int n)
{
    int64_t r = 1;
    for (int k = 0; k < n; k++)
        if (dab_mul_i64(r, p->size[list[k]], &r))
            return -1;
    return r;
}

/*
 * Walks the contractions. With run false it only adds up the scratch they take into
 * *bytes (and checks sizes); with run true it computes into the output.
 */
static int ein_exec(dab_node_t *node, bool run, size_t *bytes, dab_err_t *err)
{
    const ein_priv_t *p = node->priv;
    dab_tensor_t *out = node->outputs[0];
    const dab_dtype_t dt = node->inputs[0]->dtype;
    const size_t es = dab_dtype_size(dt);
    char *scr = node->scratch;
    size_t off = 0;
    ein_view_t cur, b;
    ein_view_of(p, node->inputs[0], 0, &cur);
    bool done = false;
    for (int i = 1; i < p->n_in; i++) {
        ein_view_of(p, node->inputs[i], i, &b);
        uint64_t kept = 0;
        for (int k = 0; k < p->n_out; k++)
            kept |= 1ull << p->out_id[k];
        for (int j = i + 1; j < p->n_in; j++) {
            ein_view_t w;
            ein_view_of(p, node->inputs[j], j, &w);
            kept |= ein_mask(&w);
        }
        uint64_t am = ein_mask(&cur), bm = ein_mask(&b);
        int8_t la[EIN_MAX_LABELS], lb[EIN_MAX_LABELS], lc[EIN_MAX_LABELS];
        int nb = ein_ordered(p, am & bm & kept, la, 0);
        int nm = ein_ordered(p, am & ~bm & kept, la, nb) - nb;
        int nk = ein_ordered(p, am & bm & ~kept, la, nb + nm) - nb - nm;
        memcpy(lb, la, (size_t)nb);
        memcpy(lb + nb, la + nb + nm, (size_t)nk);
        int nn = ein_ordered(p, bm & ~am & kept, lb, nb + nk) - nb - nk;
        memcpy(lc, la, (size_t)(nb + nm));
        memcpy(lc + nb + nm, lb + nb + nk, (size_t)nn);
        int64_t sb = ein_prod(p, la, nb), sm = ein_prod(p, la + nb, nm);
        int64_t sk = ein_prod(p, la + nb + nm, nk), sn = ein_prod(p, lb + nb + nk, nn);
        int64_t sa = ein_prod(p, la, nb + nm + nk), sbb = ein_prod(p, lb, nb + nk + nn);
        int64_t sc = ein_prod(p, lc, nb + nm + nn);
        if (sb < 0 || sm < 0 || sk < 0 || sn < 0 || sa < 0 || sbb < 0 || sc < 0 ||
            sa > INT64_MAX / 16 || sbb > INT64_MAX / 16 || sc > INT64_MAX / 16)
            return dab_err_set(err, DAB_ELIMIT, "the contraction of input %d is too large", i);
        const char *ad = cur.data, *bd = b.data;
        if (!ein_is_layout(p, &cur, nb + nm + nk, la)) {
            size_t o = tf_scratch_take(&off, (size_t)sa * es);
            if (run) {
                ein_gather(p, dt, &cur, nb + nm + nk, la, scr + o);
                ad = scr + o;
            }
        }
        if (!ein_is_layout(p, &b, nb + nk + nn, lb)) {
            size_t o = tf_scratch_take(&off, (size_t)sbb * es);
            if (run) {
                ein_gather(p, dt, &b, nb + nk + nn, lb, scr + o);
                bd = scr + o;
            }
        }
        bool last = i == p->n_in - 1;
        done = last && nb + nm + nn == p->n_out && !memcmp(lc, p->out_id, (size_t)p->n_out);
        char *cd = NULL;
        if (done) {
            cd = run ? out->data : NULL;
        } else {
            size_t o = tf_scratch_take(&off, (size_t)sc * es);
            cd = run ? scr + o : NULL;
        }
        if (off == SIZE_MAX || off > SIZE_MAX / 2)
            return dab_err_set(err, DAB_ELIMIT, "the contraction of input %d is too large", i);
        if (run) {
            dab_matmul_geom_t g;
            memset(&g, 0, sizeof g);
            g.batch_rank = 1;
            g.batch[0] = sb;
            g.m = sm;
            g.n = sn;
            g.k = sk;
            g.a_bstride[0] = sm * sk;
            g.b_bstride[0] = sk * sn;
            g.a_rs = sk;
            g.a_cs = 1;
            g.b_rs = sn;
            g.b_cs = 1;
            g.alpha = 1;
            int nt = tf_par_threads(node, (double)sc * (double)(sk + 1));
            int rc = dab_ref_matmul(dt, &g, ad, bd, cd, nt);
            if (rc)
                return dab_err_set(err, rc, "dtype %s is not supported", dab_dtype_name(dt));
        }
        /* the product is the new left operand */
        cur.n = nb + nm + nn;
        cur.data = cd;
        int64_t stride = 1;
        for (int k = cur.n - 1; k >= 0; k--) {
            cur.id[k] = lc[k];
            cur.st[k] = p->size[lc[k]] == 1 ? 0 : stride;
            stride *= p->size[lc[k]];
        }
    }
    if (!done && run)
        ein_gather(p, dt, &cur, p->n_out, p->out_id, out->data);
    *bytes = off;
    return 0;
}

int dab_tf_einsum_reshape(dab_node_t *node, dab_err_t *err)
{
    ein_priv_t *p = node->priv;
    const dab_dtype_t dt = node->inputs[0]->dtype;
    bool seen[EIN_MAX_LABELS] = {0};
    p->ell_rank = 0;
    for (int i = 0; i < p->n_in; i++) {
        const dab_tensor_t *t = node->inputs[i];
        const ein_term_t *tm = &p->in[i];
        if (t->dtype != dt)
            return dab_err_set(err, DAB_ETYPE, "input %d is %s, input 0 is %s", i,
                               dab_dtype_name(t->dtype), dab_dtype_name(dt));
        if (tm->ell_pos < 0 ? t->rank != tm->n : t->rank < tm->n)
            return dab_err_set(err, DAB_ESHAPE,
                               "input %d has rank %d, its term has %d labels%s", i, t->rank,
                               tm->n, tm->ell_pos >= 0 ? " and \"...\"" : "");
        if (tm->ell_pos >= 0)
            p->ell_rank = DAB_MAX(p->ell_rank, t->rank - tm->n);
    }
    for (int l = 0; l < EIN_MAX_LABELS; l++)
        p->size[l] = 1;
    /* label sizes: equal, or 1 broadcasting; a label repeated in one term has no broadcast */
    for (int i = 0; i < p->n_in; i++) {
        const dab_tensor_t *t = node->inputs[i];
        int8_t ids[DAB_MAX_RANK + EIN_MAX_TERM];
        int n = ein_input_ids(p, i, t->rank, ids);
        for (int d = 0; d < n; d++) {
            for (int e = 0; e < d; e++)
                if (ids[e] == ids[d] && t->dims[e] != t->dims[d])
                    return dab_err_set(err, DAB_ESHAPE,
                                       "input %d repeats a label over dims %d and %d of sizes "
                                       "%lld and %lld",
                                       i, e, d, (long long)t->dims[e], (long long)t->dims[d]);
            int64_t v = t->dims[d], *s = &p->size[ids[d]];
            if (!seen[ids[d]] || *s == 1)
                *s = v;
            else if (v != 1 && v != *s)
                return dab_err_set(err, DAB_ESHAPE,
                                   "input %d dim %d has size %lld where the label has size %lld", i,
                                   d, (long long)v, (long long)*s);
            seen[ids[d]] = true;
        }
    }
    /* the output's labels */
    p->n_out = 0;
    for (int j = 0; j <= p->out.n; j++) {
        if (j == p->out.ell_pos)
            for (int k = 0; k < p->ell_rank; k++)
                p->out_id[p->n_out++] = (int8_t)(EIN_LETTERS + k);
        if (j < p->out.n)
            p->out_id[p->n_out++] = p->out.lab[j];
    }
    if (p->n_out > DAB_MAX_RANK)
        return dab_err_set(err, DAB_ELIMIT, "the output would have %d dims, at most %d are "
                                            "supported",
                           p->n_out, DAB_MAX_RANK);
    int64_t dims[DAB_MAX_RANK];
    for (int k = 0; k < p->n_out; k++)
        dims[k] = p->size[p->out_id[k]];
    dab_tensor_set_shape(node->outputs[0], dt, p->n_out, dims);
    size_t bytes = 0;
    int rc = ein_exec(node, false, &bytes, err);
    if (rc)
        return rc;
    node->scratch_bytes = bytes;
    return 0;
}

int dab_tf_einsum_compute(dab_node_t *node, dab_err_t *err)
{
    size_t bytes;
    return ein_exec(node, true, &bytes, err);
}
