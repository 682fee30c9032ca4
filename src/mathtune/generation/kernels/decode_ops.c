/* The elementwise steps of a Llama-family block for mathtune's hf backend: see decode_ops.py.
 *
 * Each function does what transformers' PyTorch code does, rounding where it rounds, so a
 * result has PyTorch's bits (the sum of squares is added in ATen's order): RMSNorm
 * `weight * (x.float() * rsqrt(mean(x.float()^2) + eps)).to(dtype)` and the rotary embedding
 * `q * cos + rotate_half(q) * sin` (each product and the sum rounded). Built without
 * -ffast-math and with -ffp-contract=off: float32 products and sums are rounded as PyTorch's.
 * Rows are split over the OpenMP threads PyTorch uses when there are enough of them. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "bf16.h"
#include "vec16.h"

static inline float bf16_round(float f) { return bf16_load(bf16_store(f)); }
static inline float f32_load(float x) { return x; }
static inline float f32_store(float f) { return f; }
static inline float f32_round(float f) { return f; }

#define PARALLEL_MIN (1 << 15) /* elements below which one thread does it all */

static inline int64_t ceil_log2(int64_t x) { /* c10's utils::CeilLog2 */
    int64_t p = 0;
    while (x > ((int64_t)1 << p)) p++;
    return p;
}

/* Sum of the squares of one row in the order of ATen's inner-dimension sum
 * (aten/src/ATen/native/cpu/SumKernel.cpp: `vectorized_inner_sum` -> `row_sum` with 4 partial
 * vectors -> `multi_row_sum`'s 4-level cascade, then the scalar tail and the W lanes in order),
 * lane by lane: W is the float lanes of ATen's sum kernel in this process (8 on the x86 builds of
 * torch 2.13 measured, AVX-512 ones included; found at load by `decode_ops._lanes`), so the sum,
 * and with it the normalised row, has PyTorch's bits. */
#define SUM_SQ(NAME, T, LOAD)                                                                      \
static inline __attribute__((always_inline)) float NAME##_w(const T *x, int64_t n, const int W) {  \
    float acc[4][4][16], part[16];                                                                 \
    memset(acc, 0, sizeof acc);                                                                    \
    const int64_t vec_size = n / W, size_ilp = vec_size / 4;                                       \
    int64_t lp = ceil_log2(size_ilp) / 4;                                                          \
    lp = lp > 4 ? lp : 4;                                                                          \
    const int64_t step = (int64_t)1 << lp, lmask = step - 1;                                       \
    int64_t i = 0;                                                                                 \
    for (; i + step <= size_ilp;) {                                                                \
        for (int64_t j = 0; j < step; ++j, ++i)                                                    \
            for (int k = 0; k < 4; k++)                                                            \
                for (int l = 0; l < W; l++) {                                                      \
                    const float v = LOAD(x[(i * 4 + k) * W + l]);                                  \
                    acc[0][k][l] += v * v;                                                         \
                }                                                                                  \
        for (int j = 1; j < 4; ++j) {                                                              \
            for (int k = 0; k < 4; k++)                                                            \
                for (int l = 0; l < W; l++) { acc[j][k][l] += acc[j - 1][k][l]; acc[j - 1][k][l] = 0.f; } \
            if ((i & (lmask << (j * lp))) != 0) break;                                             \
        }                                                                                          \
    }                                                                                              \
    for (; i < size_ilp; ++i)                                                                      \
        for (int k = 0; k < 4; k++)                                                                \
            for (int l = 0; l < W; l++) {                                                          \
                const float v = LOAD(x[(i * 4 + k) * W + l]);                                      \
                acc[0][k][l] += v * v;                                                             \
            }                                                                                      \
    for (int j = 1; j < 4; ++j)                                                                    \
        for (int k = 0; k < 4; k++)                                                                \
            for (int l = 0; l < W; l++) acc[0][k][l] += acc[j][k][l];                              \
    for (int l = 0; l < W; l++) part[l] = acc[0][0][l];                                            \
    for (int64_t v = size_ilp * 4; v < vec_size; v++)                                              \
        for (int l = 0; l < W; l++) { const float e = LOAD(x[v * W + l]); part[l] += e * e; }      \
    for (int k = 1; k < 4; k++)                                                                    \
        for (int l = 0; l < W; l++) part[l] += acc[0][k][l];                                       \
    float total = 0.f;                                                                             \
    for (int64_t e = vec_size * W; e < n; e++) { const float v = LOAD(x[e]); total += v * v; }     \
    for (int l = 0; l < W; l++) total += part[l];                                                  \
    return total;                                                                                  \
}                                                                                                  \
/* W as a constant where it is one of the two lane counts seen: the loops over W become vector    \
 * operations instead of scalar ones: RMSNorm of [64, 576] bf16 41 -> 21 us (AMX Xeon, 2 threads) */ \
