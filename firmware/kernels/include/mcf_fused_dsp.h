/* Helpers of the DSP fused kernels (firmware/kernels/dsp; not part of the public API).
 *
 * The DSP fused kernels check every parameter before touching x (as the portable ones do, token 0 first),
 * then run blocks of MCF_DSP_BLOCK tokens through the same chain of ops. Their scratch (the size every
 * variant's _get_buffer_size gives, see mcf_fused.h) is: up to 3 bytes to reach a word boundary, then x16
 * (the widened input of the current linear, 8 * width bytes), then one int8 area of MCF_DSP_BLOCK rows of
 * `width` (each op's int8 output; its input is in x16 by then), then, for attention, the score row. width is
 * the widest row of the chain (channels, hidden and the ranks). */
#ifndef MCF_FUSED_DSP_H
#define MCF_FUSED_DSP_H

#include "mcf_dsp_block.h"
#include "mcf_fused.h"
#include "mcf_math.h"

#if MCF_DSP_BLOCK != MCF_FUSED_BLOCK_TOKENS
#error "the DSP kernels' token block must be the one the scratch sizes are computed for"
#endif

static inline int mcf_dsp_valid_layer(const mcf_linear_layer *layer, int32_t out_ch) {
    if (layer == NULL || layer->weight == NULL || layer->bias == NULL || layer->quant.mult == NULL ||
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

static inline int mcf_dsp_valid_norm(const mcf_layernorm_layer *norm) {
    const mcf_layernorm_params *p = &norm->params;
    return norm->gamma != NULL && norm->beta != NULL && mcf_valid_zp(p->in_zp) && mcf_valid_zp(p->out_zp) &&
           mcf_valid_requant(p->mult, p->shift) && p->eps >= 0 && p->eps <= MCF_LN_EPS_MAX;
}

static inline int mcf_dsp_valid_add(const mcf_add_params *p) {
    return mcf_valid_zp(p->a_zp) && mcf_valid_zp(p->b_zp) && mcf_valid_zp(p->out_zp) && p->a_mult >= 0 &&
           p->a_mult < MCF_ADD_MULT_LIMIT && p->b_mult >= 0 && p->b_mult < MCF_ADD_MULT_LIMIT &&
           p->shift >= 1 && p->shift <= MCF_ADD_SHIFT_MAX;
}

static inline int mcf_dsp_valid_factored(const mcf_factored_linear *layer, int32_t rank, int32_t out_ch) {
    return (layer->v == NULL || mcf_dsp_valid_layer(layer->v, rank)) &&
           mcf_dsp_valid_layer(&layer->u, out_ch);
}

/* The parameters the DSP attention kernels use, checked before x is touched (the portable kernels' sub-kernel
 * checks, all at once). */
static inline int mcf_dsp_valid_attention_block(const mcf_attention_block_dims *dims,
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

/* The scratch areas: x16 word aligned at the start, the int8 area after it. */
typedef struct {
    uint32_t *x16;
    int8_t *area;
} mcf_dsp_scratch;

static inline mcf_dsp_scratch mcf_dsp_scratch_layout(void *scratch, int32_t width) {
    const uintptr_t base = ((uintptr_t)scratch + 3u) & ~(uintptr_t)3u;
    mcf_dsp_scratch s = {(uint32_t *)base, (int8_t *)base + 8 * width};
    return s;
}

/* Whether a layer's channels all take the requantization fast path (mcf_dsp_channels_fast), for out_ch rows.
 */
static inline int mcf_dsp_layer_fast(const mcf_linear_layer *layer, int32_t in_ch, int32_t out_ch) {
    return layer != NULL && mcf_dsp_channels_fast(layer->bias, &layer->quant, in_ch, out_ch);
}

/* The fast-path flags of a factored linear's two factors, computed once per kernel call. */
typedef struct {
    int v, u;
} mcf_dsp_factored_fast;

static inline mcf_dsp_factored_fast mcf_dsp_factored_fast_of(const mcf_factored_linear *layer, int32_t in_ch,
                                                             int32_t rank, int32_t out_ch) {
    mcf_dsp_factored_fast fast = {mcf_dsp_layer_fast(layer->v, in_ch, rank),
                                  mcf_dsp_layer_fast(&layer->u, layer->v != NULL ? rank : in_ch, out_ch)};
    return fast;
}

/* A linear layer on a block: widen `count` int8 rows of `in` (stride in_ch) with the layer's zero point, then
 * write MCF_DSP_BLOCK rows of out (stride out_stride), so a partial block takes the assembly channel loop
 * too: rows count.. repeat the last token (mcf_dsp_widen4), and out must have room for them (the int8 area,
 * or rows a later block writes again with the same values). `in` may be the area the output goes to (it is
 * widened first). `fast`: mcf_dsp_layer_fast of the layer. */
static void __attribute__((noinline, unused)) mcf_dsp_layer4(const mcf_linear_layer *layer, int32_t in_ch,
                                                             int32_t out_ch, const int8_t *in, int32_t count,
                                                             uint32_t *x16, int8_t *out, int32_t out_stride,
                                                             int fast) {
    mcf_dsp_widen4(in, in_ch, count, in_ch, layer->params.in_zp, x16);
    mcf_dsp_linear4(x16, in_ch, &layer->params, &layer->quant, layer->weight, layer->bias, out_ch, out,
                    out_stride, MCF_DSP_BLOCK, fast);
}

/* The first token of the block that starts at t0 (tokens >= MCF_DSP_BLOCK): t0, or for the last, partial
 * block tokens - MCF_DSP_BLOCK, a full block that overlaps the one before it. For passes that only read x,
 * whose outputs for the overlapping tokens come out the same again. */
static inline int32_t mcf_dsp_full_block_start(int32_t t0, int32_t tokens) {
    return t0 + MCF_DSP_BLOCK <= tokens ? t0 : tokens - MCF_DSP_BLOCK;
}

/* A factored linear on a block, in the int8 area: area rows of in_ch -> (rank) -> area rows of out_ch. */
static inline void mcf_dsp_factored4(const mcf_factored_linear *layer, int32_t in_ch, int32_t rank,
                                     int32_t out_ch, int8_t *area, int32_t count, uint32_t *x16,
                                     mcf_dsp_factored_fast fast) {
    if (layer->v != NULL) {
        mcf_dsp_layer4(layer->v, in_ch, rank, area, count, x16, area, rank, fast.v);
        in_ch = rank;
    }
    mcf_dsp_layer4(&layer->u, in_ch, out_ch, area, count, x16, area, out_ch, fast.u);
}

/* The fast-path flags of the attention kernels' layers, computed once per kernel call. */
typedef struct {
    int qkv_v, q, k, v;
    mcf_dsp_factored_fast proj;
} mcf_dsp_attention_fast;

static inline mcf_dsp_attention_fast mcf_dsp_attention_fast_of(const mcf_attention_block_dims *dims,
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

/* norm1 and, with a low-rank qkv, its V factor for `count` tokens of x: the input of q, k and v, in the area
 * (rows of *width bytes on return). */
static inline void mcf_dsp_qkv_input4(const mcf_attention_block_params *params, int32_t channels,
                                      int32_t qkv_rank, const int8_t *xb, int32_t count,
                                      const mcf_dsp_scratch *s, int32_t *width, int qkv_v_fast) {
    const mcf_dims rows = {count, channels}; /* one call: the kernel's per-call checks shared by the block */
    const mcf_layernorm_layer *norm = &params->norm;
    (void)mcf_layernorm_s8(&rows, &norm->params, xb, norm->gamma, norm->beta, s->area); /* cannot fail */
    *width = channels;
    if (params->qkv_v != NULL) {
        mcf_dsp_layer4(params->qkv_v, channels, qkv_rank, s->area, count, s->x16, s->area, qkv_rank,
                       qkv_v_fast);
        *width = qkv_rank;
    }
}

#endif /* MCF_FUSED_DSP_H */
