/* Causal attention forward and backward for one training example: see train/attention.py.
 *
 * q [H, L, D], k and v [Hk, L, D] (G = H / Hk query heads per key/value head; D contiguous elements
 * a row, rows `*sL` and heads `*sH` elements apart), bfloat16 (bf16 != 0) or float32; every product and
 * accumulator is float32 (the inputs are widened once into the caller's float32 scratch, k and v
 * also transposed per head: kt, vt [Hk, D, LP], LP = L rounded up to 16, zero past L). Forward: o
 * [H, L, D] (contiguous, the inputs' dtype) and lse [H, L] (log of each row's softmax normaliser
 * over scaled scores). Backward (FlashAttention-2's order: a task per key tile, dq summed from
 * per-thread partials): dq [H, L, D], dk and dv [Hk, L, D], contiguous, the inputs' dtype. Scores
 * are computed tile by tile (R query rows x 16 keys) in registers (the backward keeps P and dS of 16 rows x 16 keys);
 * keys past a row's position are skipped a tile at a time and masked within the diagonal tile.
 * Tasks run on the OpenMP threads of the runtime PyTorch loaded (libgomp): torch's thread count. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <omp.h>

#include "bf16.h"

#include "vec16.h"

#define KB 16 /* keys per tile: one vector */
#define R 4   /* query rows per tile */


/* s[r] = a[r, :] . bt[:, j0 : j0 + 16] for the R rows of a (row stride D), bt [D, LP]. */
static inline __attribute__((always_inline)) void row_tile(const float *a, const float *bt, int64_t LP, int64_t j0,
                                                           int D, int rows, vf s[R]) {
    /* two partial sums a row (even and odd d): 2R independent FMA chains, enough to cover the FMA
     * latency on two ports (R alone left the units half idle) */
    vf s2[R];
    for (int r = 0; r < R; r++) s[r] = s2[r] = vset(0.f);
    if (rows == R) { /* (no per-row test in the loop: it cost a compare and branch per FMA) */
        for (int d = 0; d < D; d += 2) {
            vf b = vld(bt + d * LP + j0), b2 = vld(bt + (d + 1) * LP + j0);
            for (int r = 0; r < R; r++) {
                s[r] += a[r * D + d] * b;
                s2[r] += a[r * D + d + 1] * b2;
            }
        }
    } else {
        for (int d = 0; d < D; d += 2) {
            vf b = vld(bt + d * LP + j0), b2 = vld(bt + (d + 1) * LP + j0);
            for (int r = 0; r < rows; r++) {
                s[r] += a[r * D + d] * b;
                s2[r] += a[r * D + d + 1] * b2;
            }
        }
    }
    for (int r = 0; r < R; r++) s[r] += s2[r];
}

/* Lanes of keys after row i0 + r (or at/after L) masked in s[r] (to `fill`). */
static inline void causal_mask(vf s[R], int64_t i0, int64_t j0, int rows, float fill) {
    for (int r = 0; r < rows; r++)
        for (int t = 0; t < KB; t++)
            if (j0 + t > i0 + r) s[r][t] = fill;
}

static inline __attribute__((always_inline)) void forward_tile(const float *q, const float *kt, const float *v, int64_t L,
                                                               int64_t LP, int64_t i0, int rows, int D, const int ND,
                                                               float scale, float *o, float *lse) {
    vf acc[R][8], lv[R]; /* lv: each row's softmax normaliser lane by lane, summed once at the end */
    float m[R], p[R][KB];
    for (int r = 0; r < R; r++) {
        m[r] = -1e30f;
        lv[r] = vset(0.f);
        for (int n = 0; n < ND; n++) acc[r][n] = vset(0.f);
    }
    const int64_t jend = i0 + rows; /* keys 0 .. i0 + rows - 1 */
    for (int64_t j0 = 0; j0 < jend; j0 += KB) {
        vf s[R];
        row_tile(q + i0 * D, kt, LP, j0, D, rows, s);
        for (int r = 0; r < rows; r++) s[r] *= scale;
        if (j0 + KB > i0) causal_mask(s, i0, j0, rows, -1e30f);
        for (int r = 0; r < rows; r++) {
            const float mx = vmax(s[r]);
            if (mx > m[r]) { /* a new running maximum (rarely after the first tiles): rescale what came before */
                const float corr = expf(m[r] - mx);
                m[r] = mx;
                lv[r] *= corr;
                for (int n = 0; n < ND; n++) acc[r][n] *= corr;
            }
            vf e = vexp_neg(s[r] - m[r]);
            lv[r] += e;
            vst(p[r], e);
        }
        const int kn = jend - j0 < KB ? (int)(jend - j0) : KB;
        for (int t = 0; t < kn; t++) {
            const float *vr = v + (j0 + t) * D;
            for (int n = 0; n < ND; n++) {
                vf vv = vld(vr + 16 * n);
                for (int r = 0; r < R; r++)
                    if (r < rows) acc[r][n] += p[r][t] * vv;
            }
        }
    }
    for (int r = 0; r < rows; r++) {
        const float lr = vsum(lv[r]), inv = 1.f / lr;
        for (int n = 0; n < ND; n++) vst(o + r * D + 16 * n, acc[r][n] * inv); /* o: row i0's output */
        lse[i0 + r] = m[r] + logf(lr);
    }
}

