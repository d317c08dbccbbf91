/*
 * test_tensor.c - shapes, owned tensors, .npy files, half-precision and small-float
 * conversions.
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

/* The small float formats under test: dtype, largest finite value, smallest subnormal. */
static const struct {
    dab_dtype_t dt;
    float max, tiny;
} g_small[] = {
    {DAB_DT_FLOAT8E4M3FN, 448.0f, 0x1p-9f},    {DAB_DT_FLOAT8E4M3FNUZ, 240.0f, 0x1p-10f},
    {DAB_DT_FLOAT8E5M2, 57344.0f, 0x1p-16f},   {DAB_DT_FLOAT8E5M2FNUZ, 57344.0f, 0x1p-17f},
    {DAB_DT_FLOAT4E2M1, 6.0f, 0.5f},
};

static int small_codes(dab_dtype_t dt)
{
    return dt == DAB_DT_FLOAT4E2M1 ? 16 : 256;
}

/*
 * The conversion by brute force, independent of tensor.c's bit arithmetic: the nearest
 * finite value of the format, ties to the even code; past the largest value by half a
 * step or more (the next step's value counting as an odd or even code like any other),
 * saturation or the format's overflow code.
 */
static uint8_t small_ref(dab_dtype_t dt, float x, bool sat)
{
    const int nc = small_codes(dt);
    const uint8_t sign_bit = nc == 16 ? 0x08 : 0x80;
    const bool uz = dt == DAB_DT_FLOAT8E4M3FNUZ || dt == DAB_DT_FLOAT8E5M2FNUZ;
    if (isnan(x))
        return dab_f32_to_small_float(dt, x, sat); /* NaN codes are checked by name below */
    double ax = fabs((double)x);
    int best = -1, top = 0;
    double bestd = 0, topv = 0;
    for (int c = 0; c < nc / 2; c++) {
        float v = dab_small_float_to_f32(dt, (uint8_t)c);
        if (!isfinite(v))
            continue;
        if (v > topv)
            topv = v, top = c;
        double d = fabs((double)v - ax);
        if (best < 0 || d < bestd || (d == bestd && !(c & 1)))
            best = c, bestd = d;
    }
    /* the value one step past the top, as an odd/even code top + 1 */
    double step = topv - dab_small_float_to_f32(dt, (uint8_t)(top - 1));
    double dnext = fabs(topv + step - ax);
    bool over = isinf(x) || dnext < bestd || (dnext == bestd && !((top + 1) & 1));
    uint8_t sign = signbit(x) ? sign_bit : 0;
    if (over) {
        if (sat || dt == DAB_DT_FLOAT4E2M1)
            return (uint8_t)(sign | top);
        if (dt == DAB_DT_FLOAT8E5M2)
            return (uint8_t)(sign | 0x7c);
        return uz ? 0x80 : (uint8_t)(sign | 0x7f);
    }
    if (best == 0 && uz)
        return 0;
    return (uint8_t)(sign | best);
}

