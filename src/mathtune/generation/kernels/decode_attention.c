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
#include <string.h>

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

/* The arguments of every task: one (row, key/value head) of the batch, G query heads of dim D. */
#define TASK_ARGS(T)                                                                                \
    const T *q, int64_t qsH, const T *kb, int64_t ksL, const T *vb, int64_t vsL, const uint8_t *m,  \
        int64_t L, int64_t G, int64_t D, float scale, float *scratch, T *o, int64_t osH

/* Each of the G rows of scores [G, L] to softmax probabilities, left unnormalised: inv[g] is the
 * factor (1 / sum; 0 for a row with no unmasked column). Masked scores (MASKED) give 0. */
static inline void softmax_rows(float *s, int64_t G, int64_t L, float *inv) {
    for (int64_t g = 0; g < G; g++) {
        float *sg = s + g * L, mx = MASKED, sum = 0.f;
        for (int64_t j = 0; j < L; j++) mx = sg[j] > mx ? sg[j] : mx;
        for (int64_t j = 0; j < L; j++) {
            sg[j] = expf(sg[j] - mx); /* vectorized (libmvec) */
            sum += sg[j];
        }
        inv[g] = mx > MASKED && sum > 0.f ? 1.f / sum : 0.f;
    }
}

/* Any head dim and group size, with plain loops; scratch holds the scores [G, L], the scaled
 * queries [G, D], the accumulators [G, D] and the G normalisers. */
#define GENERIC_TASK(T, LOAD, STORE)                                                                \
static void task_##T##_generic(TASK_ARGS(T)) {                                                      \
    float *s = scratch, *qf = s + G * L, *acc = qf + G * D, *inv = acc + G * D;                     \
    for (int64_t g = 0; g < G; g++)                                                                 \
        for (int64_t i = 0; i < D; i++) {                                                           \
            qf[g * D + i] = LOAD(q[g * qsH + i]) * scale;                                           \
            acc[g * D + i] = 0.f;                                                                   \
        }                                                                                           \
    for (int64_t j = 0; j < L; j++) {                                                               \
        if (m && !m[j]) {                                                                           \
            for (int64_t g = 0; g < G; g++) s[g * L + j] = MASKED;                                  \
            continue;                                                                               \
        }                                                                                           \
        const T *kj = kb + j * ksL;                                                                 \
        for (int64_t g = 0; g < G; g++) {                                                           \
            float d = 0.f;                                                                          \
            for (int64_t i = 0; i < D; i++) d += qf[g * D + i] * LOAD(kj[i]);                       \
            s[g * L + j] = d;                                                                       \
        }                                                                                           \
    }                                                                                               \
    softmax_rows(s, G, L, inv);                                                                     \
    for (int64_t j = 0; j < L; j++) {                                                               \
        if (m && !m[j]) continue;                                                                   \
        const T *vj = vb + j * vsL;                                                                 \
        for (int64_t g = 0; g < G; g++)                                                             \
            for (int64_t i = 0; i < D; i++) acc[g * D + i] += s[g * L + j] * LOAD(vj[i]);           \
    }                                                                                               \
    for (int64_t g = 0; g < G; g++)                                                                 \
        for (int64_t i = 0; i < D; i++) o[g * osH + i] = STORE(acc[g * D + i] * inv[g]);            \
}

GENERIC_TASK(uint16_t, bf16_load, bf16_store)
GENERIC_TASK(float, f32_load, f32_store)

/* Specialised tasks for head dims of 64 and 128 and up to 8 query heads a key/value head: the
 * queries, each key and value row, and the outputs live in 16-lane vector registers (GCC vector
 * extensions, fully unrolled at these constant sizes), so each K and V row is loaded and
 * converted once for all G queries and the accumulators never go through memory. */
typedef float vf __attribute__((vector_size(64)));
typedef uint16_t vh __attribute__((vector_size(32)));
typedef uint32_t vu __attribute__((vector_size(64)));

