/* ops.add: see mcf_kernels.h. */
#include "mcf_checks.h"
#include "mcf_kernels.h"
#include "mcf_math.h"

mcf_status mcf_add_s8(const mcf_add_params *params, const int8_t *a, const int8_t *b, int8_t *output,
                      int32_t size) {
    if (!mcf_add_args_ok(params, a, b, output, size)) {
        return MCF_ERR_ARG;
    }
    const int32_t a_zp = params->a_zp;
    const int32_t b_zp = params->b_zp;
    const int32_t a_mult = params->a_mult;
    const int32_t b_mult = params->b_mult;
    const int32_t shift = params->shift;
    const int32_t out_zp = params->out_zp;
    /* |acc| < 2 * 255 * 2^15 < 2^24: the sum and its rounding term stay in int32. */
    for (int32_t i = 0; i < size; i++) {
        const int32_t acc = (a[i] - a_zp) * a_mult + (b[i] - b_zp) * b_mult;
        output[i] = mcf_sat8(mcf_rshift_round_s32(acc, shift) + out_zp);
    }
    return MCF_OK;
}
