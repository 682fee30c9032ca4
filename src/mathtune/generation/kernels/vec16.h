/* 16-lane vectors (GCC vector extensions) for the kernels in this directory: the types, loads of
 * 16 bf16 or float32 values, horizontal max and sum, a lane select and exp(x <= 0) (the attention
 * kernels' softmax, the training SwiGLU's sigmoid). One zmm with AVX-512, two ymm without. */
#ifndef MATHTUNE_VEC16_H
#define MATHTUNE_VEC16_H
#include <stdint.h>
#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

typedef float vf __attribute__((vector_size(64), aligned(4))); /* 16 floats */
typedef int32_t vi __attribute__((vector_size(64), aligned(4)));
typedef uint32_t vu __attribute__((vector_size(64), aligned(4)));
typedef uint16_t vh __attribute__((vector_size(32), aligned(2))); /* 16 bf16 bit patterns */

static inline vf vld(const float *p) { return *(const vf *)p; }
static inline void vst(float *p, vf v) { *(vf *)p = v; }
static inline vf vset(float x) { return (vf){0} + x; }

/* 16 values from memory (any alignment) as float32 lanes: bf16 widened exactly, float32 as is. */
static inline vf vload_bf16(const uint16_t *p) {
    vh h;
    memcpy(&h, p, sizeof h);
    return (vf)(__builtin_convertvector(h, vu) << 16);
}
static inline vf vload_f32(const float *p) {
    vf f;
    memcpy(&f, p, sizeof f);
    return f;
}

#ifdef __AVX512F__
static inline float vmax(vf v) { return _mm512_reduce_max_ps((__m512)v); } /* a shuffle tree, not 15 dependent steps */
static inline float vsum(vf v) { return _mm512_reduce_add_ps((__m512)v); }
#else
static inline float vmax(vf v) {
    float m = v[0];
    for (int t = 1; t < 16; t++) m = v[t] > m ? v[t] : m;
    return m;
}
static inline float vsum(vf v) {
    float s = 0.f;
    for (int t = 0; t < 16; t++) s += v[t];
    return s;
}
#endif

/* Lane by lane: mask (all bits set where true, from a comparison) ? a : b (C has no vector ?:). */
static inline vf vsel(vi mask, vf a, vf b) {
    vi ia, ib;
    memcpy(&ia, &a, sizeof ia);
    memcpy(&ib, &b, sizeof ib);
    vi r = (mask & ia) | (~mask & ib);
    vf out;
    memcpy(&out, &r, sizeof out);
    return out;
}

/* exp(x) for x <= 0 lane by lane (as decode_attention.c's exp_neg): n = round(x / ln2), a degree-6
 * polynomial of e^r for r = x - n ln2, times 2^n from the exponent bits; 0 below -87. */
static inline vf vexp_neg(vf x) {
    const vf lo = vset(-87.f);
    const vi below = x < lo;
    vf xc = vsel(below, lo, x);
    vi n = __builtin_convertvector(xc * 1.44269504089f - 0.5f, vi); /* truncation toward 0 of t - 0.5: round(t) for t <= 0 */
    vf nf = __builtin_convertvector(n, vf);
    vf r = xc - nf * 0.693145751953125f - nf * 1.428606765330187e-06f;
    vf p = vset(1.f / 720.f);
    p = p * r + 1.f / 120.f;
    p = p * r + 1.f / 24.f;
    p = p * r + 1.f / 6.f;
    p = p * r + 0.5f;
    p = p * r + 1.f;
    p = p * r + 1.f;
    vi bits = (n + 127) << 23;
    vf two_n;
    memcpy(&two_n, &bits, sizeof two_n);
    vf out = p * two_n;
    return vsel(below, vset(0.f), out);
}
#endif