#define TILE_ROWS 32 /* query rows per forward task */

/* [heads, L, D] (heads sH and rows sL elements apart, bf16 or float32) -> float32 dst [heads, L, D] */
static void widen(const void *src, int bf16, int64_t sH, int64_t sL, int64_t heads, int64_t L, int64_t D, float *dst) {
#pragma omp parallel for schedule(static)
    for (int64_t hi = 0; hi < heads * L; hi++) {
        const int64_t at = hi / L * sH + hi % L * sL;
        for (int64_t d = 0; d < D; d++)
            dst[hi * D + d] = bf16 ? bf16_load(((const uint16_t *)src)[at + d]) : ((const float *)src)[at + d];
    }
}

/* float32 [heads, L, D] -> [heads, D, LP], zero past L */
static void transpose_pad(const float *x, int64_t heads, int64_t L, int64_t D, int64_t LP, float *xt) {
#pragma omp parallel for schedule(static)
    for (int64_t hd = 0; hd < heads * D; hd++) {
        const int64_t h = hd / D, d = hd % D;
        for (int64_t j = 0; j < LP; j++) xt[hd * LP + j] = j < L ? x[(h * L + j) * D + d] : 0.f;
    }
}

static inline void store_row(void *dst, int bf16, int64_t at, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (bf16) ((uint16_t *)dst)[at + i] = bf16_store(src[i]);
        else ((float *)dst)[at + i] = src[i];
    }
}

/* Scratch (float32 elements): forward_scratch(H, Hk, L, D) = H L D + Hk D LP + Hk L D. */
int64_t train_attention_forward_scratch(int64_t H, int64_t Hk, int64_t L, int64_t D) {
    const int64_t LP = (L + KB - 1) / KB * KB;
    return H * L * D + Hk * D * LP + Hk * L * D;
}

int train_attention_forward(int bf16, const void *q, int64_t qsH, int64_t qsL, const void *k, int64_t ksH,
                            int64_t ksL, const void *v, int64_t vsH, int64_t vsL, void *o, float *lse, int64_t H, int64_t Hk, int64_t L, int64_t D, float scale,
                            float *scratch) {
    if (Hk <= 0 || H % Hk || (D != 64 && D != 128) || L <= 0) return 1;
    const int ND = (int)(D / 16);
    const int64_t G = H / Hk, LP = (L + KB - 1) / KB * KB, blocks = (L + TILE_ROWS - 1) / TILE_ROWS;
    float *qf = scratch, *kt = qf + H * L * D, *vf = kt + Hk * D * LP;
    widen(q, bf16, qsH, qsL, H, L, D, qf);
    widen(k, bf16, ksH, ksL, Hk, L, D, vf); /* (k's float32 rows pass through vf on their way to kt) */
    transpose_pad(vf, Hk, L, D, LP, kt);
    widen(v, bf16, vsH, vsL, Hk, L, D, vf);
#pragma omp parallel for schedule(dynamic)
    for (int64_t task = 0; task < H * blocks; task++) {
        const int64_t h = task / blocks, b = blocks - 1 - task % blocks; /* longest rows first */
        const float *qh = qf + h * L * D, *kth = kt + (h / G) * D * LP, *vh = vf + (h / G) * L * D;
        float ob[TILE_ROWS * 128];
        const int64_t first = b * TILE_ROWS, n = L - first < TILE_ROWS ? L - first : TILE_ROWS;
        for (int64_t i0 = first; i0 < first + n; i0 += R) {
            const int rows = L - i0 < R ? (int)(L - i0) : R;
            if (ND == 4) forward_tile(qh, kth, vh, L, LP, i0, rows, 64, 4, scale, ob + (i0 - first) * D, lse + h * L);
            else forward_tile(qh, kth, vh, L, LP, i0, rows, 128, 8, scale, ob + (i0 - first) * D, lse + h * L);
        }
        store_row(o, bf16, (h * L + first) * D, ob, n * D);
    }
    return 0;
}

#define RB 16 /* query rows per backward block: P and dS of RB rows x 16 keys, then the products below */

