/* ops.layernorm: see mcf_kernels.h. */
#include "mcf_checks.h"
#include "mcf_kernels.h"
#include "mcf_math.h"

mcf_status mcf_layernorm_s8(const mcf_dims *dims, const mcf_layernorm_params *params, const int8_t *input,
                            const int16_t *gamma, const int32_t *beta, int8_t *output) {
    if (!mcf_layernorm_args_ok(dims, params, input, gamma, beta, output)) {
        return MCF_ERR_ARG;
    }
    const int32_t tokens = dims->tokens;
    const int32_t channels = dims->channels;
    const int32_t in_zp = params->in_zp;
    const int64_t eps = params->eps;
    const int32_t mult = params->mult;
    const int32_t shift = params->shift;
    const int32_t out_zp = params->out_zp;
    const int32_t frac_shift = MCF_LN_RECIP_BITS - MCF_LN_NORM_BITS;

    for (int32_t t = 0; t < tokens; t++) {
        const int8_t *x = input + t * channels;
        int8_t *y = output + t * channels;
        int32_t sum = 0;
        int64_t squares = 0;
        for (int32_t c = 0; c < channels; c++) {
            const int32_t xi = x[c] - in_zp;
            sum += xi;
            squares += xi * xi;
        }
        /* D*Q - S^2 >= 0 (Cauchy-Schwarz, exact in integers) and eps >= 0: var >= 0, and < 2^63. */
        const int64_t var = (int64_t)channels * squares - (int64_t)sum * sum + eps;
        uint64_t sd = mcf_isqrt64((uint64_t)var);
        if (sd < 1) {
            sd = 1;
        }
        const int64_t inv = (int64_t)(((uint64_t)1 << MCF_LN_RECIP_BITS) / sd);
        /* Reads x[c] before writing y[c]: output may alias input. */
        for (int32_t c = 0; c < channels; c++) {
            const int64_t centered = (int64_t)channels * (x[c] - in_zp) - sum;
            const int64_t norm = mcf_rshift_round_s64(centered * inv, frac_shift);
            const int32_t acc = mcf_sat32(norm * gamma[c] + beta[c]);
            y[c] = mcf_requantize_s8(acc, mult, shift, out_zp);
        }
    }
    return MCF_OK;
}
