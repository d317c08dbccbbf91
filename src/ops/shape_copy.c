/*
 * shape_copy.c - the strided copy engine of the shape family and the operators
 * that are nothing but one or a few strided copies: Transpose, Expand, Tile,
 * Slice, Concat, Split and Gather.
 *
 * Every such op describes its output as an n-D box read from the input with
 * some strides (permuted for Transpose, 0 for broadcast dims, step-scaled and
 * possibly negative for Slice) and hands it to dab_copy_run, which merges the
 * dims that stay contiguous, moves contiguous runs with memcpy, transposes in
 * cache-sized tiles when the source's unit-stride dim is not the destination's,
 * and splits the work over OpenMP threads. Elements are opaque bytes, so one
 * code path serves every dtype.
 */
#include "shape_int.h"

#include <stdio.h>
#include <string.h>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

/* ------------------------------------------------------------------ */
/* the engine                                                          */
/* ------------------------------------------------------------------ */

void dab_copy_plan_init(dab_copy_plan_t *p, size_t esize)
{
    p->rank = 0;
    p->esize = esize;
}

void dab_copy_plan_add(dab_copy_plan_t *p, int64_t dim, int64_t sstr, int64_t dstr)
{
    int r = p->rank++;
    p->dims[r] = dim;
    p->sstr[r] = sstr;
    p->dstr[r] = dstr;
}

/* Drops unit dims and merges neighbours that stay contiguous in both source and
 * destination. Returns the element count (0: nothing to copy). */
static int64_t plan_simplify(dab_copy_plan_t *q)
{
    int64_t total = 1;
    int m = 0;
    for (int i = 0; i < q->rank; i++) {
        int64_t n = q->dims[i];
        if (n == 0)
            return 0;
        total *= n;
        if (n == 1)
            continue;
        if (m > 0 && q->sstr[m - 1] == q->sstr[i] * n && q->dstr[m - 1] == q->dstr[i] * n) {
            q->dims[m - 1] *= n;
            q->sstr[m - 1] = q->sstr[i];
            q->dstr[m - 1] = q->dstr[i];
            continue;
        }
        q->dims[m] = n;
        q->sstr[m] = q->sstr[i];
        q->dstr[m] = q->dstr[i];
        m++;
    }
    q->rank = m;
    return total;
}

/* Copies n elements with strides (elements) ss and ds. */
static void copy_strided(char *d, const char *s, int64_t n, int64_t ss, int64_t ds, size_t es)
{
#define DAB_STRIDED(T)                                      \
    do {                                                    \
        T *dt_ = (T *)d;                                    \
        const T *st_ = (const T *)s;                        \
        if (ds == 1 && ss == 0) {                           \
            T v_ = st_[0];                                  \
            for (int64_t j = 0; j < n; j++)                 \
                dt_[j] = v_;                                \
        } else if (ds == 1) {                               \
            for (int64_t j = 0; j < n; j++)                 \
                dt_[j] = st_[j * ss];                       \
        } else {                                            \
            for (int64_t j = 0; j < n; j++)                 \
                dt_[j * ds] = st_[j * ss];                  \
        }                                                   \
    } while (0)
    switch (es) {
    case 1: DAB_STRIDED(uint8_t); break;
    case 2: DAB_STRIDED(uint16_t); break;
    case 4: DAB_STRIDED(uint32_t); break;
    case 8: DAB_STRIDED(uint64_t); break;
    default:
        for (int64_t j = 0; j < n; j++)
            memcpy(d + j * ds * (int64_t)es, s + j * ss * (int64_t)es, es);
        break;
    }
#undef DAB_STRIDED
}

/*
 * Square micro-transposes: B source rows (row stride ss elements) of B contiguous
 * elements become B destination rows (row stride ds). The element bits are only
 * shuffled, never interpreted.
 */
