/* The MLP half of a transformer block with the DSP extension, MCF_DSP_BLOCK tokens at a time: see mcf_fused.h
 * (same contract and results as the portable kernel) and mcf_dsp_fused.h (the scratch layout). */
#include "mcf_dsp_fused.h"
#include "mcf_fused_internal.h"

mcf_status mcf_mlp_block_s8(const mcf_mlp_block_dims *dims, const mcf_mlp_block_params *params, int8_t *x,
                            void *scratch) {
    const int32_t size = mlp_block_checked_size(dims, params, x, scratch);
    if (size == 0) {
        return MCF_ERR_ARG;
    }
    const int32_t fc1_rank = dims->fc1_rank;
    const int32_t fc2_rank = dims->fc2_rank;
    const int32_t tokens = dims->tokens;
    if (!mcf_fused_uses_blocks(dims->tokens,
                               dims->block_tokens)) { /* the scratch holds the one-token chain only */
#if MCF_DSP_FUSED_ONE_TOKEN
        return mlp_block_per_token(dims, params, x, scratch, size);
#else
        return MCF_ERR_ARG; /* compiled out (MCF_DSP_FUSED_ONE_TOKEN) */
#endif
    }
    const int32_t channels = dims->channels;
    const int32_t hidden = dims->hidden;
    if (!mcf_dsp_valid_mlp_block(dims, params)) {
        return MCF_ERR_ARG;
    }
    int32_t width = channels > hidden ? channels : hidden;
    width = fc1_rank > width ? fc1_rank : width;
    width = fc2_rank > width ? fc2_rank : width;
    const mcf_dsp_scratch s = mcf_dsp_scratch_layout(scratch, width);
    const mcf_layernorm_layer *norm = &params->norm;
    const mcf_dsp_factored_fast fc1_fast = mcf_dsp_factored_fast_of(&params->fc1, channels, fc1_rank, hidden);
    const mcf_dsp_factored_fast fc2_fast = mcf_dsp_factored_fast_of(&params->fc2, hidden, fc2_rank, channels);

    for (int32_t t0 = 0; t0 < tokens; t0 += MCF_DSP_BLOCK) {
        const int32_t count = tokens - t0 < MCF_DSP_BLOCK ? tokens - t0 : MCF_DSP_BLOCK;
        int8_t *xb = x + t0 * channels;
        const mcf_dims rows = {count, channels}; /* one call: the per-call checks shared by the block */
        (void)mcf_layernorm_s8(&rows, &norm->params, xb, norm->gamma, norm->beta, s.area); /* cannot fail */
        mcf_dsp_factored4(&params->fc1, channels, fc1_rank, hidden, s.area, count, s.x16, fc1_fast);
        (void)mcf_lut_s8(s.area, params->gelu_table, s.area, count * hidden);
        mcf_dsp_factored4(&params->fc2, hidden, fc2_rank, channels, s.area, count, s.x16, fc2_fast);
        for (int32_t t = 0; t < count; t++) {
            int8_t *x_row = xb + t * channels;
            (void)mcf_add_s8(&params->residual, x_row, s.area + t * channels, x_row, channels);
        }
    }
    return MCF_OK;
}
