/* Helpers of the DSP fused kernels (mcf_dsp_fused.h): argument checks, the fast-path flags and the
 * per-block layer chains. One copy, linked by every fused kernel that uses them. */
#include "mcf_dsp_fused.h"

static int mcf_dsp_valid_layer(const mcf_linear_layer *layer, int32_t out_ch) {
    if (layer == NULL || (layer->weight == NULL) == (layer->weight16 == NULL) ||
        (layer->weight16 != NULL && !MCF_DSP_WIDENED) || layer->bias == NULL || layer->quant.mult == NULL ||
        layer->quant.shift == NULL || !mcf_valid_zp(layer->params.in_zp) ||
        !mcf_valid_zp(layer->params.out_zp)) {
        return 0;
    }
    for (int32_t n = 0; n < out_ch; n++) {
        if (!mcf_valid_requant(layer->quant.mult[n], layer->quant.shift[n])) {
            return 0;
        }
    }
    return 1;
}

static int mcf_dsp_valid_norm(const mcf_layernorm_layer *norm) {
    const mcf_layernorm_params *p = &norm->params;
    return norm->gamma != NULL && norm->beta != NULL && mcf_valid_zp(p->in_zp) && mcf_valid_zp(p->out_zp) &&
           mcf_valid_requant(p->mult, p->shift) && p->eps >= 0 && p->eps <= MCF_LN_EPS_MAX;
}

static int mcf_dsp_valid_add(const mcf_add_params *p) {
    return mcf_valid_zp(p->a_zp) && mcf_valid_zp(p->b_zp) && mcf_valid_zp(p->out_zp) && p->a_mult >= 0 &&
           p->a_mult < MCF_ADD_MULT_LIMIT && p->b_mult >= 0 && p->b_mult < MCF_ADD_MULT_LIMIT &&
           p->shift >= 1 && p->shift <= MCF_ADD_SHIFT_MAX;
}

static int mcf_dsp_valid_factored(const mcf_factored_linear *layer, int32_t rank, int32_t out_ch) {
    return (layer->v == NULL || mcf_dsp_valid_layer(layer->v, rank)) &&
           mcf_dsp_valid_layer(&layer->u, out_ch);
}

int mcf_dsp_valid_attention_block(const mcf_attention_block_dims *dims,
                                  const mcf_attention_block_params *params) {
    const int32_t channels = dims->channels;
    const int32_t qkv_rank = dims->qkv_rank;
    const int32_t proj_rank = dims->proj_rank;
    const mcf_attention_params *att = &params->attention;
    return mcf_dsp_valid_norm(&params->norm) &&
           (params->qkv_v == NULL || mcf_dsp_valid_layer(params->qkv_v, qkv_rank)) &&
           mcf_dsp_valid_layer(&params->q, channels) && mcf_dsp_valid_layer(&params->k, channels) &&
           mcf_dsp_valid_layer(&params->v, channels) && params->exp_table != NULL &&
           mcf_valid_zp(att->q_zp) && mcf_valid_zp(att->k_zp) && mcf_valid_zp(att->v_zp) &&
           mcf_valid_zp(att->score_zp) && mcf_valid_zp(att->out_zp) &&
           mcf_valid_requant(att->score_mult, att->score_shift) &&
           mcf_valid_requant(att->out_mult, att->out_shift) &&
           mcf_dsp_valid_factored(&params->proj, proj_rank, channels) && mcf_dsp_valid_add(&params->residual);
}

int mcf_dsp_valid_mlp_block(const mcf_mlp_block_dims *dims, const mcf_mlp_block_params *params) {
    return mcf_dsp_valid_norm(&params->norm) &&
           mcf_dsp_valid_factored(&params->fc1, dims->fc1_rank, dims->hidden) &&
           mcf_dsp_valid_factored(&params->fc2, dims->fc2_rank, dims->channels) &&
           params->gelu_table != NULL && mcf_dsp_valid_add(&params->residual);
}

/* Whether a layer's channels all take the requantization fast path (mcf_dsp_channels_fast), for out_ch rows.
 */
static int mcf_dsp_layer_fast(const mcf_linear_layer *layer, int32_t in_ch, int32_t out_ch) {
    return layer != NULL && mcf_dsp_channels_fast(layer->bias, &layer->quant, in_ch, out_ch);
}

mcf_dsp_factored_fast mcf_dsp_factored_fast_of(const mcf_factored_linear *layer, int32_t in_ch, int32_t rank,
                                               int32_t out_ch) {
    mcf_dsp_factored_fast fast = {mcf_dsp_layer_fast(layer->v, in_ch, rank),
                                  mcf_dsp_layer_fast(&layer->u, layer->v != NULL ? rank : in_ch, out_ch)};
    return fast;
}

void mcf_dsp_layer4(const mcf_linear_layer *layer, int32_t in_ch, int32_t out_ch, const int8_t *in,
                    int32_t count, uint32_t *x16, int8_t *out, int32_t out_stride, int fast) {
    mcf_dsp_widen4(in, in_ch, count, in_ch, layer->params.in_zp, x16);
    mcf_dsp_linear4(x16, in_ch, layer, out_ch, out, out_stride, mcf_dsp_block_rows(count, in_ch), fast);
}

void mcf_dsp_factored4(const mcf_factored_linear *layer, int32_t in_ch, int32_t rank, int32_t out_ch,
                       int8_t *area, int32_t count, uint32_t *x16, mcf_dsp_factored_fast fast) {
    const mcf_linear_layer *first = layer->v != NULL ? layer->v : &layer->u;
    mcf_dsp_widen4(area, in_ch, count, in_ch, first->params.in_zp, x16);
    mcf_dsp_factored4_x16(layer, in_ch, rank, out_ch, area, count, x16, fast);
}

mcf_dsp_attention_fast mcf_dsp_attention_fast_of(const mcf_attention_block_dims *dims,
                                                 const mcf_attention_block_params *params) {
    const int32_t channels = dims->channels;
    const int32_t in_ch = dims->qkv_rank > 0 ? dims->qkv_rank : channels;
    mcf_dsp_attention_fast fast = {
        mcf_dsp_layer_fast(params->qkv_v, channels, dims->qkv_rank),
        mcf_dsp_layer_fast(&params->q, in_ch, channels), mcf_dsp_layer_fast(&params->k, in_ch, channels),
        mcf_dsp_layer_fast(&params->v, in_ch, channels),
        mcf_dsp_factored_fast_of(&params->proj, channels, dims->proj_rank, channels)};
    return fast;
}
