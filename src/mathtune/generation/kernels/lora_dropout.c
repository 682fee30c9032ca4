/* Counter-based dropout for the fused LoRA layer (train/lora_linear.py).
 *
 * Element i of a call with key (k1, k2) is kept when draw(i) >= threshold, with
 * draw(i) = mix(mix(i ^ k1) + k2) and mix the "lowbias32" integer hash (Wellons): a pure function
 * of (key, i), so backward regenerates forward's mask from the key instead of keeping a mask.
 * threshold = round(p * 2^32): each element is dropped with probability p to within 2^-32.
 * train/lora_linear.py's `_draw` computes the same bits in PyTorch (the reference and the
 * fallback without a compiler); the tests compare the two.
 *
 * select: out[i] = kept ? x[i] : 0 (a bit select: exact, no float arithmetic)
 * add:    acc[i] += kept ? t[i] : 0 (bfloat16: in float32, rounded to nearest even once, as
 *         PyTorch's bf16 add)
 * Every loop runs over flat, contiguous arrays of fewer than 2^32 elements (the caller checks).
 */
#include <stdint.h>

#include "bf16.h"

#define BLOCK 16384

static inline uint32_t mix(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

static inline uint32_t draw(uint32_t i, uint32_t k1, uint32_t k2) { return mix(mix(i ^ k1) + k2); }

#define SELECT(NAME, T)                                                                        \
    void NAME(const T *x, T *out, int64_t n, uint32_t k1, uint32_t k2, uint32_t threshold) {   \
        _Pragma("omp parallel for schedule(static)")                                           \
        for (int64_t b = 0; b < n; b += BLOCK) {                                               \
            int64_t e = b + BLOCK < n ? b + BLOCK : n;                                         \
            for (int64_t i = b; i < e; i++)                                                    \
                out[i] = draw((uint32_t)i, k1, k2) >= threshold ? x[i] : (T)0;                 \
        }                                                                                      \
    }

SELECT(dropout_select_16, uint16_t)
SELECT(dropout_select_32, uint32_t)

void dropout_add_f32(float *acc, const float *t, int64_t n, uint32_t k1, uint32_t k2, uint32_t threshold) {
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < n; b += BLOCK) {
        int64_t e = b + BLOCK < n ? b + BLOCK : n;
        for (int64_t i = b; i < e; i++)
            acc[i] += draw((uint32_t)i, k1, k2) >= threshold ? t[i] : 0.0f;
    }
}

void dropout_add_bf16(uint16_t *acc, const uint16_t *t, int64_t n, uint32_t k1, uint32_t k2, uint32_t threshold) {
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < n; b += BLOCK) {
        int64_t e = b + BLOCK < n ? b + BLOCK : n;
        for (int64_t i = b; i < e; i++) {
            uint16_t add = draw((uint32_t)i, k1, k2) >= threshold ? t[i] : 0;
            union { uint32_t u; float f; } v;
            v.f = bf16_load(acc[i]) + bf16_load(add);
            /* bf16_store without its branch (vectorizes): round to nearest even, NaN stays NaN */
            uint16_t r = (uint16_t)((v.u + 0x7FFF + ((v.u >> 16) & 1)) >> 16);
            acc[i] = (v.u & 0x7FFFFFFFU) > 0x7F800000U ? (uint16_t)0x7FC0 : r;
        }
    }
}
