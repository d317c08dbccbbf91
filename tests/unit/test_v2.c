/*
 * test_v2.c - the KServe v2 codec (src/serve/v2.h): request decoding in JSON and binary,
 * response encoding, round trips for every datatype, the errors a client sees, limits
 * enforced before allocation, truncated and corrupted bodies, allocation failures, the
 * shortest float formatter, and gzip/deflate.
 *
 * The limit and zip-bomb tests run first, while the allocator's peak is still small, so
 * that "no large allocation happened" can be read from dab_alloc_stats.
 */
#include <float.h>
#include <stdint.h>
#include <zlib.h>

#include "serve/v2.h"
#include "test.h"

/* ------------------------------------------------------------------ helpers */

static int decode(const char *json, dab_v2_request_t **r, dab_err_t *err)
{
    return dab_v2_request_decode(json, strlen(json), -1, NULL, r, err);
}

/* Decodes json, expects failure with code, and that the message contains want. */
static void expect_error(const char *json, int code, const char *want)
{
    dab_v2_request_t *r = NULL;
    dab_err_t err = {0};
    int rc = decode(json, &r, &err);
    CHECK_EQ_INT(rc, code);
    CHECK(r == NULL);
    if (!strstr(err.msg, want)) {
        t_failed++;
        fprintf(stderr, "FAIL %s: message '%s' lacks '%s'\n", t_current, err.msg, want);
    } else {
        t_passed++;
    }
}

static uint64_t live_bytes(void)
{
    dab_alloc_stats_t s;
    dab_alloc_stats(&s);
    return s.live_bytes;
}

static uint32_t rng_state = 0x12345678u;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

/* ------------------------------------------------------------------ limits first */

TEST(limits_refused_before_allocation)
{
    /* jansson allocates through the counting allocator in these tests. */
    json_set_alloc_funcs(dab_malloc, dab_free);
    dab_alloc_stats_t before, after;
    dab_v2_limits_t lim = {.max_elements = (int64_t)1 << 34,
                           .max_rank = 4,
                           .max_inputs = 2,
                           .max_total_bytes = (size_t)1 << 40};
    dab_v2_limits_t small = lim;
    small.max_elements = 1000;
    small.max_total_bytes = 1 << 20;
    struct {
        const char *json;
        const dab_v2_limits_t *lim;
        int code;
        const char *msg;
    } cases[] = {
        /* 2^33 elements: 32 GB of FP32 if it were allocated. */
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[8589934592],\"datatype\":\"FP32\",\"data"
         "\":[1]}]}",
         &small, DAB_ELIMIT, "input 'x': shape [8589934592] has more than 1000 elements"},
        /* Within the element limit, but 10^9 values cannot fit in this body. */
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[1000000000],\"datatype\":\"FP64\",\"data"
         "\":[1]}]}",
         &lim, DAB_ESHAPE, "needs 1000000000 values, more than the"},
        /* Binary data past the byte limit is refused before the body is looked at. */
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[1000,1000],\"datatype\":\"FP32\","
         "\"parameters\":{\"binary_data_size\":4000000}}]}",
         &small, DAB_ELIMIT, "shape [1000,1000] has more than 1000 elements"},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[1000,1000],\"datatype\":\"INT64\","
         "\"parameters\":{\"binary_data_size\":8000000}}]}",
         &(dab_v2_limits_t){.max_total_bytes = 1 << 20}, DAB_ELIMIT,
         "input 'x': shape [1000,1000] of INT64 needs 8000000 bytes, which with the other inputs "
         "exceeds the limit of 1048576 bytes"},
        /* BYTES: more elements than binary data could hold. */
        {"{\"inputs\":[{\"name\":\"s\",\"shape\":[100000000],\"datatype\":\"BYTES\","
         "\"parameters\":{\"binary_data_size\":8}}]}",
         &lim, DAB_ESHAPE, "needs 100000000 BYTES elements, but 8 bytes of binary data hold"},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1,1,1,1],\"datatype\":\"FP32\",\"data\":[1]}]}",
         &lim, DAB_ELIMIT, "input 'x': shape has more than 4 dimensions, the limit"},
        {"{\"inputs\":[{\"name\":\"a\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]},"
         "{\"name\":\"b\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]},"
         "{\"name\":\"c\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]}]}",
         &lim, DAB_ELIMIT, "the request has more than 2 inputs, the limit"},
        /* A dimension of 0 does not hide a huge one. */
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[0,99999999999],\"datatype\":\"FP32\",\"dat"
         "a\":[]}]}",
         &small, DAB_ELIMIT, "has more than 1000 elements"},
    };
    for (size_t i = 0; i < DAB_ARRAY_LEN(cases); i++) {
        dab_v2_request_t *r = NULL;
        dab_err_t err = {0};
        dab_alloc_stats(&before);
        int rc = dab_v2_request_decode(cases[i].json, strlen(cases[i].json), -1, cases[i].lim, &r,
                                       &err);
        dab_alloc_stats(&after);
        CHECK_EQ_INT(rc, cases[i].code);
        CHECK(r == NULL);
        if (!strstr(err.msg, cases[i].msg)) {
            t_failed++;
            fprintf(stderr, "FAIL case %zu: '%s' lacks '%s'\n", i, err.msg, cases[i].msg);
        }
        /* Nothing larger than a few arena blocks was ever live. */
        CHECK(after.peak_bytes < before.live_bytes + (64u << 10) ||
              after.peak_bytes == before.peak_bytes);
        CHECK(before.peak_bytes < (4u << 20));
        CHECK_EQ_INT(after.live_bytes, before.live_bytes);
        CHECK_EQ_INT(dab_v2_http_status(rc), rc == DAB_ELIMIT ? 413 : 400);
    }
}

TEST(gzip_bomb_refused)
{
    /* 64 MiB of zeros compress to about 64 KiB; the bound is 1 MiB. Built with plain
     * zlib so that only the inflate under test touches the counting allocator. */
    size_t raw_len = (size_t)64 << 20;
    unsigned char *raw = calloc(raw_len, 1);
    uLongf clen = compressBound(raw_len);
    unsigned char *comp = malloc(clen);
    CHECK(raw && comp && compress2(comp, &clen, raw, raw_len, 9) == Z_OK);
    free(raw);
    dab_alloc_stats_t before, after;
    dab_alloc_stats(&before);
    dab_buf_t out = {0};
    dab_err_t err = {0};
    int rc = dab_v2_inflate(comp, clen, DAB_V2_CODING_DEFLATE, 1 << 20, &out, &err);
    dab_alloc_stats(&after);
    CHECK_EQ_INT(rc, DAB_ELIMIT);
    CHECK(strstr(err.msg, "the deflate body inflates to more than 1048576 bytes") != NULL);
    CHECK_EQ_INT(out.len, 0);
    CHECK(out.cap <= (2u << 20));
    /* The output buffer grows by doubling, so a few times the bound, never 64 MiB. */
    CHECK(after.peak_bytes < before.live_bytes + (4u << 20));
    dab_buf_free(&out);
    free(comp);
}

/* ------------------------------------------------------------------ datatypes */

TEST(dtype_names)
{
    const char *names[] = {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8",  "INT16",
                           "INT32", "INT64", "FP16",  "FP32",   "FP64",   "BYTES", "BF16"};
    for (size_t i = 0; i < DAB_ARRAY_LEN(names); i++) {
        dab_dtype_t dt = dab_v2_dtype_from_name(names[i], strlen(names[i]));
        CHECK(dt != DAB_DT_UNDEFINED);
        CHECK(strcmp(dab_v2_dtype_name(dt), names[i]) == 0);
    }
    CHECK_EQ_INT(dab_v2_dtype_from_name("BYTES", 5), DAB_DT_STRING);
    CHECK_EQ_INT(dab_v2_dtype_from_name("FP32", 4), DAB_DT_FLOAT);
    CHECK_EQ_INT(dab_v2_dtype_from_name("fp32", 4), DAB_DT_UNDEFINED);
    CHECK_EQ_INT(dab_v2_dtype_from_name("FP3", 3), DAB_DT_UNDEFINED);
    CHECK(dab_v2_dtype_name(DAB_DT_COMPLEX64) == NULL);
}

/*
 * Encodes t as output "x" of a response (JSON or binary), turns the response into a
 * request by renaming "outputs" to "inputs", decodes it, and checks that the same
 * tensor comes back bit for bit.
 */