/* acc[t][n] += sum over rows r < nr of w[r][t0 + t] * x[r * D + 16 (n0 + n)] for 4 keys t and 4 vectors n,
 * the 16 accumulators in registers (8 loads per 16 FMAs; dv += P^T dO and dk += dS^T Q tile by tile). */
static inline __attribute__((always_inline)) void outer_4x4(vf *acc, int stride, const float (*w)[KB], int t0,
                                                           const float *x, int D, int n0, int nr) {
    vf c[4][4];
    for (int t = 0; t < 4; t++)
        for (int n = 0; n < 4; n++) c[t][n] = acc[(t0 + t) * stride + n0 + n];
    for (int r = 0; r < nr; r++) {
        vf xv[4];
        for (int n = 0; n < 4; n++) xv[n] = vld(x + r * D + 16 * (n0 + n));
        for (int t = 0; t < 4; t++) {
            const float wt = w[r][t0 + t];
            for (int n = 0; n < 4; n++) c[t][n] += wt * xv[n];
        }
    }
    for (int t = 0; t < 4; t++)
        for (int n = 0; n < 4; n++) acc[(t0 + t) * stride + n0 + n] = c[t][n];
}

/* One key tile [j0, j0 + 16) of one key/value head against every query row at or after j0 of its
 * G query heads: dk and dv for the tile (local, written once), dq added to this thread's buffer.
 * Query rows go RB at a time: P and dS for the block (R rows at a time, scores in registers), then
 * dv += P^T dO, dk += dS^T Q and dq += dS K as register-blocked products (each FMA had its own
 * load or two before: the units waited on memory). */
static inline __attribute__((always_inline)) void backward_task(const float *q, const float *k, const float *kt,
                                                                const float *vt, const float *dout, const float *lse,
                                                                const float *delta, float *dq, float *dk, float *dv,
                                                                int64_t G, int64_t L, int64_t LP, int64_t j0, int D,
                                                                const int ND, float scale) {
    vf dkt[KB][8], dvt[KB][8];
    for (int t = 0; t < KB; t++)
        for (int n = 0; n < ND; n++) dkt[t][n] = dvt[t][n] = vset(0.f);
    const int kn = L - j0 < KB ? (int)(L - j0) : KB;
    for (int64_t g = 0; g < G; g++) {
        const float *qg = q + g * L * D, *dog = dout + g * L * D, *lg = lse + g * L, *dg = delta + g * L;
        float *dqg = dq + g * L * D;
        for (int64_t ib = j0 / R * R; ib < L; ib += RB) {
            const int nr = L - ib < RB ? (int)(L - ib) : RB;
            float p[RB][KB], ds[RB][KB];
            for (int rr = 0; rr < nr; rr += R) {
                const int64_t i0 = ib + rr;
                const int rows = nr - rr < R ? nr - rr : R;
                vf sv[R], dp[R];
                row_tile(qg + i0 * D, kt, LP, j0, D, rows, sv);
                row_tile(dog + i0 * D, vt, LP, j0, D, rows, dp);
                for (int r = 0; r < rows; r++) sv[r] = vexp_neg(sv[r] * scale - lg[i0 + r]);
                if (j0 + KB > i0) causal_mask(sv, i0, j0, rows, 0.f);
                for (int r = 0; r < rows; r++) {
                    vst(p[rr + r], sv[r]);
                    vst(ds[rr + r], sv[r] * (dp[r] - dg[i0 + r]) * scale);
                }
            }
            for (int t0 = 0; t0 < KB; t0 += 4) /* keys past L have P = dS = 0 (masked): computed, not stored */
                for (int n0 = 0; n0 < ND; n0 += 4) {
                    outer_4x4(&dvt[0][0], 8, p, t0, dog + ib * D, D, n0, nr);
                    outer_4x4(&dkt[0][0], 8, ds, t0, qg + ib * D, D, n0, nr);
                }
            for (int r0 = 0; r0 < nr; r0 += 4) { /* dq[rows] += dS[rows] K[tile]: 4 rows x 4 vectors at a time */
                const int rows = nr - r0 < 4 ? nr - r0 : 4;
                for (int n0 = 0; n0 < ND; n0 += 4) {
                    vf c[4][4];
                    for (int r = 0; r < 4; r++)
                        for (int n = 0; n < 4; n++)
                            c[r][n] = r < rows ? vld(dqg + (ib + r0 + r) * D + 16 * (n0 + n)) : vset(0.f);
                    for (int t = 0; t < kn; t++) {
                        vf kv[4];
                        for (int n = 0; n < 4; n++) kv[n] = vld(k + (j0 + t) * D + 16 * (n0 + n));
                        for (int r = 0; r < 4; r++) {
                            const float w = ds[r0 + (r < rows ? r : 0)][t];
                            for (int n = 0; n < 4; n++) c[r][n] += w * kv[n];
                        }
                    }
                    for (int r = 0; r < rows; r++)
                        for (int n = 0; n < 4; n++) vst(dqg + (ib + r0 + r) * D + 16 * (n0 + n), c[r][n]);
                }
            }
        }
    }
    for (int t = 0; t < kn; t++)
        for (int n = 0; n < ND; n++) {
            vst(dk + (j0 + t) * D + 16 * n, dkt[t][n]);
            vst(dv + (j0 + t) * D + 16 * n, dvt[t][n]);
        }
}

