/* The attention half of a transformer block with K and V one head at a time, with the DSP extension, blocks
 * of MCF_DSP_BLOCK tokens (dsp/mcf_dsp_heads.c): see mcf_fused.h (same contract and results as the portable
 * kernel). */
#include "mcf_dsp_fused.h"
#include "mcf_fused_internal.h"

mcf_status mcf_attention_block_heads_s8(const mcf_attention_block_dims *dims,
                                        const mcf_attention_block_params *params, int8_t *x, int8_t *k_head,
                                        int8_t *v_head, int8_t *context, void *scratch) {
    if (!attention_block_heads_args_ok(dims, params, x, k_head, v_head, context, scratch)) {
        return MCF_ERR_ARG;
    }
    if (!mcf_fused_uses_blocks(dims->tokens,
                               dims->block_tokens)) { /* the scratch holds the one-token layout only */
#if MCF_DSP_FUSED_ONE_TOKEN
        return attention_block_heads_per_token(dims, params, x, k_head, v_head, context, scratch);
#else
        return MCF_ERR_ARG; /* compiled out (MCF_DSP_FUSED_ONE_TOKEN) */
#endif
    }
    if (!mcf_dsp_valid_attention_block(dims, params)) {
        return MCF_ERR_ARG;
    }
    mcf_dsp_attention_heads(dims, params, x, k_head, v_head, context, scratch, 0);
    return MCF_OK;
}
