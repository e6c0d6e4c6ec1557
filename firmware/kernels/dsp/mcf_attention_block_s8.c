/* The attention half of a transformer block with the DSP extension, MCF_DSP_BLOCK tokens at a time: see
 * mcf_fused.h (same contract and results as the portable kernel) and mcf_dsp_fused.h (the scratch layout; the
 * score row of `tokens` bytes follows the int8 area). */
#include "mcf_dsp_fused.h"
#include "mcf_fused_internal.h"

mcf_status mcf_attention_block_s8(const mcf_attention_block_dims *dims,
                                  const mcf_attention_block_params *params, int8_t *x, int8_t *k_buf,
                                  int8_t *v_buf, void *scratch) {
    const int32_t size = attention_block_checked_size(dims, params, x, k_buf, v_buf, scratch);
    if (size == 0) {
        return MCF_ERR_ARG;
    }
    const int32_t qkv_rank = dims->qkv_rank;
    const int32_t proj_rank = dims->proj_rank;
    const int32_t tokens = dims->tokens;
    if (!mcf_fused_uses_blocks(dims->tokens,
                               dims->block_tokens)) { /* the scratch holds the one-token chain only */
#if MCF_DSP_FUSED_ONE_TOKEN
        return attention_block_per_token(dims, params, x, k_buf, v_buf, scratch, size);
#else
        return MCF_ERR_ARG; /* compiled out (MCF_DSP_FUSED_ONE_TOKEN) */
#endif
    }
    const int32_t channels = dims->channels;
    if (!mcf_dsp_valid_attention_block(dims, params)) {
        return MCF_ERR_ARG;
    }
    int32_t width = channels;
    width = qkv_rank > width ? qkv_rank : width;
    width = proj_rank > width ? proj_rank : width;
    const mcf_dsp_scratch s = mcf_dsp_scratch_layout(scratch, width);
    int8_t *scores = s.area + MCF_DSP_BLOCK * width;
    const mcf_dsp_attention_fast fast = mcf_dsp_attention_fast_of(dims, params);
    const int norm1_lean = /* once per call, not per block */
        mcf_dsp_layernorm_lean(&params->norm.params, params->norm.beta, channels);

    /* Pass 1: K and V of every token, written straight into k_buf and v_buf; full blocks only (x is not
     * written yet, so the last block may overlap the one before). */
    for (int32_t t0 = 0; t0 < tokens; t0 += MCF_DSP_BLOCK) {
        const int32_t first = mcf_dsp_full_block_start(t0, tokens);
        int32_t in_ch = channels;
        mcf_dsp_qkv_input4(params, norm1_lean, channels, qkv_rank, x + first * channels, MCF_DSP_BLOCK, &s,
                           &in_ch, fast.qkv_v);
        mcf_dsp_layer4(&params->k, in_ch, channels, s.area, MCF_DSP_BLOCK, s.x16, k_buf + first * channels,
                       channels, fast.k);
        mcf_dsp_layer4(&params->v, in_ch, channels, s.area, MCF_DSP_BLOCK, s.x16, v_buf + first * channels,
                       channels, fast.v);
    }

    /* Pass 2: per block, q (norm1 and the V factor recomputed: the same values), the context rows in place
     * over the q rows, proj, and the residual add over the block's rows of x (read by nothing else any more).
     */
    const mcf_attention_dims attention_dims = {tokens, channels, dims->heads};
    for (int32_t t0 = 0; t0 < tokens; t0 += MCF_DSP_BLOCK) {
        const int32_t count = tokens - t0 < MCF_DSP_BLOCK ? tokens - t0 : MCF_DSP_BLOCK;
        int8_t *xb = x + t0 * channels;
        int32_t in_ch = channels;
        mcf_dsp_qkv_input4(params, norm1_lean, channels, qkv_rank, xb, count, &s, &in_ch, fast.qkv_v);
        mcf_dsp_layer4(&params->q, in_ch, channels, s.area, count, s.x16, s.area, channels, fast.q);
        for (int32_t t = 0; t < count; t++) {
            int8_t *row = s.area + t * channels;
            (void)mcf_attention_row_s8(&attention_dims, &params->attention, row, k_buf, v_buf,
                                       params->exp_table, row, scores);
        }
        mcf_dsp_factored4(&params->proj, channels, proj_rank, channels, s.area, count, s.x16, fast.proj);
        /* the block's rows are consecutive in x and in the area: one call */
        (void)mcf_add_s8(&params->residual, xb, s.area, xb, count * channels);
    }
    return MCF_OK;
}