TEST(test_small_floats)
{
    /* known values */
    CHECK(dab_small_float_to_f32(DAB_DT_FLOAT8E4M3FN, 0x7e) == 448.0f);
    CHECK(isnan(dab_small_float_to_f32(DAB_DT_FLOAT8E4M3FN, 0xff)));
    CHECK(dab_small_float_to_f32(DAB_DT_FLOAT8E4M3FN, 0x38) == 1.0f);
    CHECK(dab_small_float_to_f32(DAB_DT_FLOAT8E4M3FNUZ, 0x40) == 1.0f);
    CHECK(isnan(dab_small_float_to_f32(DAB_DT_FLOAT8E4M3FNUZ, 0x80)));
    CHECK(dab_small_float_to_f32(DAB_DT_FLOAT8E5M2, 0x3c) == 1.0f);
    CHECK(isinf(dab_small_float_to_f32(DAB_DT_FLOAT8E5M2, 0xfc)));
    CHECK(isnan(dab_small_float_to_f32(DAB_DT_FLOAT8E5M2, 0x7d)));
    CHECK(dab_small_float_to_f32(DAB_DT_FLOAT8E5M2FNUZ, 0x40) == 1.0f);
    const float e2m1[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
    for (int c = 0; c < 8; c++) {
        CHECK(dab_small_float_to_f32(DAB_DT_FLOAT4E2M1, (uint8_t)c) == e2m1[c]);
        CHECK(dab_small_float_to_f32(DAB_DT_FLOAT4E2M1, (uint8_t)(c | 8)) == -e2m1[c]);
    }
    for (size_t f = 0; f < sizeof g_small / sizeof g_small[0]; f++) {
        dab_dtype_t dt = g_small[f].dt;
        CHECK(dab_small_float_to_f32(dt, 1) == g_small[f].tiny);
        CHECK(dab_dtype_is_float(dt));
        CHECK_EQ_INT(dab_dtype_size(dt), 1);
        /* every finite code survives a round trip */
        int bad = 0;
        for (int c = 0; c < small_codes(dt); c++) {
            float v = dab_small_float_to_f32(dt, (uint8_t)c);
            if (isfinite(v) && dab_f32_to_small_float(dt, v, false) != c &&
                !(v == 0 && c != 0)) /* -0 of the FNUZ formats does not exist */
                bad++;
        }
        CHECK_EQ_INT(bad, 0);
        /* against the brute force: random values over the format's range and beyond */
        uint64_t seed = 0x9e3779b97f4a7c15ull + f;
        int mism = 0;
        for (int i = 0; i < 100000; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            double u = (double)(seed >> 11) / (double)(1ull << 53);
            float x = (float)(g_small[f].max * 1.2 * pow(2.0, -40.0 * u));
            if (seed & 1)
                x = -x;
            if (i % 7 == 0) /* exact midpoints between neighbours */
                x = (dab_small_float_to_f32(dt, (uint8_t)(i % (small_codes(dt) / 2 - 1))) +
                     dab_small_float_to_f32(dt, (uint8_t)(i % (small_codes(dt) / 2 - 1) + 1))) /
                    2;
            for (int sat = 0; sat < 2; sat++)
                if (dab_f32_to_small_float(dt, x, sat) != small_ref(dt, x, sat) && mism++ < 5)
                    fprintf(stderr, "  %s %.9g sat %d: %#x, want %#x\n", dab_dtype_name(dt), x,
                            sat, dab_f32_to_small_float(dt, x, sat), small_ref(dt, x, sat));
        }
        CHECK_EQ_INT(mism, 0);
        CHECK_EQ_INT(dab_f32_to_small_float(dt, INFINITY, true), small_ref(dt, INFINITY, true));
        CHECK_EQ_INT(dab_f32_to_small_float(dt, -INFINITY, false),
                     small_ref(dt, -INFINITY, false));
    }
    /* NaN, and the saturation table of ONNX's Cast */
    CHECK_EQ_INT(dab_f32_to_small_float(DAB_DT_FLOAT8E4M3FN, NAN, true), 0x7f);
    CHECK_EQ_INT(dab_f32_to_small_float(DAB_DT_FLOAT8E4M3FNUZ, NAN, true), 0x80);
    CHECK_EQ_INT(dab_f32_to_small_float(DAB_DT_FLOAT8E5M2, NAN, true), 0x7e);
    CHECK_EQ_INT(dab_f32_to_small_float(DAB_DT_FLOAT8E5M2FNUZ, NAN, false), 0x80);
    CHECK_EQ_INT(dab_f32_to_small_float(DAB_DT_FLOAT4E2M1, NAN, true), 0x08);
    CHECK_EQ_INT(dab_f32_to_small_float(DAB_DT_FLOAT8E4M3FN, 1e6f, false), 0x7f);
    CHECK_EQ_INT(dab_f32_to_small_float(DAB_DT_FLOAT8E4M3FN, -1e6f, true), 0xfe);
    CHECK_EQ_INT(dab_f32_to_small_float(DAB_DT_FLOAT8E4M3FN, 464.0f, false), 0x7e);
    CHECK_EQ_INT(dab_f32_to_small_float(DAB_DT_FLOAT8E5M2, 1e6f, false), 0x7c);
    CHECK_EQ_INT(dab_f32_to_small_float(DAB_DT_FLOAT8E5M2, -INFINITY, true), 0xfb);
    CHECK_EQ_INT(dab_f32_to_small_float(DAB_DT_FLOAT8E4M3FN, -1e-7f, true), 0x80);
    CHECK_EQ_INT(dab_f32_to_small_float(DAB_DT_FLOAT8E4M3FNUZ, -1e-7f, true), 0x00);
    CHECK_EQ_INT(dab_f32_to_small_float(DAB_DT_FLOAT4E2M1, -8.0f, false), 0x0f);
}

TEST(test_e8m0)
{
    CHECK(dab_small_float_to_f32(DAB_DT_FLOAT8E8M0, 127) == 1.0f);
    CHECK(dab_small_float_to_f32(DAB_DT_FLOAT8E8M0, 0) == 0x1p-127f);
    CHECK(dab_small_float_to_f32(DAB_DT_FLOAT8E8M0, 254) == 0x1p127f);
    CHECK(isnan(dab_small_float_to_f32(DAB_DT_FLOAT8E8M0, 255)));
    CHECK_EQ_INT(dab_f32_to_e8m0(1.0f, DAB_ROUND_UP, true), 127);
    CHECK_EQ_INT(dab_f32_to_e8m0(1.1f, DAB_ROUND_UP, true), 128);
    CHECK_EQ_INT(dab_f32_to_e8m0(1.1f, DAB_ROUND_DOWN, true), 127);
    CHECK_EQ_INT(dab_f32_to_e8m0(1.4f, DAB_ROUND_NEAREST, true), 127);
    CHECK_EQ_INT(dab_f32_to_e8m0(1.5f, DAB_ROUND_NEAREST, true), 128);
    CHECK_EQ_INT(dab_f32_to_e8m0(-4.0f, DAB_ROUND_UP, true), 129);
    CHECK_EQ_INT(dab_f32_to_e8m0(0.0f, DAB_ROUND_UP, true), 0);
    CHECK_EQ_INT(dab_f32_to_e8m0(NAN, DAB_ROUND_UP, true), 255);
    CHECK_EQ_INT(dab_f32_to_e8m0(INFINITY, DAB_ROUND_UP, true), 254);
    CHECK_EQ_INT(dab_f32_to_e8m0(INFINITY, DAB_ROUND_UP, false), 255);
    CHECK_EQ_INT(dab_f32_to_e8m0(3e38f, DAB_ROUND_UP, true), 254);
    CHECK_EQ_INT(dab_f32_to_e8m0(3e38f, DAB_ROUND_UP, false), 255);
    CHECK_EQ_INT(dab_f32_to_e8m0(0x1.8p-127f, DAB_ROUND_UP, true), 1);
}

TEST(test_low_precision_tensors)
{
    /* one byte per element; values read back as numbers; no .npy form */
    dab_err_t e = {0};
    dab_tensor_t t = {0};
    int64_t dims[] = {3};
    CHECK_EQ_INT(dab_tensor_alloc(&t, DAB_DT_INT4, 1, dims, &e), 0);
    CHECK_EQ_INT(dab_tensor_bytes(&t), 3);
    ((int8_t *)t.data)[1] = -8;
    CHECK_EQ_INT(dab_tensor_get_i64(&t, 1), -8);
    CHECK(dab_tensor_get_f64(&t, 1) == -8.0);
    char path[] = "/tmp/dabba_npy_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK(dab_npy_write(path, &t, &e) != 0);
    unlink(path);
    t.dtype = DAB_DT_FLOAT8E5M2;
    ((uint8_t *)t.data)[2] = 0xc0; /* -2 */
    CHECK(dab_tensor_get_f64(&t, 2) == -2.0);
    CHECK_EQ_INT(dab_tensor_get_i64(&t, 2), -2);
    dab_tensor_free(&t);
    CHECK(!strcmp(dab_dtype_name(DAB_DT_FLOAT8E4M3FN), "float8e4m3fn"));
    CHECK(!strcmp(dab_dtype_name(DAB_DT_INT2), "int2"));
    CHECK(dab_dtype_valid(DAB_DT_UINT2) && !dab_dtype_valid(27));
    CHECK_EQ_INT(dab_dtype_packed_bits(DAB_DT_UINT4), 4);
    CHECK_EQ_INT(dab_dtype_packed_bits(DAB_DT_INT2), 2);
    CHECK_EQ_INT(dab_dtype_packed_bits(DAB_DT_FLOAT8E8M0), 8);
    CHECK(!dab_dtype_is_float(DAB_DT_INT4) && dab_dtype_is_float(DAB_DT_FLOAT16));
}

TEST_LIST(T(test_shape_check), T(test_npy_roundtrip), T(test_npy_hostile), T(test_half),
          T(test_small_floats), T(test_e8m0), T(test_low_precision_tensors))
