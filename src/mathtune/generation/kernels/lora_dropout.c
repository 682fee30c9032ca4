/* Counter-based dropout for the fused LoRA layer (train/lora_linear.py).
 *
 * Elements 2j and 2j + 1 of a call with key (k1, k2) share the 32-bit draw of pair j,
 * d(j) = mix(mix(j ^ k1) + k2) with mix the "lowbias32" integer hash (Wellons): element i takes
 * its low half (i even) or its high half (i odd), and is kept when that 16-bit draw >= threshold.
 * A pure function of (key, i), so backward regenerates forward's mask from the key instead of
 * keeping a mask. threshold = round(p * 2^16): each element is dropped with probability p to
 * within 2^-17. One hash per two elements: the select is bound by the hash's arithmetic (0.127 ms
 * for [1159, 576] bf16 with a hash per element, 7x a copy of the same array; 0.061 ms with one
 * per pair, AMX Xeon). A whole training step was not measurably faster for it (alternating
 * A/B runs within the shared machines' noise on the AMX Xeon and the AVX2 EPYC): in a step these
 * passes wait mostly on the OpenMP threads waking, not on their arithmetic.
 * train/lora_linear.py's `_draw` computes the same bits in PyTorch (the reference and the
 * fallback without a compiler); the tests compare the two.
 *
 * select: out[i] = kept ? x[i] : 0 (a bit select: exact, no float arithmetic)
 * add:    acc[i] += kept ? t[i] : 0 (bfloat16: in float32, rounded to nearest even once, as
 *         PyTorch's bf16 add)
 * Every loop runs over flat, contiguous arrays of fewer than 2^32 elements (the caller checks);
 * blocks are even-sized, so a pair never straddles two threads' blocks.
 */
#include <stdint.h>

#define BLOCK 16384

static inline uint32_t mix(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

static inline uint32_t draw(uint32_t j, uint32_t k1, uint32_t k2) { return mix(mix(j ^ k1) + k2); }

/* bit masks of the kept elements of pair j: 0xFFFF per kept 16-bit element, 0xFFFFFFFF per kept
 * 32-bit one */
static inline uint32_t keep16(uint32_t d, uint32_t thr) {
    return ((d & 0xFFFFU) >= thr ? 0x0000FFFFU : 0U) | ((d >> 16) >= thr ? 0xFFFF0000U : 0U);
}
static inline uint64_t keep32(uint32_t d, uint32_t thr) {
    return ((d & 0xFFFFU) >= thr ? 0x00000000FFFFFFFFULL : 0ULL) | ((d >> 16) >= thr ? 0xFFFFFFFF00000000ULL : 0ULL);
}
static inline int kept(int64_t i, uint32_t k1, uint32_t k2, uint32_t thr) {
    uint32_t d = draw((uint32_t)(i >> 1), k1, k2);
    return ((i & 1) ? d >> 16 : d & 0xFFFFU) >= thr;
}

/* pairs of 16-bit and of 32-bit elements, read as one word (any 2-byte / 4-byte alignment) */
typedef uint32_t pair16 __attribute__((aligned(2), may_alias));
typedef uint64_t pair32 __attribute__((aligned(4), may_alias));

/* select for 16- and 32-bit elements: each pair of elements read and masked as one word */
#define SELECT(NAME, T, PAIR, KEEP)                                                                 \
void NAME(const T *x, T *out, int64_t n, uint32_t k1, uint32_t k2, uint32_t thr) {                 \
    const PAIR *xp = (const PAIR *)x;                                                               \
    PAIR *op = (PAIR *)out;                                                                         \
    _Pragma("omp parallel for schedule(static)")                                                    \
    for (int64_t b = 0; b < n / 2; b += BLOCK / 2) {                                                \
        int64_t e = b + BLOCK / 2 < n / 2 ? b + BLOCK / 2 : n / 2;                                  \
        for (int64_t j = b; j < e; j++)                                                             \
            op[j] = xp[j] & KEEP(draw((uint32_t)j, k1, k2), thr);                                   \
    }                                                                                               \
    if (n & 1)                                                                                      \
        out[n - 1] = kept(n - 1, k1, k2, thr) ? x[n - 1] : 0;                                       \
}
SELECT(dropout_select_16, uint16_t, pair16, keep16)
SELECT(dropout_select_32, uint32_t, pair32, keep32)

static inline float f32_of(uint32_t u) { union { uint32_t u; float f; } v = {u}; return v.f; }
static inline uint32_t bits_of(float f) { union { float f; uint32_t u; } v = {f}; return v.u; }

void dropout_add_f32(float *acc, const float *t, int64_t n, uint32_t k1, uint32_t k2, uint32_t thr) {
    const pair32 *tp = (const pair32 *)t;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < n / 2; b += BLOCK / 2) {
        int64_t e = b + BLOCK / 2 < n / 2 ? b + BLOCK / 2 : n / 2;
        for (int64_t j = b; j < e; j++) {
            const uint64_t t2 = tp[j] & keep32(draw((uint32_t)j, k1, k2), thr);
            acc[2 * j] += f32_of((uint32_t)t2);
            acc[2 * j + 1] += f32_of((uint32_t)(t2 >> 32));
        }
    }
    if (n & 1)
        acc[n - 1] += kept(n - 1, k1, k2, thr) ? t[n - 1] : 0.0f;
}

/* float32 -> bfloat16 bits, round to nearest even, NaN stays NaN (bf16_store without its
 * branch: vectorizes) */
static inline uint32_t bf16_round(float f) {
    uint32_t u = bits_of(f);
    uint32_t r = (u + 0x7FFFU + ((u >> 16) & 1U)) >> 16;
    return (u & 0x7FFFFFFFU) > 0x7F800000U ? 0x7FC0U : r;
}

void dropout_add_bf16(uint16_t *acc, const uint16_t *t, int64_t n, uint32_t k1, uint32_t k2, uint32_t thr) {
    pair16 *ap = (pair16 *)acc;
    const pair16 *tp = (const pair16 *)t;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < n / 2; b += BLOCK / 2) {
        int64_t e = b + BLOCK / 2 < n / 2 ? b + BLOCK / 2 : n / 2;
        for (int64_t j = b; j < e; j++) {
            uint32_t a2 = ap[j], t2 = tp[j] & keep16(draw((uint32_t)j, k1, k2), thr);
            uint32_t lo = bf16_round(f32_of(a2 << 16) + f32_of(t2 << 16));
            uint32_t hi = bf16_round(f32_of(a2 & 0xFFFF0000U) + f32_of(t2 & 0xFFFF0000U));
            ap[j] = lo | (hi << 16);
        }
    }
    if (n & 1) {
        uint32_t add = kept(n - 1, k1, k2, thr) ? t[n - 1] : 0;
        acc[n - 1] = (uint16_t)bf16_round(f32_of((uint32_t)acc[n - 1] << 16) + f32_of(add << 16));
    }
}
