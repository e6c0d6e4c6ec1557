/* Helpers of the DSP fused kernels (firmware/kernels/dsp; not part of the public API), their bodies in
 * dsp/mcf_dsp_fused.c.
 *
 * The DSP fused kernels check every parameter before touching x (as the portable ones do, token 0 first),
 * then run blocks of MCF_DSP_BLOCK tokens through the same chain of ops. Their scratch (the size every
 * variant's _get_buffer_size gives, see mcf_fused.h) is: up to 3 bytes to reach a word boundary, then x16
 * (the widened input of the current linear, 8 * width bytes), then one int8 area of MCF_DSP_BLOCK rows of
 * `width` (each op's int8 output; its input is in x16 by then), then, for attention, the score row. width is
 * the widest row of the chain (channels, hidden and the ranks). */
#ifndef MCF_DSP_FUSED_H
#define MCF_DSP_FUSED_H

#include "mcf_dsp_block.h"
#include "mcf_fused.h"
#include "mcf_math.h"

/* 1 (the default: the library stays complete): the fused kernels take sequences shorter than
 * MCF_FUSED_BLOCK_MIN_TOKENS one token at a time. 0: that path is compiled out and such a call returns
 * MCF_ERR_ARG; a generated build sets 0 when none of its fused ops is that short, so the one-token chain and
 * what only it calls (attention rows, softmax, the one-token linear) stay out of the image. */
#ifndef MCF_DSP_FUSED_ONE_TOKEN
#define MCF_DSP_FUSED_ONE_TOKEN 1
#endif

#if MCF_DSP_BLOCK != MCF_FUSED_BLOCK_TOKENS
#error "the DSP kernels' token block must be the one the scratch sizes are computed for"
#endif

/* The parameters the DSP attention kernels use, checked before x is touched (the portable kernels' sub-kernel
 * checks, all at once). */
int mcf_dsp_valid_attention_block(const mcf_attention_block_dims *dims,
                                  const mcf_attention_block_params *params);

/* The parameters the DSP MLP kernel uses, checked before x is touched. */
int mcf_dsp_valid_mlp_block(const mcf_mlp_block_dims *dims, const mcf_mlp_block_params *params);

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

/* Whether a LayerNorm of `channels` with these betas and requantization takes the lean row loop (no
 * accumulator can saturate; the fast requantization): the part of its set-up that reads every channel (3.5
 * instructions each), which a fused kernel computes once per call instead of once per token block
 * (dsp/mcf_dsp_layernorm.c; mcf_layernorm_s8 calls it too). */
int mcf_dsp_layernorm_lean(const mcf_layernorm_params *params, const int32_t *beta, int32_t channels);

/* mcf_layernorm_s8 of `tokens` rows of `channels` (arguments checked), with `lean` = mcf_dsp_layernorm_lean
 * of the same parameters (output may alias input). Six arguments (two on the stack), as few as the kernel's.
 */
void mcf_dsp_layernorm_rows(const mcf_layernorm_layer *norm, int32_t channels, int lean, const int8_t *input,
                            int8_t *output, int32_t tokens);

/* The fast-path flags of a factored linear's two factors, computed once per kernel call. */
typedef struct {
    int v, u;
} mcf_dsp_factored_fast;

mcf_dsp_factored_fast mcf_dsp_factored_fast_of(const mcf_factored_linear *layer, int32_t in_ch, int32_t rank,
                                               int32_t out_ch);

/* A linear layer on a block: widen `count` int8 rows of `in` (stride in_ch) with the layer's zero point, then
 * write mcf_dsp_block_rows(count, in_ch) rows of out (stride out_stride), so a partial block takes an
 * assembly channel loop too: rows count.. repeat the last token (mcf_dsp_widen4), and out must have room for
 * them (the int8 area, or rows a later block writes again with the same values). `in` may be the area the
 * output goes to (it is widened first). `fast`: mcf_dsp_layer_fast of the layer. */
void mcf_dsp_layer4(const mcf_linear_layer *layer, int32_t in_ch, int32_t out_ch, const int8_t *in,
                    int32_t count, uint32_t *x16, int8_t *out, int32_t out_stride, int fast);

/* A factored linear on a block, in the int8 area: area rows of in_ch -> (rank) -> area rows of out_ch. */
void mcf_dsp_factored4(const mcf_factored_linear *layer, int32_t in_ch, int32_t rank, int32_t out_ch,
                       int8_t *area, int32_t count, uint32_t *x16, mcf_dsp_factored_fast fast);

/* The same from x16 already holding the block's input widened (with the first factor's zero point): the MLP
 * block's fc2 after GELU. Inline: as a call into mcf_dsp_fused.c it cost the MLP block 0.05% more. */
static inline void mcf_dsp_factored4_x16(const mcf_factored_linear *layer, int32_t in_ch, int32_t rank,
                                         int32_t out_ch, int8_t *area, int32_t count, uint32_t *x16,
                                         mcf_dsp_factored_fast fast) {
    if (layer->v != NULL) {
        mcf_dsp_linear4(x16, in_ch, layer->v, rank, area, rank, mcf_dsp_block_rows(count, in_ch), fast.v);
        mcf_dsp_layer4(&layer->u, rank, out_ch, area, count, x16, area, out_ch, fast.u);
        return;
    }
    mcf_dsp_linear4(x16, in_ch, &layer->u, out_ch, area, out_ch, mcf_dsp_block_rows(count, in_ch), fast.u);
}

/* The fast-path flags of the attention kernels' layers, computed once per kernel call. */
typedef struct {
    int qkv_v, q, k, v;
    mcf_dsp_factored_fast proj;
} mcf_dsp_attention_fast;

mcf_dsp_attention_fast mcf_dsp_attention_fast_of(const mcf_attention_block_dims *dims,
                                                 const mcf_attention_block_params *params);

/* norm1 (`norm1_lean`: mcf_dsp_layernorm_lean of it, once per kernel call) and, with a low-rank qkv, its V
 * factor for `count` tokens of x: the input of q, k and v, in the area (rows of *width bytes on return).
 * Inline: its own frame would sit on the deepest stack path of the attention kernels. */
static inline void mcf_dsp_qkv_input4(const mcf_attention_block_params *params, int norm1_lean,
                                      int32_t channels, int32_t qkv_rank, const int8_t *xb, int32_t count,
                                      const mcf_dsp_scratch *s, int32_t *width, int qkv_v_fast) {
    mcf_dsp_layernorm_rows(&params->norm, channels, norm1_lean, xb, s->area, count);
    *width = channels;
    if (params->qkv_v != NULL) {
        mcf_dsp_layer4(params->qkv_v, channels, qkv_rank, s->area, count, s->x16, s->area, qkv_rank,
                       qkv_v_fast);
        *width = qkv_rank;
    }
}

/* The per-head attention kernels from MCF_FUSED_BLOCK_MIN_TOKENS tokens on (dims and params checked; body in
 * dsp/mcf_dsp_heads.c). With normalise_once, norm1 (and the qkv V factor) run once per token into the scratch
 * after the score rows (tokens x (qkv_rank or channels) bytes more, see
 * mcf_attention_block_heads_once_s8_get_buffer_size) instead of once per head and token block. */
void mcf_dsp_attention_heads(const mcf_attention_block_dims *dims, const mcf_attention_block_params *params,
                             int8_t *x, int8_t *k_head, int8_t *v_head, int8_t *context, void *scratch,
                             int normalise_once);

#endif /* MCF_DSP_FUSED_H */
