/*
 * test_tensor.c - shapes, owned tensors, .npy files and half-precision conversions.
 */
#include <unistd.h>

#include "tensor/tensor.h"
#include "test.h"

TEST(test_shape_check)
{
    dab_err_t e = {0};
    size_t bytes;
    int64_t ok[] = {2, 3, 4};
    CHECK_EQ_INT(dab_shape_check("x", DAB_DT_FLOAT, 3, ok, 0, &bytes, &e), 0);
    CHECK_EQ_INT(bytes, 96);
    int64_t neg[] = {2, -1};
    CHECK_EQ_INT(dab_shape_check("x", DAB_DT_FLOAT, 2, neg, 0, &bytes, &e), DAB_ESHAPE);
    CHECK(strstr(e.msg, "negative") != NULL);
    int64_t big[] = {1ll << 40, 1ll << 40};
    CHECK_EQ_INT(dab_shape_check("x", DAB_DT_FLOAT, 2, big, 0, &bytes, &e), DAB_ERANGE);
    CHECK_EQ_INT(dab_shape_check("x", DAB_DT_FLOAT, 3, ok, 64, &bytes, &e), DAB_ELIMIT);
    CHECK_EQ_INT(dab_shape_check("x", DAB_DT_FLOAT, DAB_MAX_RANK + 1, ok, 0, &bytes, &e),
                 DAB_ELIMIT);
    int64_t zero[] = {0, 5};
    CHECK_EQ_INT(dab_shape_check("x", DAB_DT_INT64, 2, zero, 0, &bytes, &e), 0);
    CHECK_EQ_INT(bytes, 0);
}

TEST(test_npy_roundtrip)
{
    dab_err_t e = {0};
    const dab_dtype_t types[] = {DAB_DT_FLOAT, DAB_DT_DOUBLE, DAB_DT_INT64, DAB_DT_INT32,
                                 DAB_DT_INT8, DAB_DT_UINT8, DAB_DT_BOOL};
    char path[] = "/tmp/dabba_npy_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        dab_tensor_t t = {0}, r = {0};
        int64_t dims[] = {3, 5};
        CHECK_EQ_INT(dab_tensor_alloc(&t, types[k], 2, dims, &e), 0);
        for (size_t i = 0; i < dab_tensor_bytes(&t); i++)
            ((uint8_t *)t.data)[i] = types[k] == DAB_DT_BOOL ? (uint8_t)(i & 1) : (uint8_t)(i * 7);
        CHECK_EQ_INT(dab_npy_write(path, &t, &e), 0);
        CHECK_EQ_INT(dab_npy_read(path, &r, &e), 0);
        CHECK_EQ_INT(r.dtype, types[k]);
        CHECK(dab_shape_equal(&t, &r));
        CHECK(!memcmp(t.data, r.data, dab_tensor_bytes(&t)));
        dab_tensor_free(&t);
        dab_tensor_free(&r);
    }
    /* A scalar. */
    dab_tensor_t s = {0}, r = {0};
    CHECK_EQ_INT(dab_tensor_alloc(&s, DAB_DT_FLOAT, 0, NULL, &e), 0);
    *(float *)s.data = 2.5f;
    CHECK_EQ_INT(dab_npy_write(path, &s, &e), 0);
    CHECK_EQ_INT(dab_npy_read(path, &r, &e), 0);
    CHECK_EQ_INT(r.rank, 0);
    CHECK(*(float *)r.data == 2.5f);
    dab_tensor_free(&s);
    dab_tensor_free(&r);
    unlink(path);
}

TEST(test_npy_hostile)
{
    dab_err_t e = {0};
    dab_tensor_t t = {0};
    CHECK_EQ_INT(dab_npy_parse("hello", 5, &t, &e), DAB_EFORMAT);
    const char hdr[] = "\x93NUMPY\x01\x00\x40\x00{'descr': '<f4', 'fortran_order': False, "
                       "'shape': (1000000, 1000000), }          \n";
    CHECK(dab_npy_parse(hdr, sizeof hdr - 1, &t, &e) != 0); /* data truncated */
    const char big[] = "\x93NUMPY\x01\x00\x40\x00{'descr': '<f4', 'fortran_order': False, "
                       "'shape': (99999999999999999999,), }     \n";
    CHECK(dab_npy_parse(big, sizeof big - 1, &t, &e) != 0);
    const char fort[] = "\x93NUMPY\x01\x00\x40\x00{'descr': '<f4', 'fortran_order': True, "
                        "'shape': (1,), }                        \n\0\0\0\0";
    CHECK_EQ_INT(dab_npy_parse(fort, sizeof fort - 1, &t, &e), DAB_EUNSUPPORTED);
    /* Every truncation of a valid image is refused cleanly. */
    const char good[] = "\x93NUMPY\x01\x00\x3a\x00{'descr': '<i2', 'fortran_order': False, "
                        "'shape': (2,), }\n\x01\x00\x02\x00";
    CHECK_EQ_INT(dab_npy_parse(good, sizeof good - 1, &t, &e), 0);
    CHECK_EQ_INT(((int16_t *)t.data)[1], 2);
    dab_tensor_free(&t);
    int refused = 0;
    for (size_t l = 0; l + 1 < sizeof good - 1; l++)
        refused += dab_npy_parse(good, l, &t, &e) != 0;
    CHECK_EQ_INT(refused, (int)(sizeof good - 2));
}

TEST(test_half)
{
    const float vals[] = {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, 0.33325195f};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
        CHECK(dab_f16_to_f32(dab_f32_to_f16(vals[i])) == vals[i]);
    CHECK(isinf(dab_f16_to_f32(dab_f32_to_f16(1e6f))));
    CHECK(isnan(dab_f16_to_f32(dab_f32_to_f16(NAN))));
    CHECK(dab_bf16_to_f32(dab_f32_to_bf16(1.0f)) == 1.0f);
    CHECK(dab_bf16_to_f32(dab_f32_to_bf16(3.0f)) == 3.0f);
    CHECK_EQ_INT(dab_f32_to_bf16(1.00390625f), 0x3f80); /* ties to even */
}

TEST_LIST(T(test_shape_check), T(test_npy_roundtrip), T(test_npy_hostile), T(test_half))