static void roundtrip(const dab_tensor_t *t, bool binary)
{
    dab_v2_output_t o = {.name = "x", .tensor = t, .binary = binary};
    dab_v2_response_t resp = {.model_name = "m", .model_version = "1", .id = "r1", .id_len = 2,
                              .n_outputs = 1, .outputs = &o};
    dab_buf_t b = {0}, body = {0};
    size_t jl = 0;
    dab_err_t err = {0};
    int rc = dab_v2_response_encode(&resp, &b, &jl, &err);
    CHECK_EQ_INT(rc, 0);
    if (rc) {
        fprintf(stderr, "  encode %s: %s\n", dab_v2_dtype_name(t->dtype), err.msg);
        return;
    }
    CHECK(binary ? jl < b.len || dab_tensor_numel(t) == 0 : jl == b.len);
    char *at = strstr(b.data, "\"outputs\":[");
    CHECK(at != NULL && (size_t)(at - b.data) < jl);
    size_t pre = (size_t)(at - b.data);
    dab_buf_append(&body, b.data, pre);
    dab_buf_puts(&body, "\"inputs\":[");
    dab_buf_append(&body, at + 11, b.len - pre - 11);
    dab_v2_request_t *r = NULL;
    rc = dab_v2_request_decode(body.data, body.len, binary ? (int64_t)jl - 1 : -1, NULL, &r,
                               &err);
    CHECK_EQ_INT(rc, 0);
    if (rc) {
        fprintf(stderr, "  decode %s: %s\n  body: %.300s\n", dab_v2_dtype_name(t->dtype),
                err.msg, body.data);
    } else {
        CHECK_EQ_INT(r->n_inputs, 1);
        const dab_tensor_t *u = &r->inputs[0].tensor;
        CHECK(strcmp(r->inputs[0].name, "x") == 0);
        CHECK_EQ_INT(u->dtype, t->dtype);
        CHECK(dab_shape_equal(u, t));
        CHECK(u->data != NULL);
        CHECK(r->id && strcmp(r->id, "r1") == 0);
        CHECK_EQ_INT(r->inputs[0].binary_size_bytes >= 0, binary);
        int64_t n = dab_tensor_numel(t);
        if (t->dtype == DAB_DT_STRING) {
            for (int64_t k = 0; k < n; k++) {
                const dab_str_t *a = (const dab_str_t *)t->data + k;
                const dab_str_t *c = (const dab_str_t *)u->data + k;
                CHECK(a->len == c->len && memcmp(a->ptr, c->ptr, a->len) == 0);
            }
        } else if (memcmp(u->data, t->data, (size_t)n * dab_dtype_size(t->dtype)) != 0) {
            t_failed++;
            fprintf(stderr, "FAIL roundtrip %s %s: data differs\n  body: %.400s\n",
                    dab_v2_dtype_name(t->dtype), binary ? "binary" : "JSON", body.data);
        } else {
            t_passed++;
        }
    }
    dab_v2_request_free(r);
    dab_buf_free(&b);
    dab_buf_free(&body);
}

static void roundtrip_both(dab_dtype_t dt, const void *data, int64_t n)
{
    dab_tensor_t t = {.dtype = dt, .rank = 2, .dims = {1, n}, .data = (void *)data};
    if (dt != DAB_DT_FLOAT16 && dt != DAB_DT_BFLOAT16)
        roundtrip(&t, false);
    roundtrip(&t, true);
    /* rank 0 and empty tensors too */
    dab_tensor_t s = {.dtype = dt, .rank = 0, .data = (void *)data};
    dab_tensor_t e = {.dtype = dt, .rank = 2, .dims = {3, 0}, .data = (void *)data};
    if (dt != DAB_DT_FLOAT16 && dt != DAB_DT_BFLOAT16) {
        roundtrip(&s, false);
        roundtrip(&e, false);
    }
    roundtrip(&s, true);
    roundtrip(&e, true);
}

TEST(roundtrip_every_datatype)
{
    uint8_t b[] = {1, 0, 1, 1};
    uint8_t u8[] = {0, 255, 7};
    int8_t i8[] = {-128, 127, 0, -1};
    uint16_t u16[] = {0, 65535, 300};
    int16_t i16[] = {-32768, 32767, -2};
    uint32_t u32[] = {0, 4294967295u, 123456789};
    int32_t i32[] = {INT32_MIN, INT32_MAX, 0, -7};
    uint64_t u64[] = {0, UINT64_MAX, 18446744073709551000ull};
    int64_t i64[] = {INT64_MIN, INT64_MAX, -1, 0};
    float f32[] = {0.1f, -3.5f, FLT_MAX, FLT_TRUE_MIN, -0.0f, 1e-7f, 16777217.0f, 3.14159274f,
                   FLT_MIN, -FLT_MAX, 1e10f, 123456.789f};
    double f64[] = {0.1, DBL_MAX, 5e-324, -2.5, -0.0, 1.0 / 3.0, 1e22, 1e23, DBL_MIN, 2.0 / 3e-300};
    uint16_t f16[] = {0x3c00, 0x7bff, 0x0001, 0xfc00, 0x7e00};
    uint16_t bf16[] = {0x3f80, 0x7f7f, 0x0001, 0xff80};
    dab_str_t strs[] = {{"", 0},
                        {"h\xc3\xa9llo", 6},
                        {"a\"b\\c\n\x01/", 9},
                        {"\xf0\x9f\x98\x80 emoji", 10},
                        {"tab\there", 8}};
    roundtrip_both(DAB_DT_BOOL, b, 4);
    roundtrip_both(DAB_DT_UINT8, u8, 3);
    roundtrip_both(DAB_DT_INT8, i8, 4);
    roundtrip_both(DAB_DT_UINT16, u16, 3);
    roundtrip_both(DAB_DT_INT16, i16, 3);
    roundtrip_both(DAB_DT_UINT32, u32, 3);
    roundtrip_both(DAB_DT_INT32, i32, 4);
    roundtrip_both(DAB_DT_UINT64, u64, 3);
    roundtrip_both(DAB_DT_INT64, i64, 4);
    roundtrip_both(DAB_DT_FLOAT, f32, 12);
    roundtrip_both(DAB_DT_DOUBLE, f64, 10);
    roundtrip_both(DAB_DT_FLOAT16, f16, 5);
    roundtrip_both(DAB_DT_BFLOAT16, bf16, 4);
    roundtrip_both(DAB_DT_STRING, strs, 5);

    /* Many random float32 and float64 values through JSON. */
    enum { N = 4096 };
    float *rf = malloc(N * sizeof *rf);
    double *rd = malloc(N * sizeof *rd);
    for (int i = 0; i < N; i++) {
        uint32_t bits;
        do
            bits = rnd();
        while (((bits >> 23) & 0xff) == 0xff);
        memcpy(&rf[i], &bits, 4);
        uint64_t b64;
        do
            b64 = ((uint64_t)rnd() << 32) | rnd();
        while (((b64 >> 52) & 0x7ff) == 0x7ff);
        memcpy(&rd[i], &b64, 8);
    }
    roundtrip_both(DAB_DT_FLOAT, rf, N);
    roundtrip_both(DAB_DT_DOUBLE, rd, N);
    free(rf);
    free(rd);
}

/* ------------------------------------------------------------------ decoding */

TEST(decode_json_request)
{
    const char *json =
        "{\"id\":\"req-1\",\"parameters\":{\"priority\":2,\"timeout\":1500,"
        "\"binary_data_output\":true},"
        "\"inputs\":[{\"name\":\"a\",\"shape\":[2,3],\"datatype\":\"FP32\","
        "\"data\":[[1,2.5,-3e2],[0.1,1e-3,-0]]},"
        "{\"data\":[[[1],[2]],[[3],[4]]],\"datatype\":\"INT16\",\"shape\":[4],\"name\":\"b\","
        "\"parameters\":{\"note\":\"deferred\"}},"
        "{\"name\":\"c\",\"shape\":[],\"datatype\":\"BOOL\",\"data\":true},"
        "{\"name\":\"s\",\"shape\":[3],\"datatype\":\"BYTES\","
        "\"data\":[\"plain\",\"tab\\there \\u00e9 \\ud83d\\ude00\",\"\"]}],"
        "\"outputs\":[{\"name\":\"y\",\"parameters\":{\"binary_data\":false}},{\"name\":\"z\"}],"
        "\"unknown\":{\"ignored\":[1,2,{}]}}";
    dab_v2_request_t *r = NULL;
    dab_err_t err = {0};
    uint64_t live0 = live_bytes();
    CHECK_EQ_INT(decode(json, &r, &err), 0);
    if (!r) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    CHECK(strcmp(r->id, "req-1") == 0 && r->id_len == 5);
    CHECK_EQ_INT(json_integer_value(json_object_get(r->parameters, "priority")), 2);
    CHECK_EQ_INT(json_integer_value(json_object_get(r->parameters, "timeout")), 1500);
    CHECK_EQ_INT(r->binary_data_output, 1);
    CHECK_EQ_INT(r->n_inputs, 4);
    const float *a = r->inputs[0].tensor.data;
    CHECK(a[0] == 1.0f && a[1] == 2.5f && a[2] == -300.0f && a[3] == 0.1f && a[4] == 1e-3f);
    CHECK(a[5] == 0.0f && signbit(a[5]));
    CHECK_EQ_INT(r->inputs[0].binary_size_bytes, -1);
    const dab_v2_input_t *in = dab_v2_request_input(r, "b");
    CHECK(in && in->tensor.dtype == DAB_DT_INT16 && in->tensor.rank == 1);
    const int16_t *bv = in->tensor.data;
    CHECK(bv[0] == 1 && bv[1] == 2 && bv[2] == 3 && bv[3] == 4);
    CHECK(strcmp(json_string_value(json_object_get(in->parameters, "note")), "deferred") == 0);
    CHECK_EQ_INT(r->inputs[2].tensor.rank, 0);
    CHECK_EQ_INT(*(uint8_t *)r->inputs[2].tensor.data, 1);
    const dab_str_t *s = r->inputs[3].tensor.data;
    CHECK(s[0].len == 5 && memcmp(s[0].ptr, "plain", 5) == 0);
    CHECK(s[1].len == 16 && memcmp(s[1].ptr, "tab\there \xc3\xa9 \xf0\x9f\x98\x80", 16) == 0);
    CHECK(s[2].len == 0);
    CHECK(s[0].ptr >= json && s[0].ptr < json + strlen(json)); /* unescaped: not copied */
    CHECK_EQ_INT(r->n_outputs, 2);
    CHECK(strcmp(r->outputs[0].name, "y") == 0 && r->outputs[0].binary_data == 0);
    CHECK_EQ_INT(r->outputs[1].binary_data, -1);
    CHECK(!dab_v2_output_wants_binary(r, "y"));
    CHECK(dab_v2_output_wants_binary(r, "z"));
    CHECK(dab_v2_output_wants_binary(r, "other"));
    CHECK(dab_v2_request_input(r, "nope") == NULL);
    CHECK_EQ_INT(r->json_bytes, strlen(json));
    dab_v2_request_free(r);
    CHECK_EQ_INT(live_bytes(), live0);

    /* Whitespace everywhere, escaped keys, and a minimal request. */
    const char *ws = " \n{ \"inputs\" : [ { \"na\\u006de\" : \"x\" , \"shape\" : [ 2 ] ,"
                     " \"datatype\" : \"UINT8\" , \"data\" : [ 1 , 2 ] } ] } \r\n\t";
    CHECK_EQ_INT(decode(ws, &r, &err), 0);
    if (r) {
        CHECK(strcmp(r->inputs[0].name, "x") == 0);
        CHECK(r->id == NULL && r->parameters == NULL && r->binary_data_output == -1);
        CHECK(!dab_v2_output_wants_binary(r, "y"));
    }
    dab_v2_request_free(r);
}

