/*
 * v2.h - the KServe v2 / Open Inference Protocol codec, as Triton speaks it over HTTP.
 *
 * This is the layer between the HTTP server and the scheduler: it turns the body of
 * `POST /v2/models/{m}[/versions/{v}]/infer` into tensors and turns output tensors into a
 * response body. It knows nothing of sockets, models or threads.
 *
 *   decode    own streaming JSON parser: each input's "data" (flat or nested, row-major) is
 *             written straight into a tensor buffer of the declared datatype after the shape
 *             has been checked against the limits; no DOM node per element. The binary
 *             tensor data extension (Inference-Header-Content-Length, binary_data_size, BYTES
 *             as 4-byte little-endian length + bytes) and the raw single-input form.
 *             The small "parameters" objects are kept as jansson values for the scheduler.
 *   encode    response JSON written into a dab_buf_t with a shortest round-trip float
 *             formatter, or binary outputs appended after the JSON.
 *   errors    {"error": "<sentence>"} bodies.
 *   codings   gzip / deflate request bodies (with a bound on the inflated size) and
 *             compressed responses chosen from Accept-Encoding.
 *
 * Every function returns 0 or a negative DAB_E* code with a sentence in err naming the
 * input, output, element or byte at fault. All functions are reentrant: any thread may
 * call them on distinct objects.
 */
#ifndef DAB_SERVE_V2_H
#define DAB_SERVE_V2_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/base.h"
#include "../tensor/tensor.h"

/* ---------------------------------------------------------------- datatypes */

/*
 * The v2 datatype named by the n bytes at name ("FP32", "BYTES", ...) as a dab_dtype_t
 * (BYTES is DAB_DT_STRING); DAB_DT_UNDEFINED when it is not a v2 datatype. Any thread.
 */
dab_dtype_t dab_v2_dtype_from_name(const char *name, size_t n);

/* The v2 name of a dtype ("FP32"); NULL for dtypes v2 cannot carry (complex). Any thread. */
const char *dab_v2_dtype_name(dab_dtype_t dt);

/* ---------------------------------------------------------------- limits */

/*
 * What a request may ask for; checked before any allocation sized by the request.
 * Zero fields mean the default (dab_v2_limits_default).
 */
typedef struct dab_v2_limits {
    int64_t max_elements;   /* elements in one tensor */
    int max_rank;           /* dimensions of one tensor (at most DAB_MAX_RANK) */
    int max_inputs;         /* inputs in one request; also bounds the requested outputs */
    size_t max_total_bytes; /* tensor bytes of all inputs together (strings: their bytes
                               plus one dab_str_t per element) */
    /* Optional: called for each input whose name, datatype and shape are known, before
     * its data buffer is allocated (the server checks them against the model here).
     * t has dtype and shape, no data. Non-zero refuses the request with err. */
    int (*check_input)(void *user, const char *name, const dab_tensor_t *t, dab_err_t *err);
    void *check_user;
} dab_v2_limits_t;

/* Fills l with the defaults: 16M elements, rank 12, 64 inputs, 256 MiB, no input check. */
void dab_v2_limits_default(dab_v2_limits_t *l);

/* ---------------------------------------------------------------- requests */

/* One input of a decoded request. Everything points into the request (or its body). */
typedef struct dab_v2_input {
    const char *name;          /* NUL-terminated */
    dab_tensor_t tensor;       /* dtype, shape, data (never NULL); STRING data is an array of
                                  dab_str_t whose bytes lie in the request or its body */
    json_t *parameters;        /* the input's "parameters" object, or NULL */
    int64_t binary_size_bytes; /* parameters.binary_data_size, or -1: the data came as JSON */
    bool in_body;              /* tensor.data points into the body (aligned binary data) */
} dab_v2_input_t;

/* One entry of the request's "outputs" array. */
typedef struct dab_v2_requested_output {
    const char *name;   /* NUL-terminated */
    int binary_data;    /* parameters.binary_data: 1 true, 0 false, -1 not given */
    json_t *parameters; /* the output's "parameters" object, or NULL */
} dab_v2_requested_output_t;

/*
 * A decoded infer request. It owns one arena holding the request, names, strings and
 * every tensor buffer; binary tensor data that is suitably aligned is not copied and
 * points into the body instead. Freed with one dab_v2_request_free. Not thread-safe;
 * hand it between threads whole.
 */
