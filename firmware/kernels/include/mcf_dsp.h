/* ARMv7E-M DSP building blocks of the optimised kernels (firmware/kernels/dsp; not part of the public API).
 *
 * The kernels are written with the ACLE intrinsics of <arm_acle.h> (SXTB16, SXTAB16, SMLAD, ROR). Where the
 * compiler has no DSP extension (the host), the same functions are plain C with the instructions' exact
 * semantics, so the dsp variant also builds and runs on the host (for debugging; the host build uses the
 * portable kernels). Only the low 32 bits of SMLAD's sum are kept, as the instruction does: the kernels stay
 * in the spec's int32 range, where that is exact.
 *
 * int8 data is read four bytes at a time with unaligned 32-bit loads (ARMv7-M allows them for LDR; the
 * runtime leaves CCR.UNALIGN_TRP clear), through memcpy so that the C stays free of aliasing problems.
 *
 * A word of four int8 values (b0, b1, b2, b3) splits into two int16 pairs, "even" (b0, b2) = SXTB16(w) and
 * "odd" (b1, b3) = SXTB16(ROR(w, 8)); two words split the same way give a dot product of their four values
 * in two SMLADs. SXTAB16 adds a packed int16 offset during the split: that is how a zero point is removed.
 */
#ifndef MCF_DSP_H
#define MCF_DSP_H

#include <stdint.h>
#include <string.h>

#include "mcf_kernels.h"
#include "mcf_math.h"

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>

static inline uint32_t mcf_sxtb16(uint32_t w) {
    return (uint32_t)__sxtb16((int32_t)w);
}
static inline uint32_t mcf_sxtab16(uint32_t offset, uint32_t w) {
    return (uint32_t)__sxtab16((int32_t)offset, (int32_t)w);
}
/* ACLE has no rotated forms and GCC 12 does not fold a rotate into the instruction's ROR operand, so these
 * two are one instruction each in inline assembly (not volatile: the compiler schedules them like any other).
 */