/* Builds JSON + binary into b; returns the header length. */
static size_t binary_body(dab_buf_t *b, const char *json, const void *bin, size_t bin_len)
{
    dab_buf_reset(b);
    dab_buf_puts(b, json);
    size_t jl = b->len;
    dab_buf_append(b, bin, bin_len);
    return jl;
}

TEST(decode_binary_request)
{
    dab_buf_t b = {0};
    dab_v2_request_t *r = NULL;
    dab_err_t err = {0};
    /* FP32 [2] + BYTES ["ab", ""] + INT8 [3] in input order. */
    unsigned char bin[8 + 4 + 2 + 4 + 3];
    float f[2] = {1.5f, -2.0f};
    memcpy(bin, f, 8);
    memcpy(bin + 8, "\x02\x00\x00\x00"
                    "ab"
                    "\x00\x00\x00\x00",
           10);
    memcpy(bin + 18, "\x01\xff\x7f", 3);
    const char *json = "{\"inputs\":["
                       "{\"name\":\"f\",\"shape\":[2],\"datatype\":\"FP32\","
                       "\"parameters\":{\"binary_data_size\":8}},"
                       "{\"name\":\"j\",\"shape\":[1],\"datatype\":\"INT32\",\"data\":[5]},"
                       "{\"name\":\"s\",\"shape\":[2],\"datatype\":\"BYTES\","
                       "\"parameters\":{\"binary_data_size\":10}},"
                       "{\"name\":\"i\",\"shape\":[3],\"datatype\":\"INT8\","
                       "\"parameters\":{\"binary_data_size\":3}}],"
                       "\"parameters\":{\"binary_data_output\":false}}";
    size_t jl = binary_body(&b, json, bin, sizeof bin);
    CHECK_EQ_INT(dab_v2_request_decode(b.data, b.len, (int64_t)jl, NULL, &r, &err), 0);
    if (!r) {
        fprintf(stderr, "  %s\n", err.msg);
        dab_buf_free(&b);
        return;
    }
    CHECK_EQ_INT(r->json_bytes, jl);
    CHECK_EQ_INT(r->binary_data_output, 0);
    const float *fv = r->inputs[0].tensor.data;
    CHECK(fv[0] == 1.5f && fv[1] == -2.0f);
    CHECK_EQ_INT(r->inputs[0].binary_size_bytes, 8);
    /* Fixed-size data points into the body when aligned for its type, else it is copied. */
    const char *fp = r->inputs[0].tensor.data;
    bool in_body = fp >= b.data && fp < b.data + b.len;
    CHECK_EQ_INT(in_body, r->inputs[0].in_body);
    CHECK_EQ_INT(r->inputs[0].in_body, (uintptr_t)(b.data + jl) % 4 == 0);
    CHECK_EQ_INT(*(int32_t *)r->inputs[1].tensor.data, 5);
    const dab_str_t *s = r->inputs[2].tensor.data;
    CHECK(s[0].len == 2 && memcmp(s[0].ptr, "ab", 2) == 0 && s[1].len == 0);
    const int8_t *iv = r->inputs[3].tensor.data;
    CHECK(iv[0] == 1 && iv[1] == -1 && iv[2] == 127);
    CHECK(r->inputs[3].in_body); /* one-byte elements are always aligned */
    /* The request can own the body. */
    dab_v2_request_adopt_body(r, &b);
    CHECK(b.data == NULL);
    CHECK(iv[2] == 127);
    dab_v2_request_free(r);

    /* Unaligned FP64: the JSON header length is chosen so the data is misaligned. */
    double dv[3] = {1.25, -0.5, 1e300};
    const char *j8 = "{\"inputs\":[{\"name\":\"d\",\"shape\":[3],\"datatype\":\"FP64\","
                     "\"parameters\":{\"binary_data_size\":24}}]}";
    for (int pad = 0; pad < 8; pad++) {
        dab_buf_t p = {0};
        dab_buf_puts(&p, j8);
        for (int k = 0; k < pad; k++)
            dab_buf_puts(&p, " ");
        size_t hl = p.len;
        dab_buf_append(&p, dv, sizeof dv);
        CHECK_EQ_INT(dab_v2_request_decode(p.data, p.len, (int64_t)hl, NULL, &r, &err), 0);
        if (r) {
            CHECK(memcmp(r->inputs[0].tensor.data, dv, sizeof dv) == 0);
            CHECK((uintptr_t)r->inputs[0].tensor.data % 8 == 0);
            CHECK_EQ_INT(r->inputs[0].in_body, (uintptr_t)(p.data + hl) % 8 == 0);
        }
        dab_v2_request_free(r);
        dab_buf_free(&p);
    }
    dab_buf_free(&b);
}

TEST(binary_sizes_checked)
{
    dab_buf_t b = {0};
    dab_v2_request_t *r = NULL;
    dab_err_t err = {0};
    struct {
        const char *json;
        size_t bin;
        int code;
        const char *msg;
        const char *data; /* the binary bytes; zeros when NULL */
    } cases[] = {
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[2,2],\"datatype\":\"FP32\","
         "\"parameters\":{\"binary_data_size\":12}}]}",
         12, DAB_ESHAPE, "input 'x': shape [2,2] of FP32 needs 16 bytes, but binary_data_siz"
                         "e is 12", NULL},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"FP32\","
         "\"parameters\":{\"binary_data_size\":8}}]}",
         7, DAB_EINVAL, "input 'x': binary_data_size is 8 bytes, but only 7 bytes", NULL},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"FP32\","
         "\"parameters\":{\"binary_data_size\":8}}]}",
         9, DAB_EINVAL, "the body has 9 bytes after the", NULL},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]}]}", 4,
         DAB_EINVAL, "binary_data_size add up to 0", NULL},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"FP32\",\"data\":[1,2],"
         "\"parameters\":{\"binary_data_size\":8}}]}",
         8, DAB_EINVAL, "input 'x' has both 'data' and parameters.binary_data_size", NULL},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"FP32\","
         "\"parameters\":{\"binary_data_size\":-8}}]}",
         0, DAB_EINVAL, "binary_data_size must be a non-negative integer", NULL},
        {"{\"inputs\":[{\"name\":\"s\",\"shape\":[2],\"datatype\":\"BYTES\","
         "\"parameters\":{\"binary_data_size\":8}}]}",
         8, DAB_ESHAPE, "input 's': shape [2] needs 2 BYTES elements, got 1", "\x04\0\0\0abcd"},
        {"{\"inputs\":[{\"name\":\"s\",\"shape\":[1],\"datatype\":\"BYTES\","
         "\"parameters\":{\"binary_data_size\":8}}]}",
         8, DAB_ESHAPE, "needs 1 BYTES elements, but its binary data holds more", NULL},
        {"{\"inputs\":[{\"name\":\"s\",\"shape\":[2],\"datatype\":\"BYTES\","
         "\"parameters\":{\"binary_data_size\":10}}]}",
         10, DAB_EINVAL, "input 's': BYTES element 1 has a truncated length prefix (2 of 4 bytes)",
         "\x04\0\0\0abcd\0\0"},
        {"{\"inputs\":[{\"name\":\"s\",\"shape\":[1],\"datatype\":\"BYTES\","
         "\"parameters\":{\"binary_data_size\":5}}]}",
         5, DAB_EINVAL, "input 's': BYTES element 0 says 9 bytes, but only 1 remain",
         "\x09\0\0\0a"},
        {"{\"inputs\":[{\"name\":\"b\",\"shape\":[2],\"datatype\":\"BOOL\","
         "\"parameters\":{\"binary_data_size\":2}}]}",
         2, DAB_EINVAL, "input 'b': BOOL element 1 is byte 2; it must be 0 or 1", NULL},
    };
    for (size_t i = 0; i < DAB_ARRAY_LEN(cases); i++) {
        unsigned char bin[64];
        memset(bin, 0, sizeof bin);
        if (cases[i].data)
            memcpy(bin, cases[i].data, cases[i].bin);
        if (strstr(cases[i].json, "BOOL"))
            bin[1] = 2;
        size_t jl = binary_body(&b, cases[i].json, bin, cases[i].bin);
        int rc = dab_v2_request_decode(b.data, b.len, (int64_t)jl, NULL, &r, &err);
        CHECK_EQ_INT(rc, cases[i].code);
        CHECK(r == NULL);
        if (!strstr(err.msg, cases[i].msg)) {
            t_failed++;
            fprintf(stderr, "FAIL case %zu: '%s' lacks '%s'\n", i, err.msg, cases[i].msg);
        }
    }
    /* The header length itself. */
    CHECK_EQ_INT(dab_v2_request_decode("{}", 2, 5, NULL, &r, &err), DAB_EINVAL);
    CHECK(strstr(err.msg, "Inference-Header-Content-Length is 5, but the body has only 2") != NULL);
    CHECK_EQ_INT(dab_v2_request_decode("{}", 2, 0, NULL, &r, &err), DAB_EINVAL);
    CHECK(strstr(err.msg, "raw binary") != NULL);
    int64_t hl = 0;
    CHECK_EQ_INT(dab_v2_parse_header_length(" 123 ", &hl, &err), 0);
    CHECK_EQ_INT(hl, 123);
    CHECK_EQ_INT(dab_v2_parse_header_length("12a", &hl, &err), DAB_EINVAL);
    CHECK_EQ_INT(dab_v2_parse_header_length("", &hl, &err), DAB_EINVAL);
    CHECK_EQ_INT(dab_v2_parse_header_length("-1", &hl, &err), DAB_EINVAL);
    CHECK_EQ_INT(dab_v2_parse_header_length("99999999999999999999", &hl, &err), DAB_EINVAL);
    dab_buf_free(&b);
}

