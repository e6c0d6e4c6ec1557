/* ops.softmax: see mcf_kernels.h. */
#include "mcf_kernels.h"
#include "mcf_math.h"

mcf_status mcf_softmax_s8(const int8_t *input, const int32_t *exp_table, int8_t *output, int32_t length) {
    if (input == NULL || exp_table == NULL || output == NULL || length <= 0) {
        return MCF_ERR_ARG;
    }
    int32_t max = input[0];
    for (int32_t i = 1; i < length; i++) {
        if (input[i] > max) {
            max = input[i];
        }
    }
    int64_t sum = 0;
    for (int32_t i = 0; i < length; i++) {
        sum += exp_table[max - input[i]]; /* index in [0, 255] */
    }
    /* numpy's 2^31 // sum; a zero sum (an all-zero table) gives 0 there as well. */
    const int64_t inv = sum > 0 ? ((int64_t)1 << MCF_SOFTMAX_RECIP_BITS) / sum : 0;
    const int64_t round = (int64_t)1 << (MCF_SOFTMAX_OUT_SHIFT - 1);
    /* Reads input[i] before writing output[i]: output may alias input. */
    for (int32_t i = 0; i < length; i++) {
        const int64_t e = exp_table[max - input[i]];
        int64_t prob = ((e * inv + round) >> MCF_SOFTMAX_OUT_SHIFT) - 128; /* >= -128: e >= 0, inv >= 0 */
        if (prob > MCF_INT8_MAX) {
            prob = MCF_INT8_MAX;
        }
        output[i] = (int8_t)prob;
    }
    return MCF_OK;
}