typedef struct dab_v2_request {
    const char *id;                     /* "id" (NUL-terminated), or NULL when absent */
    size_t id_len;                      /* its length in bytes */
    json_t *parameters;                 /* the request's "parameters" object, or NULL;
                                           "priority", "timeout", ... are read from here */
    int binary_data_output;             /* parameters.binary_data_output: 1, 0, -1 not given */
    int n_inputs;
    dab_v2_input_t *inputs;             /* in request order */
    int n_outputs;                      /* 0: the request names no outputs (return all) */
    dab_v2_requested_output_t *outputs; /* in request order */
    size_t json_bytes;                  /* length of the JSON part of the body */
    size_t tensor_bytes;                /* tensor bytes of all inputs (counted for limits) */
    struct dab_v2_arena *arena_;        /* private */
    dab_buf_t body_;                    /* private: an adopted body */
} dab_v2_request_t;

/*
 * Decodes an infer request body. header_bytes is the value of the
 * Inference-Header-Content-Length header, or -1 when the header is absent (the whole body
 * is JSON, optionally followed by whitespace). With the header, the JSON is the first
 * header_bytes bytes and the rest is binary tensor data, claimed exactly, in input order,
 * by the inputs with parameters.binary_data_size. header_bytes == 0 is the raw
 * single-input form, which needs the model's metadata: the caller handles it with
 * dab_v2_request_from_raw; here it is an error.
 * lim may be NULL (defaults). On success *out is a new request, freed by
 * dab_v2_request_free; it may point into body, which must outlive it (or be handed to it
 * with dab_v2_request_adopt_body). On failure *out is NULL, nothing is left allocated, and
 * err says what was wrong: DAB_EFORMAT bad JSON, DAB_EINVAL / DAB_ETYPE / DAB_ESHAPE /
 * DAB_ERANGE a request that does not add up, DAB_ELIMIT a limit (HTTP 413),
 * DAB_EUNSUPPORTED a feature we do not have, DAB_ENOMEM. Any thread.
 */
int dab_v2_request_decode(const void *body, size_t body_len, int64_t header_bytes,
                          const dab_v2_limits_t *lim, dab_v2_request_t **out, dab_err_t *err);

/*
 * The raw single-input form (Inference-Header-Content-Length: 0, or a binary body the
 * caller knows to be raw): the whole body is the binary data of the model's only input,
 * named input_name, of dtype dt and shape dims[rank]. At most one dimension may be -1; it
 * is inferred from the body's size (for BYTES, from the number of elements in it). A
 * negative rank (unknown) means one flat dimension, [-1].
 * Outputs default to binary (binary_data_output = 1). Ownership and errors as
 * dab_v2_request_decode. Any thread.
 */
int dab_v2_request_from_raw(const void *body, size_t body_len, const char *input_name,
                            dab_dtype_t dt, int rank, const int64_t *dims,
                            const dab_v2_limits_t *lim, dab_v2_request_t **out,
                            dab_err_t *err);

/*
 * Hands the body buffer to the request: the request now owns body->data (freed by
 * dab_v2_request_free) and *body is zeroed. Use it when the body must live as long as the
 * request's tensors. Any thread that owns r.
 */
void dab_v2_request_adopt_body(dab_v2_request_t *r, dab_buf_t *body);

/* Frees r, its arena, its parameters and an adopted body. NULL is ignored. */
void dab_v2_request_free(dab_v2_request_t *r);

/* The input named name, or NULL. */
const dab_v2_input_t *dab_v2_request_input(const dab_v2_request_t *r, const char *name);

/*
 * Whether output name is to be returned as binary data: its own parameters.binary_data
 * when the request names it with one, otherwise the request's binary_data_output,
 * otherwise false.
 */
bool dab_v2_output_wants_binary(const dab_v2_request_t *r, const char *name);

/*
 * Parses the value of an Inference-Header-Content-Length header (decimal digits only) into
 * *out. DAB_EINVAL with a sentence when it is not a number or is larger than 2^53.
 */
int dab_v2_parse_header_length(const char *value, int64_t *out, dab_err_t *err);

/* ---------------------------------------------------------------- responses */

/* One output of a response; the tensor stays the caller's. */
typedef struct dab_v2_output {
    const char *name;
    const dab_tensor_t *tensor; /* STRING tensors hold dab_str_t elements */
    bool binary;                /* send as binary data after the JSON */
} dab_v2_output_t;

typedef struct dab_v2_response {
    const char *model_name;
    const char *model_version; /* NULL: omitted */
    const char *id;            /* the request's id echoed; NULL: omitted */
    size_t id_len;
    const json_t *parameters;  /* response "parameters" object; NULL: omitted */
    int n_outputs;
    const dab_v2_output_t *outputs;
} dab_v2_response_t;

