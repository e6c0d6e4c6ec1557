/* Internal scalar helpers of the mcuformer int8 kernels: the C twins of mcuformer/quant/spec.py.
 *
 * Everything here is static inline and integer only. Right shifts of negative signed values are
 * arithmetic (flooring), as on every compiler the kernels target (GCC, Clang, Arm Compiler); the spec's
 * rounding rule relies on it exactly as CMSIS-NN does. */
#ifndef MCF_MATH_H
#define MCF_MATH_H

#include <stdint.h>

#define MCF_INT8_MIN (-128)
#define MCF_INT8_MAX 127
#define MCF_SHIFT_MIN (-32)          /* spec.SHIFT_MIN */
#define MCF_SHIFT_MAX 30             /* spec.SHIFT_MAX */
#define MCF_ADD_MULT_LIMIT (1 << 15) /* spec.ADD_MULT_BITS: add multipliers are < 2^15 */
#define MCF_ADD_SHIFT_MAX 30
#define MCF_LN_NORM_BITS 10  /* spec.LN_NORM_BITS */
#define MCF_LN_RECIP_BITS 40 /* spec.LN_RECIP_BITS */
#define MCF_LN_EPS_MAX ((int64_t)1 << 62)
#define MCF_SOFTMAX_RECIP_BITS 31 /* spec.SOFTMAX_RECIP_BITS */
#define MCF_SOFTMAX_OUT_SHIFT 23  /* spec.SOFTMAX_OUT_SHIFT */

/* Clamp to [-128, 127]. */
static inline int8_t mcf_sat8(int32_t value) {
    return (int8_t)(value < MCF_INT8_MIN ? MCF_INT8_MIN : (value > MCF_INT8_MAX ? MCF_INT8_MAX : value));
}

/* Clamp an int64 to [-128, 127]. */
static inline int8_t mcf_sat8_s64(int64_t value) {
    return (int8_t)(value < MCF_INT8_MIN ? MCF_INT8_MIN : (value > MCF_INT8_MAX ? MCF_INT8_MAX : value));
}

/* spec.saturate_int32: clamp an int64 to the int32 range. */
static inline int32_t mcf_sat32(int64_t value) {
    return (int32_t)(value < INT32_MIN ? INT32_MIN : (value > INT32_MAX ? INT32_MAX : value));
}

/* spec.requantize: (acc * mult + 2^(30 - shift)) >> (31 - shift) in 64 bits, one round-half-up rounding.
 * Needs 0 <= mult < 2^31 and shift in [MCF_SHIFT_MIN, MCF_SHIFT_MAX]; exact (no overflow) whenever
 * |acc| < 2^31. The result can exceed the int32 range when the scale is above 1. */
static inline int64_t mcf_requantize(int64_t acc, int32_t mult, int32_t shift) {
    const int32_t total = 31 - shift; /* 1 .. 63 */
    return (acc * mult + ((int64_t)1 << (total - 1))) >> total;
}

/* spec.requantize_s8: requantize, add the output zero point, saturate to int8 (all in 64 bits). */
static inline int8_t mcf_requantize_s8(int64_t acc, int32_t mult, int32_t shift, int32_t out_zp) {
    return mcf_sat8_s64(mcf_requantize(acc, mult, shift) + out_zp);
}

/* spec.rshift_round on 32 bits: (value + 2^(shift - 1)) >> shift, shift in [1, 31], no overflow of the sum.
 */
static inline int32_t mcf_rshift_round_s32(int32_t value, int32_t shift) {
    return (value + (int32_t)(1u << (shift - 1))) >> shift;
}

/* spec.rshift_round on 64 bits: (value + 2^(shift - 1)) >> shift, shift in [1, 63], no overflow of the sum.
 */
static inline int64_t mcf_rshift_round_s64(int64_t value, int32_t shift) {
    return (value + ((int64_t)1 << (shift - 1))) >> shift;
}

/* spec.isqrt64: floor(sqrt(value)), exact for every uint64 value (bit by bit, no division, no float), from
 * the highest power of 4 not above value (one count-leading-zeros). */
static inline uint64_t mcf_isqrt64(uint64_t value) {
    if (value == 0) {
        return 0;
    }
    uint64_t rem = value;
    uint64_t root = 0;
    uint64_t bit = (uint64_t)1 << ((63 - __builtin_clzll(value)) & ~1);
    while (bit != 0) {
        if (rem >= root + bit) {
            rem -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    return root;
}

/* Zero points of int8 tensors lie in [-128, 127]. */
static inline int mcf_valid_zp(int32_t zp) {
    return zp >= MCF_INT8_MIN && zp <= MCF_INT8_MAX;
}

/* A requantization multiplier from spec.quantize_multiplier: 0 <= mult (< 2^31 by type), shift in range. */
static inline int mcf_valid_requant(int32_t mult, int32_t shift) {
    return mult >= 0 && shift >= MCF_SHIFT_MIN && shift <= MCF_SHIFT_MAX;
}

#endif /* MCF_MATH_H */