static inline vf vload_bf16(const uint16_t *p) {
    vh h;
    memcpy(&h, p, sizeof h);
    vu u = __builtin_convertvector(h, vu) << 16;
    vf f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static inline vf vload_f32(const float *p) {
    vf f;
    memcpy(&f, p, sizeof f);
    return f;
}
static inline float hsum(vf v) {
    float s = 0.f;
    for (int l = 0; l < 16; l++) s += v[l];
    return s;
}

#define TASK(T, VLOAD, STORE, GN, NV)                                                               \
static void task_##T##_##GN##_##NV(TASK_ARGS(T)) {                                                  \
    (void)G; (void)D; /* GN and 16 * NV, as compile-time constants */                               \
    float *s = scratch;                                                                             \
    vf qv[GN][NV], acc[GN][NV];                                                                     \
    float inv[GN];                                                                                  \
    for (int g = 0; g < GN; g++)                                                                    \
        for (int n = 0; n < NV; n++) { qv[g][n] = VLOAD(q + g * qsH + 16 * n) * scale; acc[g][n] = (vf){0}; } \
    for (int64_t j = 0; j < L; j++) {                                                               \
        if (m && !m[j]) {                                                                           \
            for (int g = 0; g < GN; g++) s[g * L + j] = MASKED;                                     \
            continue;                                                                               \
        }                                                                                           \
        vf kv[NV];                                                                                  \
        for (int n = 0; n < NV; n++) kv[n] = VLOAD(kb + j * ksL + 16 * n);                          \
        for (int g = 0; g < GN; g++) {                                                              \
            vf a = qv[g][0] * kv[0];                                                                \
            for (int n = 1; n < NV; n++) a += qv[g][n] * kv[n];                                     \
            s[g * L + j] = hsum(a);                                                                 \
        }                                                                                           \
    }                                                                                               \
    softmax_rows(s, GN, L, inv);                                                                    \
    for (int64_t j = 0; j < L; j++) {                                                               \
        if (m && !m[j]) continue;                                                                   \
        vf vv[NV];                                                                                  \
        for (int n = 0; n < NV; n++) vv[n] = VLOAD(vb + j * vsL + 16 * n);                          \
        for (int g = 0; g < GN; g++) {                                                              \
            const float p = s[g * L + j];                                                           \
            for (int n = 0; n < NV; n++) acc[g][n] += p * vv[n];                                    \
        }                                                                                           \
    }                                                                                               \
    for (int g = 0; g < GN; g++)                                                                    \
        for (int n = 0; n < NV; n++)                                                                \
            for (int l = 0; l < 16; l++) o[g * osH + 16 * n + l] = STORE(acc[g][n][l] * inv[g]);    \
}

#define TASKS(T, VLOAD, STORE, NV)                                                                  \
    TASK(T, VLOAD, STORE, 1, NV) TASK(T, VLOAD, STORE, 2, NV) TASK(T, VLOAD, STORE, 3, NV)          \
    TASK(T, VLOAD, STORE, 4, NV) TASK(T, VLOAD, STORE, 5, NV) TASK(T, VLOAD, STORE, 6, NV)          \
    TASK(T, VLOAD, STORE, 7, NV) TASK(T, VLOAD, STORE, 8, NV)
TASKS(uint16_t, vload_bf16, bf16_store, 4)
TASKS(uint16_t, vload_bf16, bf16_store, 8)
TASKS(float, vload_f32, f32_store, 4)
TASKS(float, vload_f32, f32_store, 8)

#define TABLE(T, NV) {task_##T##_1_##NV, task_##T##_2_##NV, task_##T##_3_##NV, task_##T##_4_##NV,   \
                      task_##T##_5_##NV, task_##T##_6_##NV, task_##T##_7_##NV, task_##T##_8_##NV}

/* The entry point for one dtype: the specialised task where there is one, else the generic one;
 * tasks (row, key/value head) split over the OpenMP threads, each with its own scratch. Returns
 * 1 when a thread could not allocate its scratch (nothing is then computed by that thread). */
#define ENTRY(NAME, T)                                                                              \
int NAME(const T *q, const T *k, const T *v, const uint8_t *mask, T *out,                           \
         int64_t B, int64_t H, int64_t Hk, int64_t L, int64_t D,                                    \
         int64_t qsB, int64_t qsH, int64_t ksB, int64_t ksH, int64_t ksL,                           \
         int64_t vsB, int64_t vsH, int64_t vsL, int64_t msB, int64_t osB, int64_t osH, float scale) { \
    typedef void (*task_fn)(TASK_ARGS(T));                                                          \
    static const task_fn SPECIALISED[2][8] = {TABLE(T, 4), TABLE(T, 8)};                            \
    const int64_t G = H / Hk;                                                                       \
    const task_fn task = (D == 64 || D == 128) && G >= 1 && G <= 8 ? SPECIALISED[D == 128][G - 1]   \
                                                                    : task_##T##_generic;           \
    int failed = 0;                                                                                 \
    _Pragma("omp parallel")                                                                         \
    {                                                                                               \
        float *scratch = malloc(sizeof(float) * (size_t)(G * L + 2 * G * D + G));                   \
        if (!scratch) {                                                                             \
            _Pragma("omp atomic write")                                                             \
            failed = 1;                                                                             \
        }                                                                                           \
        _Pragma("omp for schedule(static)")                                                         \
        for (int64_t t = 0; t < B * Hk; t++) {                                                      \
            if (!scratch) continue;                                                                 \
            const int64_t b = t / Hk, h = t % Hk;                                                   \
            task(q + b * qsB + h * G * qsH, qsH, k + b * ksB + h * ksH, ksL, v + b * vsB + h * vsH, \
                 vsL, mask ? mask + b * msB : 0, L, G, D, scale, scratch, out + b * osB + h * G * osH, \
                 osH);                                                                              \
        }                                                                                           \
        free(scratch);                                                                              \
    }                                                                                               \
    return failed;                                                                                  \
}

ENTRY(decode_attention_bf16, uint16_t)
ENTRY(decode_attention_f32, float)