/*
 * Appends the response body to out: the JSON object, then the binary data of the outputs
 * marked binary, in output order. *json_bytes receives the length of the JSON part: when
 * it is less than the body, send it as Inference-Header-Content-Length. Floats are written
 * with the shortest decimal that reads back to the same value. NaN and infinities cannot
 * be written in JSON: such an output must be binary, else DAB_ERANGE naming the output and
 * element. FP16/BF16 outputs must be binary (DAB_ETYPE), as must BYTES elements that are
 * not valid UTF-8. On failure out is as before. Any thread (distinct out).
 */
int dab_v2_response_encode(const dab_v2_response_t *r, dab_buf_t *out, size_t *json_bytes,
                           dab_err_t *err);

/* Longest text dab_v2_format_f32 / _f64 write, plus a NUL. */
#define DAB_V2_NUMBER_MAX 32

/*
 * Writes the shortest decimal that reads back (round to nearest even) to exactly v, as a
 * JSON number, into out (DAB_V2_NUMBER_MAX bytes) with a NUL, and returns its length; 0
 * for NaN and infinities, which JSON cannot carry. Plain notation for decimal exponents
 * -4..15 with ".0" on whole numbers ("0.1", "3.0", "0.0001"), scientific otherwise
 * ("1e-5", "-2.5e-7", "3.4028235e+38"). float32: the digits are computed exactly with
 * integer arithmetic, and of the shortest candidates the nearest to v is printed.
 * float64: printf's correctly rounded 15, 16 and 17 digits are tried (subnormals from 1);
 * the result always reads back and is shortest whenever 15 digits suffice. Any thread.
 */
int dab_v2_format_f32(float v, char *out);
int dab_v2_format_f64(double v, char *out);

/*
 * Appends s[0..len) to out as a JSON string with its quotes. Bytes that are not valid
 * UTF-8 become U+FFFD. 0 or DAB_ENOMEM.
 */
int dab_v2_json_string(dab_buf_t *out, const char *s, size_t len);

/* Whether s[0..len) is valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
bool dab_v2_utf8_valid(const char *s, size_t len);

/* Appends {"error":"<msg>"} to out (msg escaped as above). 0 or DAB_ENOMEM. */
int dab_v2_error_body(dab_buf_t *out, const char *msg);

/*
 * The HTTP status for an error code of this codec: 413 for DAB_ELIMIT, 500 for
 * DAB_ENOMEM and DAB_EINTERNAL, 404 for DAB_ENOTFOUND, 503 for DAB_EBUSY, 400 otherwise.
 */
int dab_v2_http_status(int code);

/* ---------------------------------------------------------------- content codings */

typedef enum dab_v2_coding {
    DAB_V2_CODING_IDENTITY = 0,
    DAB_V2_CODING_GZIP = 1,
    DAB_V2_CODING_DEFLATE = 2,
} dab_v2_coding_t;

/* "identity", "gzip" or "deflate". */
const char *dab_v2_coding_name(dab_v2_coding_t c);

/*
 * Parses a Content-Encoding header value (NULL or empty: identity; "gzip", "x-gzip",
 * "deflate", "identity", case-insensitive). DAB_EUNSUPPORTED with a sentence for others
 * (HTTP 415).
 */
int dab_v2_coding_parse(const char *content_encoding, dab_v2_coding_t *out, dab_err_t *err);

/*
 * Picks the response coding from an Accept-Encoding header value: the acceptable coding
 * among gzip and deflate with the highest q (gzip on a tie; "*" stands for codings not
 * listed; q=0 refuses), identity when neither is acceptable or value is NULL.
 */
dab_v2_coding_t dab_v2_coding_accept(const char *accept_encoding);

/*
 * Appends to out the body in[0..in_len) decoded from coding (gzip may hold several
 * members; deflate is the zlib format of RFC 1950, raw RFC 1951 data is accepted too).
 * Stops and fails with DAB_ELIMIT as soon as more than max_out_bytes would be produced,
 * so a small body cannot inflate into a large one. DAB_EFORMAT for corrupt or truncated
 * data. On failure out is as before. Any thread (distinct out).
 */
int dab_v2_inflate(const void *in, size_t in_len, dab_v2_coding_t coding, size_t max_out_bytes,
                   dab_buf_t *out, dab_err_t *err);

/*
 * Appends in[0..in_len) to out compressed with coding (identity copies) at zlib level
 * 1..9 (0 or less: 6). On failure out is as before. Any thread (distinct out).
 */
int dab_v2_compress(const void *in, size_t in_len, dab_v2_coding_t coding, int level,
                    dab_buf_t *out, dab_err_t *err);

#endif
