/* Parameter checks shared by the portable and DSP variants of each kernel (internal, static inline): one
 * place states each kernel's accepted ranges (mcf_kernels.h), so the variants cannot drift apart. */
#ifndef MCF_CHECKS_H
#define MCF_CHECKS_H

#include "mcf_kernels.h"
#include "mcf_math.h"

/* Input and output zero points of a linear layer or patch embedding. */
static inline int mcf_valid_linear_params(const mcf_linear_params *params) {
    return mcf_valid_zp(params->in_zp) && mcf_valid_zp(params->out_zp);
}

/* Per output channel requantization of `out_ch` channels (quant->mult and quant->shift not NULL). */
static inline int mcf_valid_channel_quant(const mcf_channel_quant *quant, int32_t out_ch) {
    for (int32_t n = 0; n < out_ch; n++) {
        if (!mcf_valid_requant(quant->mult[n], quant->shift[n])) {
            return 0;
        }
    }
    return 1;
}

static inline int mcf_valid_add_params(const mcf_add_params *params) {
    return mcf_valid_zp(params->a_zp) && mcf_valid_zp(params->b_zp) && mcf_valid_zp(params->out_zp) &&
           params->a_mult >= 0 && params->a_mult < MCF_ADD_MULT_LIMIT && params->b_mult >= 0 &&
           params->b_mult < MCF_ADD_MULT_LIMIT && params->shift >= 1 && params->shift <= MCF_ADD_SHIFT_MAX;
}

static inline int mcf_valid_layernorm_params(const mcf_layernorm_params *params) {
    return mcf_valid_zp(params->in_zp) && mcf_valid_zp(params->out_zp) &&
           mcf_valid_requant(params->mult, params->shift) && params->eps >= 0 &&
           params->eps <= MCF_LN_EPS_MAX;
}

static inline int mcf_valid_attention_params(const mcf_attention_params *params) {
    return mcf_valid_zp(params->q_zp) && mcf_valid_zp(params->k_zp) && mcf_valid_zp(params->v_zp) &&
           mcf_valid_zp(params->score_zp) && mcf_valid_zp(params->out_zp) &&
           mcf_valid_requant(params->score_mult, params->score_shift) &&
           mcf_valid_requant(params->out_mult, params->out_shift);
}

#endif /* MCF_CHECKS_H */