#if defined(__SSE2__)
static void micro_8(const char *s, int64_t ss, char *d, int64_t ds) /* 16x16 bytes */
{
    __m128i r[16], a[16], b[16], c[16];
    for (int i = 0; i < 16; i++)
        r[i] = _mm_loadu_si128((const __m128i *)(s + i * ss));
    for (int i = 0; i < 8; i++) {
        a[2 * i] = _mm_unpacklo_epi8(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = _mm_unpackhi_epi8(r[2 * i], r[2 * i + 1]);
    }
    /* b[4g+m]: columns 4m..4m+3 of rows 4g..4g+3 */
    for (int g = 0; g < 4; g++) {
        b[4 * g + 0] = _mm_unpacklo_epi16(a[4 * g], a[4 * g + 2]);
        b[4 * g + 1] = _mm_unpackhi_epi16(a[4 * g], a[4 * g + 2]);
        b[4 * g + 2] = _mm_unpacklo_epi16(a[4 * g + 1], a[4 * g + 3]);
        b[4 * g + 3] = _mm_unpackhi_epi16(a[4 * g + 1], a[4 * g + 3]);
    }
    /* c[8h+j]: columns 2j, 2j+1 of rows 8h..8h+7 */
    for (int h = 0; h < 2; h++)
        for (int m = 0; m < 4; m++) {
            c[8 * h + 2 * m] = _mm_unpacklo_epi32(b[8 * h + m], b[8 * h + 4 + m]);
            c[8 * h + 2 * m + 1] = _mm_unpackhi_epi32(b[8 * h + m], b[8 * h + 4 + m]);
        }
    for (int j = 0; j < 8; j++) {
        _mm_storeu_si128((__m128i *)(d + (2 * j) * ds), _mm_unpacklo_epi64(c[j], c[8 + j]));
        _mm_storeu_si128((__m128i *)(d + (2 * j + 1) * ds), _mm_unpackhi_epi64(c[j], c[8 + j]));
    }
}

static void micro_16(const char *s, int64_t ss, char *d, int64_t ds) /* 8x8 of 2 bytes */
{
    __m128i r[8], a[8], b[8];
    for (int i = 0; i < 8; i++)
        r[i] = _mm_loadu_si128((const __m128i *)(s + i * ss * 2));
    for (int i = 0; i < 4; i++) {
        a[2 * i] = _mm_unpacklo_epi16(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = _mm_unpackhi_epi16(r[2 * i], r[2 * i + 1]);
    }
    /* b[4g+m]: columns 2m, 2m+1 of rows 4g..4g+3 */
    for (int g = 0; g < 2; g++) {
        b[4 * g + 0] = _mm_unpacklo_epi32(a[4 * g], a[4 * g + 2]);
        b[4 * g + 1] = _mm_unpackhi_epi32(a[4 * g], a[4 * g + 2]);
        b[4 * g + 2] = _mm_unpacklo_epi32(a[4 * g + 1], a[4 * g + 3]);
        b[4 * g + 3] = _mm_unpackhi_epi32(a[4 * g + 1], a[4 * g + 3]);
    }
    for (int m = 0; m < 4; m++) {
        _mm_storeu_si128((__m128i *)(d + (2 * m) * ds * 2), _mm_unpacklo_epi64(b[m], b[4 + m]));
        _mm_storeu_si128((__m128i *)(d + (2 * m + 1) * ds * 2), _mm_unpackhi_epi64(b[m], b[4 + m]));
    }
}
#endif

#if defined(__AVX2__)
static void micro_32(const char *s, int64_t ss, char *d, int64_t ds) /* 8x8 of 4 bytes */
{
    const float *f = (const float *)s;
    float *o = (float *)d;
    __m256 r[8], t[8], u[8];
    for (int i = 0; i < 8; i++)
        r[i] = _mm256_loadu_ps(f + i * ss);
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 2; g++) {
        u[4 * g + 0] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int m = 0; m < 4; m++) {
        _mm256_storeu_ps(o + m * ds, _mm256_permute2f128_ps(u[m], u[4 + m], 0x20));
        _mm256_storeu_ps(o + (m + 4) * ds, _mm256_permute2f128_ps(u[m], u[4 + m], 0x31));
    }
}

static void micro_64(const char *s, int64_t ss, char *d, int64_t ds) /* 4x4 of 8 bytes */
{
    const double *f = (const double *)s;
    double *o = (double *)d;
    __m256d r0 = _mm256_loadu_pd(f), r1 = _mm256_loadu_pd(f + ss);
    __m256d r2 = _mm256_loadu_pd(f + 2 * ss), r3 = _mm256_loadu_pd(f + 3 * ss);
    __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
    __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
    _mm256_storeu_pd(o, _mm256_permute2f128_pd(t0, t2, 0x20));
    _mm256_storeu_pd(o + ds, _mm256_permute2f128_pd(t1, t3, 0x20));
    _mm256_storeu_pd(o + 2 * ds, _mm256_permute2f128_pd(t0, t2, 0x31));
    _mm256_storeu_pd(o + 3 * ds, _mm256_permute2f128_pd(t1, t3, 0x31));
}
#endif

typedef void (*micro_fn)(const char *s, int64_t ss, char *d, int64_t ds);

/* The micro-transpose for an element size and its edge, or NULL. */
static micro_fn micro_for(size_t es, int *edge)
{
    switch (es) {
#if defined(__SSE2__)
    case 1: *edge = 16; return micro_8;
    case 2: *edge = 8; return micro_16;
#endif
#if defined(__AVX2__)
    case 4: *edge = 8; return micro_32;
    case 8: *edge = 4; return micro_64;
#endif
    default: *edge = 0; return NULL;
    }
}

/* Scalar part of a tile (see copy_tile). */
static void tile_scalar(char *d, const char *s, int64_t p0, int64_t p1, int64_t k0, int64_t k1,
                        int64_t dsp, int64_t ssk, size_t es)
{
#define DAB_TILE(T)                                              \
    do {                                                         \
        for (int64_t ip = p0; ip < p1; ip++) {                   \
            T *dr_ = (T *)d + ip * dsp;                          \
            const T *sr_ = (const T *)s + ip;                    \
            for (int64_t ik = k0; ik < k1; ik++)                 \
                dr_[ik] = sr_[ik * ssk];                         \
        }                                                        \
    } while (0)
    switch (es) {
    case 1: DAB_TILE(uint8_t); break;
    case 2: DAB_TILE(uint16_t); break;
    case 4: DAB_TILE(uint32_t); break;
    case 8: DAB_TILE(uint64_t); break;
    default:
        for (int64_t ip = p0; ip < p1; ip++)
            for (int64_t ik = k0; ik < k1; ik++)
                memcpy(d + (ip * dsp + ik) * (int64_t)es, s + (ip + ik * ssk) * (int64_t)es, es);
        break;
    }
#undef DAB_TILE
}

/* Few destination columns packed densely (dsp == K): the interleaving loop with K known
 * at compile time, which the compiler vectorizes. */
#define DAB_NARROW(T, K)                                         \
    do {                                                         \
        T *dr_ = (T *)d;                                         \
        const T *sr_ = (const T *)s;                             \
        for (int64_t ip = p0; ip < p1; ip++)                     \
            for (int ik = 0; ik < (K); ik++)                     \
                dr_[ip * (K) + ik] = sr_[ip + ik * ssk];         \
    } while (0)

static bool tile_narrow(char *d, const char *s, int64_t p0, int64_t p1, int64_t nk,
                        int64_t ssk, size_t es)
{
#define DAB_NARROW_ES(K)                                         \
    switch (es) {                                                \
    case 1: DAB_NARROW(uint8_t, K); return true;                 \
    case 2: DAB_NARROW(uint16_t, K); return true;                \
    case 4: DAB_NARROW(uint32_t, K); return true;                \
    case 8: DAB_NARROW(uint64_t, K); return true;                \
    default: return false;                                       \
    }
    switch (nk) {
    case 2: DAB_NARROW_ES(2)
    case 3: DAB_NARROW_ES(3)
    case 4: DAB_NARROW_ES(4)
    default: return false;
    }
#undef DAB_NARROW_ES
}
#undef DAB_NARROW

/*
 * One tile of a transpose: destination rows ip in [p0, p1) (row stride dsp), columns
 * ik in [k0, k1) contiguous; the source has unit stride along ip and stride ssk along
 * ik. The tile is small enough that the source lines it touches stay in L1; inside it
 * square micro-transposes do the work, scalar loops the ragged edges.
 */
static void copy_tile(char *d, const char *s, int64_t p0, int64_t p1, int64_t k0, int64_t k1,
                      int64_t dsp, int64_t ssk, size_t es)
{
    if (k0 == 0 && dsp == k1 && tile_narrow(d, s, p0, p1, k1, ssk, es))
        return;
    int b;
    micro_fn fn = micro_for(es, &b);
    if (!fn) {
        tile_scalar(d, s, p0, p1, k0, k1, dsp, ssk, es);
        return;
    }
    int64_t pm = p0 + (p1 - p0) / b * b, km = k0 + (k1 - k0) / b * b;
    int64_t e = (int64_t)es;
    for (int64_t ip = p0; ip < pm; ip += b)
        for (int64_t ik = k0; ik < km; ik += b)
            fn(s + (ip + ik * ssk) * e, ssk, d + (ip * dsp + ik) * e, dsp);
    if (km < k1)
        tile_scalar(d, s, p0, pm, km, k1, dsp, ssk, es);
    if (pm < p1)
        tile_scalar(d, s, pm, p1, k0, k1, dsp, ssk, es);
}

enum { COPY_ROW, COPY_ELEM, COPY_TILE };

/* What one thread needs to walk its share of the outer index space. */
typedef struct copy_walk {
    int mode;
    size_t es;
    int no;                           /* outer dims (for TILE the last is the block index) */
    int64_t dims[DAB_COPY_MAX_RANK];
    int64_t sstr[DAB_COPY_MAX_RANK];
    int64_t dstr[DAB_COPY_MAX_RANK];
    int64_t n;                        /* inner elements (ROW, ELEM) or columns (TILE) */
    int64_t ss, ds;                   /* inner strides (ELEM) */
    int64_t np, tb, dsp, ssk;         /* TILE: rows, tile edge, row strides */
    int64_t kb;                       /* TILE: columns per super-block */
} copy_walk_t;

static void walk_range(const copy_walk_t *w, char *dst, const char *src, int64_t i0, int64_t i1)
{
    int64_t idx[DAB_COPY_MAX_RANK];
    int64_t soff = 0, doff = 0, rem = i0;
    int64_t es = (int64_t)w->es;
    for (int d = w->no - 1; d >= 0; d--) {
        idx[d] = rem % w->dims[d];
        rem /= w->dims[d];
        soff += idx[d] * w->sstr[d];
        doff += idx[d] * w->dstr[d];
    }
    for (int64_t it = i0; it < i1; it++) {
        char *d = dst + doff * es;
        const char *s = src + soff * es;
        switch (w->mode) {
        case COPY_ROW:
            memcpy(d, s, (size_t)(w->n * es));
            break;
        case COPY_ELEM:
            copy_strided(d, s, w->n, w->ss, w->ds, w->es);
            break;
        default: {
            /* the two innermost outer dims are the column super-block and the row
             * block; their strides already moved d and s to the block's corner */
            int64_t p1 = DAB_MIN(w->tb, w->np - idx[w->no - 1] * w->tb);
            int64_t k1 = DAB_MIN(w->kb, w->n - idx[w->no - 2] * w->kb);
            for (int64_t k0 = 0; k0 < k1; k0 += w->tb)
                copy_tile(d, s, 0, p1, k0, DAB_MIN(k0 + w->tb, k1), w->dsp, w->ssk, w->es);
            break;
        }
        }
        for (int d = w->no - 1; d >= 0; d--) {
            soff += w->sstr[d];
            doff += w->dstr[d];
            if (++idx[d] < w->dims[d])
                break;
            soff -= w->sstr[d] * w->dims[d];
            doff -= w->dstr[d] * w->dims[d];
            idx[d] = 0;
        }
    }
}

void dab_copy_run(const dab_copy_plan_t *p, void *dst, const void *src,
                  const dab_exec_ctx_t *ctx)
{
    dab_copy_plan_t q = *p;
    int64_t total = plan_simplify(&q);
    if (total == 0)
        return;
    if (q.rank == 0) {
        memcpy(dst, src, q.esize);
        return;
    }
    copy_walk_t w;
    w.es = q.esize;
    int k = q.rank - 1;
    int tp = -1; /* the source's unit-stride dim, when the destination's is another */
    if (q.dstr[k] == 1 && q.sstr[k] != 1) {
        for (int i = 0; i < k; i++)
            if (q.sstr[i] == 1 && q.dims[i] >= 8 && q.dims[k] >= 2)
                tp = i;
    }
    w.no = 0;
    for (int i = 0; i < k; i++) {
        if (i == tp)
            continue;
        w.dims[w.no] = q.dims[i];
        w.sstr[w.no] = q.sstr[i];
        w.dstr[w.no] = q.dstr[i];
        w.no++;
    }
    w.n = q.dims[k];
    if (tp >= 0) {
        w.mode = COPY_TILE;
        w.tb = DAB_MAX(16, 128 / (int64_t)q.esize);
        w.np = q.dims[tp];
        w.dsp = q.dstr[tp];
        w.ssk = q.sstr[k];
        /* Blocks of kb columns by tb rows, rows innermost: consecutive blocks read the
         * same kb source rows (pages stay in the TLB, lines in L2) while each writes
         * tb destination rows of kb * esize contiguous bytes. */
        w.kb = DAB_MAX(w.tb, 1024 / (int64_t)q.esize);
        w.dims[w.no] = (w.n + w.kb - 1) / w.kb;
        w.sstr[w.no] = w.kb * w.ssk;
        w.dstr[w.no] = w.kb;
        w.no++;
        w.dims[w.no] = (w.np + w.tb - 1) / w.tb;
        w.sstr[w.no] = w.tb; /* the source's unit stride along tp */
        w.dstr[w.no] = w.tb * w.dsp;
        w.no++;
    } else if (q.sstr[k] == 1 && q.dstr[k] == 1) {
        w.mode = COPY_ROW;
    } else {
        w.mode = COPY_ELEM;
        w.ss = q.sstr[k];
        w.ds = q.dstr[k];
    }
    int64_t items = 1;
    for (int i = 0; i < w.no; i++)
        items *= w.dims[i];
    int nt = dab_par_threads(ctx, total);
    if (nt > items)
        nt = (int)items;
    DAB_PAR_FOR(nt, int, t, nt, walk_range(&w, dst, src, items * t / nt, items * (t + 1) / nt);
    );
}

void dab_copy_bytes(void *dst, const void *src, size_t n, const dab_exec_ctx_t *ctx)
{
    if (n == 0 || dst == src)
        return;
    int nt = dab_par_threads(ctx, (int64_t)(n / 4));
    if (nt <= 1) {
        memcpy(dst, src, n);
        return;
    }
#pragma omp parallel for num_threads(nt)
    for (int t = 0; t < nt; t++) {
        size_t step = n / (size_t)nt, a = step * (size_t)t;
        size_t b = t == nt - 1 ? n : a + step;
        memcpy((char *)dst + a, (const char *)src + a, b - a);
    }
}

void dab_fill_elems(void *dst, const void *val, size_t esize, int64_t n,
                    const dab_exec_ctx_t *ctx)
{
    if (n <= 0)
        return;
    int nt = dab_par_threads(ctx, n);
    DAB_PAR_FOR(nt, int, t, nt,
        int64_t a = n * t / nt, b = n * (t + 1) / nt;
        char *d = (char *)dst + a * (int64_t)esize;
        copy_strided(d, val, b - a, 0, 1, esize);
    );
}

/* ------------------------------------------------------------------ */
/* helpers                                                             */
/* ------------------------------------------------------------------ */

int dab_shp_set_out(dab_node_t *node, int k, dab_dtype_t dt, int rank, const int64_t *dims,
                    dab_err_t *err)
{
    dab_tensor_t *o = dab_shp_out(node, k);
    if (!o)
        return 0;
    if (rank > DAB_MAX_RANK)
        return dab_err_set(err, DAB_EUNSUPPORTED, "output %d would have rank %d, more than %d",
                           k, rank, DAB_MAX_RANK);
    size_t bytes;
    char what[32];
    snprintf(what, sizeof what, "output %d", k);
    int rc = dab_shape_check(what, dt, rank, dims, 0, &bytes, err);
    if (rc)
        return rc;
    dab_tensor_set_shape(o, dt, rank, dims);
    return 0;
}

void dab_shp_strides(const dab_tensor_t *t, int64_t *s)
{
    int64_t acc = 1;
    for (int d = t->rank - 1; d >= 0; d--) {
        s[d] = acc;
        acc *= t->dims[d];
    }
}

/* The product of dims [a, b). */
static int64_t dims_prod(const int64_t *dims, int a, int b)
{
    int64_t p = 1;
    for (int i = a; i < b; i++)
        p *= dims[i];
    return p;
}

/* ------------------------------------------------------------------ */
/* Transpose                                                           */
/* ------------------------------------------------------------------ */

int dab_shp_transpose_init(dab_node_t *node, dab_err_t *err)
{
    const int64_t *perm;
    int n = dab_attr_ints(node, "perm", &perm);
    if (n < 0)
        return 0;
    if (n > DAB_MAX_RANK)
        return dab_err_set(err, DAB_EUNSUPPORTED,
                           "attribute perm has %d entries, at most %d are supported", n,
                           DAB_MAX_RANK);
    bool seen[DAB_MAX_RANK] = {0};
    for (int i = 0; i < n; i++) {
        if (perm[i] < 0 || perm[i] >= n || seen[perm[i]])
            return dab_err_set(err, DAB_EINVAL,
                               "attribute perm is not a permutation of 0..%d (entry %d is %lld)",
                               n - 1, i, (long long)perm[i]);
        seen[perm[i]] = true;
    }
    return 0;
}

/* The permutation for in's rank into perm. */
static int transpose_perm(const dab_node_t *node, const dab_tensor_t *in, int *perm,
                          dab_err_t *err)
{
    const int64_t *p;
    int n = dab_attr_ints(node, "perm", &p);
    if (n < 0) {
        for (int i = 0; i < in->rank; i++)
            perm[i] = in->rank - 1 - i;
        return 0;
    }
    if (n != in->rank)
        return dab_err_set(err, DAB_ESHAPE,
                           "attribute perm has %d entries but the input has rank %d", n,
                           in->rank);
    for (int i = 0; i < n; i++)
        perm[i] = (int)p[i];
    return 0;
}

int dab_shp_transpose_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *in = node->inputs[0];
    int perm[DAB_MAX_RANK];
    int rc = transpose_perm(node, in, perm, err);
    if (rc)
        return rc;
    int64_t dims[DAB_MAX_RANK];
    for (int i = 0; i < in->rank; i++)
        dims[i] = in->dims[perm[i]];
    return dab_shp_set_out(node, 0, in->dtype, in->rank, dims, err);
}

