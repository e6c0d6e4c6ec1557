/* The MLP half of a transformer block with the DSP extension, MCF_DSP_BLOCK tokens at a time: see mcf_fused.h
 * (same contract and results as the portable kernel) and mcf_dsp_fused.h (the scratch layout). */
#include "mcf_dsp_fused.h"
#include "mcf_fused_internal.h"

/* x16 (the layout of mcf_dsp_widen4, rows count..3 repeating the last) of the GELU of `count` int8 rows of
 * `hidden` values, minus zp, in one pass: the table (indexed by x + 128, so from its middle by the signed
 * byte) read as int8 and two values paired in a word (PKHBT) with the zero point removed from both lanes at
 * once (UADD16: the lanes stay within int16), instead of a lookup pass and a widening pass over the int8
 * rows. */
static void gelu_widen4(const int8_t *rows, int32_t hidden, int32_t count, const int8_t *table, int32_t zp,
                        uint32_t *x16) {
    const int8_t *middle = table + 128;
    const uint32_t offset = mcf_pack_pair(-zp);
    const int32_t groups = hidden >> 2;
    int16_t *rest = (int16_t *)(x16 + 8 * groups);
    for (int32_t t = 0; t < MCF_DSP_BLOCK; t++) {
        const int8_t *x = rows + (t < count ? t : count - 1) * hidden;
        uint32_t *dst = x16 + 2 * t;
        for (int32_t g = 0; g < groups; g++, x += 4, dst += 8) {
            const int32_t w = (int32_t)mcf_read4(x);
            const int32_t v0 = middle[(int8_t)w], v1 = middle[(int8_t)(w >> 8)];
            const int32_t v2 = middle[(int8_t)(w >> 16)], v3 = middle[w >> 24];
            dst[0] = mcf_uadd16(mcf_pack_low_lanes((uint32_t)v0, (uint32_t)v2), offset);
            dst[1] = mcf_uadd16(mcf_pack_low_lanes((uint32_t)v1, (uint32_t)v3), offset);
        }
        for (int32_t r = 0; r < (hidden & 3); r++) {
            rest[4 * r + t] = (int16_t)(middle[x[r]] - zp);
        }
    }
}

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
    const int norm2_lean = mcf_dsp_layernorm_lean(&norm->params, norm->beta, channels); /* once per call */
    const mcf_dsp_factored_fast fc1_fast = mcf_dsp_factored_fast_of(&params->fc1, channels, fc1_rank, hidden);
    const mcf_dsp_factored_fast fc2_fast = mcf_dsp_factored_fast_of(&params->fc2, hidden, fc2_rank, channels);

    for (int32_t t0 = 0; t0 < tokens; t0 += MCF_DSP_BLOCK) {
        const int32_t count = tokens - t0 < MCF_DSP_BLOCK ? tokens - t0 : MCF_DSP_BLOCK;
        int8_t *xb = x + t0 * channels;
        mcf_dsp_layernorm_rows(norm, channels, norm2_lean, xb, s.area, count);
        mcf_dsp_factored4(&params->fc1, channels, fc1_rank, hidden, s.area, count, s.x16, fc1_fast);
        const mcf_linear_layer *fc2_in = params->fc2.v != NULL ? params->fc2.v : &params->fc2.u;
        gelu_widen4(s.area, hidden, count, params->gelu_table, fc2_in->params.in_zp, s.x16);
        mcf_dsp_factored4_x16(&params->fc2, hidden, fc2_rank, channels, s.area, count, s.x16, fc2_fast);
        /* the block's rows are consecutive in x and in the area: one call */
        (void)mcf_add_s8(&params->residual, xb, s.area, xb, count * channels);
    }
    return MCF_OK;
}