static float NAME(const T *x, int64_t n, int W) {                                                  \
    if (W == 8) return NAME##_w(x, n, 8);                                                          \
    if (W == 16) return NAME##_w(x, n, 16);                                                        \
    return NAME##_w(x, n, W);                                                                      \
}

/* out[r, :] (contiguous) = RMSNorm of x[r, :] (row stride xs), weight w of the same dtype. */
#define RMSNORM(NAME, T, LOAD, STORE, ROUND, SUM)                                                  \
void NAME(const T *x, int64_t rows, int64_t n, int64_t xs, const T *w, float eps, int W, T *out) { \
    _Pragma("omp parallel for schedule(static) if (rows * n >= PARALLEL_MIN)")                     \
    for (int64_t r = 0; r < rows; r++) {                                                           \
        const T *xr = x + r * xs;                                                                  \
        const float inv = 1.f / sqrtf(SUM(xr, n, W) / (float)n + eps);                             \
        T *o = out + r * n;                                                                        \
        for (int64_t j = 0; j < n; j++) o[j] = STORE(LOAD(w[j]) * ROUND(LOAD(xr[j]) * inv));      \
    }                                                                                              \
}

/* Rotary embedding of x [B, H, T, D] (element strides xs0..xs2, unit stride along D) with cos
 * and sin [B, T, D] (strides cs0, cs1; unit along D, the same for sin), into out [B, T, H, D]
 * contiguous (PyTorch's layout for the product of the transposed projection). */
#define ROPE(NAME, T, LOAD, STORE, ROUND)                                                          \
void NAME(const T *x, int64_t B, int64_t H, int64_t Tn, int64_t D, int64_t xs0, int64_t xs1,       \
          int64_t xs2, const T *c, const T *s, int64_t cs0, int64_t cs1, T *out) {                 \
    const int64_t half = D / 2;                                                                    \
    _Pragma("omp parallel for collapse(2) schedule(static) if (B * H * Tn * D >= PARALLEL_MIN)")   \
    for (int64_t b = 0; b < B; b++)                                                                \
        for (int64_t t = 0; t < Tn; t++) {                                                         \
            const T *cr = c + b * cs0 + t * cs1, *sr = s + b * cs0 + t * cs1;                      \
            for (int64_t h = 0; h < H; h++) {                                                      \
                const T *xr = x + b * xs0 + h * xs1 + t * xs2;                                     \
                T *o = out + ((b * Tn + t) * H + h) * D;                                           \
                for (int64_t j = 0; j < half; j++)                                                 \
                    o[j] = STORE(ROUND(LOAD(xr[j]) * LOAD(cr[j])) + ROUND(-LOAD(xr[j + half]) * LOAD(sr[j]))); \
                for (int64_t j = half; j < D; j++)                                                 \
                    o[j] = STORE(ROUND(LOAD(xr[j]) * LOAD(cr[j])) + ROUND(LOAD(xr[j - half]) * LOAD(sr[j]))); \
            }                                                                                      \
        }                                                                                          \
}

SUM_SQ(sum_sq_bf16, uint16_t, bf16_load)
SUM_SQ(sum_sq_f32, float, f32_load)
RMSNORM(rmsnorm_bf16, uint16_t, bf16_load, bf16_store, bf16_round, sum_sq_bf16)
RMSNORM(rmsnorm_f32, float, f32_load, f32_store, f32_round, sum_sq_f32)
ROPE(rope_bf16, uint16_t, bf16_load, bf16_store, bf16_round)
ROPE(rope_f32, float, f32_load, f32_store, f32_round)

/* The index of each row's largest value, the first one where several are equal, as
 * `x.max(dim=-1).indices` gives it (greedy decoding's pick over the vocabulary: 49,152 values a
 * row for SmolLM2). One pass, 16 lanes at a time: each lane keeps its largest value and the first
 * block where it reached it (a strictly larger value replaces it), so among the lanes holding the
 * row's maximum the smallest block * 16 + lane is its first position; the tail after the last
 * full block is scanned after them. A row holding a NaN (PyTorch returns the NaN's index) gives
 * -1: the caller then uses PyTorch for the whole call. */
