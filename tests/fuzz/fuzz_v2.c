/*
 * fuzz_v2.c - libFuzzer target for the KServe v2 request codec (src/serve/v2.h).
 *
 * The first byte picks what the rest is fed to:
 *   0  a JSON body (no Inference-Header-Content-Length)
 *   1  two bytes of header length (little-endian), then a JSON + binary body
 *   2  one byte picking gzip or deflate, then a compressed body, inflated under a bound
 *      and decoded as JSON
 *   3  one byte picking a datatype, then a raw single-input body
 * A request that decodes is encoded back as a response, in binary and in JSON, turned
 * into a request again and decoded; the tensors must come back bit for bit. Anything but
 * a clean error or an equal round trip (a crash, a leak, a sanitizer report, a trap) is a
 * bug. With DAB_FUZZ_SEEDS=dir in the environment, seed inputs are written to dir first.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/v2.h"

static const char *const g_seed_json[] = {
    "{\"id\":\"a\",\"parameters\":{\"priority\":1,\"binary_data_output\":true},\"inputs\":["
    "{\"name\":\"x\",\"shape\":[2,2],\"datatype\":\"FP32\",\"data\":[[1.5,-2e-3],[0.1,3]]},"
    "{\"name\":\"s\",\"shape\":[2],\"datatype\":\"BYTES\",\"data\":[\"h\\u00e9\",\"\\n\"]},"
    "{\"name\":\"b\",\"shape\":[1],\"datatype\":\"BOOL\",\"data\":[true]}],"
    "\"outputs\":[{\"name\":\"y\",\"parameters\":{\"binary_data\":false}}]}",
    "{\"inputs\":[{\"data\":[1,-2,3],\"datatype\":\"INT64\",\"shape\":[3],\"name\":\"i\"},"
    "{\"name\":\"u\",\"shape\":[1,1],\"datatype\":\"UINT8\",\"data\":[[255]]},"
    "{\"name\":\"d\",\"shape\":[],\"datatype\":\"FP64\",\"data\":1e-300}]}",
    "{\"inputs\":[{\"name\":\"x\",\"shape\":[0],\"datatype\":\"INT16\",\"data\":[]}]}",
};

static void write_seed(const char *dir, int k, uint8_t mode, const void *body, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/seed-%d", dir, k);
    FILE *f = fopen(path, "wb");
    if (!f)
        return;
    fputc(mode, f);
    fwrite(body, 1, len, f);
    fclose(f);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    json_set_alloc_funcs(dab_malloc, dab_free);
    const char *dir = getenv("DAB_FUZZ_SEEDS");
    if (!dir)
        return 0;
    int k = 0;
    for (size_t i = 0; i < DAB_ARRAY_LEN(g_seed_json); i++)
        write_seed(dir, k++, 0, g_seed_json[i], strlen(g_seed_json[i]));
    /* JSON + binary. */
    const char *json = "{\"inputs\":[{\"name\":\"f\",\"shape\":[2],\"datatype\":\"FP32\","
                       "\"parameters\":{\"binary_data_size\":8}},{\"name\":\"s\",\"shape\":[1],"
                       "\"datatype\":\"BYTES\",\"parameters\":{\"binary_data_size\":6}}]}";
    dab_buf_t b = {0};
    uint16_t hl = (uint16_t)strlen(json);
    dab_buf_append(&b, &hl, 2);
    dab_buf_puts(&b, json);
    float f[2] = {1.5f, -0.25f};
    dab_buf_append(&b, f, sizeof f);
    dab_buf_append(&b, "\x02\x00\x00\x00hi", 6);
    write_seed(dir, k++, 1, b.data, b.len);
    /* Compressed. */
    for (int c = 0; c < 2; c++) {
        dab_buf_reset(&b);
        dab_buf_append(&b, c ? "\x01" : "\x00", 1);
        dab_err_t err;
        dab_v2_compress(g_seed_json[0], strlen(g_seed_json[0]),
                        c ? DAB_V2_CODING_GZIP : DAB_V2_CODING_DEFLATE, 6, &b, &err);
        write_seed(dir, k++, 2, b.data, b.len);
    }
    /* Raw. */
    write_seed(dir, k++, 3, "\x0a\x00\x00\x80\x3f\x00\x00\x00\x40", 9);
    write_seed(dir, k++, 3, "\x0c\x01\x00\x00\x00z", 6);
    dab_buf_free(&b);
    return 0;
}

static const dab_dtype_t g_types[] = {
    DAB_DT_BOOL,  DAB_DT_UINT8,  DAB_DT_UINT16, DAB_DT_UINT32,  DAB_DT_UINT64,
    DAB_DT_INT8,  DAB_DT_INT16,  DAB_DT_INT32,  DAB_DT_INT64,   DAB_DT_FLOAT16,
    DAB_DT_FLOAT, DAB_DT_DOUBLE, DAB_DT_STRING, DAB_DT_BFLOAT16,
};

