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

/* The loops in inline assembly pin most registers: only optimised builds can give them (at -O0 GCC keeps
 * every variable in memory and runs out), so an -O0 build takes the C versions. */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && defined(__thumb2__) && defined(__OPTIMIZE__)
#define MCF_DSP_ASM 1
#else
#define MCF_DSP_ASM 0
#endif

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

/* a - b in each of the four bytes, modulo 256 (USUB8 on the core). */
static inline uint32_t mcf_usub8(uint32_t a, uint32_t b) {
#if defined(__ARM_FEATURE_SIMD32) && __ARM_FEATURE_SIMD32
    return (uint32_t)__usub8((uint8x4_t)a, (uint8x4_t)b);
#else
    return ((a | 0x80808080u) - (b & 0x7F7F7F7Fu)) ^ ((a ^ ~b) & 0x80808080u);
#endif
}

/* Two int16 lanes from two words: (lo's low lane, hi's low lane) by PKHBT, (lo's high lane, hi's high lane)
 * by PKHTB (GCC 12 builds neither from the C expression, which costs two or three instructions). */
static inline uint32_t mcf_pack_low_lanes(uint32_t lo, uint32_t hi) {
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    uint32_t r;
    __asm("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(lo), "r"(hi));
    return r;
#else
    return (lo & 0xFFFFu) | (hi << 16);
#endif
}
static inline uint32_t mcf_pack_high_lanes(uint32_t lo, uint32_t hi) {
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    uint32_t r;
    __asm("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(hi), "r"(lo));
    return r;
#else
    return (hi & 0xFFFF0000u) | (lo >> 16);
#endif
}

/* Each signed int16 lane clamped to [0, 255] (USAT16 #8 on the core). */
static inline uint32_t mcf_usat16_8(uint32_t w) {
#if defined(__ARM_FEATURE_SIMD32) && __ARM_FEATURE_SIMD32
    return (uint32_t)__usat16((int16x2_t)w, 8);
#else
    const int32_t lo = (int16_t)(w & 0xFFFFu), hi = (int16_t)(w >> 16);
    return (uint32_t)(lo < 0 ? 0 : (lo > 255 ? 255 : lo)) |
           ((uint32_t)(hi < 0 ? 0 : (hi > 255 ? 255 : hi)) << 16);
#endif
}

/* Lane-wise a + b of two uint16 lanes, modulo 2^16 (UADD16 on the core). */
static inline uint32_t mcf_uadd16(uint32_t a, uint32_t b) {
#if defined(__ARM_FEATURE_SIMD32) && __ARM_FEATURE_SIMD32
    return (uint32_t)__uadd16((uint16x2_t)a, (uint16x2_t)b);
#else
    return ((a + b) & 0xFFFFu) | (((a >> 16) + (b >> 16)) << 16);
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
        const int8_t *p = input + 4;
        const int8_t *end = input + 4 + ((length - 4) & ~7); /* eight bytes an iteration */
        for (; p != end; p += 8) {
            const uint32_t w0 = mcf_read4(p);
            const uint32_t w1 = mcf_read4(p + 4);
            (void)__ssub8((int8x4_t)w0, (int8x4_t)lanes); /* GE[k] set where w0's byte k >= lanes' byte k */
            lanes = (uint32_t)__sel((int8x4_t)w0, (int8x4_t)lanes);
            (void)__ssub8((int8x4_t)w1, (int8x4_t)lanes);
            lanes = (uint32_t)__sel((int8x4_t)w1, (int8x4_t)lanes);
        }
        i = (int32_t)(p - input);
        if (i + 4 <= length) {
            const uint32_t w = mcf_read4(p);
            (void)__ssub8((int8x4_t)w, (int8x4_t)lanes);
            lanes = (uint32_t)__sel((int8x4_t)w, (int8x4_t)lanes);
            i += 4;
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
