/*
 * tensor.h - tensors as every subsystem sees them: a dtype, a shape and a
 * pointer to dense row-major data. A dab_tensor_t is a plain descriptor; who
 * owns the bytes is said by whoever hands one out (the engine's arena, a
 * request's buffer, a model's weights).
 */
#ifndef DAB_TENSOR_H
#define DAB_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../base/base.h"

/* Data types, numbered as ONNX's TensorProto.DataType. */
typedef enum dab_dtype {
    DAB_DT_UNDEFINED = 0,
    DAB_DT_FLOAT = 1,
    DAB_DT_UINT8 = 2,
    DAB_DT_INT8 = 3,
    DAB_DT_UINT16 = 4,
    DAB_DT_INT16 = 5,
    DAB_DT_INT32 = 6,
    DAB_DT_INT64 = 7,
    DAB_DT_STRING = 8,
    DAB_DT_BOOL = 9,
    DAB_DT_FLOAT16 = 10,
    DAB_DT_DOUBLE = 11,
    DAB_DT_UINT32 = 12,
    DAB_DT_UINT64 = 13,
    DAB_DT_COMPLEX64 = 14,
    DAB_DT_COMPLEX128 = 15,
    DAB_DT_BFLOAT16 = 16,
    DAB_DT_FLOAT8E4M3FN = 17,
    DAB_DT_FLOAT8E4M3FNUZ = 18,
    DAB_DT_FLOAT8E5M2 = 19,
    DAB_DT_FLOAT8E5M2FNUZ = 20,
    DAB_DT_UINT4 = 21,
    DAB_DT_INT4 = 22,
    DAB_DT_FLOAT4E2M1 = 23,
    DAB_DT_FLOAT8E8M0 = 24,
    DAB_DT_UINT2 = 25,
    DAB_DT_INT2 = 26,
    DAB_DT_COUNT_ = 27
} dab_dtype_t;

/*
 * The low-precision dtypes (17-26) hold one element per byte in memory, whatever their
 * width in a file:
 *   FLOAT8* (five formats)  the 8-bit code;
 *   FLOAT4E2M1              the 4-bit code in the low nibble (upper bits 0);
 *   INT4, INT2              the value as a sign-extended int8 (-8..7, -2..1);
 *   UINT4, UINT2            the value as a uint8 (0..15, 0..3).
 * So dab_dtype_size is 1 for all of them and data-movement code needs no special case;
 * whoever writes such a tensor keeps the values in range. ONNX packs the 4- and 2-bit
 * types two or four to a byte (first element in the low bits); the loader unpacks them.
 */

/* Bit for a dtype in a dtype mask (op declarations). */
#define DAB_DTM(dt) (1u << (dt))
#define DAB_DTM_FLOATS (DAB_DTM(DAB_DT_FLOAT) | DAB_DTM(DAB_DT_DOUBLE))
#define DAB_DTM_SINT \
    (DAB_DTM(DAB_DT_INT8) | DAB_DTM(DAB_DT_INT16) | DAB_DTM(DAB_DT_INT32) | DAB_DTM(DAB_DT_INT64))
#define DAB_DTM_UINT \
    (DAB_DTM(DAB_DT_UINT8) | DAB_DTM(DAB_DT_UINT16) | DAB_DTM(DAB_DT_UINT32) | DAB_DTM(DAB_DT_UINT64))
#define DAB_DTM_INTS (DAB_DTM_SINT | DAB_DTM_UINT)
#define DAB_DTM_NUMERIC (DAB_DTM_FLOATS | DAB_DTM_INTS)
#define DAB_DTM_ALL (DAB_DTM_NUMERIC | DAB_DTM(DAB_DT_BOOL))
#define DAB_DTM_FLOAT8                                                                    \
    (DAB_DTM(DAB_DT_FLOAT8E4M3FN) | DAB_DTM(DAB_DT_FLOAT8E4M3FNUZ) |                      \
     DAB_DTM(DAB_DT_FLOAT8E5M2) | DAB_DTM(DAB_DT_FLOAT8E5M2FNUZ))
/* The dtypes of 8 bits or fewer added by ONNX 1.14-1.23 (17-26). */
#define DAB_DTM_LOWP                                                                      \
    (DAB_DTM_FLOAT8 | DAB_DTM(DAB_DT_FLOAT8E8M0) | DAB_DTM(DAB_DT_FLOAT4E2M1) |          \
     DAB_DTM(DAB_DT_INT4) | DAB_DTM(DAB_DT_UINT4) | DAB_DTM(DAB_DT_INT2) | DAB_DTM(DAB_DT_UINT2))

/* Element size in bytes (0 for UNDEFINED and STRING, whose elements are dab_str_t). */
size_t dab_dtype_size(dab_dtype_t dt);

/* ONNX's name of a dtype ("float", "int64", ...); "undefined" for unknown values. */
const char *dab_dtype_name(dab_dtype_t dt);

/* True for the dtypes the engine can hold in a tensor (known, fixed-size or string). */
bool dab_dtype_valid(int dt);

/* True for the floating-point dtypes: float, double, float16, bfloat16, the float8
 * formats and float4e2m1. */
bool dab_dtype_is_float(dab_dtype_t dt);

/* Bits an element takes in ONNX's packed encoding: 4 for INT4/UINT4/FLOAT4E2M1, 2 for
 * INT2/UINT2, else 8 * dab_dtype_size (0 for strings and UNDEFINED). */
