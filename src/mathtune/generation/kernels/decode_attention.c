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

#include "bf16.h"

/* Masked scores: finite (the kernel is built with -ffast-math, which assumes no infinities);
 * expf of it minus any real score is 0. */
#define MASKED (-1e30f)

static inline float f32_load(float x) { return x; }
static inline float f32_store(float f) { return f; }

/* The arguments of every task: one (row, key/value head) of the batch, G query heads of dim D. */
#define TASK_ARGS(T)                                                                                \
    const T *q, int64_t qsH, const T *kb, int64_t ksL, const T *vb, int64_t vsL, const uint8_t *m,  \
        int64_t L, int64_t G, int64_t D, float scale, float *scratch, T *o, int64_t osH

/* exp(x) for x <= 0 (a score minus its row's maximum): n = round(x / ln2), r = x - n ln2 in
 * [-ln2/2, ln2/2] (ln2 split in two for the product), a degree-6 Taylor polynomial of e^r
 * (relative error < 2e-7), times 2^n from the exponent bits; 0 below -87 (masked columns). Plain
 * arithmetic, so the loops below vectorise it on any x86 vector width. Against libmvec's expf on
 * a Sapphire Rapids-class Xeon: the VDPBF16PS path's softmax went from about 30% of a task's time
 * to within the noise; the float32 path's layer 1.18x in cache, 1.08x read from memory. */
static inline float exp_neg(float x) {
    const float xc = x < -87.f ? -87.f : x;
    const float n = __builtin_rintf(xc * 1.44269504089f);
    const float r = __builtin_fmaf(n, -1.428606765330187e-06f, __builtin_fmaf(n, -0.693145751953125f, xc));
    float p = 1.f / 720.f;
    p = __builtin_fmaf(p, r, 1.f / 120.f);
    p = __builtin_fmaf(p, r, 1.f / 24.f);
    p = __builtin_fmaf(p, r, 1.f / 6.f);
    p = __builtin_fmaf(p, r, 0.5f);
    p = __builtin_fmaf(p, r, 1.f);
    p = __builtin_fmaf(p, r, 1.f);
    union { uint32_t u; float f; } scale;
    scale.u = (uint32_t)((int32_t)n + 127) << 23;
    return x < -87.f ? 0.f : p * scale.f;
}

/* Each of the G rows of scores [G, L] to softmax probabilities, left unnormalised: inv[g] is the
 * factor (1 / sum; 0 for a row with no unmasked column). Masked scores (MASKED) give 0. */
