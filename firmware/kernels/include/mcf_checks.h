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

/* Whole argument lists, one per kernel with several variants: every variant starts with its kernel's check,
 * so the inputs a kernel accepts are stated once. */

static inline int mcf_linear_args_ok(const mcf_linear_dims *dims, const mcf_linear_params *params,
                                     const mcf_channel_quant *quant, const int8_t *input,
                                     const int8_t *weight, const int32_t *bias, const int8_t *output) {
    return dims != NULL && params != NULL && quant != NULL && quant->mult != NULL && quant->shift != NULL &&
           input != NULL && weight != NULL && bias != NULL && output != NULL && dims->tokens > 0 &&
           dims->in_ch > 0 && dims->out_ch > 0 && mcf_valid_linear_params(params) &&
           mcf_valid_channel_quant(quant, dims->out_ch);
}

static inline int mcf_patch_embed_args_ok(const mcf_patch_embed_dims *dims, const mcf_linear_params *params,
                                          const mcf_channel_quant *quant, const int8_t *image,
                                          const int8_t *weight, const int32_t *bias, const int8_t *output) {
    return dims != NULL && params != NULL && quant != NULL && quant->mult != NULL && quant->shift != NULL &&
           image != NULL && weight != NULL && bias != NULL && output != NULL && dims->height > 0 &&
           dims->width > 0 && dims->channels > 0 && dims->patch > 0 && dims->out_ch > 0 &&
           dims->height % dims->patch == 0 && dims->width % dims->patch == 0 &&
           mcf_valid_linear_params(params) && mcf_valid_channel_quant(quant, dims->out_ch);
}

static inline int mcf_add_args_ok(const mcf_add_params *params, const int8_t *a, const int8_t *b,
                                  const int8_t *output, int32_t size) {
    return params != NULL && a != NULL && b != NULL && output != NULL && size > 0 &&
           mcf_valid_add_params(params);
}

static inline int mcf_layernorm_args_ok(const mcf_dims *dims, const mcf_layernorm_params *params,
                                        const int8_t *input, const int16_t *gamma, const int32_t *beta,
                                        const int8_t *output) {
    return dims != NULL && params != NULL && input != NULL && gamma != NULL && beta != NULL &&
           output != NULL && dims->tokens > 0 && dims->channels > 0 && mcf_valid_layernorm_params(params);
}

/* mcf_attention_row_s8 (mcf_fused.h). */
static inline int mcf_attention_row_args_ok(const mcf_attention_dims *dims,
                                            const mcf_attention_params *params, const int8_t *q_row,
                                            const int8_t *k, const int8_t *v, const int32_t *exp_table,
                                            const int8_t *output_row, const void *scratch) {
    return dims != NULL && params != NULL && q_row != NULL && k != NULL && v != NULL && exp_table != NULL &&
           output_row != NULL && scratch != NULL && dims->tokens > 0 && dims->channels > 0 &&
           dims->heads > 0 && dims->channels % dims->heads == 0 && mcf_valid_attention_params(params);
}

#endif /* MCF_CHECKS_H */