/* Scratch (float32 elements): 2 H L D + Hk L D + 2 Hk D LP + H L + T H L D + 2 Hk L D. */
int64_t train_attention_backward_scratch(int64_t H, int64_t Hk, int64_t L, int64_t D, int64_t T) {
    const int64_t LP = (L + KB - 1) / KB * KB;
    return 2 * H * L * D + Hk * L * D + 2 * Hk * D * LP + H * L + T * H * L * D + 2 * Hk * L * D;
}

int train_attention_backward(int bf16, const void *q, int64_t qsH, int64_t qsL, const void *k, int64_t ksH,
                             int64_t ksL, const void *v, int64_t vsH, int64_t vsL, const void *o, const void *dout,
                             int64_t dsH, int64_t dsL, const float *lse, void *dq,
                             void *dk, void *dv, int64_t H, int64_t Hk, int64_t L, int64_t D, int64_t T, float scale,
                             float *scratch) {
    if (Hk <= 0 || H % Hk || T <= 0 || (D != 64 && D != 128) || L <= 0) return 1;
    const int ND = (int)(D / 16);
    const int64_t G = H / Hk, LP = (L + KB - 1) / KB * KB, blocks = LP / KB;
    float *qf = scratch, *dof = qf + H * L * D, *kf = dof + H * L * D, *kt = kf + Hk * L * D, *vt = kt + Hk * D * LP;
    float *delta = vt + Hk * D * LP, *dqp = delta + H * L, *dkf = dqp + T * H * L * D, *dvf = dkf + Hk * L * D;
    widen(q, bf16, qsH, qsL, H, L, D, qf);
    widen(dout, bf16, dsH, dsL, H, L, D, dof);
    widen(k, bf16, ksH, ksL, Hk, L, D, kf);
    transpose_pad(kf, Hk, L, D, LP, kt);
    widen(v, bf16, vsH, vsL, Hk, L, D, dkf); /* (v's float32 rows pass through dkf on their way to vt) */
    transpose_pad(dkf, Hk, L, D, LP, vt);
    memset(dqp, 0, sizeof(float) * T * H * L * D);
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < H * L; row++) { /* delta = rowsum(dO * O), O as the forward returned it */
        float acc = 0.f;
        for (int64_t d = 0; d < D; d++)
            acc += dof[row * D + d] * (bf16 ? bf16_load(((const uint16_t *)o)[row * D + d]) : ((const float *)o)[row * D + d]);
        delta[row] = acc;
    }
#pragma omp parallel for schedule(dynamic) num_threads(T)
    for (int64_t task = 0; task < Hk * blocks; task++) {
        const int64_t b = task / Hk, hk = task % Hk; /* earliest keys (most query rows) first */
        const int tid = omp_get_thread_num(); /* < T: the team has at most T threads */
        float *dqt = dqp + (int64_t)tid * H * L * D + hk * G * L * D;
        if (ND == 4)
            backward_task(qf + hk * G * L * D, kf + hk * L * D, kt + hk * D * LP, vt + hk * D * LP, dof + hk * G * L * D,
                          lse + hk * G * L, delta + hk * G * L, dqt, dkf + hk * L * D, dvf + hk * L * D, G, L, LP, b * KB,
                          64, 4, scale);
        else
            backward_task(qf + hk * G * L * D, kf + hk * L * D, kt + hk * D * LP, vt + hk * D * LP, dof + hk * G * L * D,
                          lse + hk * G * L, delta + hk * G * L, dqt, dkf + hk * L * D, dvf + hk * L * D, G, L, LP, b * KB,
                          128, 8, scale);
    }
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < H * L; row++) {
        float acc[128];
        for (int64_t d = 0; d < D; d++) acc[d] = 0.f;
        for (int64_t t = 0; t < T; t++)
            for (int64_t d = 0; d < D; d++) acc[d] += dqp[(t * H * L + row) * D + d];
        store_row(dq, bf16, row * D, acc, D);
    }
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < Hk * L; row++) {
        store_row(dk, bf16, row * D, dkf + row * D, D);
        store_row(dv, bf16, row * D, dvf + row * D, D);
    }
    return 0;
}