#define ARGMAX(NAME, T, VLOAD, LOAD)                                                               \
void NAME(const T *x, int64_t rows, int64_t n, int64_t xs, int64_t *out) {                         \
    _Pragma("omp parallel for schedule(static) if (rows * n >= PARALLEL_MIN)")                     \
    for (int64_t r = 0; r < rows; r++) {                                                           \
        const T *row = x + r * xs;                                                                 \
        const int64_t blocks = n / 16;                                                             \
        vf best = (vf){0} - __builtin_inff();                                                  \
        vi at = {0}, nan = {0};                                                                  \
        for (int64_t b = 0; b < blocks; b++) {                                                     \
            const vf v = VLOAD(row + 16 * b);                                                    \
            const vi gt = v > best;                                                              \
            nan |= v != v;                                                                         \
            best = (vf)(((vi)v & gt) | ((vi)best & ~gt));                                    \
            at = (((vi){0} + (int32_t)b) & gt) | (at & ~gt);                                     \
        }                                                                                          \
        float mx = -__builtin_inff();                                                              \
        int64_t pos = -1, isnan = 0;                                                               \
        for (int l = 0; l < 16; l++) isnan |= nan[l];                                              \
        if (blocks) {                                                                              \
            for (int l = 0; l < 16; l++) mx = best[l] > mx ? best[l] : mx;                         \
            for (int l = 0; l < 16; l++) {                                                         \
                const int64_t p = 16 * (int64_t)at[l] + l;                                         \
                if (best[l] == mx && (pos < 0 || p < pos)) pos = p;                                \
            }                                                                                      \
        }                                                                                          \
        for (int64_t j = 16 * blocks; j < n; j++) {                                                \
            const float v = LOAD(row[j]);                                                          \
            if (v != v) isnan = 1;                                                                 \
            if (pos < 0 || v > mx) mx = v, pos = j;                                                \
        }                                                                                          \
        out[r] = isnan ? -1 : pos;                                                                 \
    }                                                                                              \
}
ARGMAX(argmax_bf16, uint16_t, vload_bf16, bf16_load)
ARGMAX(argmax_f32, float, vload_f32, f32_load)

/* RMSNorm's backward for training (`train/elementwise.py`): for each row of x [rows, n] (row
 * stride xs) and its output's gradient g (row stride gs), with r = 1 / sqrt(mean(x^2) + eps),
 * nr = x r and g' = g w: dx = r (g' - nr mean(g' nr)) (contiguous, x's dtype) where dx is given,
 * and dw += g round(nr) (nr rounded to x's dtype, as the forward's product with the weight takes
 * it) into the float32 dw_part [nt, n] where it is given, one row of partial sums for each of
 * the nt threads (the caller adds them). Everything in float32, 16 lanes at a time; not PyTorch's summation
 * order (the backward has no bits to match: autograd's own differs by the same few ulps). */
static inline vf round16_bf16(vf v) {
    vu u = (vu)v;
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000u; /* to nearest even, as bf16_store (no NaN here) */
    return (vf)u;
}
static inline vf round16_f32(vf v) { return v; }
static inline void store16_bf16(uint16_t *p, vf v) { /* bf16_store lane by lane, NaN to 0x7FC0 included */
#if defined(__AVX512BF16__) && defined(__AVX512VL__)
    /* one VCVTNEPS2BF16 (the same rounding; a NaN stays a NaN with its own payload) */
    _mm256_storeu_si256((__m256i *)p, (__m256i)_mm512_cvtneps_pbh((__m512)v));
#else
    const vi nan = v != v;
    const vu u = ((vu)round16_bf16(v) & ~(vu)nan) | (0x7FC00000u & (vu)nan);
    const vh h = __builtin_convertvector(u >> 16, vh);
    memcpy(p, &h, sizeof h);
#endif
}
static inline void store16_f32(float *p, vf v) { memcpy(p, &v, sizeof v); }

