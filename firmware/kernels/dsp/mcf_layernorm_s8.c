/* ops.layernorm with the DSP extension: see mcf_kernels.h (same contract and results as the portable kernel).
 * The statistics come from SMLAD over SXTAB16-widened words (the sum as a dot product with (1, 1)); the
 * square root starts at the highest set bit (CLZ) instead of scanning down from 2^62; per channel the exact
 * 64-bit chain is replaced by 32x32 multiplies where the values allow it: norm = (centered * inv + 2^29) >>
 * 30   with inv = 2^40 / sd < 2^31 (SMULL; |centered| < 2^24 always), acc  = sat32(norm * gamma + beta)
 * (SMLAL, then a saturation test on the high word), and the requantization of mcf_dsp_requantize_s8. Any
 * other case takes the portable kernel's 64-bit path. */
#include "mcf_checks.h"
#include "mcf_dsp.h"
#include "mcf_kernels.h"
#include "mcf_math.h"

/* floor(sqrt(value)) for value < 2^32, bit by bit in 32-bit registers. */
static uint32_t isqrt32(uint32_t value) {
    uint32_t rem = value;
    uint32_t root = 0;
    uint32_t bit = value == 0 ? 0 : (uint32_t)1 << ((31 - __builtin_clz(value)) & ~1);
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

/* floor(sqrt(value)), exactly mcf_isqrt64, from the highest power of 4 not above value. */
static uint64_t isqrt64_clz(uint64_t value) {
    if (value >> 32 == 0) {
        return isqrt32((uint32_t)value);
    }
    uint64_t bit = (uint64_t)1 << ((63 - __builtin_clzll(value)) & ~1);
    uint64_t rem = value;
    uint64_t root = 0;
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

mcf_status mcf_layernorm_s8(const mcf_dims *dims, const mcf_layernorm_params *params, const int8_t *input,
                            const int32_t *gamma, const int32_t *beta, int8_t *output) {
    if (dims == NULL || params == NULL || input == NULL || gamma == NULL || beta == NULL || output == NULL) {
        return MCF_ERR_ARG;
    }
    const int32_t tokens = dims->tokens;
    const int32_t channels = dims->channels;
    const int32_t in_zp = params->in_zp;
    const int64_t eps = params->eps;
    const int32_t mult = params->mult;
    const int32_t shift = params->shift;
    const int32_t out_zp = params->out_zp;
    if (tokens <= 0 || channels <= 0 || !mcf_valid_layernorm_params(params)) {
        return MCF_ERR_ARG;
    }
    const int32_t frac_shift = MCF_LN_RECIP_BITS - MCF_LN_NORM_BITS;
    const uint32_t offset = mcf_pack_pair(-in_zp);
    const uint32_t ones = 0x00010001u;
    const mcf_dsp_requant quant = mcf_dsp_requant_make(mult, shift, out_zp);

    for (int32_t t = 0; t < tokens; t++) {
        const int8_t *x = input + t * channels;
        int8_t *y = output + t * channels;
        /* S and Q in int32: |S| <= 255 * 2^15 and Q <= 255^2 * (2^15 - 1) < 2^31. */
        int32_t sum = 0;
        int32_t squares = 0;
        int32_t c = 0;
        for (; c + 4 <= channels; c += 4) {
            const uint32_t w = mcf_read4(x + c);
            const uint32_t e = mcf_sxtab16(offset, w);
            const uint32_t o = mcf_sxtab16_ror8(offset, w);
            sum = mcf_smlad(o, ones, mcf_smlad(e, ones, sum));
            squares = mcf_smlad(o, o, mcf_smlad(e, e, squares));
        }
        for (; c < channels; c++) {
            const int32_t xi = x[c] - in_zp;
            sum += xi;
            squares += xi * xi;
        }
        const int64_t var = (int64_t)channels * (uint32_t)squares - (int64_t)sum * sum + eps;
        uint64_t sd = isqrt64_clz((uint64_t)var);
        if (sd < 1) {
            sd = 1;
        }
        int64_t inv;
        if (sd <=
            0xFFFFu) { /* 2^40 / sd as two 32-bit divisions: 2^40 = 2^24 * 2^16, remainder < sd <= 2^16 */
            const uint32_t d32 = (uint32_t)sd;
            const uint32_t q1 = (1u << 24) / d32;
            const uint32_t r1 = (1u << 24) - q1 * d32;
            inv = ((int64_t)q1 << 16) + (int64_t)((r1 << 16) / d32);
        } else {
            inv = (int64_t)(((uint64_t)1 << MCF_LN_RECIP_BITS) / sd);
        }
        /* Reads x[c] before writing y[c]: output may alias input. */
        if (inv <= INT32_MAX) {
            const int32_t inv32 = (int32_t)inv;
            for (c = 0; c < channels; c++) {
                const int32_t centered = channels * (x[c] - in_zp) - sum; /* |.| < 2^24 */
                const int32_t norm = mcf_mul_round30(centered, inv32);    /* |norm| < 2^20: exact */
                const int32_t acc = mcf_mla_sat32(norm, gamma[c], beta[c]);
                y[c] = mcf_dsp_requant_apply(&quant, acc);
            }
        } else {
            for (c = 0; c < channels; c++) {
                const int64_t centered = (int64_t)channels * (x[c] - in_zp) - sum;
                const int64_t norm = mcf_rshift_round_s64(centered * inv, frac_shift);
                const int32_t acc = mcf_sat32(norm * gamma[c] + beta[c]);
                y[c] = mcf_requantize_s8(acc, mult, shift, out_zp);
            }
        }
    }
    return MCF_OK;
}