static inline void softmax_rows(float *s, int64_t G, int64_t L, float *inv) {
    for (int64_t g = 0; g < G; g++) {
        float *sg = s + g * L, mx = MASKED, sum = 0.f;
        for (int64_t j = 0; j < L; j++) mx = sg[j] > mx ? sg[j] : mx;
        for (int64_t j = 0; j < L; j++) {
            sg[j] = exp_neg(sg[j] - mx);
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
#include "vec16.h" /* vf, vload_bf16, vload_f32 */

static inline float hsum(vf v) { /* lanes in order (not vsum's tree): the sums of the kernel as measured */
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

#if defined(__AVX512BF16__) && defined(__AVX512BW__) && defined(__AVX512VL__)
/* bfloat16 on CPUs with AVX512-BF16 (Zen 4, Sapphire Rapids and later): the products run on
 * VDPBF16PS, which multiplies bf16 pairs and accumulates in float32, with no conversion of K or V.
 * Scores: 16 keys at a time, each key's 16 partial dot products reduced with the other 15 keys'
 * in one shuffle tree (46 instructions for 16 scores instead of 16 horizontal sums). Values: two
 * keys at a time, their rows interleaved into bf16 pairs (the output dims come out in a fixed
 * permutation, undone once at the end) against the pair of their probabilities, rounded to bf16
 * as PyTorch's flash attention rounds them for its second product. Masked keys are loaded as
 * zeros (masked loads do not read them), scored MASKED, and a block or pair with no unmasked key
 * is skipped; blocks and pairs with every key unmasked take plain loads (1.12x a layer read from
 * memory, 30 layers' caches in turn, against masked loads everywhere). Scratch: the scores [G, L] in float32, then the probabilities [G, L + 2] in bf16. */
#include <immintrin.h>

static inline __m512 reduce16(__m512 a[16]) { /* out[k] = sum of a[k]'s 16 lanes */
    __m512 b[8], c[4];
    for (int i = 0; i < 8; i++)
        b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    for (int i = 0; i < 4; i++)
        c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    /* c[i]'s 128-bit quarter l now holds 4 partials of key 4 * i + l */
    __m512 d0 = _mm512_add_ps(_mm512_unpacklo_ps(c[0], c[1]), _mm512_unpackhi_ps(c[0], c[1]));
    __m512 d1 = _mm512_add_ps(_mm512_unpacklo_ps(c[2], c[3]), _mm512_unpackhi_ps(c[2], c[3]));
    __m512 e = _mm512_add_ps(_mm512_shuffle_ps(d0, d1, _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(d0, d1, _MM_SHUFFLE(3, 2, 3, 2)));
    /* slot 4 * l + s of e holds key 4 * s + l */
    const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_permutexvar_ps(idx, e);
}

static inline __mmask16 key_mask16(const uint8_t *m, int64_t j, int64_t L) {
    const int64_t n = L - j < 16 ? L - j : 16;
    const __mmask16 valid = (__mmask16)((1u << n) - 1u);
    if (!m) return valid;
    return _mm_mask_cmpneq_epi8_mask(valid, _mm_maskz_loadu_epi8(valid, m + j), _mm_setzero_si128());
}

/* Row g of the scores [G, L] to probabilities (`softmax_rows`, in place) and, rounded to bf16,
 * into pb (row stride LP, zero from L on). */
static inline void softmax_rows_bf16(float *s, int64_t G, int64_t L, uint16_t *pb, int64_t LP, float *inv) {
    softmax_rows(s, G, L, inv);
    for (int64_t g = 0; g < G; g++) {
        for (int64_t j = 0; j < L; j += 16) {
            const __mmask16 v = key_mask16(0, j, L);
            _mm256_mask_storeu_epi16(pb + g * LP + j, v, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(v, s + g * L + j)));
        }
        for (int64_t j = L; j < LP; j++) pb[g * LP + j] = 0;
    }
}

static inline __attribute__((always_inline)) void task_bf16dp(TASK_ARGS(uint16_t), const int GN, const int NZ) {
    (void)G; (void)D; /* GN and 32 * NZ, as compile-time constants */
    float *s = scratch;
    uint16_t *pb = (uint16_t *)(s + GN * L);
    const int64_t LP = L + 2;
    __m512i qv[GN][NZ];
    for (int g = 0; g < GN; g++)
        for (int z = 0; z < NZ; z++) qv[g][z] = _mm512_loadu_si512(q + g * qsH + 32 * z);
    const __m512 masked = _mm512_set1_ps(MASKED), vscale = _mm512_set1_ps(scale);
    for (int64_t j = 0; j < L; j += 16) {
        const __mmask16 km = key_mask16(m, j, L);
        if (!km) {
            for (int g = 0; g < GN; g++) _mm512_mask_storeu_ps(s + g * L + j, key_mask16(0, j, L), masked);
            continue;
        }
        for (int g = 0; g < GN; g++) {
            __m512 a[16];
            for (int r = 0; r < 16; r++) {
                const __mmask32 rm = (km >> r) & 1 ? ~(__mmask32)0 : 0;
                __m512 acc = _mm512_setzero_ps();
                for (int z = 0; z < NZ; z++)
                    acc = _mm512_dpbf16_ps(acc, (__m512bh)qv[g][z],
                                           (__m512bh)(km == 0xFFFF ? _mm512_loadu_si512(kb + (j + r) * ksL + 32 * z) : _mm512_maskz_loadu_epi16(rm, kb + (j + r) * ksL + 32 * z)));
                a[r] = acc;
            }
            __m512 sc = _mm512_mask_blend_ps(km, masked, _mm512_mul_ps(reduce16(a), vscale));
            _mm512_mask_storeu_ps(s + g * L + j, key_mask16(0, j, L), sc);
        }
    }
    float inv[GN];
    softmax_rows_bf16(s, GN, L, pb, LP, inv);
    __m512 acc[GN][2 * NZ];
    for (int g = 0; g < GN; g++)
        for (int n = 0; n < 2 * NZ; n++) acc[g][n] = _mm512_setzero_ps();
    for (int64_t j = 0; j < L; j += 2) {
        const int u0 = m ? m[j] != 0 : 1, u1 = j + 1 < L && (m ? m[j + 1] != 0 : 1);
        if (!u0 && !u1) continue;
        const __mmask32 r0 = u0 ? ~(__mmask32)0 : 0, r1 = u1 ? ~(__mmask32)0 : 0;
        __m512i lo[NZ], hi[NZ];
        for (int z = 0; z < NZ; z++) {
            const int full = u0 && u1;
            const __m512i a = full ? _mm512_loadu_si512(vb + j * vsL + 32 * z) : _mm512_maskz_loadu_epi16(r0, vb + j * vsL + 32 * z);
            const __m512i b = full ? _mm512_loadu_si512(vb + (j + 1) * vsL + 32 * z) : _mm512_maskz_loadu_epi16(r1, vb + (j + 1) * vsL + 32 * z);
            lo[z] = _mm512_unpacklo_epi16(a, b);
            hi[z] = _mm512_unpackhi_epi16(a, b);
        }
        for (int g = 0; g < GN; g++) {
            int32_t pair;
            memcpy(&pair, pb + g * LP + j, sizeof pair);
            const __m512bh pp = (__m512bh)_mm512_set1_epi32(pair);
            for (int z = 0; z < NZ; z++) {
                acc[g][2 * z] = _mm512_dpbf16_ps(acc[g][2 * z], pp, (__m512bh)lo[z]);
                acc[g][2 * z + 1] = _mm512_dpbf16_ps(acc[g][2 * z + 1], pp, (__m512bh)hi[z]);
            }
        }
    }
    /* acc[g][2z + h] lane 4l + i holds dim 32z + 8l + 4h + i */
    for (int g = 0; g < GN; g++)
        for (int n = 0; n < 2 * NZ; n++) {
            float lanes[16];
            _mm512_storeu_ps(lanes, acc[g][n]);
            for (int l = 0; l < 4; l++)
                for (int i = 0; i < 4; i++)
                    o[g * osH + 32 * (n / 2) + 8 * l + 4 * (n % 2) + i] = bf16_store(lanes[4 * l + i] * inv[g]);
        }
}

#define DP_TASK(GN, NZ) \
static void task_bf16dp_##GN##_##NZ(TASK_ARGS(uint16_t)) { task_bf16dp(q, qsH, kb, ksL, vb, vsL, m, L, G, D, scale, scratch, o, osH, GN, NZ); }
#define DP_TASKS(NZ) DP_TASK(1, NZ) DP_TASK(2, NZ) DP_TASK(3, NZ) DP_TASK(4, NZ) DP_TASK(5, NZ) DP_TASK(6, NZ) \
                     DP_TASK(7, NZ) DP_TASK(8, NZ)
DP_TASKS(2)
DP_TASKS(4)
#define HAVE_BF16DP 1
#else
#define HAVE_BF16DP 0
#endif

/* float32 on AVX2 CPUs without AVX-512 (Zen 2/3, Haswell to Alder Lake): the 16-lane vectors
 * above split into pairs of 8-lane registers, and with 3 query heads of 64 their queries and
 * accumulators need more registers than the 16 there are, so the generic vector task ran at
 * 5.7 GB/s of K/V on a Zen 3 EPYC, 0.77x SDPA's speed a layer. Here: scores 8 keys at a time,
 * each key's 8-lane partial products summed with the other 7 keys' in one horizontal-add tree
 * (9 instructions for 8 scores), the queries read from L1 as memory operands; values in chunks of
 * the head dim small enough that the G chunk accumulators, the broadcast probabilities and a value
 * register fit the 16 registers. A block of 8 keys with some key masked takes the per-key path,
 * so masked keys are never read. */
#if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)
#include <immintrin.h>
#define HAVE_AVX2_F32 1

static inline __m256 reduce8(const __m256 a[8]) { /* lane k: sum of a[k]'s 8 lanes */
    const __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
    const __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

static inline float hsum8(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

/* key row kj against the scaled query qg: the 8 lane partials of their dot product */
static inline __m256 qk_partials(const float *qg, const float *kj, const int NV) {
    __m256 acc = _mm256_mul_ps(_mm256_loadu_ps(qg), _mm256_loadu_ps(kj));
    for (int n = 1; n < NV; n++) acc = _mm256_fmadd_ps(_mm256_loadu_ps(qg + 8 * n), _mm256_loadu_ps(kj + 8 * n), acc);
    return acc;
}

static inline __attribute__((always_inline)) void task_avx2(TASK_ARGS(float), const int GN, const int NV, const int NC) {
    (void)G; (void)D; /* GN, 8 * NV and the value chunk NC, as compile-time constants */
    float *s = scratch, *qf = s + GN * L;
    for (int g = 0; g < GN; g++)
        for (int i = 0; i < 8 * NV; i++) qf[g * 8 * NV + i] = q[g * qsH + i] * scale;
    const uint64_t ALL = 0x0101010101010101ULL;
    for (int64_t j = 0; j < L; j += 8) {
        const int full = j + 8 <= L; /* a block of 8 keys, else the tail (per key) */
        uint64_t mb = ALL;
        if (full && m) memcpy(&mb, m + j, 8);
        if (full && mb == ALL) {
            for (int g = 0; g < GN; g++) {
                __m256 a[8];
                for (int r = 0; r < 8; r++) a[r] = qk_partials(qf + g * 8 * NV, kb + (j + r) * ksL, NV);
                _mm256_storeu_ps(s + g * L + j, reduce8(a));
            }
            continue;
        }
        for (int64_t jj = j; jj < j + 8 && jj < L; jj++) /* some keys masked, or the tail */
            for (int g = 0; g < GN; g++)
                s[g * L + jj] = m && !m[jj] ? MASKED : hsum8(qk_partials(qf + g * 8 * NV, kb + jj * ksL, NV));
    }
    float inv[GN];
    softmax_rows(s, GN, L, inv);
    /* values: chunks of NC registers of the head dim, GN * NC accumulators + GN broadcasts + 1 */
    for (int c0 = 0; c0 < NV; c0 += NC) {
        const int nc = NV - c0 < NC ? NV - c0 : NC;
        __m256 acc[GN][NC];
        for (int g = 0; g < GN; g++)
            for (int c = 0; c < NC; c++) acc[g][c] = _mm256_setzero_ps();
        for (int64_t j = 0; j < L; j++) {
            if (m && !m[j]) continue;
            __m256 p[GN];
            for (int g = 0; g < GN; g++) p[g] = _mm256_broadcast_ss(s + g * L + j);
            const float *vj = vb + j * vsL + 8 * c0;
            for (int c = 0; c < nc; c++) {
                const __m256 vv = _mm256_loadu_ps(vj + 8 * c);
                for (int g = 0; g < GN; g++) acc[g][c] = _mm256_fmadd_ps(p[g], vv, acc[g][c]);
            }
        }
        for (int g = 0; g < GN; g++) {
            const __m256 f = _mm256_set1_ps(inv[g]);
            for (int c = 0; c < nc; c++) _mm256_storeu_ps(o + g * osH + 8 * (c0 + c), _mm256_mul_ps(acc[g][c], f));
        }
    }
}

/* value chunk: the most registers with GN * NC + GN + 1 <= 16, at least 1, at most the head dim's */
#define AVX2_NC(GN, NV) ((15 - GN) / GN < 1 ? 1 : (15 - GN) / GN > NV ? NV : (15 - GN) / GN)
#define AVX2_TASK(GN, NV) \
static void task_avx2_##GN##_##NV(TASK_ARGS(float)) { task_avx2(q, qsH, kb, ksL, vb, vsL, m, L, G, D, scale, scratch, o, osH, GN, NV, AVX2_NC(GN, NV)); }
#define AVX2_TASKS(NV) AVX2_TASK(1, NV) AVX2_TASK(2, NV) AVX2_TASK(3, NV) AVX2_TASK(4, NV) AVX2_TASK(5, NV) \
                       AVX2_TASK(6, NV) AVX2_TASK(7, NV) AVX2_TASK(8, NV)
AVX2_TASKS(8)
AVX2_TASKS(16)
#else
#define HAVE_AVX2_F32 0
#endif

#define TABLE(T, NV) {task_##T##_1_##NV, task_##T##_2_##NV, task_##T##_3_##NV, task_##T##_4_##NV,   \
                      task_##T##_5_##NV, task_##T##_6_##NV, task_##T##_7_##NV, task_##T##_8_##NV}

/* The entry point for one dtype: the specialised task where there is one, else the generic one;
 * tasks (row, key/value head) split over the OpenMP threads, each with its own scratch. Returns
 * 1 when a thread could not allocate its scratch (nothing is then computed by that thread). */
#define ENTRY(NAME, T, TABLES)                                                                      \
int NAME(const T *q, const T *k, const T *v, const uint8_t *mask, T *out,                           \
         int64_t B, int64_t H, int64_t Hk, int64_t L, int64_t D,                                    \
         int64_t qsB, int64_t qsH, int64_t ksB, int64_t ksH, int64_t ksL,                           \
         int64_t vsB, int64_t vsH, int64_t vsL, int64_t msB, int64_t osB, int64_t osH, float scale) { \
    typedef void (*task_fn)(TASK_ARGS(T));                                                          \
    static const task_fn SPECIALISED[2][8] = TABLES;                                                \
    const int64_t G = H / Hk;                                                                       \
    const task_fn task = (D == 64 || D == 128) && G >= 1 && G <= 8 ? SPECIALISED[D == 128][G - 1]   \
                                                                    : task_##T##_generic;           \
    int failed = 0;                                                                                 \
    _Pragma("omp parallel")                                                                         \
    {                                                                                               \
        float *scratch = malloc(sizeof(float) * (size_t)(2 * G * L + 2 * G * D + 3 * G + 16));      \
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

#if HAVE_BF16DP
#define BF16_TABLES {TABLE(bf16dp, 2), TABLE(bf16dp, 4)}
#else
#define BF16_TABLES {TABLE(uint16_t, 4), TABLE(uint16_t, 8)}
#endif
#if HAVE_AVX2_F32
#define F32_TABLES {TABLE(avx2, 8), TABLE(avx2, 16)}
#else
#define F32_TABLES {TABLE(float, 4), TABLE(float, 8)}
#endif
ENTRY(decode_attention_bf16, uint16_t, BF16_TABLES)
ENTRY(decode_attention_f32, float, F32_TABLES)

/* Which bf16 path this build takes, for logs and benchmarks: 1 VDPBF16PS, 0 the float32 FMAs. */
int decode_attention_bf16_dp(void) { return HAVE_BF16DP; }