TEST(error_sentences)
{
    expect_error("{\"inputs\":[{\"name\":\"pixels\",\"shape\":[1,64],\"datatype\":\"FP32\","
                 "\"data\":[" "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"
                 "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1" "]}]}",
                 DAB_ESHAPE, "input 'pixels': shape [1,64] needs 64 values, got 63");
    expect_error("{\"inputs\":[{\"name\":\"p\",\"shape\":[2],\"datatype\":\"FP32\","
                 "\"data\":[[1,2],[3]]}]}",
                 DAB_ESHAPE, "input 'p': shape [2] needs 2 values, got 3");
    expect_error("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP99\",\"data\":[1]}]}",
                 DAB_EINVAL, "input 'x': datatype 'FP99' is not a v2 datatype");
    expect_error("{\"inputs\":[{\"datatype\":\"FP99\",\"name\":\"x\"}]}", DAB_EINVAL,
                 "input 0: datatype 'FP99' is not a v2 datatype");
    expect_error("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[x]}]}",
                 DAB_EFORMAT, "unexpected character 'x' at byte 61 of the JSON body");
    expect_error("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]",
                 DAB_EFORMAT, "the JSON body ends unexpectedly after 63 bytes");
    expect_error("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"INT32\",\"data"
                 "\":[1.5]}]}",
                 DAB_ETYPE, "input 'x': element 0 (1.5) is not an integer, as INT32 data needs");
    expect_error("{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"UINT8\",\"data"
                 "\":[1,256]}]}",
                 DAB_ERANGE, "input 'x': element 1 (256) is out of range for UINT8");
    expect_error("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"UINT64\",\"data"
                 "\":[-1]}]}",
                 DAB_ERANGE, "element 0 (-1) is out of range for UINT64");
    expect_error("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"INT64\","
                 "\"data\":[9223372036854775808]}]}",
                 DAB_ERANGE, "element 0 (9223372036854775808) is out of range for INT64");
    expect_error("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"INT8\",\"data"
                 "\":[-129]}]}",
                 DAB_ERANGE, "out of range for INT8");
    expect_error("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data"
                 "\":[1e39]}]}",
                 DAB_ERANGE, "input 'x': element 0 (1e39) is out of range for FP32");
    expect_error("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data"
                 "\":[\"1\"]}]}",
                 DAB_ETYPE, "input 'x': element 0 is a string; FP32 data must be numbers");
    expect_error("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"BOOL\",\"data\":[1]}]}",
                 DAB_ETYPE, "element 0 is a number; BOOL data must be true or false");
    expect_error("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"BYTES\",\"data"
                 "\":[null]}]}",
                 DAB_ETYPE, "element 0 is null; BYTES data must be strings");
    expect_error("{\"inputs\":[{\"name\":\"h\",\"shape\":[1],\"datatype\":\"FP16\",\"data\":[1]}]}",
                 DAB_EUNSUPPORTED, "input 'h': FP16 data cannot be sent as JSON");
    expect_error("{\"inputs\":[{\"name\":\"x\",\"shape\":[-1],\"datatype\":\"FP32\",\"data"
                 "\":[1]}]}",
                 DAB_EINVAL, "input 'x': shape dimension 0 is -1; dimensions must be non-negative");
    expect_error("{\"inputs\":[{\"name\":\"x\",\"shape\":[1.5],\"datatype\":\"FP32\",\"data"
                 "\":[1]}]}",
                 DAB_EINVAL, "shape dimension 0 is 1.5");
    expect_error("{\"inputs\":[{\"name\":\"x\",\"shape\":\"1\",\"datatype\":\"FP32\",\"data"
                 "\":[1]}]}",
                 DAB_EINVAL, "input 'x': 'shape' must be an array of integers; found a string");
    expect_error("{\"inputs\":[{\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]}]}", DAB_EINVAL,
                 "input 0 has no 'name'");
    expect_error("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"data\":[1]}]}", DAB_EINVAL,
                 "input 'x' has no 'datatype'");
    expect_error("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"data\":[1]}]}", DAB_EINVAL,
                 "input 'x' has no 'shape'");
    expect_error("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\"}]}", DAB_EINVAL,
                 "input 'x' has no 'data' and no binary_data_size");
    expect_error("{\"inputs\":[{\"name\":\"x\",\"name\":\"y\"}]}", DAB_EINVAL,
                 "field 'name' appears twice");
    expect_error("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]},"
                 "{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]}]}",
                 DAB_EINVAL, "input 'x' appears twice in 'inputs'");
    expect_error("{\"inputs\":[]", DAB_EFORMAT, "ends unexpectedly");
    expect_error("{\"outputs\":[]}", DAB_EINVAL, "the request has no 'inputs'");
    expect_error("{\"inputs\":{}}", DAB_EINVAL, "'inputs' must be an array");
    expect_error("{\"inputs\":[1]}", DAB_EINVAL, "'inputs' must hold objects; element 0 is a"
                                                 " number");
    expect_error("{\"id\":5,\"inputs\":[]}", DAB_EINVAL, "the request's 'id' must be a string");
    expect_error("{\"id\":\"a\\u0000b\",\"inputs\":[]}", DAB_EINVAL,
                 "the request's 'id' contains a NUL character");
    expect_error("{\"parameters\":[],\"inputs\":[]}", DAB_EINVAL,
                 "the request's 'parameters' must be an object");
    expect_error("{\"inputs\":[{\"name\":\"x\",\"parameters\":1}]}", DAB_EINVAL,
                 "input 'x': 'parameters' must be an object");
    expect_error("{\"parameters\":{\"binary_data_output\":1},\"inputs\":[]}", DAB_EINVAL,
                 "parameters.binary_data_output must be true or false");
    expect_error("{\"inputs\":[],\"outputs\":[{\"name\":\"y\",\"parameters\":{\"binary_data"
                 "\":1}}]}",
                 DAB_EINVAL, "output 'y': parameters.binary_data must be true or false");
    expect_error("{\"inputs\":[],\"outputs\":[{\"name\":\"y\"},{\"name\":\"y\"}]}", DAB_EINVAL,
                 "output 'y' is requested twice");
    expect_error("{\"inputs\":[],\"outputs\":[{}]}", DAB_EINVAL, "output 0 has no 'name'");
    expect_error("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1],"
                 "\"parameters\":{\"shared_memory_region\":\"r\"}}]}",
                 DAB_EUNSUPPORTED, "input 'x': shared-memory inputs are not supported");
    expect_error("{\"inputs\":[]} x", DAB_EFORMAT, "unexpected character 'x' at byte 14");
    expect_error("{\"inputs\":[],\"k\":\"a\nb\"}", DAB_EFORMAT,
                 "control character 0x0a inside a string at byte 19");
    expect_error("{\"inputs\":[],\"k\":\"\\x\"}", DAB_EFORMAT, "invalid escape '\\x'");
    expect_error("{\"inputs\":[],\"k\":\"\\ud800\"}", DAB_EFORMAT, "unpaired UTF-16 surrogate");
    expect_error("{\"inputs\":[],\"k\":\"\\udc00\"}", DAB_EFORMAT, "unpaired UTF-16 surrogate");
    expect_error("{\"inputs\":[],\"k\":\"\\u12g4\"}", DAB_EFORMAT, "invalid \\u escape");
    expect_error("{\"inputs\":[],\"k\":01}", DAB_EFORMAT, "unexpected character '1'");
    expect_error("{\"inputs\":[],\"k\":1.}", DAB_EFORMAT, "unexpected character '}'");
    expect_error("{\"inputs\":[],\"k\":-}", DAB_EFORMAT, "unexpected character '}'");
    expect_error("{\"inputs\":[],\"k\":tru}", DAB_EFORMAT, "unexpected character '}'");
    expect_error("{\"inputs\":[],}", DAB_EFORMAT, "unexpected character '}'");
    expect_error("{\"inputs\":[]\x01}", DAB_EFORMAT, "unexpected byte 0x01 at byte 12");
    expect_error("{\"parameters\":{\"k\":\"\xff\"},\"inputs\":[]}", DAB_EINVAL, "not valid UTF-8");
    expect_error("", DAB_EFORMAT, "the request body is empty");
    /* Nesting is bounded. */
    dab_buf_t deep = {0};
    dab_buf_puts(&deep, "{\"inputs\":[],\"k\":");
    for (int i = 0; i < 100000; i++)
        dab_buf_puts(&deep, "[");
    expect_error(deep.data, DAB_EFORMAT, "nests more than 64 levels deep");
    dab_buf_reset(&deep);
    dab_buf_puts(&deep, "{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32"
                        "\",\"data\":");
    for (int i = 0; i < 100000; i++)
        dab_buf_puts(&deep, "[");
    expect_error(deep.data, DAB_EFORMAT, "input 'x': 'data' nests more than 64 arrays deep");
    dab_buf_free(&deep);
    /* Names in messages are made printable and cut short. */
    expect_error("{\"inputs\":[{\"name\":\"a\\nb'c\",\"shape\":[1],\"datatype\":\"FP32\","
                 "\"data\":[true]}]}",
                 DAB_ETYPE, "input 'a?b?c': element 0 is a boolean");
}