#define RMSNORM_BWD(NAME, T, VLOAD, VROUND, VSTORE, LOAD, STORE, ROUND)                                  \
void NAME(const T *x, int64_t rows, int64_t n, int64_t xs, const T *g, int64_t gs, const T *w,     \
          float eps, T *dx, float *dw_part, int nt) {                                              \
    const int64_t nv = n / 16 * 16;                                                                \
    if (dw_part) memset(dw_part, 0, sizeof(float) * (size_t)(nt * n)); /* (one thread: rows 1.. stay 0) */ \
    _Pragma("omp parallel num_threads(nt) if (rows * n >= PARALLEL_MIN)")                          \
    {                                                                                              \
        float *dwp = dw_part ? dw_part + (int64_t)omp_get_thread_num() * n : 0;                    \
        _Pragma("omp for schedule(static)")                                                        \
        for (int64_t r = 0; r < rows; r++) {                                                       \
            const T *xr = x + r * xs, *gr = g + r * gs;                                            \
            vf ss = {0}, dot = {0};                                                              \
            float sst = 0.f, dott = 0.f;                                                           \
            for (int64_t j = 0; j < nv; j += 16) {                                                 \
                const vf xv = VLOAD(xr + j);                                                     \
                ss += xv * xv;                                                                     \
                dot += VLOAD(gr + j) * VLOAD(w + j) * xv;                                          \
            }                                                                                      \
            for (int64_t j = nv; j < n; j++) {                                                     \
                const float xv = LOAD(xr[j]);                                                      \
                sst += xv * xv;                                                                    \
                dott += LOAD(gr[j]) * LOAD(w[j]) * xv;                                             \
            }                                                                                      \
            const float inv = 1.f / sqrtf((vsum(ss) + sst) / (float)n + eps);                    \
            /* mean(g' nr) = r mean(g' x) */                                                       \
            const float c = (vsum(dot) + dott) * inv / (float)n;                                 \
            T *dr = dx ? dx + r * n : 0;                                                           \
            for (int64_t j = 0; j < nv; j += 16) {                                                 \
                const vf xv = VLOAD(xr + j), gv = VLOAD(gr + j);                                 \
                const vf nr = xv * inv;                                                          \
                if (dr) {                                                                          \
                    const vf d = (gv * VLOAD(w + j) - nr * c) * inv;                             \
                    VSTORE(dr + j, d);                                                             \
                }                                                                                  \
                if (dwp) {                                                                         \
                    vf acc;                                                                      \
                    memcpy(&acc, dwp + j, sizeof acc);                                             \
                    acc += gv * VROUND(nr);                                                        \
                    memcpy(dwp + j, &acc, sizeof acc);                                             \
                }                                                                                  \
            }                                                                                      \
            for (int64_t j = nv; j < n; j++) {                                                     \
                const float xv = LOAD(xr[j]), gv = LOAD(gr[j]), nr = xv * inv;                     \
                if (dr) dr[j] = STORE((gv * LOAD(w[j]) - nr * c) * inv);                           \
                if (dwp) dwp[j] += gv * ROUND(nr);                                                 \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
}
RMSNORM_BWD(rmsnorm_backward_bf16, uint16_t, vload_bf16, round16_bf16, store16_bf16, bf16_load, bf16_store, bf16_round)
RMSNORM_BWD(rmsnorm_backward_f32, float, vload_f32, round16_f32, store16_f32, f32_load, f32_store, f32_round)

/* SwiGLU of a training step's MLP (`train/elementwise.py`): h = silu(g) u and its backward, for
 * g and u [rows, n] (row strides gs, us; unit along n), h, dg and du contiguous, x's dtype.
 * silu(g) = g s, s = 1 / (1 + e^-g) (from e^-|g| for either sign: no overflow); the forward
 * rounds silu(g) to the dtype before the product, as PyTorch's two ops do. Backward from dh:
 * du = dh silu(g), dg = dh u s (1 + g (1 - s)), in float32 (not PyTorch's bits: its exp is
 * another polynomial). One pass instead of PyTorch's silu and product (forward) and two products
 * and silu's backward (backward), and nothing kept but g and u. */
#ifdef __AVX512F__
/* With AVX-512: 2^f by a degree-5 polynomial on explicit FMAs (this file is built without FMA
 * contraction), the exponent by VSCALEFPS, the reciprocal by VRCP14PS and one Newton step
 * (relative error ~1e-7 against the division's 0.5 ulp): 2.2x fewer instructions a vector than the
 * generic path below, which made the op slower than PyTorch's silu and product. */
static inline vf sigmoid16(vf xv) {
    const __m512 x = (__m512)xv, one = _mm512_set1_ps(1.f);
    const __m512 a = _mm512_abs_ps(x);
    const __m512 t = _mm512_max_ps(_mm512_mul_ps(a, _mm512_set1_ps(-1.44269504089f)), _mm512_set1_ps(-126.f));
    const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(t, n); /* [-0.5, 0.5] */
    __m512 p = _mm512_set1_ps(1.3333558e-3f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504109e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022651e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718e-1f));
    p = _mm512_fmadd_ps(p, f, one);
    const __m512 e = _mm512_scalef_ps(p, n); /* e^-|x| */
    const __m512 d = _mm512_add_ps(one, e);
    __m512 r = _mm512_rcp14_ps(d);
    r = _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.f))); /* Newton: r (2 - d r) */
    const __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    return (vf)_mm512_mask_mul_ps(r, neg, r, e); /* 1 / (1 + e^-x), or e^x / (1 + e^x) below 0 */
}
#else
static inline vf sigmoid16(vf x) {
    const vi neg = x < 0.f;
    const vf e = vexp_neg(vsel(neg, x, -x)); /* e^-|x| */
    const vf one = vset(1.f);
    return vsel(neg, e, one) / (one + e);
}
#endif
static inline float sigmoid1(float x) {
    const float e = expf(x < 0.f ? x : -x);
    return (x < 0.f ? e : 1.f) / (1.f + e);
}

