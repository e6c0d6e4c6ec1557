/* ops.add with the DSP extension: see mcf_kernels.h (same contract and results as the portable kernel).
 * Each element's (a - a_zp, b - b_zp) is packed into one int16 pair (SXTAB16, then PKHBT/PKHTB) so that one
 * SMLAD with the pair (a_mult, b_mult) and the rounding term as accumulator gives the whole sum. */
#include "mcf_checks.h"
#include "mcf_dsp.h"
#include "mcf_kernels.h"
#include "mcf_math.h"

mcf_status mcf_add_s8(const mcf_add_params *params, const int8_t *a, const int8_t *b, int8_t *output,
                      int32_t size) {
    if (params == NULL || a == NULL || b == NULL || output == NULL || size <= 0) {
        return MCF_ERR_ARG;
    }
    const int32_t a_zp = params->a_zp;
    const int32_t b_zp = params->b_zp;
    const int32_t a_mult = params->a_mult;
    const int32_t b_mult = params->b_mult;
    const int32_t shift = params->shift;
    const int32_t out_zp = params->out_zp;
    if (!mcf_valid_add_params(params)) {
        return MCF_ERR_ARG;
    }
    const uint32_t a_off = mcf_pack_pair(-a_zp);
    const uint32_t b_off = mcf_pack_pair(-b_zp);
    const uint32_t mults =
        (uint32_t)a_mult | ((uint32_t)b_mult << 16); /* both < 2^15: positive int16 lanes */
    const int32_t round = (int32_t)(1u << (shift - 1));
    int32_t i = 0;
    /* Four elements of a and b are read before any of the four outputs is written: output may alias a or b.
     */
    for (; i + 4 <= size; i += 4) {
        const uint32_t wa = mcf_read4(a + i);
        const uint32_t wb = mcf_read4(b + i);
        const uint32_t ae = mcf_sxtab16(a_off, wa), ao = mcf_sxtab16_ror8(a_off, wa);
        const uint32_t be = mcf_sxtab16(b_off, wb), bo = mcf_sxtab16_ror8(b_off, wb);
        const int32_t s0 = mcf_smlad((ae & 0xFFFFu) | (be << 16), mults, round);
        const int32_t s1 = mcf_smlad((ao & 0xFFFFu) | (bo << 16), mults, round);
        const int32_t s2 = mcf_smlad((ae >> 16) | (be & 0xFFFF0000u), mults, round);
        const int32_t s3 = mcf_smlad((ao >> 16) | (bo & 0xFFFF0000u), mults, round);
        output[i] = mcf_dsp_sat8((s0 >> shift) + out_zp);
        output[i + 1] = mcf_dsp_sat8((s1 >> shift) + out_zp);
        output[i + 2] = mcf_dsp_sat8((s2 >> shift) + out_zp);
        output[i + 3] = mcf_dsp_sat8((s3 >> shift) + out_zp);
    }
    for (; i < size; i++) {
        const int32_t acc = (a[i] - a_zp) * a_mult + (b[i] - b_zp) * b_mult;
        output[i] = mcf_sat8(mcf_rshift_round_s32(acc, shift) + out_zp);
    }
    return MCF_OK;
}