int dab_shp_transpose_compute(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *in = node->inputs[0];
    dab_tensor_t *out = node->outputs[0];
    int perm[DAB_MAX_RANK];
    int rc = transpose_perm(node, in, perm, err);
    if (rc)
        return rc;
    int64_t is[DAB_MAX_RANK], os[DAB_MAX_RANK];
    dab_shp_strides(in, is);
    dab_shp_strides(out, os);
    dab_copy_plan_t p;
    dab_copy_plan_init(&p, dab_dtype_size(in->dtype));
    for (int i = 0; i < out->rank; i++)
        dab_copy_plan_add(&p, out->dims[i], is[perm[i]], os[i]);
    dab_copy_run(&p, out->data, in->data, node->ctx);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Expand                                                              */
/* ------------------------------------------------------------------ */

int dab_shp_expand_init(dab_node_t *node, dab_err_t *err)
{
    return 0;
}

int dab_shp_expand_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *in = node->inputs[0];
    dab_tensor_t shp = {0};
    int n, rc = dab_read_ints(node->inputs[1], "input 'shape'", shp.dims, DAB_MAX_RANK, &n, err);
    if (rc)
        return rc;
    shp.rank = n;
    for (int i = 0; i < n; i++)
        if (shp.dims[i] < 0)
            return dab_err_set(err, DAB_EINVAL, "input 'shape' has negative dim %lld at %d",
                               (long long)shp.dims[i], i);
    const dab_tensor_t *ts[2] = {in, &shp};
    dab_tensor_t o = {0};
    rc = dab_broadcast_shapes(2, ts, &o, err);
    if (rc)
        return rc;
    return dab_shp_set_out(node, 0, in->dtype, o.rank, o.dims, err);
}

