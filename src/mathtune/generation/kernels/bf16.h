/* bfloat16 <-> float32 as PyTorch converts them, for the kernels in this directory. */
#ifndef MATHTUNE_BF16_H
#define MATHTUNE_BF16_H
#include <stdint.h>

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
#endif