/* A rich body: every truncation of it must fail cleanly and leak nothing. */
static const char *g_rich =
    "{\"id\":\"req-\\u00e9\",\"parameters\":{\"priority\":2,\"timeout\":1000,\"f\":1.5e3,"
    "\"n\":null,\"l\":[true,false,{\"a\":\"\\ud83d\\ude00\"}],\"binary_data_output\":false},"
    "\"inputs\":[{\"name\":\"a\",\"shape\":[2,2],\"datatype\":\"FP32\","
    "\"data\":[[1.5,-2],[3e2,0.25]]},{\"name\":\"s\",\"shape\":[2],\"datatype\":\"BYTES\","
    "\"data\":[\"x\\u00e9\",\"\\ud83d\\ude00\\n\"]},{\"data\":[true,false],\"name\":\"b\","
    "\"datatype\":\"BOOL\",\"shape\":[2]},{\"name\":\"i\",\"shape\":[3],\"datatype\":\"INT64\","
    "\"data\":[-9223372036854775808,0,9223372036854775807]},{\"name\":\"d\",\"shape\":[2],"
    "\"datatype\":\"FP64\",\"data\":[0.1,-1e-300]},{\"name\":\"u\",\"shape\":[1],"
    "\"datatype\":\"UINT16\",\"parameters\":{\"binary_data_size\":2}}],"
    "\"outputs\":[{\"name\":\"y\",\"parameters\":{\"binary_data\":true}},{\"name\":\"z\"}]}";

TEST(every_truncation_fails)
{
    dab_buf_t b = {0};
    size_t jl = binary_body(&b, g_rich, "\x07\x00", 2);
    dab_v2_request_t *r = NULL;
    dab_err_t err = {0};
    uint64_t live0 = live_bytes();
    CHECK_EQ_INT(dab_v2_request_decode(b.data, b.len, (int64_t)jl, NULL, &r, &err), 0);
    if (r) {
        CHECK_EQ_INT(r->n_inputs, 6);
        CHECK_EQ_INT(*(uint16_t *)r->inputs[5].tensor.data, 7);
        CHECK(strcmp(r->id, "req-\xc3\xa9") == 0);
        const dab_str_t *s = r->inputs[1].tensor.data;
        CHECK(s[1].len == 5 && memcmp(s[1].ptr, "\xf0\x9f\x98\x80\n", 5) == 0);
        CHECK(json_is_null(json_object_get(r->parameters, "n")));
    } else {
        fprintf(stderr, "  %s\n", err.msg);
    }
    dab_v2_request_free(r);
    int failures = 0, bad_msgs = 0;
    for (size_t k = 0; k < jl; k++) {
        /* A copy of exactly k bytes so that reading past them is caught by ASan. */
        char *p = malloc(k ? k : 1);
        memcpy(p, b.data, k);
        err.msg[0] = 0;
        int rc = dab_v2_request_decode(p, k, -1, NULL, &r, &err);
        failures += rc < 0 && r == NULL;
        bad_msgs += err.msg[0] == 0;
        if (rc == 0)
            dab_v2_request_free(r);
        free(p);
    }
    CHECK_EQ_INT(failures, jl);
    CHECK_EQ_INT(bad_msgs, 0);
    /* The binary part truncated, or the header length off by one either way. */
    for (size_t k = jl; k < b.len; k++)
        CHECK(dab_v2_request_decode(b.data, k, (int64_t)jl, NULL, &r, &err) < 0 && !r);
    CHECK(dab_v2_request_decode(b.data, b.len, (int64_t)jl - 1, NULL, &r, &err) < 0);
    CHECK(dab_v2_request_decode(b.data, b.len, (int64_t)jl + 1, NULL, &r, &err) < 0);
    CHECK_EQ_INT(live_bytes(), live0);
    dab_buf_free(&b);
}