int dab_shp_expand_compute(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *in = node->inputs[0];
    dab_tensor_t *out = node->outputs[0];
    int64_t bs[DAB_MAX_RANK], os[DAB_MAX_RANK];
    dab_broadcast_strides(in, out, bs);
    dab_shp_strides(out, os);
    dab_copy_plan_t p;
    dab_copy_plan_init(&p, dab_dtype_size(in->dtype));
    for (int i = 0; i < out->rank; i++)
        dab_copy_plan_add(&p, out->dims[i], bs[i], os[i]);
    dab_copy_run(&p, out->data, in->data, node->ctx);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Tile                                                                */
/* ------------------------------------------------------------------ */

int dab_shp_tile_init(dab_node_t *node, dab_err_t *err)
{
    return 0;
}

/* Repeats per dim of input 0. Opset 1-5 take (input, tiles, axis) scalars; later ones a
 * 'repeats' vector with one entry per dim. */
static int tile_repeats(const dab_node_t *node, int64_t *rep, dab_err_t *err)
{
    const dab_tensor_t *in = node->inputs[0];
    if (node->opset < 6) {
        const dab_tensor_t *tt = dab_shp_in(node, 1), *at = dab_shp_in(node, 2);
        if (!tt || !at)
            return dab_err_set(err, DAB_EINVAL, "Tile-1 needs inputs 'tiles' and 'axis'");
        int64_t tiles[1], axis[1];
        int n1, n2;
        int rc = dab_read_ints(tt, "input 'tiles'", tiles, 1, &n1, err);
        if (!rc)
            rc = dab_read_ints(at, "input 'axis'", axis, 1, &n2, err);
        if (rc)
            return rc;
        if (n1 != 1 || n2 != 1)
            return dab_err_set(err, DAB_ESHAPE, "inputs 'tiles' and 'axis' must hold one value");
        int ax;
        rc = dab_norm_axis(axis[0], in->rank, "input 'axis'", &ax, err);
        if (rc)
            return rc;
        for (int i = 0; i < in->rank; i++)
            rep[i] = 1;
        rep[ax] = tiles[0];
    } else {
        int n;
        int rc = dab_read_ints(node->inputs[1], "input 'repeats'", rep, DAB_MAX_RANK, &n, err);
        if (rc)
            return rc;
        if (n != in->rank)
            return dab_err_set(err, DAB_ESHAPE,
                               "input 'repeats' has %d values but the input has rank %d", n,
                               in->rank);
    }
    for (int i = 0; i < in->rank; i++)
        if (rep[i] < 0)
            return dab_err_set(err, DAB_EINVAL, "repeat count %lld for dim %d is negative",
                               (long long)rep[i], i);
    return 0;
}

int dab_shp_tile_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *in = node->inputs[0];
    int64_t rep[DAB_MAX_RANK], dims[DAB_MAX_RANK];
    int rc = tile_repeats(node, rep, err);
    if (rc)
        return rc;
    for (int i = 0; i < in->rank; i++)
        if (dab_mul_i64(in->dims[i], rep[i], &dims[i]))
            return dab_err_set(err, DAB_ERANGE, "dim %d times %lld repeats overflows", i,
                               (long long)rep[i]);
    return dab_shp_set_out(node, 0, in->dtype, in->rank, dims, err);
}

