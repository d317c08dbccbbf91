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
    DAB_DT_COUNT_ = 17
} dab_dtype_t;

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

/* Element size in bytes (0 for UNDEFINED and STRING, whose elements are dab_str_t). */
size_t dab_dtype_size(dab_dtype_t dt);

/* ONNX's name of a dtype ("float", "int64", ...); "undefined" for unknown values. */
const char *dab_dtype_name(dab_dtype_t dt);

/* True for the dtypes the engine can hold in a tensor (known, fixed-size or string). */
bool dab_dtype_valid(int dt);

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

/* Reads element i of a numeric or bool tensor as double / int64 (conversion as C casts). */
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
float dab_bf16_to_f32(uint16_t h);
uint16_t dab_f32_to_bf16(float f);

#endif