static inline uint32_t mcf_sxtb16_ror8(uint32_t w) {
    uint32_t r;
    __asm("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(w));
    return r;
}
static inline uint32_t mcf_sxtab16_ror8(uint32_t offset, uint32_t w) {
    uint32_t r;
    __asm("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(offset), "r"(w));
    return r;
}
static inline uint32_t mcf_uxtb16_ror8(uint32_t w) {
    uint32_t r;
    __asm("uxtb16 %0, %1, ror #8" : "=r"(r) : "r"(w));
    return r;
}
static inline int32_t mcf_smlad(uint32_t a, uint32_t b, int32_t acc) {
    return __smlad((int32_t)a, (int32_t)b, acc);
}
static inline uint32_t mcf_uxtb16(uint32_t w) {
    return (uint32_t)__uxtb16((int32_t)w);
}
/* (a * b) >> 32, the high word of the 64-bit product (SMMUL). */
static inline int32_t mcf_smmul(int32_t a, int32_t b) {
    int32_t r;
    __asm("smmul %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
/* The low word of ((int64)a * b + 2^29) >> 30: exact whenever the result fits int32 (SMULL, ADDS, ADC). */
static inline int32_t mcf_mul_round30(int32_t a, int32_t b) {
    uint32_t lo, hi;
    __asm(
        "smull %0, %1, %2, %3\n\t"
        "adds %0, %0, #0x20000000\n\t"
        "adc %1, %1, #0\n\t"
        "lsrs %0, %0, #30\n\t"
        "orr %0, %0, %1, lsl #2"
        : "=&r"(lo), "=&r"(hi)
        : "r"(a), "r"(b)
        : "cc");
    return (int32_t)lo;
}
/* sat32((int64)a * b + c) (SMLAL on the sign-extended c, then a test of the high word). */
static inline int32_t mcf_mla_sat32(int32_t a, int32_t b, int32_t c) {
    uint32_t lo = (uint32_t)c;
    int32_t hi = c >> 31;
    __asm("smlal %0, %1, %2, %3" : "+r"(lo), "+r"(hi) : "r"(a), "r"(b));
    return hi == ((int32_t)lo >> 31) ? (int32_t)lo : (hi < 0 ? INT32_MIN : INT32_MAX);
}
#else /* The instructions' semantics in C (host builds). */

static inline uint32_t mcf_dsp_ror(uint32_t w, uint32_t n) {
    return n == 0 ? w : (w >> n) | (w << (32 - n));
}
static inline uint32_t mcf_dsp_lane(int32_t value) {
    return (uint32_t)value & 0xFFFFu;
}
static inline uint32_t mcf_sxtab16(uint32_t offset, uint32_t w) {
    const int32_t lo = (int16_t)(offset & 0xFFFFu) + (int8_t)(w & 0xFFu);
    const int32_t hi = (int16_t)(offset >> 16) + (int8_t)((w >> 16) & 0xFFu);
    return mcf_dsp_lane(lo) | (mcf_dsp_lane(hi) << 16);
}
static inline uint32_t mcf_sxtb16(uint32_t w) {
    return mcf_sxtab16(0, w);
}
static inline uint32_t mcf_sxtb16_ror8(uint32_t w) {
    return mcf_sxtab16(0, mcf_dsp_ror(w, 8));
}
static inline uint32_t mcf_sxtab16_ror8(uint32_t offset, uint32_t w) {
    return mcf_sxtab16(offset, mcf_dsp_ror(w, 8));
}
static inline uint32_t mcf_uxtb16(uint32_t w) {
    return w & 0x00FF00FFu;
}
static inline uint32_t mcf_uxtb16_ror8(uint32_t w) {
    return mcf_dsp_ror(w, 8) & 0x00FF00FFu;
}
static inline int32_t mcf_smmul(int32_t a, int32_t b) {
    return (int32_t)(((int64_t)a * b) >> 32);
}
static inline int32_t mcf_mul_round30(int32_t a, int32_t b) {
    return (int32_t)(uint32_t)((uint64_t)(((int64_t)a * b + ((int64_t)1 << 29)) >> 30));
}
static inline int32_t mcf_mla_sat32(int32_t a, int32_t b, int32_t c) {
    return mcf_sat32((int64_t)a * b + c);
}
static inline int32_t mcf_smlad(uint32_t a, uint32_t b, int32_t acc) {
    const int32_t lo = (int32_t)(int16_t)(a & 0xFFFFu) * (int16_t)(b & 0xFFFFu);
    const int32_t hi = (int32_t)(int16_t)(a >> 16) * (int16_t)(b >> 16);
    return (int32_t)((uint32_t)acc + (uint32_t)lo + (uint32_t)hi);
}
#endif

/* Clamp to [-128, 127] (SSAT on the core). */
static inline int8_t mcf_dsp_sat8(int32_t value) {
#if defined(__ARM_FEATURE_SAT) && __ARM_FEATURE_SAT
    return (int8_t)__ssat(value, 8);
#else
    return (int8_t)(value < -128 ? -128 : (value > 127 ? 127 : value));
#endif
}

/* Clamp to [0, 255] (USAT on the core). */
static inline int32_t mcf_usat8(int32_t value) {
#if defined(__ARM_FEATURE_SAT) && __ARM_FEATURE_SAT
    return (int32_t)__usat(value, 8);
#else
    return value < 0 ? 0 : (value > 255 ? 255 : value);
#endif
}

/* mcf_requantize_s8(dot + bias, mult, shift, out_zp), exactly, with a fast path for the usual case of a
 * scale below 1/2 (shift <= -2) and dot + bias within int32: with total = 31 - shift >= 33,
 *   (p + 2^(total - 1)) >> total == ((p >> (total - 1)) + 1) >> 1       (floor shifts compose)
 * and p >> (total - 1) == (p >> 32) >> (total - 33), where p >> 32 is the high word of a 32x32 multiply. */
static inline int8_t mcf_dsp_requantize_s8(int32_t dot, int32_t bias, int32_t mult, int32_t shift,
                                           int32_t out_zp) {
    int32_t acc;
    if (shift <= -2 && !__builtin_add_overflow(dot, bias, &acc)) {
        const int32_t high = (int32_t)(((int64_t)acc * mult) >> 32);
        return mcf_dsp_sat8((((high >> (-shift - 2)) + 1) >> 1) + out_zp);
    }
    return mcf_requantize_s8((int64_t)dot + bias, mult, shift, out_zp);
}

/* A requantization (mult, shift, out_zp) prepared for many int32 accumulators. When shift is in [-24, -2],
 * with down = -shift - 1 (so r = down - 1 = total - 33 where total = 31 - shift),
 *   requant_s8(acc) == ssat8((((acc * mult) >> 32) + 2^(down - 1) + out_zp * 2^down) >> down)
 * exactly: (p + 2^(total - 1)) >> total == ((p >> 32) + 2^r) >> (r + 1) (floor shifts compose), the zero
 * point is a multiple of 2^down added before the shift, and |sum| < 2^31 (|p >> 32| <= 2^30, |out_zp| 2^23 <
 * 2^30). */
typedef struct {
    int32_t mult, shift, out_zp;
    int32_t down, add; /* fast path when down > 0 */
} mcf_dsp_requant;

static inline mcf_dsp_requant mcf_dsp_requant_make(int32_t mult, int32_t shift, int32_t out_zp) {
    mcf_dsp_requant q = {mult, shift, out_zp, 0, 0};
    if (shift <= -2 && shift >= -24) {
        q.down = -shift - 1;
        q.add = (1 << (q.down - 1)) + (int32_t)((uint32_t)out_zp << q.down);
    }
    return q;
}

static inline int8_t mcf_dsp_requant_apply(const mcf_dsp_requant *q, int32_t acc) {
    if (q->down > 0) {
        return mcf_dsp_sat8((mcf_smmul(acc, q->mult) + q->add) >> q->down);
    }
    return mcf_requantize_s8(acc, q->mult, q->shift, q->out_zp);
}

/* out[t * stride] = the requantization of acc[t] for t < count (<= 4): straight-line for a full block on the
 * fast path. */
static inline void mcf_dsp_requant_store4(const mcf_dsp_requant *q, const int32_t acc[4], int8_t *out,
                                          int32_t stride, int32_t count) {
    if (count == 4 && q->down > 0) {
        out[0] = mcf_dsp_sat8((mcf_smmul(acc[0], q->mult) + q->add) >> q->down);
        out[stride] = mcf_dsp_sat8((mcf_smmul(acc[1], q->mult) + q->add) >> q->down);
        out[2 * stride] = mcf_dsp_sat8((mcf_smmul(acc[2], q->mult) + q->add) >> q->down);
        out[3 * stride] = mcf_dsp_sat8((mcf_smmul(acc[3], q->mult) + q->add) >> q->down);
        return;
    }
    for (int32_t t = 0; t < count; t++) {
        out[t * stride] = mcf_dsp_requant_apply(q, acc[t]);
    }
}

/* Four int8 values as one word (unaligned load). */
static inline uint32_t mcf_read4(const int8_t *p) {
    uint32_t w;
    memcpy(&w, p, sizeof w);
    return w;
}

/* Both lanes of a packed int16 pair set to `value` (an int16-ranged value such as -zero_point). */
static inline uint32_t mcf_pack_pair(int32_t value) {
    return ((uint32_t)value & 0xFFFFu) * 0x00010001u;
}

/* acc[i][j] += sum_k (x_i[k] + offset) * w_j[k] over k < length, for two rows x0, x1 and two rows w0, w1:
 * each weight word is split once and used for both x rows, each x word split once for both weight rows.
 * offset is mcf_pack_pair(-zero_point of x). acc is {x0.w0, x0.w1, x1.w0, x1.w1}. */
static inline void mcf_dot_2x2(const int8_t *x0, const int8_t *x1, const int8_t *w0, const int8_t *w1,
                               int32_t length, uint32_t offset, int32_t acc[4]) {
    int32_t a00 = acc[0], a01 = acc[1], a10 = acc[2], a11 = acc[3];
    const int32_t zp = -(int16_t)(offset & 0xFFFFu); /* the x zero point, for the tail */
    int32_t k = 0;
    for (; k + 4 <= length; k += 4) {
        const uint32_t xa = mcf_read4(x0 + k);
        const uint32_t xb = mcf_read4(x1 + k);
        const uint32_t wa = mcf_read4(w0 + k);
        const uint32_t wb = mcf_read4(w1 + k);
        const uint32_t xa_e = mcf_sxtab16(offset, xa), xa_o = mcf_sxtab16_ror8(offset, xa);
        const uint32_t xb_e = mcf_sxtab16(offset, xb), xb_o = mcf_sxtab16_ror8(offset, xb);
        const uint32_t wa_e = mcf_sxtb16(wa), wa_o = mcf_sxtb16_ror8(wa);
        a00 = mcf_smlad(xa_e, wa_e, a00);
        a00 = mcf_smlad(xa_o, wa_o, a00);
        a10 = mcf_smlad(xb_e, wa_e, a10);
        a10 = mcf_smlad(xb_o, wa_o, a10);
        const uint32_t wb_e = mcf_sxtb16(wb), wb_o = mcf_sxtb16_ror8(wb);
        a01 = mcf_smlad(xa_e, wb_e, a01);
        a01 = mcf_smlad(xa_o, wb_o, a01);
        a11 = mcf_smlad(xb_e, wb_e, a11);
        a11 = mcf_smlad(xb_o, wb_o, a11);
    }
    for (; k < length; k++) {
        const int32_t xa = x0[k] - zp, xb = x1[k] - zp;
        a00 += xa * w0[k];
        a01 += xa * w1[k];
        a10 += xb * w0[k];
        a11 += xb * w1[k];
    }
    acc[0] = a00;
    acc[1] = a01;
    acc[2] = a10;
    acc[3] = a11;
}

/* acc[j] += sum_k (x[k] + offset) * w_j[k] for one x row and two weight rows. */
static inline void mcf_dot_1x2(const int8_t *x, const int8_t *w0, const int8_t *w1, int32_t length,
                               uint32_t offset, int32_t acc[2]) {
    int32_t a0 = acc[0], a1 = acc[1];
    const int32_t zp = -(int16_t)(offset & 0xFFFFu);
    int32_t k = 0;
    for (; k + 4 <= length; k += 4) {
        const uint32_t xw = mcf_read4(x + k);
        const uint32_t wa = mcf_read4(w0 + k);
        const uint32_t wb = mcf_read4(w1 + k);
        const uint32_t x_e = mcf_sxtab16(offset, xw), x_o = mcf_sxtab16_ror8(offset, xw);
        a0 = mcf_smlad(x_e, mcf_sxtb16(wa), a0);
        a0 = mcf_smlad(x_o, mcf_sxtb16_ror8(wa), a0);
        a1 = mcf_smlad(x_e, mcf_sxtb16(wb), a1);
        a1 = mcf_smlad(x_o, mcf_sxtb16_ror8(wb), a1);
    }
    for (; k < length; k++) {
        const int32_t xv = x[k] - zp;
        a0 += xv * w0[k];
        a1 += xv * w1[k];
    }
    acc[0] = a0;
    acc[1] = a1;
}

/* sum_k (x[k] + offset) * w[k] + acc: one x row, one weight row. */
static inline int32_t mcf_dot_1x1(const int8_t *x, const int8_t *w, int32_t length, uint32_t offset,
                                  int32_t acc) {
    const int32_t zp = -(int16_t)(offset & 0xFFFFu);
    int32_t k = 0;
    for (; k + 4 <= length; k += 4) {
        const uint32_t xw = mcf_read4(x + k);
        const uint32_t ww = mcf_read4(w + k);
        acc = mcf_smlad(mcf_sxtab16(offset, xw), mcf_sxtb16(ww), acc);
        acc = mcf_smlad(mcf_sxtab16_ror8(offset, xw), mcf_sxtb16_ror8(ww), acc);
    }
    for (; k < length; k++) {
        acc += (x[k] - zp) * w[k];
    }
    return acc;
}

/* The largest of length (> 0) int8 values, four bytes at a time: SSUB8 sets the lanes' GE flags, SEL keeps
 * the larger bytes. */
static inline int32_t mcf_dsp_row_max(const int8_t *input, int32_t length) {
    int32_t i = 0;
    int32_t max = input[0];
#if defined(__ARM_FEATURE_SIMD32) && __ARM_FEATURE_SIMD32
    if (length >= 8) {
        uint32_t lanes = mcf_read4(input);
        for (i = 4; i + 4 <= length; i += 4) {
            const uint32_t w = mcf_read4(input + i);
            (void)__ssub8((int8x4_t)w, (int8x4_t)lanes); /* GE[k] set where w's byte k >= lanes' byte k */
            lanes = (uint32_t)__sel((int8x4_t)w, (int8x4_t)lanes);
        }
        for (int32_t k = 0; k < 4; k++) {
            const int32_t v = (int8_t)(lanes >> (8 * k));
            max = v > max ? v : max;
        }
    }
#endif
    for (; i < length; i++) {
        max = input[i] > max ? input[i] : max;
    }
    return max;
}

/* ------------------------------------------------------------------ token blocks of the fused kernels */

/* The fused DSP kernels run MCF_DSP_BLOCK tokens at a time: each weight word is loaded and split once for
 * four tokens. Their inputs are first widened to int16 with the zero point removed ("x16"), laid out so that
 * one group of four input values of all four tokens is eight consecutive words:
 *   [t0 (x0, x2), t0 (x1, x3), t1 (x0, x2), t1 (x1, x3), ..., t3 (x1, x3)]   (pairs as SXTAB16 makes them)
 * followed by the in_ch % 4 leftover values as int16, token by token. 8 * in_ch bytes, word aligned. */
#define MCF_DSP_BLOCK 4

/* x16 of `count` (1..4) int8 rows of in_ch values, `stride` bytes apart, minus zp; rows count..3 repeat the
 * last row so that every word of x16 is defined. */
static inline void mcf_dsp_widen4(const int8_t *rows, int32_t stride, int32_t count, int32_t in_ch,
                                  int32_t zp, uint32_t *x16) {
    const uint32_t offset = mcf_pack_pair(-zp);
    const int32_t groups = in_ch >> 2;
    const int32_t tail = in_ch & 3;
    int16_t *rest = (int16_t *)(x16 + 8 * groups);
    for (int32_t t = 0; t < MCF_DSP_BLOCK; t++) {
        const int8_t *x = rows + (t < count ? t : count - 1) * stride;
        uint32_t *dst = x16 + 2 * t;
        for (int32_t g = 0; g < groups; g++, x += 4, dst += 8) {
            const uint32_t w = mcf_read4(x);
            dst[0] = mcf_sxtab16(offset, w);
            dst[1] = mcf_sxtab16_ror8(offset, w);
        }
        for (int32_t r = 0; r < tail; r++) {
            rest[t * tail + r] = (int16_t)(x[r] - zp);
        }
    }
}

/* acc[t] += sum over `groups` groups of four inputs of x16 (token t) . w, for the four tokens of a block.
 * Per group of four inputs: one weight load and two SXTB16 shared by the four tokens, two LDM of four x16
 * words (two tokens each) and 8 SMLADs: 16 MACs in 13 instructions; with the loop (four groups per pass),
 * 64 MACs in 54. Inline assembly on the core: LDM fills registers in ascending order, so the four x16
 * operands are pinned to r8-r11 (GCC would otherwise load the words one by one and spill). */
#define MCF_DOT4_GROUP                               \
    "ldr %[wo], [%[pw]], #4\n\t"                     \
    "sxtb16 %[we], %[wo]\n\t"                        \
    "sxtb16 %[wo], %[wo], ror #8\n\t"                \
    "ldmia %[px]!, {%[xa], %[xb], %[xc], %[xd]}\n\t" \
    "smlad %[a0], %[xa], %[we], %[a0]\n\t"           \
    "smlad %[a0], %[xb], %[wo], %[a0]\n\t"           \
    "smlad %[a1], %[xc], %[we], %[a1]\n\t"           \
    "smlad %[a1], %[xd], %[wo], %[a1]\n\t"           \
    "ldmia %[px]!, {%[xa], %[xb], %[xc], %[xd]}\n\t" \
    "smlad %[a2], %[xa], %[we], %[a2]\n\t"           \
    "smlad %[a2], %[xb], %[wo], %[a2]\n\t"           \
    "smlad %[a3], %[xc], %[we], %[a3]\n\t"           \
    "smlad %[a3], %[xd], %[wo], %[a3]\n\t"

static inline void mcf_dsp_dot4(const uint32_t *x16, const int8_t *w, int32_t groups, int32_t acc[4]) {
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    const uint32_t *px = x16;
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && defined(__thumb2__)
    if (groups >= 2) {
        const uint32_t *end = x16 + 32 * (groups >> 2); /* the passes of four groups end here */
        register uint32_t xa __asm("r8");
        register uint32_t xb __asm("r9");
        register uint32_t xc __asm("r10");
        register uint32_t xd __asm("r11");
        uint32_t wo, we;
        __asm(
            "cmp %[px], %[end]\n\t"
            "beq 2f\n"
            "1:\n\t" MCF_DOT4_GROUP MCF_DOT4_GROUP MCF_DOT4_GROUP MCF_DOT4_GROUP
            "cmp %[px], %[end]\n\t"
            "bne 1b\n"
            "2:\n\t"
            "tst %[groups], #2\n\t"
            "beq 3f\n\t" MCF_DOT4_GROUP MCF_DOT4_GROUP "3:"
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [px] "+r"(px), [pw] "+r"(w),
              [wo] "=&r"(wo), [we] "=&r"(we), [xa] "=&r"(xa), [xb] "=&r"(xb), [xc] "=&r"(xc), [xd] "=&r"(xd)
            : [end] "r"(end), [groups] "r"(groups)
            : "cc", "memory");
        groups &= 1;
    }
#endif
    for (int32_t g = 0; g < groups; g++, px += 8) {
        const uint32_t ww = mcf_read4(w);
        w += 4;
        const uint32_t we = mcf_sxtb16(ww);
        const uint32_t wo = mcf_sxtb16_ror8(ww);
        a0 = mcf_smlad(px[1], wo, mcf_smlad(px[0], we, a0));
        a1 = mcf_smlad(px[3], wo, mcf_smlad(px[2], we, a1));
        a2 = mcf_smlad(px[5], wo, mcf_smlad(px[4], we, a2));
        a3 = mcf_smlad(px[7], wo, mcf_smlad(px[6], we, a3));
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* acc[t] += sum_k x16(token t)[k] * w[k] over k < length for the four tokens of a block: mcf_dsp_dot4 over
 * the groups of four, then the length % 4 leftover values (stored after the groups, token by token). */
static inline void mcf_dsp_dot4_row(const uint32_t *x16, int32_t length, const int8_t *w, int32_t acc[4]) {
    const int32_t groups = length >> 2;
    const int32_t tail = length & 3;
    mcf_dsp_dot4(x16, w, groups, acc);
    const int16_t *rest = (const int16_t *)(x16 + 8 * groups);
    const int8_t *wt = w + 4 * groups;
    for (int32_t r = 0; r < tail; r++) {
        const int32_t wv = wt[r];
        acc[0] += rest[r] * wv;
        acc[1] += rest[tail + r] * wv;
        acc[2] += rest[2 * tail + r] * wv;
        acc[3] += rest[3 * tail + r] * wv;
    }
}

/* One quantized linear layer on a block of tokens: out[t * token_stride + n * channel_stride] for t < count,
 * from x16 (mcf_dsp_widen4 of the input with the layer's in_zp). A channel stride other than 1 writes the
 * output transposed (channel-major), as the per-head attention kernel keeps V.
 *
 * Requantization fast path, exact: when |bias| < 2^30 and in_ch < 32896 the accumulator starts at the bias
 * and stays within int32 (|dot| <= 255 * 128 * in_ch < 2^30); when also shift is in [-24, -2], with r =
 * -shift - 2, requant_s8(acc) == ssat8((((acc * mult) >> 32) + 2^r + out_zp * 2^(r + 1)) >> (r + 1)) (floor
 * shifts compose; the sum stays inside int32). Otherwise mcf_dsp_requantize_s8 (exact in all cases). */
static inline void mcf_dsp_linear4_strided(const uint32_t *x16, int32_t in_ch,
                                           const mcf_linear_params *params, const mcf_channel_quant *quant,
                                           const int8_t *weight, const int32_t *bias, int32_t out_ch,
                                           int8_t *out, int32_t token_stride, int32_t channel_stride,
                                           int32_t count) {
    const int32_t out_zp = params->out_zp;
    const int short_rows = in_ch < 32896;
    const int8_t *w = weight;
    for (int32_t n = 0; n < out_ch; n++, w += in_ch) {
        const int32_t b = bias[n], m = quant->mult[n], s = quant->shift[n];
        const int fast = short_rows && b > -(1 << 30) && b < (1 << 30) && s <= -2 && s >= -24;
        const int32_t start = fast ? b : 0;
        int32_t acc[4] = {start, start, start, start};
        mcf_dsp_dot4_row(x16, in_ch, w, acc);
        int8_t *o = out + n * channel_stride;
        if (fast) {
            const int32_t down = -s - 1;
            const int32_t add = (1 << (down - 1)) + (int32_t)((uint32_t)out_zp << down);
            if (count == MCF_DSP_BLOCK) { /* the usual full block: straight-line */
                o[0] = mcf_dsp_sat8((mcf_smmul(acc[0], m) + add) >> down);
                o[token_stride] = mcf_dsp_sat8((mcf_smmul(acc[1], m) + add) >> down);
                o[2 * token_stride] = mcf_dsp_sat8((mcf_smmul(acc[2], m) + add) >> down);
                o[3 * token_stride] = mcf_dsp_sat8((mcf_smmul(acc[3], m) + add) >> down);
                continue;
            }
            for (int32_t t = 0; t < count; t++, o += token_stride) {
                *o = mcf_dsp_sat8((mcf_smmul(acc[t], m) + add) >> down);
            }
        } else {
            for (int32_t t = 0; t < count; t++, o += token_stride) {
                *o = mcf_dsp_requantize_s8(acc[t], b, m, s, out_zp);
            }
        }
    }
}

/* mcf_dsp_linear4_strided with rows of out out_stride bytes apart (channels consecutive). */
static inline void mcf_dsp_linear4(const uint32_t *x16, int32_t in_ch, const mcf_linear_params *params,
                                   const mcf_channel_quant *quant, const int8_t *weight, const int32_t *bias,
                                   int32_t out_ch, int8_t *out, int32_t out_stride, int32_t count) {
    mcf_dsp_linear4_strided(x16, in_ch, params, quant, weight, bias, out_ch, out, out_stride, 1, count);
}

/* ------------------------------------------------------------------ multiplies of the LayerNorm kernel */

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
/* (a * b + 2^31) >> 32, the rounded high word of the 64-bit product (SMMULR). */
static inline int32_t mcf_smmulr(int32_t a, int32_t b) {
    int32_t r;
    __asm("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
/* acc + ((a * b) >> 32), modulo 2^32 (SMMLA). */
static inline int32_t mcf_smmla(int32_t a, int32_t b, int32_t acc) {
    int32_t r;
    __asm("smmla %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}
#else
static inline int32_t mcf_smmulr(int32_t a, int32_t b) {
    return (int32_t)(((int64_t)a * b + ((int64_t)1 << 31)) >> 32);
}
static inline int32_t mcf_smmla(int32_t a, int32_t b, int32_t acc) {
    return (int32_t)((uint32_t)acc + (uint32_t)(((int64_t)a * b) >> 32));
}
#endif

#endif /* MCF_DSP_H */