int dab_shp_tile_compute(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *in = node->inputs[0];
    dab_tensor_t *out = node->outputs[0];
    int64_t rep[DAB_MAX_RANK], is[DAB_MAX_RANK], os[DAB_MAX_RANK];
    int rc = tile_repeats(node, rep, err);
    if (rc)
        return rc;
    dab_shp_strides(in, is);
    dab_shp_strides(out, os);
    dab_copy_plan_t p;
    dab_copy_plan_init(&p, dab_dtype_size(in->dtype));
    /* output index along dim i is r * dim + j: a repeat dim (source stride 0) over the
     * input's dim */
    for (int i = 0; i < in->rank; i++) {
        dab_copy_plan_add(&p, rep[i], 0, in->dims[i] * os[i]);
        dab_copy_plan_add(&p, in->dims[i], is[i], os[i]);
    }
    dab_copy_run(&p, out->data, in->data, node->ctx);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Slice                                                               */
/* ------------------------------------------------------------------ */

int dab_shp_slice_init(dab_node_t *node, dab_err_t *err)
{
    if (node->opset >= 10)
        return 0;
    const int64_t *v;
    int ns = dab_attr_ints(node, "starts", &v), ne = dab_attr_ints(node, "ends", &v);
    int na = dab_attr_ints(node, "axes", &v);
    if (ns < 0 || ne < 0)
        return dab_err_set(err, DAB_EINVAL, "attributes starts and ends are required");
    if (ns != ne || (na >= 0 && na != ns))
        return dab_err_set(err, DAB_EINVAL,
                           "attributes starts (%d), ends (%d) and axes (%d) differ in length", ns,
                           ne, na);
    return 0;
}

/* Per dim of the input: first index, step and count of the slice. */
static int slice_params(const dab_node_t *node, const dab_tensor_t *in, int64_t *start,
                        int64_t *step, int64_t *count, dab_err_t *err)
{
    int64_t st[DAB_MAX_RANK], en[DAB_MAX_RANK], ax[DAB_MAX_RANK], sp[DAB_MAX_RANK];
    int ns, ne, na = -1, np = -1;
    if (node->opset < 10) {
        const int64_t *vs, *ve, *va;
        ns = dab_attr_ints(node, "starts", &vs);
        ne = dab_attr_ints(node, "ends", &ve);
        na = dab_attr_ints(node, "axes", &va);
        if (ns < 0 || ns > DAB_MAX_RANK || ne != ns || (na >= 0 && na != ns))
            return dab_err_set(err, DAB_ESHAPE, "attributes starts (%d), ends (%d) and axes (%d) "
                               "must have the same length, at most %d", ns, ne, na,
                               DAB_MAX_RANK);
        memcpy(st, vs, sizeof(int64_t) * (size_t)ns);
        memcpy(en, ve, sizeof(int64_t) * (size_t)ne);
        if (na >= 0)
            memcpy(ax, va, sizeof(int64_t) * (size_t)na);
    } else {
        const dab_tensor_t *ta = dab_shp_in(node, 3), *tp = dab_shp_in(node, 4);
        int rc = dab_read_ints(node->inputs[1], "input 'starts'", st, DAB_MAX_RANK, &ns, err);
        if (!rc)
            rc = dab_read_ints(node->inputs[2], "input 'ends'", en, DAB_MAX_RANK, &ne, err);
        if (!rc && ta)
            rc = dab_read_ints(ta, "input 'axes'", ax, DAB_MAX_RANK, &na, err);
        if (!rc && tp)
            rc = dab_read_ints(tp, "input 'steps'", sp, DAB_MAX_RANK, &np, err);
        if (rc)
            return rc;
        if (ns != ne || (na >= 0 && na != ns) || (np >= 0 && np != ns))
            return dab_err_set(err, DAB_ESHAPE,
                               "inputs starts (%d), ends (%d), axes (%d) and steps (%d) differ "
                               "in length", ns, ne, na, np);
    }
    for (int d = 0; d < in->rank; d++) {
        start[d] = 0;
        step[d] = 1;
        count[d] = in->dims[d];
    }
    bool seen[DAB_MAX_RANK] = {0};
    for (int i = 0; i < ns; i++) {
        int a;
        int rc = dab_norm_axis(na >= 0 ? ax[i] : i, in->rank, "slice axis", &a, err);
        if (rc)
            return rc;
        if (seen[a])
            return dab_err_set(err, DAB_EINVAL, "axis %d is sliced twice", a);
        seen[a] = true;
        int64_t s = st[i], e = en[i], k = np >= 0 ? sp[i] : 1, dim = in->dims[a];
        if (k == 0)
            return dab_err_set(err, DAB_EINVAL, "step for axis %d is 0", a);
        if (s < 0)
            s += dim;
        if (e < 0)
            e += dim;
        int64_t n;
        if (k > 0) {
            s = s < 0 ? 0 : s > dim ? dim : s;
            e = e < 0 ? 0 : e > dim ? dim : e;
            n = e > s ? (e - s - 1) / k + 1 : 0;
        } else {
            s = s < 0 ? 0 : s > dim - 1 ? dim - 1 : s;
            e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
            int64_t nk = k == INT64_MIN ? INT64_MAX : -k;
            n = s > e ? (s - e - 1) / nk + 1 : 0;
        }
        start[a] = n > 0 ? s : 0;
        step[a] = n > 1 ? k : 1;
        count[a] = n;
    }
    return 0;
}

int dab_shp_slice_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *in = node->inputs[0];
    int64_t start[DAB_MAX_RANK], step[DAB_MAX_RANK], count[DAB_MAX_RANK];
    int rc = slice_params(node, in, start, step, count, err);
    if (rc)
        return rc;
    return dab_shp_set_out(node, 0, in->dtype, in->rank, count, err);
}

