/* Decode attention (one query token per row) for mathtune's hf backend: see decode_kernel.py.
 *
 * out[b, 0, h, :] = softmax_j(scale * q[b, h, 0, :] . k[b, h / G, j, :]) v[b, h / G, j, :]
 * over the columns j where mask[b, j] is set (all columns when mask is NULL); G = H / Hk query
 * heads share each key/value head. K and V are read once per (row, key/value head) for all G
 * queries, masked columns are never read, everything accumulates in float32, and the output is
 * rounded once. Tasks (row, key/value head) are split over the OpenMP threads of the runtime
 * PyTorch already loaded (libgomp), so the thread count is torch's. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static inline float bf16_load(uint16_t x) {
    union { uint32_t u; float f; } v;
    v.u = (uint32_t)x << 16;
    return v.f;
}

static inline uint16_t bf16_store(float f) { /* round to nearest even, as PyTorch's conversion */
    union { uint32_t u; float f; } v;
    v.f = f;
    if (f != f) return 0x7FC0;
    return (uint16_t)((v.u + 0x7FFF + ((v.u >> 16) & 1)) >> 16);
}

/* Masked scores: finite (the kernel is built with -ffast-math, which assumes no infinities);
 * expf of it minus any real score is 0. */
#define MASKED (-1e30f)

static inline float f32_load(float x) { return x; }
static inline float f32_store(float f) { return f; }

#define DECODE_ATTENTION(NAME, T, LOAD, STORE)                                                       \
int NAME(const T *q, const T *k, const T *v, const uint8_t *mask, T *out,                            \
         int64_t B, int64_t H, int64_t Hk, int64_t L, int64_t D,                                     \
         int64_t qsB, int64_t qsH, int64_t ksB, int64_t ksH, int64_t ksL,                            \
         int64_t vsB, int64_t vsH, int64_t vsL, int64_t msB, int64_t osB, int64_t osH, float scale) {  \
    const int64_t G = H / Hk;                                                                        \
    int failed = 0;                                                                                  \
    _Pragma("omp parallel")                                                                          \
    {                                                                                                \
        float *s = malloc(sizeof(float) * (size_t)(G * (L > 0 ? L : 1)));                            \
        float *qf = malloc(sizeof(float) * (size_t)(G * D));                                         \
        float *acc = malloc(sizeof(float) * (size_t)(G * D));                                        \
        float *inv = malloc(sizeof(float) * (size_t)G);                                              \
        if (!s || !qf || !acc || !inv) {                                                                     \
            _Pragma("omp atomic write")                                                              \
            failed = 1;                                                                              \
        }                                                                                            \
        _Pragma("omp for schedule(static)")                                                          \
        for (int64_t t = 0; t < B * Hk; t++) {                                                       \
            if (!s || !qf || !acc || !inv) continue;                                                         \
            const int64_t b = t / Hk, h = t % Hk;                                                    \
            const T *kb = k + b * ksB + h * ksH, *vb = v + b * vsB + h * vsH;                        \
            const uint8_t *m = mask ? mask + b * msB : 0;                                            \
            for (int64_t g = 0; g < G; g++)                                                          \
                for (int64_t i = 0; i < D; i++)                                                      \
                    qf[g * D + i] = LOAD(q[b * qsB + (h * G + g) * qsH + i]) * scale;                \
            for (int64_t j = 0; j < L; j++) {                                                        \
                if (m && !m[j]) {                                                                    \
                    for (int64_t g = 0; g < G; g++) s[g * L + j] = MASKED;                           \
                    continue;                                                                        \
                }                                                                                    \
                const T *kj = kb + j * ksL;                                                          \
                for (int64_t g = 0; g < G; g++) {                                                    \
                    const float *qg = qf + g * D;                                                    \
                    float d = 0.f;                                                                   \
                    for (int64_t i = 0; i < D; i++) d += qg[i] * LOAD(kj[i]);                        \
                    s[g * L + j] = d;                                                                \
                }                                                                                    \
            }                                                                                        \
            for (int64_t g = 0; g < G; g++) {                                                        \
                float *sg = s + g * L, mx = MASKED, sum = 0.f;                                       \
                for (int64_t j = 0; j < L; j++) mx = sg[j] > mx ? sg[j] : mx;                        \
                for (int64_t j = 0; j < L; j++) {                                                    \
                    sg[j] = expf(sg[j] - mx); /* vectorized (libmvec); 0 for masked columns */       \
                    sum += sg[j];                                                                    \
                }                                                                                    \
                inv[g] = mx > MASKED && sum > 0.f ? 1.f / sum : 0.f;                                 \
                for (int64_t i = 0; i < D; i++) acc[g * D + i] = 0.f;                                \
            }                                                                                        \
            for (int64_t j = 0; j < L; j++) {                                                        \
                if (m && !m[j]) continue;                                                            \
                const T *vj = vb + j * vsL;                                                          \
                for (int64_t g = 0; g < G; g++) {                                                    \
                    const float p = s[g * L + j];                                                    \
                    float *ag = acc + g * D;                                                         \
                    for (int64_t i = 0; i < D; i++) ag[i] += p * LOAD(vj[i]);                        \
                }                                                                                    \
            }                                                                                        \
            for (int64_t g = 0; g < G; g++)                                                          \
                for (int64_t i = 0; i < D; i++)                                                      \
                    out[b * osB + (h * G + g) * osH + i] = STORE(acc[g * D + i] * inv[g]);           \
        }                                                                                            \
        free(s); free(qf); free(acc); free(inv);                                                              \
    }                                                                                                \
    return failed;                                                                                   \
}

DECODE_ATTENTION(decode_attention_bf16, uint16_t, bf16_load, bf16_store)
DECODE_ATTENTION(decode_attention_f32, float, f32_load, f32_store)