TEST(corrupted_bodies_never_crash)
{
    /* Every byte of the rich body replaced by a handful of troublesome bytes: each decode
     * either succeeds or fails with a message, and nothing leaks. */
    static const char subst[] = {'"', '\\', '[', ']', '{', '}', ',', ':', '0', '-', 'e', ' ', 0,
                                 (char)0xff};
    size_t n = strlen(g_rich);
    char *p = malloc(n + 2);
    uint64_t live0 = live_bytes();
    int bad = 0;
    for (size_t k = 0; k < n; k++) {
        for (size_t s = 0; s < sizeof subst; s++) {
            memcpy(p, g_rich, n);
            p[n] = 0x07;
            p[n + 1] = 0x00;
            p[k] = subst[s];
            dab_v2_request_t *r = NULL;
            dab_err_t err = {0};
            int rc = dab_v2_request_decode(p, n + 2, (int64_t)n, NULL, &r, &err);
            if (rc == 0)
                dab_v2_request_free(r);
            else if (!err.msg[0] || r)
                bad++;
        }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(live_bytes(), live0);
    free(p);
}

TEST(allocation_failures_unwind)
{
    dab_buf_t b = {0};
    size_t jl = binary_body(&b, g_rich, "\x07\x00", 2);
    uint64_t live0 = live_bytes();
    int ok = 0, nomem = 0, other = 0;
    for (uint64_t n = 1; n < 200; n++) {
        dab_v2_request_t *r = NULL;
        dab_err_t err = {0};
        dab_alloc_fail_after(n);
        int rc = dab_v2_request_decode(b.data, b.len, (int64_t)jl, NULL, &r, &err);
        dab_alloc_fail_after(0);
        if (rc == 0)
            ok++;
        else if (rc == DAB_ENOMEM && r == NULL)
            nomem++;
        else
            other++, fprintf(stderr, "  fail_after %llu: %d %s\n", (unsigned long long)n, rc,
                             err.msg);
        dab_v2_request_free(r);
    }
    CHECK(nomem > 5);
    CHECK(ok > 0);
    CHECK_EQ_INT(other, 0);
    CHECK_EQ_INT(live_bytes(), live0);
    dab_buf_free(&b);
}

TEST(raw_single_input)
{
    float f[6] = {1, 2, 3, 4, 5, 6};
    int64_t dims[2] = {-1, 3};
    dab_v2_request_t *r = NULL;
    dab_err_t err = {0};
    CHECK_EQ_INT(dab_v2_request_from_raw(f, sizeof f, "in", DAB_DT_FLOAT, 2, dims, NULL, &r, &err),
                 0);
    if (r) {
        CHECK_EQ_INT(r->n_inputs, 1);
        CHECK(strcmp(r->inputs[0].name, "in") == 0);
        CHECK_EQ_INT(r->inputs[0].tensor.dims[0], 2);
        CHECK_EQ_INT(r->inputs[0].tensor.dims[1], 3);
        CHECK(r->inputs[0].tensor.data == (void *)f && r->inputs[0].in_body);
        CHECK(dab_v2_output_wants_binary(r, "anything"));
    }
    dab_v2_request_free(r);
    CHECK_EQ_INT(dab_v2_request_from_raw(f, 20, "in", DAB_DT_FLOAT, 2, dims, NULL, &r, &err),
                 DAB_ESHAPE);
    int64_t fixed[1] = {5};
    CHECK_EQ_INT(dab_v2_request_from_raw(f, sizeof f, "in", DAB_DT_FLOAT, 1, fixed, NULL, &r, &err),
                 DAB_ESHAPE);
    CHECK(strstr(err.msg, "input 'in': shape [5] of FP32 needs 20 bytes, but the raw body has 24")
          != NULL);
    const char strs[] = "\x03\x00\x00\x00"
                        "abc"
                        "\x00\x00\x00\x00";
    int64_t sd[1] = {-1};
    CHECK_EQ_INT(dab_v2_request_from_raw(strs, 11, "s", DAB_DT_STRING, 1, sd, NULL, &r, &err), 0);
    if (r) {
        CHECK_EQ_INT(r->inputs[0].tensor.dims[0], 2);
        const dab_str_t *s = r->inputs[0].tensor.data;
        CHECK(s[0].len == 3 && memcmp(s[0].ptr, "abc", 3) == 0 && s[1].len == 0);
    }
    dab_v2_request_free(r);
    dab_v2_limits_t lim = {.max_elements = 4};
    CHECK_EQ_INT(dab_v2_request_from_raw(f, sizeof f, "in", DAB_DT_FLOAT, 2, dims, &lim, &r, &err),
                 DAB_ELIMIT);
    CHECK_EQ_INT(dab_v2_request_from_raw(f, sizeof f, "in", DAB_DT_FLOAT, -1, NULL, NULL, &r, &err),
                 0);
    if (r)
        CHECK(r->inputs[0].tensor.rank == 1 && r->inputs[0].tensor.dims[0] == 6);
    dab_v2_request_free(r);
    int64_t two_wild[2] = {-1, -1};
    CHECK_EQ_INT(dab_v2_request_from_raw(f, sizeof f, "in", DAB_DT_FLOAT, 2, two_wild, NULL, &r,
                                         &err),
                 DAB_EINVAL);
    CHECK(strstr(err.msg, "dimension 1 is -1") != NULL);
}

/* ------------------------------------------------------------------ encoding */

TEST(encode_response)
{
    float y[4] = {0.1f, 1.0f, -2.5e-7f, 3e38f};
    dab_tensor_t ty = {.dtype = DAB_DT_FLOAT, .rank = 2, .dims = {1, 4}, .data = y};
    int64_t cls[2] = {7, -3};
    dab_tensor_t tc = {.dtype = DAB_DT_INT64, .rank = 1, .dims = {2}, .data = cls};
    dab_v2_output_t outs[2] = {{.name = "y", .tensor = &ty},
                               {.name = "c", .tensor = &tc, .binary = true}};
    json_t *params = json_pack("{s:i}", "sequence_id", 42);
    dab_v2_response_t resp = {.model_name = "digits", .model_version = "2", .id = "q\"1",
                              .id_len = 3,
                              .parameters = params, .n_outputs = 2, .outputs = outs};
    dab_buf_t b = {0};
    size_t jl = 0;
    dab_err_t err = {0};
    CHECK_EQ_INT(dab_v2_response_encode(&resp, &b, &jl, &err), 0);
    const char *want = "{\"model_name\":\"digits\",\"model_version\":\"2\",\"id\":\"q\\\"1\","
                       "\"parameters\":{\"sequence_id\":42},\"outputs\":["
                       "{\"name\":\"y\",\"datatype\":\"FP32\",\"shape\":[1,4],"
                       "\"data\":[0.1,1.0,-2.5e-7,3e+38]},"
                       "{\"name\":\"c\",\"datatype\":\"INT64\",\"shape\":[2],"
                       "\"parameters\":{\"binary_data_size\":16}}]}";
    (void)want;
    CHECK_EQ_INT(jl, strlen(want));
    CHECK(jl == strlen(want) && memcmp(b.data, want, jl) == 0);
    if (jl != strlen(want) || memcmp(b.data, want, jl))
        fprintf(stderr, "  got  %.*s\n  want %s\n", (int)jl, b.data, want);
    CHECK_EQ_INT(b.len, jl + 16);
    CHECK(memcmp(b.data + jl, cls, 16) == 0);
    /* The JSON part parses with jansson. */
    json_error_t je;
    json_t *doc = json_loadb(b.data, jl, 0, &je);
    CHECK(doc != NULL);
    json_decref(doc);
    json_decref(params);

    /* NaN and infinities: JSON refuses, binary carries them. */
    float bad[3] = {1, NAN, 2};
    dab_tensor_t tb = {.dtype = DAB_DT_FLOAT, .rank = 1, .dims = {3}, .data = bad};
    dab_v2_output_t ob = {.name = "logits", .tensor = &tb};
    dab_v2_response_t rb = {.model_name = "m", .n_outputs = 1, .outputs = &ob};
    dab_buf_reset(&b);
    dab_buf_puts(&b, "keep");
    CHECK_EQ_INT(dab_v2_response_encode(&rb, &b, &jl, &err), DAB_ERANGE);
    CHECK(strstr(err.msg, "output 'logits': element 1 is NaN, which JSON cannot carry") != NULL);
    CHECK(b.len == 4 && strcmp(b.data, "keep") == 0); /* unchanged on failure */
    bad[1] = -INFINITY;
    CHECK_EQ_INT(dab_v2_response_encode(&rb, &b, &jl, &err), DAB_ERANGE);
    CHECK(strstr(err.msg, "element 1 is -Infinity") != NULL);
    ob.binary = true;
    dab_buf_reset(&b);
    CHECK_EQ_INT(dab_v2_response_encode(&rb, &b, &jl, &err), 0);
    CHECK(memcmp(b.data + jl, bad, 12) == 0);
    /* FP16 as JSON is refused; BYTES that are not UTF-8 too. */
    uint16_t h[1] = {0x3c00};
    dab_tensor_t th = {.dtype = DAB_DT_FLOAT16, .rank = 1, .dims = {1}, .data = h};
    dab_v2_output_t oh = {.name = "h", .tensor = &th};
    dab_v2_response_t rh = {.model_name = "m", .n_outputs = 1, .outputs = &oh};
    CHECK_EQ_INT(dab_v2_response_encode(&rh, &b, &jl, &err), DAB_ETYPE);
    CHECK(strstr(err.msg, "output 'h': FP16 data cannot be returned as JSON") != NULL);
    dab_str_t s[2] = {{"ok", 2}, {"\xc3\x28", 2}};
    dab_tensor_t ts = {.dtype = DAB_DT_STRING, .rank = 1, .dims = {2}, .data = s};
    dab_v2_output_t os = {.name = "s", .tensor = &ts};
    dab_v2_response_t rs = {.model_name = "m", .n_outputs = 1, .outputs = &os};
    CHECK_EQ_INT(dab_v2_response_encode(&rs, &b, &jl, &err), DAB_EINVAL);
    CHECK(strstr(err.msg, "output 's': element 1 is not valid UTF-8") != NULL);
    os.binary = true;
    dab_buf_reset(&b);
    CHECK_EQ_INT(dab_v2_response_encode(&rs, &b, &jl, &err), 0);
    CHECK_EQ_INT(b.len - jl, 4 + 2 + 4 + 2);
    CHECK(memcmp(b.data + jl, "\x02\x00\x00\x00ok\x02\x00\x00\x00\xc3\x28", 12) == 0);
    dab_buf_free(&b);
}

TEST(error_bodies)
{
    dab_buf_t b = {0};
    CHECK_EQ_INT(
        dab_v2_error_body(&b, "input 'x': bad \"quote\" \\ \n\t\x01 \xc3\xa9 \xff end"), 0);
    const char *want = "{\"error\":\"input 'x': bad \\\"quote\\\" \\\\ \\n\\t\\u0001 \xc3\xa9 "
                       "\xef\xbf\xbd end\"}";
    CHECK(strcmp(b.data, want) == 0);
    json_error_t je;
    json_t *doc = json_loads(b.data, 0, &je);
    CHECK(doc && json_is_string(json_object_get(doc, "error")));
    json_decref(doc);
    dab_buf_reset(&b);
    CHECK_EQ_INT(dab_v2_json_string(&b, "\xed\xa0\x80\xf4\x90\x80\x80\xc0\xaf", 9), 0);
    CHECK(strcmp(b.data, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                         "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"") == 0);
    CHECK(dab_v2_utf8_valid("h\xc3\xa9\xf0\x9f\x98\x80", 7));
    CHECK(!dab_v2_utf8_valid("\xe0\x80\x80", 3)); /* overlong */
    CHECK(!dab_v2_utf8_valid("\xc3", 1));         /* truncated */
    CHECK_EQ_INT(dab_v2_http_status(DAB_ELIMIT), 413);
    CHECK_EQ_INT(dab_v2_http_status(DAB_EFORMAT), 400);
    CHECK_EQ_INT(dab_v2_http_status(DAB_ENOTFOUND), 404);
    CHECK_EQ_INT(dab_v2_http_status(DAB_EBUSY), 503);
    CHECK_EQ_INT(dab_v2_http_status(DAB_EINTERNAL), 500);
    dab_buf_free(&b);
}

/* ------------------------------------------------------------------ float formatting */

/* Digits and exponent of a decimal string: value = *d * 10^*x, *d without trailing zeros. */
static int split_decimal(const char *s, uint64_t *d, int *x)
{
    char dg[64];
    int nd = 0, intd = 0, e = 0;
    bool dot = false;
    if (*s == '-')
        s++;
    for (; *s && *s != 'e' && *s != 'E'; s++) {
        if (*s == '.') {
            dot = true;
            continue;
        }
        dg[nd++] = *s;
        intd += !dot;
    }
    if (*s)
        e = atoi(s + 1);
    int st = 0, en = nd;
    while (st < nd - 1 && dg[st] == '0')
        st++;
    while (en > st + 1 && dg[en - 1] == '0')
        en--;
    *d = 0;
    for (int i = st; i < en; i++)
        *d = *d * 10 + (uint64_t)(dg[i] - '0');
    *x = e + intd - en;
    return en - st;
}

static bool reads_back_f32(uint64_t d, int x, float f)
{
    char b[64];
    snprintf(b, sizeof b, "%s%llue%d", signbit(f) ? "-" : "", (unsigned long long)d, x);
    float g = strtof(b, NULL);
    return memcmp(&g, &f, 4) == 0;
}

/*
 * Checks the formatter on f: valid JSON number, reads back exactly, no decimal with fewer
 * digits reads back (the candidates nearest f with one digit less are tried), and among
 * those of its length it is the one nearest f when that one reads back.
 */
static int check_f32(float f)
{
    char s[DAB_V2_NUMBER_MAX];
    int n = dab_v2_format_f32(f, s);
    if (!isfinite(f))
        return n == 0 ? 0 : 1;
    if (n <= 0 || n >= DAB_V2_NUMBER_MAX || (int)strlen(s) != n)
        return 1;
    json_t *j = json_loads(s, JSON_DECODE_ANY, NULL);
    bool valid = j && json_is_real(j);
    json_decref(j);
    if (!valid)
        return 1;
    float g = strtof(s, NULL);
    if (memcmp(&g, &f, 4) != 0)
        return 1;
    if (f == 0)
        return 0;
    uint64_t d, e;
    int x, ex;
    int nd = split_decimal(s, &d, &x);
    char buf[64];
    if (nd > 1) {
        snprintf(buf, sizeof buf, "%.*e", nd - 2, fabs((double)f));
        split_decimal(buf, &e, &ex);
        for (int k = -1; k <= 1; k++)
            if (e + (uint64_t)k > 0 && reads_back_f32(e + (uint64_t)k, ex, f))
                return 2;
    }
    snprintf(buf, sizeof buf, "%.*e", nd - 1, fabs((double)f));
    split_decimal(buf, &e, &ex);
    if (reads_back_f32(e, ex, f)) {
        snprintf(buf, sizeof buf, "%llue%d", (unsigned long long)e, ex);
        if (strtod(buf, NULL) != fabs(strtod(s, NULL)))
            return 3;
    }
    return 0;
}

TEST(format_f32_exact_cases)
{
    struct {
        float v;
        const char *s;
    } cases[] = {
        {0.0f, "0.0"},
        {-0.0f, "-0.0"},
        {1.0f, "1.0"},
        {0.1f, "0.1"},
        {-2.5f, "-2.5"},
        {1e-45f, "1e-45"},
        {FLT_TRUE_MIN, "1e-45"},
        {FLT_MIN, "1.1754944e-38"},
        {FLT_MAX, "3.4028235e+38"},
        {16777216.0f, "16777216.0"},
        {16777218.0f, "16777218.0"},
        {1e16f, "1e+16"},
        {1e15f, "1000000000000000.0"},
        {123456789.0f, "123456790.0"},
        {0.0001f, "0.0001"},
        {0.00001f, "1e-5"},
        {3.14159274f, "3.1415927"},
        {0.3f, "0.3"},
        {2.0f / 3.0f, "0.6666667"},
        {1e10f, "10000000000.0"},
        {8.589973e9f, "8589974000.0"}, /* 8589973504: ...4000 is nearer */
        {9.999999e-5f, "9.999999e-5"},
    };
    for (size_t i = 0; i < DAB_ARRAY_LEN(cases); i++) {
        char s[DAB_V2_NUMBER_MAX];
        dab_v2_format_f32(cases[i].v, s);
        if (strcmp(s, cases[i].s) != 0) {
            t_failed++;
            fprintf(stderr, "FAIL format_f32(%.9g) = %s, want %s\n", cases[i].v, s, cases[i].s);
        } else {
            t_passed++;
        }
    }
    char s[DAB_V2_NUMBER_MAX];
    CHECK_EQ_INT(dab_v2_format_f32(NAN, s), 0);
    CHECK_EQ_INT(dab_v2_format_f32(INFINITY, s), 0);
    CHECK_EQ_INT(dab_v2_format_f32(-INFINITY, s), 0);
}

TEST(format_f32_round_trips)
{
    int bad = 0, checked = 0;
    /* Edges: every exponent (both signs) with the lowest and highest mantissas. */
    for (uint32_t e = 0; e < 512; e++)
        for (uint32_t k = 0; k < 40; k++) {
            uint32_t fr = k < 20 ? k : 0x7fffff - (k - 20);
            uint32_t bits = (e << 23) | fr;
            float f;
            memcpy(&f, &bits, 4);
            int rc = check_f32(f);
            if (rc && bad++ < 10)
                fprintf(stderr, "  f32 %08x (%.9g): check %d\n", bits, f, rc);
            checked++;
        }
    /* Random bit patterns. */
    for (int i = 0; i < 200000; i++) {
        uint32_t bits = rnd();
        float f;
        memcpy(&f, &bits, 4);
        int rc = check_f32(f);
        if (rc && bad++ < 10)
            fprintf(stderr, "  f32 %08x (%.9g): check %d\n", bits, f, rc);
        checked++;
    }
    /* Decimal-looking values such as clients send. */
    for (int i = 0; i < 20000; i++) {
        char b[32];
        snprintf(b, sizeof b, "%u.%03ue%d", rnd() % 1000, rnd() % 1000, (int)(rnd() % 80) - 40);
        float f = strtof(b, NULL);
        int rc = check_f32(f);
        if (rc && bad++ < 10)
            fprintf(stderr, "  f32 %s: check %d\n", b, rc);
        char s[DAB_V2_NUMBER_MAX];
        dab_v2_format_f32(f, s);
        uint64_t d1, d2;
        int x1, x2;
        /* At most as many digits as the decimal it came from. */
        if (f != 0 && split_decimal(s, &d1, &x1) > split_decimal(b, &d2, &x2) && bad++ < 10)
            fprintf(stderr, "  f32 %s printed as %s\n", b, s);
        checked++;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(checked > 200000);
}

TEST(format_f64_round_trips)
{
    struct {
        double v;
        const char *s;
    } cases[] = {
        {0.1, "0.1"},
        {1.0 / 3.0, "0.3333333333333333"},
        {5e-324, "5e-324"},
        {DBL_MAX, "1.7976931348623157e+308"},
        {-1e22, "-1e+22"},
        {123.456, "123.456"},
        {2.0, "2.0"},
        {-0.0, "-0.0"},
    };
    for (size_t i = 0; i < DAB_ARRAY_LEN(cases); i++) {
        char s[DAB_V2_NUMBER_MAX];
        dab_v2_format_f64(cases[i].v, s);
        if (strcmp(s, cases[i].s) != 0) {
            t_failed++;
            fprintf(stderr, "FAIL format_f64(%.17g) = %s, want %s\n", cases[i].v, s, cases[i].s);
        } else {
            t_passed++;
        }
    }
    int bad = 0;
    for (int i = 0; i < 100000; i++) {
        uint64_t bits = ((uint64_t)rnd() << 32) | rnd();
        double v;
        memcpy(&v, &bits, 8);
        char s[DAB_V2_NUMBER_MAX];
        int n = dab_v2_format_f64(v, s);
        if (!isfinite(v)) {
            bad += n != 0;
            continue;
        }
        double back = strtod(s, NULL);
        if ((memcmp(&back, &v, 8) != 0 || n >= DAB_V2_NUMBER_MAX) && bad++ < 10)
            fprintf(stderr, "  f64 %016llx: %s\n", (unsigned long long)bits, s);
        /* No more digits than %.17g needs; 15-digit values print in at most 15. */
        uint64_t d;
        int x;
        int nd = split_decimal(s, &d, &x);
        char b15[40];
        snprintf(b15, sizeof b15, "%.15g", v);
        if (strtod(b15, NULL) == v && nd > 15 && bad++ < 10)
            fprintf(stderr, "  f64 %s is not shortest (%s)\n", s, b15);
    }
    CHECK_EQ_INT(bad, 0);
    char s[DAB_V2_NUMBER_MAX];
    CHECK_EQ_INT(dab_v2_format_f64(NAN, s), 0);
}


/* Decimal text as clients write it parses exactly as strtof / strtod would. */
TEST(parse_numbers_match_strtod)
{
    enum { N = 20000 };
    char **txt = malloc(N * sizeof *txt);
    dab_buf_t b32 = {0}, b64 = {0};
    dab_buf_printf(&b32, "{\"inputs\":[{\"name\":\"f\",\"shape\":[%d],\"datatype\":\"FP32"
                         "\",\"data\":[", N);
    dab_buf_printf(&b64, "{\"inputs\":[{\"name\":\"d\",\"shape\":[%d],\"datatype\":\"FP64"
                         "\",\"data\":[", N);
    for (int i = 0; i < N; i++) {
        char t[64];
        int nd = 1 + (int)(rnd() % 19), k = 0;
        if (rnd() % 2)
            t[k++] = '-';
        int point = (int)(rnd() % (unsigned)(nd + 1));
        for (int j = 0; j < nd; j++) {
            if (j == point && j > 0)
                t[k++] = '.';
            t[k++] = (char)('0' + (j == 0 && nd > 1 && point != 1 ? 1 + rnd() % 9 : rnd() % 10));
        }
        if (rnd() % 3 == 0)
            k += snprintf(t + k, sizeof t - (size_t)k, "e%d", (int)(rnd() % 40) - 35);
        t[k] = 0;
        /* Numbers with a leading zero must be "0" or "0.xxx". */
        if (t[t[0] == '-'] == '0' && t[(t[0] == '-') + 1] >= '0' && t[(t[0] == '-') + 1] <= '9')
            t[t[0] == '-'] = '7';
        txt[i] = strdup(t);
        dab_buf_printf(&b32, "%s%s", i ? "," : "", t);
        dab_buf_printf(&b64, "%s%s", i ? "," : "", t);
    }
    dab_buf_puts(&b32, "]}]}");
    dab_buf_puts(&b64, "]}]}");
    dab_v2_request_t *r32 = NULL, *r64 = NULL;
    dab_err_t err = {0};
    CHECK_EQ_INT(dab_v2_request_decode(b32.data, b32.len, -1, NULL, &r32, &err), 0);
    if (!r32)
        fprintf(stderr, "  %s\n", err.msg);
    CHECK_EQ_INT(dab_v2_request_decode(b64.data, b64.len, -1, NULL, &r64, &err), 0);
    int bad = 0;
    for (int i = 0; r32 && r64 && i < N; i++) {
        float f = strtof(txt[i], NULL), g = ((float *)r32->inputs[0].tensor.data)[i];
        double d = strtod(txt[i], NULL), e = ((double *)r64->inputs[0].tensor.data)[i];
        if ((memcmp(&f, &g, 4) || memcmp(&d, &e, 8)) && bad++ < 10)
            fprintf(stderr, "  %s: %.9g vs %.9g, %.17g vs %.17g\n", txt[i], f, g, d, e);
    }
    CHECK_EQ_INT(bad, 0);
    /* Values on a float midpoint after rounding to double, and long mantissas. */
    const char *hard[] = {"1.00000005960464477539062499", "1.000000059604644775390625",
                          "1.0000000596046447753906251", "16777217", "16777217.000000001",
                          "3.4028235677973366e38", "1.1754943508222875e-38", "7.038531e-26",
                          "0.000000000000000000000000000000000000000000001401298464324817",
                          "9007199254740993", "2.2250738585072011e-308", "1e-400"};
    for (size_t i = 0; i < DAB_ARRAY_LEN(hard); i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"inputs\":[{\"name\":\"f\",\"shape\":[1],\"datatype\":"
                 "\"FP32\",\"data\":[%s]},{\"name\":\"d\",\"shape\":[1],\"datatype\":\"FP64\","
                 "\"data\":[%s]}]}", hard[i], hard[i]);
        dab_v2_request_t *r = NULL;
        int rc = decode(body, &r, &err);
        float f = strtof(hard[i], NULL);
        double d = strtod(hard[i], NULL);
        if (!isfinite(f)) {
            CHECK_EQ_INT(rc, DAB_ERANGE);
            continue;
        }
        CHECK_EQ_INT(rc, 0);
        if (r) {
            CHECK(memcmp(r->inputs[0].tensor.data, &f, 4) == 0);
            CHECK(memcmp(r->inputs[1].tensor.data, &d, 8) == 0);
        }
        dab_v2_request_free(r);
    }
    for (int i = 0; i < N; i++)
        free(txt[i]);
    free(txt);
    dab_v2_request_free(r32);
    dab_v2_request_free(r64);
    dab_buf_free(&b32);
    dab_buf_free(&b64);
}

/* ------------------------------------------------------------------ codings */

TEST(gzip_and_deflate)
{
    dab_buf_t src = {0}, z = {0}, back = {0};
    for (int i = 0; i < 5000; i++)
        dab_buf_printf(&src, "{\"data\":[%d,%d]}", i, i * 7);
    dab_err_t err = {0};
    dab_v2_coding_t codings[] = {DAB_V2_CODING_GZIP, DAB_V2_CODING_DEFLATE,
                                 DAB_V2_CODING_IDENTITY};
    for (size_t c = 0; c < DAB_ARRAY_LEN(codings); c++) {
        dab_buf_reset(&z);
        dab_buf_reset(&back);
        CHECK_EQ_INT(dab_v2_compress(src.data, src.len, codings[c], 0, &z, &err), 0);
        if (codings[c] != DAB_V2_CODING_IDENTITY)
            CHECK(z.len < src.len / 3);
        CHECK_EQ_INT(dab_v2_inflate(z.data, z.len, codings[c], src.len, &back, &err), 0);
        CHECK(back.len == src.len && memcmp(back.data, src.data, src.len) == 0);
        /* One byte under the size: refused. */
        dab_buf_reset(&back);
        CHECK_EQ_INT(dab_v2_inflate(z.data, z.len, codings[c], src.len - 1, &back, &err),
                     DAB_ELIMIT);
        CHECK_EQ_INT(back.len, 0);
        if (codings[c] == DAB_V2_CODING_IDENTITY)
            continue;
        /* Every truncation fails as corrupt or truncated. */
        int bad = 0;
        for (size_t k = 0; k < z.len; k += 1 + k / 16) {
            dab_buf_reset(&back);
            int rc = dab_v2_inflate(z.data, k, codings[c], src.len, &back, &err);
            bad += rc != DAB_EFORMAT;
        }
        CHECK_EQ_INT(bad, 0);
        /* Trailing junk. */
        dab_buf_append(&z, "junk", 4);
        dab_buf_reset(&back);
        CHECK_EQ_INT(dab_v2_inflate(z.data, z.len, codings[c], src.len, &back, &err), DAB_EFORMAT);
    }
    /* Raw deflate (no zlib header) under Content-Encoding: deflate, as some clients send. */
    {
        z_stream s;
        memset(&s, 0, sizeof s);
        CHECK(deflateInit2(&s, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
        unsigned char out[65536];
        s.next_in = (Bytef *)src.data;
        s.avail_in = (uInt)src.len;
        s.next_out = out;
        s.avail_out = sizeof out;
        CHECK(deflate(&s, Z_FINISH) == Z_STREAM_END);
        size_t n = s.total_out;
        deflateEnd(&s);
        dab_buf_reset(&back);
        CHECK_EQ_INT(dab_v2_inflate(out, n, DAB_V2_CODING_DEFLATE, src.len, &back, &err), 0);
        CHECK(back.len == src.len && memcmp(back.data, src.data, src.len) == 0);
    }
    /* Two gzip members one after the other. */
    dab_buf_reset(&z);
    CHECK_EQ_INT(dab_v2_compress("hello ", 6, DAB_V2_CODING_GZIP, 9, &z, &err), 0);
    CHECK_EQ_INT(dab_v2_compress("world", 5, DAB_V2_CODING_GZIP, 1, &z, &err), 0);
    dab_buf_reset(&back);
    CHECK_EQ_INT(dab_v2_inflate(z.data, z.len, DAB_V2_CODING_GZIP, 100, &back, &err), 0);
    CHECK(back.len == 11 && memcmp(back.data, "hello world", 11) == 0);
    /* Not gzip at all. */
    dab_buf_reset(&back);
    CHECK_EQ_INT(dab_v2_inflate("{\"inputs\":[]}", 13, DAB_V2_CODING_GZIP, 100, &back, &err),
                 DAB_EFORMAT);
    CHECK(strstr(err.msg, "the gzip body is corrupt") != NULL);
    dab_buf_free(&src);
    dab_buf_free(&z);
    dab_buf_free(&back);
}

TEST(coding_headers)
{
    dab_v2_coding_t c;
    dab_err_t err = {0};
    CHECK(dab_v2_coding_parse(NULL, &c, &err) == 0 && c == DAB_V2_CODING_IDENTITY);
    CHECK(dab_v2_coding_parse(" GZip ", &c, &err) == 0 && c == DAB_V2_CODING_GZIP);
    CHECK(dab_v2_coding_parse("x-gzip", &c, &err) == 0 && c == DAB_V2_CODING_GZIP);
    CHECK(dab_v2_coding_parse("deflate", &c, &err) == 0 && c == DAB_V2_CODING_DEFLATE);
    CHECK(dab_v2_coding_parse("identity", &c, &err) == 0 && c == DAB_V2_CODING_IDENTITY);
    CHECK_EQ_INT(dab_v2_coding_parse("br", &c, &err), DAB_EUNSUPPORTED);
    CHECK(strstr(err.msg, "Content-Encoding 'br' is not supported") != NULL);
    struct {
        const char *h;
        dab_v2_coding_t want;
    } cases[] = {
        {NULL, DAB_V2_CODING_IDENTITY},
        {"", DAB_V2_CODING_IDENTITY},
        {"gzip", DAB_V2_CODING_GZIP},
        {"deflate", DAB_V2_CODING_DEFLATE},
        {"gzip, deflate, br", DAB_V2_CODING_GZIP},
        {"deflate, gzip", DAB_V2_CODING_GZIP},
        {"gzip;q=0.5, deflate", DAB_V2_CODING_DEFLATE},
        {"gzip;q=0, deflate;q=0", DAB_V2_CODING_IDENTITY},
        {"gzip; q=0", DAB_V2_CODING_IDENTITY},
        {"gzip;q=0.0", DAB_V2_CODING_IDENTITY},
        {"*", DAB_V2_CODING_GZIP},
        {"*;q=0", DAB_V2_CODING_IDENTITY},
        {"gzip;q=0, *", DAB_V2_CODING_DEFLATE},
        {"br, identity", DAB_V2_CODING_IDENTITY},
        {"GZIP ; Q=1.0", DAB_V2_CODING_GZIP},
        {"deflate;q=0.8, gzip;q=0.3", DAB_V2_CODING_DEFLATE},
        {"gzip;q=0.001", DAB_V2_CODING_GZIP},
        {"gzip;q=abc", DAB_V2_CODING_IDENTITY},
    };
    for (size_t i = 0; i < DAB_ARRAY_LEN(cases); i++) {
        dab_v2_coding_t got = dab_v2_coding_accept(cases[i].h);
        if (got != cases[i].want) {
            t_failed++;
            fprintf(stderr, "FAIL accept '%s' -> %s, want %s\n", cases[i].h ? cases[i].h : "NULL",
                    dab_v2_coding_name(got), dab_v2_coding_name(cases[i].want));
        } else {
            t_passed++;
        }
    }
}

static int g_checked;

static int refuse_big(void *user, const char *name, const dab_tensor_t *t, dab_err_t *err)
{
    g_checked++;
    CHECK(t->data == NULL);
    if (t->rank != 2 || t->dims[1] != *(const int64_t *)user)
        return dab_err_set(err, DAB_ESHAPE, "input '%s' must have %lld columns", name,
                           (long long)*(const int64_t *)user);
    return 0;
}

/* The model check runs once per input, before its buffer exists, and its refusal is the
 * request's error. */
TEST(input_check_hook)
{
    int64_t cols = 2;
    dab_v2_limits_t lim;
    dab_v2_limits_default(&lim);
    lim.check_input = refuse_big;
    lim.check_user = &cols;
    const char *ok = "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,2],"
                     "\"data\":[1,2]}]}";
    const char *bad = "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,3],"
                      "\"data\":[1,2,3]}]}";
    dab_v2_request_t *r = NULL;
    dab_err_t e = {0};
    g_checked = 0;
    CHECK_EQ_INT(dab_v2_request_decode(ok, strlen(ok), -1, &lim, &r, &e), 0);
    CHECK_EQ_INT(g_checked, 1);
    dab_v2_request_free(r);
    r = NULL;
    CHECK_EQ_INT(dab_v2_request_decode(bad, strlen(bad), -1, &lim, &r, &e), DAB_ESHAPE);
    CHECK(r == NULL);
    CHECK(strstr(e.msg, "must have 2 columns") != NULL);
}

TEST_LIST(T(limits_refused_before_allocation), T(gzip_bomb_refused), T(dtype_names),
          T(roundtrip_every_datatype), T(decode_json_request), T(decode_binary_request),
          T(binary_sizes_checked), T(error_sentences), T(every_truncation_fails),
          T(corrupted_bodies_never_crash), T(allocation_failures_unwind), T(raw_single_input),
          T(encode_response), T(error_bodies), T(format_f32_exact_cases),
          T(format_f32_round_trips), T(format_f64_round_trips), T(parse_numbers_match_strtod),
          T(gzip_and_deflate),
          T(coding_headers), T(input_check_hook))