int dab_shp_slice_compute(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *in = node->inputs[0];
    dab_tensor_t *out = node->outputs[0];
    int64_t start[DAB_MAX_RANK], step[DAB_MAX_RANK], count[DAB_MAX_RANK];
    int rc = slice_params(node, in, start, step, count, err);
    if (rc)
        return rc;
    if (dab_tensor_numel(out) == 0)
        return 0;
    int64_t is[DAB_MAX_RANK], os[DAB_MAX_RANK], off = 0;
    dab_shp_strides(in, is);
    dab_shp_strides(out, os);
    size_t es = dab_dtype_size(in->dtype);
    dab_copy_plan_t p;
    dab_copy_plan_init(&p, es);
    for (int d = 0; d < in->rank; d++) {
        off += start[d] * is[d];
        dab_copy_plan_add(&p, count[d], is[d] * step[d], os[d]);
    }
    dab_copy_run(&p, out->data, (const char *)in->data + off * (int64_t)es, node->ctx);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Concat                                                              */
/* ------------------------------------------------------------------ */

int dab_shp_concat_init(dab_node_t *node, dab_err_t *err)
{
    if (node->opset >= 4 && !dab_attr_find(node, "axis"))
        return dab_err_set(err, DAB_EINVAL, "attribute axis is required");
    return 0;
}

static int concat_axis(const dab_node_t *node, int rank, int *axis, dab_err_t *err)
{
    return dab_norm_axis(dab_attr_int(node, "axis", 1), rank, "attribute axis", axis, err);
}

int dab_shp_concat_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *a = node->inputs[0];
    if (!a)
        return dab_err_set(err, DAB_EINVAL, "input 0 is missing");
    int axis;
    int rc = concat_axis(node, a->rank, &axis, err);
    if (rc)
        return rc;
    int64_t dims[DAB_MAX_RANK];
    memcpy(dims, a->dims, sizeof(int64_t) * (size_t)a->rank);
    dims[axis] = 0;
    for (int k = 0; k < node->n_inputs; k++) {
        const dab_tensor_t *t = node->inputs[k];
        if (!t)
            return dab_err_set(err, DAB_EINVAL, "input %d is missing", k);
        if (t->dtype != a->dtype)
            return dab_err_set(err, DAB_ETYPE, "input %d is %s but input 0 is %s", k,
                               dab_dtype_name(t->dtype), dab_dtype_name(a->dtype));
        char sa[96], sb[96];
        bool ok = t->rank == a->rank;
        for (int d = 0; ok && d < a->rank; d++)
            ok = d == axis || t->dims[d] == a->dims[d];
        if (!ok)
            return dab_err_set(err, DAB_ESHAPE,
                               "input %d has shape %s, which does not match input 0's %s "
                               "outside axis %d", k, dab_shape_str(t, sa, sizeof sa),
                               dab_shape_str(a, sb, sizeof sb), axis);
        if (__builtin_add_overflow(dims[axis], t->dims[axis], &dims[axis]))
            return dab_err_set(err, DAB_ERANGE, "concatenated dim overflows");
    }
    return dab_shp_set_out(node, 0, a->dtype, a->rank, dims, err);
}