#define SWIGLU(FWD, BWD, T, VLOAD, VROUND, VSTORE, LOAD, STORE, ROUND)                             \
void FWD(const T *g, int64_t gs, const T *u, int64_t us, int64_t rows, int64_t n, T *h) {        \
    const int64_t nv = n / 16 * 16;                                                                \
    _Pragma("omp parallel for schedule(static) if (rows * n >= PARALLEL_MIN)")                     \
    for (int64_t r = 0; r < rows; r++) {                                                           \
        const T *gr = g + r * gs, *ur = u + r * us;                                                \
        T *hr = h + r * n;                                                                         \
        for (int64_t j = 0; j < nv; j += 16) {                                                     \
            const vf gv = VLOAD(gr + j);                                                           \
            VSTORE(hr + j, VROUND(gv * sigmoid16(gv)) * VLOAD(ur + j));                            \
        }                                                                                          \
        for (int64_t j = nv; j < n; j++) {                                                         \
            const float gv = LOAD(gr[j]);                                                          \
            hr[j] = STORE(ROUND(gv * sigmoid1(gv)) * LOAD(ur[j]));                                 \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
void BWD(const T *dh, int64_t hs, const T *g, int64_t gs, const T *u, int64_t us,                \
                     int64_t rows, int64_t n, T *dg, T *du) {                                      \
    const int64_t nv = n / 16 * 16;                                                                \
    _Pragma("omp parallel for schedule(static) if (rows * n >= PARALLEL_MIN)")                     \
    for (int64_t r = 0; r < rows; r++) {                                                           \
        const T *dr = dh + r * hs, *gr = g + r * gs, *ur = u + r * us;                             \
        T *dgr = dg + r * n, *dur = du + r * n;                                                    \
        for (int64_t j = 0; j < nv; j += 16) {                                                     \
            const vf gv = VLOAD(gr + j), dv = VLOAD(dr + j), s = sigmoid16(gv);                    \
            VSTORE(dur + j, dv * VROUND(gv * s));                                                  \
            VSTORE(dgr + j, dv * VLOAD(ur + j) * s * (1.f + gv * (1.f - s)));                      \
        }                                                                                          \
        for (int64_t j = nv; j < n; j++) {                                                         \
            const float gv = LOAD(gr[j]), dv = LOAD(dr[j]), s = sigmoid1(gv);                      \
            dur[j] = STORE(dv * ROUND(gv * s));                                                    \
            dgr[j] = STORE(dv * LOAD(ur[j]) * s * (1.f + gv * (1.f - s)));                         \
        }                                                                                          \
    }                                                                                              \
}
SWIGLU(swiglu_forward_bf16, swiglu_backward_bf16, uint16_t, vload_bf16, round16_bf16, store16_bf16, bf16_load, bf16_store, bf16_round)
SWIGLU(swiglu_forward_f32, swiglu_backward_f32, float, vload_f32, round16_f32, store16_f32, f32_load, f32_store, f32_round)
