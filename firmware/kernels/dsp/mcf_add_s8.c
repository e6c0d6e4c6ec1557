/* ops.add with the DSP extension: see mcf_kernels.h (same contract and results as the portable kernel).
 * Each element's (a - a_zp, b - b_zp) is packed into one int16 pair (SXTAB16, then PKHBT/PKHTB) so that one
 * SMLAD with the pair (a_mult, b_mult) and the rounding term (with the output zero point in it for shifts up
 * to 22) as accumulator gives the whole sum. */
#include "mcf_checks.h"
#include "mcf_dsp.h"
#include "mcf_kernels.h"
#include "mcf_math.h"

/* The groups of four elements; returns how many elements they covered. Inlined twice: with zp = 0 (the zero
 * point folded into round) the addition drops out. Four elements of a and b are read before any of the four
 * outputs is written: output may alias a or b. */
static inline __attribute__((always_inline)) int32_t add_groups(const int8_t *a, const int8_t *b,
                                                                int8_t *output, int32_t size, uint32_t a_off,
                                                                uint32_t b_off, uint32_t mults, int32_t round,
                                                                int32_t shift, int32_t zp) {
    int32_t i = 0;
    for (; i + 4 <= size; i += 4) {
        const uint32_t wa = mcf_read4(a + i);
        const uint32_t wb = mcf_read4(b + i);
        const uint32_t ae = mcf_sxtab16(a_off, wa), ao = mcf_sxtab16_ror8(a_off, wa);
        const uint32_t be = mcf_sxtab16(b_off, wb), bo = mcf_sxtab16_ror8(b_off, wb);
        const int32_t s0 = mcf_smlad(mcf_pack_low_lanes(ae, be), mults, round);
        const int32_t s1 = mcf_smlad(mcf_pack_low_lanes(ao, bo), mults, round);
        const int32_t s2 = mcf_smlad(mcf_pack_high_lanes(ae, be), mults, round);
        const int32_t s3 = mcf_smlad(mcf_pack_high_lanes(ao, bo), mults, round);
        output[i] = mcf_dsp_sat8((s0 >> shift) + zp);
        output[i + 1] = mcf_dsp_sat8((s1 >> shift) + zp);
        output[i + 2] = mcf_dsp_sat8((s2 >> shift) + zp);
        output[i + 3] = mcf_dsp_sat8((s3 >> shift) + zp);
    }
    return i;
}

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
    const uint32_t a_off = mcf_pack_pair(-a_zp);
    const uint32_t b_off = mcf_pack_pair(-b_zp);
    const uint32_t mults =
        (uint32_t)a_mult | ((uint32_t)b_mult << 16); /* both < 2^15: positive int16 lanes */
    /* |sum| < 2 * 255 * 2^15 < 2^24: with shift <= 22 the output zero point joins the rounding term,
     * (s + out_zp * 2^shift) >> shift == (s >> shift) + out_zp, and the sum stays below 2^30. */
    const int fold = shift <= 22;
    const int32_t round = (int32_t)(1u << (shift - 1)) + (fold ? (int32_t)((uint32_t)out_zp << shift) : 0);
    int32_t i = fold ? add_groups(a, b, output, size, a_off, b_off, mults, round, shift, 0)
                     : add_groups(a, b, output, size, a_off, b_off, mults, round, shift, out_zp);
    for (; i < size; i++) {
        const int32_t acc = (a[i] - a_zp) * a_mult + (b[i] - b_zp) * b_mult;
        output[i] = mcf_sat8(mcf_rshift_round_s32(acc, shift) + out_zp);
    }
    return MCF_OK;
}