int dab_shp_concat_compute(dab_node_t *node, dab_err_t *err)
{
    dab_tensor_t *out = node->outputs[0];
    int axis;
    int rc = concat_axis(node, out->rank, &axis, err);
    if (rc)
        return rc;
    size_t es = dab_dtype_size(out->dtype);
    int64_t outer = dims_prod(out->dims, 0, axis);
    int64_t inner = dims_prod(out->dims, axis + 1, out->rank);
    int64_t orow = out->dims[axis] * inner, off = 0;
    for (int k = 0; k < node->n_inputs; k++) {
        const dab_tensor_t *t = node->inputs[k];
        int64_t row = t->dims[axis] * inner;
        dab_copy_plan_t p;
        dab_copy_plan_init(&p, es);
        dab_copy_plan_add(&p, outer, row, orow);
        dab_copy_plan_add(&p, row, 1, 1);
        if (row > 0 && outer > 0)
            dab_copy_run(&p, (char *)out->data + off * (int64_t)es, t->data, node->ctx);
        off += row;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Split                                                               */
/* ------------------------------------------------------------------ */

int dab_shp_split_init(dab_node_t *node, dab_err_t *err)
{
    const int64_t *v;
    int n = dab_attr_ints(node, "split", &v);
    if (n >= 0 && n != node->n_outputs)
        return dab_err_set(err, DAB_EINVAL, "attribute split has %d values for %d outputs", n,
                           node->n_outputs);
    const dab_attr_t *a = dab_attr_find(node, "num_outputs");
    if (a && a->i != node->n_outputs)
        return dab_err_set(err, DAB_EINVAL, "attribute num_outputs is %lld but the node has %d "
                           "outputs", (long long)a->i, node->n_outputs);
    return 0;
}

/* Where the split sizes come from: a tensor, an attribute, or an even (or ceil) split. */
typedef struct split_src {
    const dab_tensor_t *t;
    const int64_t *attr;
    int64_t chunk, last;
} split_src_t;

static int64_t split_size(const split_src_t *s, int i, int n)
{
    if (s->t)
        return s->t->dtype == DAB_DT_INT64 ? ((const int64_t *)s->t->data)[i]
                                            : ((const int32_t *)s->t->data)[i];
    if (s->attr)
        return s->attr[i];
    return i == n - 1 ? s->last : s->chunk;
}

static int split_setup(const dab_node_t *node, const dab_tensor_t *in, int *axis, split_src_t *s,
                       dab_err_t *err)
{
    int rc = dab_norm_axis(dab_attr_int(node, "axis", 0), in->rank, "attribute axis", axis, err);
    if (rc)
        return rc;
    int n = node->n_outputs;
    int64_t dim = in->dims[*axis];
    memset(s, 0, sizeof *s);
    const dab_tensor_t *t = dab_shp_in(node, 1);
    if (t && dab_tensor_numel(t) == 0 && n > 0)
        t = NULL; /* an empty 'split' means none */
    if (t && (node->opset >= 13 || node->opset == 1)) {
        if (t->dtype != DAB_DT_INT64 && t->dtype != DAB_DT_INT32)
            return dab_err_set(err, DAB_ETYPE, "input 'split' must be int64, got %s",
                               dab_dtype_name(t->dtype));
        if (t->rank > 1 || dab_tensor_numel(t) != n)
            return dab_err_set(err, DAB_ESHAPE, "input 'split' has %lld values for %d outputs",
                               (long long)dab_tensor_numel(t), n);
        s->t = t;
    } else if (node->opset < 13 && dab_attr_ints(node, "split", &s->attr) >= 0) {
        /* attribute form */
    } else if (node->opset >= 18 && dab_attr_find(node, "num_outputs")) {
        s->chunk = (dim + n - 1) / n;
        s->last = dim - s->chunk * (n - 1);
        if (s->last < 0)
            return dab_err_set(err, DAB_ESHAPE, "a dim of %lld cannot be split into %d chunks "
                               "of %lld", (long long)dim, n, (long long)s->chunk);
    } else {
        if (dim % n)
            return dab_err_set(err, DAB_ESHAPE, "dim %lld of axis %d does not split evenly into "
                               "%d outputs", (long long)dim, *axis, n);
        s->chunk = s->last = dim / n;
    }
    int64_t sum = 0;
    for (int i = 0; i < n; i++) {
        int64_t v = split_size(s, i, n);
        if (v < 0 || __builtin_add_overflow(sum, v, &sum))
            return dab_err_set(err, DAB_EINVAL, "split size %lld of output %d is invalid",
                               (long long)v, i);
    }
    if (sum != dim)
        return dab_err_set(err, DAB_ESHAPE, "split sizes add up to %lld but axis %d has %lld",
                           (long long)sum, *axis, (long long)dim);
    return 0;
}

int dab_shp_split_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *in = node->inputs[0];
    int axis;
    split_src_t s;
    int rc = split_setup(node, in, &axis, &s, err);
    if (rc)
        return rc;
    int64_t dims[DAB_MAX_RANK];
    memcpy(dims, in->dims, sizeof(int64_t) * (size_t)in->rank);
    for (int i = 0; i < node->n_outputs; i++) {
        dims[axis] = split_size(&s, i, node->n_outputs);
        rc = dab_shp_set_out(node, i, in->dtype, in->rank, dims, err);
        if (rc)
            return rc;
    }
    return 0;
}

int dab_shp_split_compute(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *in = node->inputs[0];
    int axis;
    split_src_t s;
    int rc = split_setup(node, in, &axis, &s, err);
    if (rc)
        return rc;
    size_t es = dab_dtype_size(in->dtype);
    int64_t outer = dims_prod(in->dims, 0, axis), inner = dims_prod(in->dims, axis + 1, in->rank);
    int64_t irow = in->dims[axis] * inner, off = 0;
    for (int i = 0; i < node->n_outputs; i++) {
        int64_t row = split_size(&s, i, node->n_outputs) * inner;
        dab_tensor_t *o = node->outputs[i];
        if (o && row > 0 && outer > 0) {
            dab_copy_plan_t p;
            dab_copy_plan_init(&p, es);
            dab_copy_plan_add(&p, outer, irow, row);
            dab_copy_plan_add(&p, row, 1, 1);
            dab_copy_run(&p, o->data, (const char *)in->data + off * (int64_t)es, node->ctx);
        }
        off += row;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Gather                                                              */
/* ------------------------------------------------------------------ */

int dab_shp_gather_init(dab_node_t *node, dab_err_t *err)
{
    return 0;
}

int dab_shp_gather_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *in = node->inputs[0], *ix = node->inputs[1];
    if (ix->dtype != DAB_DT_INT64 && ix->dtype != DAB_DT_INT32)
        return dab_err_set(err, DAB_ETYPE, "input 'indices' must be int32 or int64, got %s",
                           dab_dtype_name(ix->dtype));
    if (in->rank == 0)
        return dab_err_set(err, DAB_ESHAPE, "input 'data' must have rank >= 1");
    int axis;
    int rc = dab_norm_axis(dab_attr_int(node, "axis", 0), in->rank, "attribute axis", &axis, err);
    if (rc)
        return rc;
    int rank = in->rank - 1 + ix->rank;
    if (rank > DAB_MAX_RANK)
        return dab_err_set(err, DAB_EUNSUPPORTED, "the output would have rank %d, more than %d",
                           rank, DAB_MAX_RANK);
    int64_t dims[DAB_MAX_RANK];
    int r = 0;
    for (int d = 0; d < axis; d++)
        dims[r++] = in->dims[d];
    for (int d = 0; d < ix->rank; d++)
        dims[r++] = ix->dims[d];
    for (int d = axis + 1; d < in->rank; d++)
        dims[r++] = in->dims[d];
    return dab_shp_set_out(node, 0, in->dtype, rank, dims, err);
}

int dab_shp_gather_compute(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *in = node->inputs[0], *ix = node->inputs[1];
    dab_tensor_t *out = node->outputs[0];
    int axis;
    int rc = dab_norm_axis(dab_attr_int(node, "axis", 0), in->rank, "attribute axis", &axis, err);
    if (rc)
        return rc;
    int64_t ni = dab_tensor_numel(ix), dim = in->dims[axis];
    bool i64 = ix->dtype == DAB_DT_INT64;
    for (int64_t j = 0; j < ni; j++) {
        int64_t v = i64 ? ((const int64_t *)ix->data)[j] : ((const int32_t *)ix->data)[j];
        if (v < -dim || v >= dim)
            return dab_err_set(err, DAB_ERANGE,
                               "index %lld (at %lld) is out of range for axis %d of size %lld",
                               (long long)v, (long long)j, axis, (long long)dim);
    }
    int64_t outer = dims_prod(in->dims, 0, axis), inner = dims_prod(in->dims, axis + 1, in->rank);
    int64_t items = outer * ni;
    if (items == 0 || inner == 0)
        return 0;
    size_t es = dab_dtype_size(in->dtype);
    size_t row = (size_t)inner * es;
    const char *src = in->data;
    char *dst = out->data;
    int nt = dab_par_threads(node->ctx, items * inner);
    DAB_PAR_FOR(nt, int64_t, it, items,
        int64_t o = it / ni, j = it % ni;
        int64_t v = i64 ? ((const int64_t *)ix->data)[j] : ((const int32_t *)ix->data)[j];
        if (v < 0)
            v += dim;
        const char *s = src + (size_t)(o * dim + v) * row;
        char *d = dst + (size_t)it * row;
        switch (row) {
        case 4: memcpy(d, s, 4); break;
        case 8: memcpy(d, s, 8); break;
        default: memcpy(d, s, row); break;
        }
    );
    return 0;
}
