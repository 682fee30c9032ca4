/* 16-float vectors (GCC vector extensions) and exp(x <= 0) on them, for the kernels in this
 * directory (the training attention kernel's softmax, the training SwiGLU's sigmoid). */
#ifndef MATHTUNE_VEXP_H
#define MATHTUNE_VEXP_H
#include <stdint.h>
#include <string.h>

typedef float vf __attribute__((vector_size(64), aligned(4))); /* 16 floats; 2 ymm without AVX-512 */
typedef int32_t vi __attribute__((vector_size(64), aligned(4)));

static inline vf vld(const float *p) { return *(const vf *)p; }
static inline void vst(float *p, vf v) { *(vf *)p = v; }
static inline vf vset(float x) { return (vf){0} + x; }

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