static bool same_tensor(const dab_tensor_t *a, const dab_tensor_t *b)
{
    if (a->dtype != b->dtype || !dab_shape_equal(a, b))
        return false;
    int64_t n = dab_tensor_numel(a);
    if (a->dtype != DAB_DT_STRING)
        return memcmp(a->data, b->data, (size_t)n * dab_dtype_size(a->dtype)) == 0;
    for (int64_t k = 0; k < n; k++) {
        const dab_str_t *x = (const dab_str_t *)a->data + k, *y = (const dab_str_t *)b->data + k;
        if (x->len != y->len || (x->len && memcmp(x->ptr, y->ptr, x->len) != 0))
            return false;
    }
    return true;
}

/*
 * Encodes r's inputs as outputs (all binary, or all JSON), decodes the result as a
 * request and compares. JSON encoding may refuse (FP16, NaN, BYTES that are not UTF-8);
 * once it succeeds, the round trip must be exact.
 */
static void roundtrip(const dab_v2_request_t *r, bool binary, const dab_v2_limits_t *lim)
{
    enum { MAX = 64 };
    dab_v2_output_t outs[MAX];
    if (r->n_inputs > MAX)
        return;
    for (int i = 0; i < r->n_inputs; i++) {
        /* Names that are not UTF-8 are altered by the encoder; skip those requests. */
        if (!dab_v2_utf8_valid(r->inputs[i].name, strlen(r->inputs[i].name)))
            return;
        outs[i] = (dab_v2_output_t){.name = r->inputs[i].name, .tensor = &r->inputs[i].tensor,
                                    .binary = binary};
    }
    dab_v2_response_t resp = {.model_name = "m", .id = r->id, .id_len = r->id_len,
                              .parameters = r->parameters, .n_outputs = r->n_inputs,
                              .outputs = outs};
    dab_buf_t b = {0}, body = {0};
    size_t jl = 0;
    dab_err_t err;
    if (dab_v2_response_encode(&resp, &b, &jl, &err)) {
        if (binary && err.code != DAB_ENOMEM)
            __builtin_trap(); /* binary encoding of decoded tensors cannot fail */
        dab_buf_free(&b);
        return;
    }
    /* The last "outputs" key of the JSON part: "parameters", written before it, may hold
     * one too. */
    const char *at = NULL;
    for (const char *p = b.data; (p = strstr(p, "\"outputs\":[")) && (size_t)(p - b.data) < jl;
         p++)
        at = p;
    if (!at)
        __builtin_trap();
    size_t pre = (size_t)(at - b.data);
    dab_buf_append(&body, b.data, pre);
    dab_buf_puts(&body, "\"inputs\":[");
    dab_buf_append(&body, at + 11, b.len - pre - 11);
    dab_v2_request_t *back = NULL;
    /* Default limits: the binary form of strings takes 4 more bytes per element. */
    (void)lim;
    int rc = dab_v2_request_decode(body.data, body.len, binary ? (int64_t)jl - 1 : -1, NULL,
                                   &back, &err);
    if (rc && rc != DAB_ENOMEM) {
        fprintf(stderr, "round trip failed: %s\n", err.msg);
        __builtin_trap();
    }
    if (!rc) {
        if (back->n_inputs != r->n_inputs)
            __builtin_trap();
        for (int i = 0; i < r->n_inputs; i++)
            if (!same_tensor(&r->inputs[i].tensor, &back->inputs[i].tensor))
                __builtin_trap();
    }
    dab_v2_request_free(back);
    dab_buf_free(&b);
    dab_buf_free(&body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int mode = data[0] % 4;
    data++;
    size--;
    dab_v2_limits_t lim = {.max_elements = 1 << 16, .max_inputs = 16,
                           .max_total_bytes = 1 << 22};
    dab_v2_request_t *r = NULL;
    dab_err_t err;
    dab_buf_t inflated = {0};
    int rc = -1;
    if (mode == 0) {
        rc = dab_v2_request_decode(data, size, -1, &lim, &r, &err);
    } else if (mode == 1 && size >= 2) {
        int64_t hl = data[0] | (data[1] << 8);
        rc = dab_v2_request_decode(data + 2, size - 2, hl, &lim, &r, &err);
    } else if (mode == 2 && size >= 1) {
        dab_v2_coding_t c = data[0] & 1 ? DAB_V2_CODING_GZIP : DAB_V2_CODING_DEFLATE;
        if (dab_v2_inflate(data + 1, size - 1, c, 1 << 20, &inflated, &err) == 0)
            rc = dab_v2_request_decode(inflated.data, inflated.len, -1, &lim, &r, &err);
    } else if (mode == 3 && size >= 1) {
        int64_t dims[2] = {data[0] & 0x80 ? 1 : -1, -1};
        rc = dab_v2_request_from_raw(data + 1, size - 1, "raw",
                                     g_types[(data[0] & 0x7f) % DAB_ARRAY_LEN(g_types)],
                                     dims[0] == 1 ? 2 : 1, dims, &lim, &r, &err);
    }
    if (rc == 0) {
        roundtrip(r, true, &lim);
        roundtrip(r, false, &lim);
        dab_v2_request_free(r);
    } else if (rc > 0 || r) {
        __builtin_trap();
    }
    dab_buf_free(&inflated);
    return 0;
}