int dab_dtype_packed_bits(dab_dtype_t dt);

/* A STRING tensor's element: bytes owned by whoever owns the tensor. */
typedef struct dab_str {
    const char *ptr;
    size_t len;
} dab_str_t;

#define DAB_MAX_RANK 12

/* A tensor descriptor. data is NULL until storage is assigned. */
typedef struct dab_tensor {
    dab_dtype_t dtype;
    int rank;
    int64_t dims[DAB_MAX_RANK];
    void *data;
} dab_tensor_t;

/* Number of elements (1 for rank 0). dims are assumed checked (non-negative, no overflow). */
int64_t dab_tensor_numel(const dab_tensor_t *t);

/* Bytes of data: numel * element size (string tensors: numel * sizeof(dab_str_t)). */
size_t dab_tensor_bytes(const dab_tensor_t *t);

/*
 * Checks dims from outside (non-negative, rank <= DAB_MAX_RANK, product of dims and
 * element size fits in size_t and in max_bytes when max_bytes > 0) and stores the byte
 * count in *out_bytes. On error err names what was wrong; `what` names the tensor.
 */
int dab_shape_check(const char *what, dab_dtype_t dt, int rank, const int64_t *dims,
                    size_t max_bytes, size_t *out_bytes, dab_err_t *err);

/* Sets dtype and shape of t (data untouched). rank <= DAB_MAX_RANK is the caller's duty. */
void dab_tensor_set_shape(dab_tensor_t *t, dab_dtype_t dt, int rank, const int64_t *dims);

/* True when a and b have the same rank and dims. */
bool dab_shape_equal(const dab_tensor_t *a, const dab_tensor_t *b);

/* Writes "[2,3,4]" into buf (always NUL-terminated); returns buf. */
char *dab_shape_str(const dab_tensor_t *t, char *buf, size_t buf_len);

/*
 * An owned tensor: descriptor plus heap data from dab_malloc. Used for weights,
 * files and outputs handed to callers. dab_tensor_free frees data (and strings'
 * bytes when the tensor owns them) and zeroes the descriptor.
 */
int dab_tensor_alloc(dab_tensor_t *t, dab_dtype_t dt, int rank, const int64_t *dims,
                     dab_err_t *err);
void dab_tensor_free(dab_tensor_t *t);

/* Reads element i of a numeric or bool tensor (low-precision dtypes included) as double /
 * int64 (conversion as C casts). */
double dab_tensor_get_f64(const dab_tensor_t *t, int64_t i);
int64_t dab_tensor_get_i64(const dab_tensor_t *t, int64_t i);

/*
 * .npy files (format versions 1-3, little-endian, C order; bool, ints, floats).
 * dab_npy_read allocates t's data (free with dab_tensor_free); dab_npy_write writes it.
 */
int dab_npy_read(const char *path, dab_tensor_t *t, dab_err_t *err);
int dab_npy_write(const char *path, const dab_tensor_t *t, dab_err_t *err);

/* Parses a .npy image from memory (same rules as dab_npy_read). */
int dab_npy_parse(const void *buf, size_t len, dab_tensor_t *t, dab_err_t *err);

/* float16 / bfloat16 conversions (round to nearest even). */
float dab_f16_to_f32(uint16_t h);
uint16_t dab_f32_to_f16(float f);
/* bfloat16 is the top half of a float; narrowing rounds to nearest even and NaNs stay
 * quiet NaNs. Inline so that conversion loops vectorize. */
static inline float dab_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint16_t dab_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/*
 * The small float formats: dt is one of the four FLOAT8 formats, FLOAT4E2M1 or
 * FLOAT8E8M0, code an element as held in memory. Decoding is exact (NaN codes give NaN,
 * E5M2's infinities infinities).
 */
float dab_small_float_to_f32(dab_dtype_t dt, uint8_t code);

/*
 * float32 to a FLOAT8 format or FLOAT4E2M1 as ONNX's Cast does: round to nearest even;
 * NaN stays NaN (FLOAT4E2M1, which has none, gets the -0 code 0x8 as ONNX's reference
 * writes); values beyond the largest finite one, infinities included, become that
 * value when saturate is true, else NaN (E5M2: infinity). FLOAT4E2M1 always saturates.
 * The FNUZ formats have no -0: negative values that round to zero give +0.
 * FLOAT8E8M0 is converted as dab_f32_to_e8m0 with DAB_ROUND_UP.
 */
uint8_t dab_f32_to_small_float(dab_dtype_t dt, float f, bool saturate);

/* Rounding of a conversion to FLOAT8E8M0 (Cast's round_mode: "up", "down", "nearest"). */
typedef enum dab_round_mode {
    DAB_ROUND_UP = 0,   /* to the power of two at or above |x| */
    DAB_ROUND_DOWN = 1, /* to the power of two at or below |x| */
    DAB_ROUND_NEAREST = 2 /* to the nearer of the two; halfway goes up */
} dab_round_mode_t;

/*
 * float32 to FLOAT8E8M0 (2^(code-127), 0xFF NaN; unsigned: the sign is ignored). NaN gives
 * NaN; infinity and results past 2^127 give 2^127 when saturate, else NaN; zero and
 * results below 2^-127 give 2^-127.
 */
uint8_t dab_f32_to_e8m0(float f, dab_round_mode_t mode, bool saturate);

#endif
