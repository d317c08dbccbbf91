/*
 * act.c - the activations the graph optimizer fuses into convolutions and products,
 * applied in place on the reference paths (oneDNN applies them as post-ops). Formulas
 * follow the ONNX operators they replace.
 */
#include <math.h>

#include "../kernels.h"

#define DEF_ACT(T, SUF, EXP, TANH, ERF)                                                            \
    static T act_one_##SUF(int kind, T x, T a, T b)                                                \
    {                                                                                              \
        switch (kind) {                                                                            \
        case DAB_ACT_RELU: return x < 0 ? a * x : x;                                               \
        case DAB_ACT_SIGMOID: return x >= 0 ? 1 / (1 + EXP(-x)) : EXP(x) / (1 + EXP(x));          \
        case DAB_ACT_TANH: return TANH(x);                                                         \
        case DAB_ACT_CLIP: return x < a ? a : x > b ? b : x;                                       \
        case DAB_ACT_GELU_ERF: return (T)0.5 * x * (1 + ERF(x * (T)0.70710678118654752440));      \
        case DAB_ACT_GELU_TANH:                                                                    \
            return (T)0.5 * x *                                                                    \
                   (1 + TANH((T)0.79788456080286535588 * (x + (T)0.044715 * x * x * x)));         \
        case DAB_ACT_HARDSWISH: {                                                                  \
            T r = x + 3;                                                                           \
            r = r < 0 ? 0 : r > 6 ? 6 : r;                                                         \
            return x * r / 6;                                                                      \
        }                                                                                          \
        default: return x;                                                                         \
        }                                                                                          \
    }                                                                                              \
    static void act_run_##SUF(const dab_act_t *act, T *y, int64_t n, int nt)                       \
    {                                                                                              \
        const int kind = act->kind;                                                                \
        const T a = (T)act->alpha, b = (T)act->beta;                                               \
        if (nt <= 1) { /* an OpenMP region costs microseconds even when its if-clause is false */ \
            for (int64_t i = 0; i < n; i++)                                                        \
                y[i] = act_one_##SUF(kind, y[i], a, b);                                            \
            return;                                                                                \
        }                                                                                          \
        _Pragma("omp parallel for num_threads(nt) schedule(static)")                               \
        for (int64_t i = 0; i < n; i++)                                                            \
            y[i] = act_one_##SUF(kind, y[i], a, b);                                                \
    }
DEF_ACT(float, f32, expf, tanhf, erff)
DEF_ACT(double, f64, exp, tanh, erf)

int dab_act_apply(const dab_act_t *act, dab_dtype_t dt, void *y, int64_t n, int nt)
{
    if (!act || act->kind == DAB_ACT_NONE || n <= 0)
        return 0;
    if (dt == DAB_DT_FLOAT)
        act_run_f32(act, y, n, nt);
    else if (dt == DAB_DT_DOUBLE)
        act_run_f64(act, y, n, nt);
    else
        return DAB_EUNSUPPORTED;
    return 0;
}
