/* ops.softmax with the DSP extension: see mcf_kernels.h (same contract and results as the portable kernel).
 * The maximum is mcf_dsp_row_max (four bytes at a time); the output multiply is one UMULL (e and inv are
 * non-negative, e * inv < 2^63 as in the portable kernel). */
#include "mcf_dsp.h"
#include "mcf_kernels.h"
#include "mcf_math.h"

mcf_status mcf_softmax_s8(const int8_t *input, const int32_t *exp_table, int8_t *output, int32_t length) {
    if (input == NULL || exp_table == NULL || output == NULL || length <= 0) {
        return MCF_ERR_ARG;
    }
    const int32_t max = mcf_dsp_row_max(input, length);
    const int32_t *table = exp_table + max; /* table[-x] == exp_table[max - x], index in [0, 255] */
    /* The sum in 64 bits from non-negative int32 entries: ADDS/ADC, four entries per loaded word. */
    uint64_t sum = 0;
    int32_t i = 0;
    for (; i + 4 <= length; i += 4) {
        const uint32_t w = mcf_read4(input + i);
        sum += (uint32_t)table[-(int32_t)(int8_t)w];
        sum += (uint32_t)table[-(int32_t)(int8_t)(w >> 8)];
        sum += (uint32_t)table[-(int32_t)(int8_t)(w >> 16)];
        sum += (uint32_t)table[-((int32_t)w >> 24)];
    }
    for (; i < length; i++) {
        sum += (uint32_t)table[-input[i]];
    }
    /* 2^31 / sum in one 32-bit division when sum < 2^32 (always with Q15 tables shorter than 2^17 entries);
     * inv <= 2^31 fits uint32, so e * inv is one UMULL. */
    const uint32_t inv = sum == 0           ? 0u
                         : (sum >> 32) == 0 ? 0x80000000u / (uint32_t)sum
                                            : (uint32_t)(((uint64_t)1 << MCF_SOFTMAX_RECIP_BITS) / sum);
    const uint64_t round = (uint64_t)1 << (MCF_SOFTMAX_OUT_SHIFT - 1);
    /* Reads input[i] before writing output[i]: output may alias input. The probability before the -128 is
     * non-negative: above 255 it saturates to 127. */
    for (i = 0; i < length; i++) {
        const uint64_t prob = ((uint64_t)(uint32_t)table[-input[i]] * inv + round) >> MCF_SOFTMAX_OUT_SHIFT;
        output[i] = prob > 255u ? (int8_t)MCF_INT8_MAX : (int8_t)((int32_t)prob - 128);
    }
    return MCF_OK;
}
