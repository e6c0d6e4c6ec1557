/* The attention half of a transformer block with K and V one head at a time, with the DSP extension, blocks
 * of MCF_DSP_BLOCK tokens: see mcf_fused.h (same contract and results as the portable kernel).
 *
 * Per head, pass 1 runs norm1 (and the qkv V factor) once per token block and computes the head's K, V and q
 * from one widened input: K rows into k_head, V transposed (channel-major, [head_dim][tokens]) into v_head,
 * and q into the head's columns of the context rows, which are free until the head's pass 2 writes them.
 * Pass 2 takes four queries at a time: their scores are a 4-token "linear layer" whose weight rows are the
 * keys, and after the softmax their context is one whose weight rows are V's columns, so every K and V byte
 * is loaded and split once for four queries. Zero points leave the inner loops as per-query corrections:
 *   scores:  sum_c (q_c - q_zp)(k_c - k_zp) = sum_c (q_c - q_zp) k_c - k_zp * sum_c (q_c - q_zp)
 *   context: sum_j u_j (v_jc - v_zp)         = sum_j u_j v_jc - v_zp * sum_j u_j,   u_j = p_j + 128
 * Pass 3 runs proj over the context rows and the residual add over x, a block at a time.
 *
 * Scratch (mcf_attention_block_heads_s8_get_buffer_size): word alignment, the widened input x16 (8 bytes per
 * value of the widest of a norm1/proj row and a score row), MCF_DSP_BLOCK int8 rows of `width`, then
 * MCF_DSP_BLOCK score rows of `tokens`. */
#include "mcf_fused_dsp.h"
#include "mcf_fused_internal.h"

/* Pass 1 for one head and one block of tokens: K, V (transposed) and q of the head from the block's input. */
static void head_projections(const mcf_attention_block_params *params, int32_t tokens, int32_t channels,
                             int32_t qkv_rank, int32_t first, int32_t head_dim, int32_t t0, int32_t count,
                             const int8_t *x, int8_t *k_head, int8_t *v_head, int8_t *context,
                             const mcf_dsp_scratch *s) {
    int32_t in_ch = channels;
    mcf_dsp_qkv_input4(params, channels, qkv_rank, x + t0 * channels, count, s, &in_ch);
    const mcf_linear_layer k = layer_rows(&params->k, in_ch, first);
    const mcf_linear_layer v = layer_rows(&params->v, in_ch, first);
    const mcf_linear_layer q = layer_rows(&params->q, in_ch, first);
    mcf_dsp_widen4(s->area, in_ch, count, in_ch, k.params.in_zp, s->x16);
    mcf_dsp_linear4(s->x16, in_ch, &k.params, &k.quant, k.weight, k.bias, head_dim, k_head + t0 * head_dim,
                    head_dim, count);
    if (v.params.in_zp != k.params.in_zp) { /* usually one tensor, one zero point: widened once */
        mcf_dsp_widen4(s->area, in_ch, count, in_ch, v.params.in_zp, s->x16);
    }
    mcf_dsp_linear4_strided(s->x16, in_ch, &v.params, &v.quant, v.weight, v.bias, head_dim, v_head + t0, 1,
                            tokens, count);
    if (q.params.in_zp != v.params.in_zp) {
        mcf_dsp_widen4(s->area, in_ch, count, in_ch, q.params.in_zp, s->x16);
    }
    mcf_dsp_linear4(s->x16, in_ch, &q.params, &q.quant, q.weight, q.bias, head_dim,
                    context + t0 * channels + first, channels, count);
}

/* Pass 2 for one head and one block of queries: the context of `count` queries over their q, in place (the
 * head's columns of their context rows). */
static void head_attention(const mcf_attention_params *att, const int32_t *exp_table, int32_t tokens,
                           int32_t channels, int32_t head_dim, const int8_t *k_head, const int8_t *v_head,
                           int8_t *q_rows, int32_t count, const mcf_dsp_scratch *s, int8_t *scores) {
    const mcf_dsp_requant score_q = mcf_dsp_requant_make(att->score_mult, att->score_shift, att->score_zp);
    const mcf_dsp_requant out_q = mcf_dsp_requant_make(att->out_mult, att->out_shift, att->out_zp);
    int32_t k_fix[MCF_DSP_BLOCK] = {0, 0, 0, 0};
    int32_t v_fix[MCF_DSP_BLOCK] = {0, 0, 0, 0};
    for (int32_t t = 0; t < count; t++) {
        int32_t q_sum = 0; /* sum_c (q_c - q_zp) */
        for (int32_t c = 0; c < head_dim; c++) {
            q_sum += q_rows[t * channels + c] - att->q_zp;
        }
        k_fix[t] = -att->k_zp * q_sum;
    }

    /* Scores: x16 holds the queries minus q_zp; key j is weight row j. */
    mcf_dsp_widen4(q_rows, channels, count, head_dim, att->q_zp, s->x16);
    const int8_t *key = k_head;
    for (int32_t j = 0; j < tokens; j++, key += head_dim) {
        int32_t acc[MCF_DSP_BLOCK] = {k_fix[0], k_fix[1], k_fix[2], k_fix[3]};
        mcf_dsp_dot4_row(s->x16, head_dim, key, acc);
        for (int32_t t = 0; t < count; t++) {
            scores[t * tokens + j] = mcf_dsp_requant_apply(&score_q, acc[t]);
        }
    }
    for (int32_t t = 0; t < count; t++) { /* cannot fail: every argument is valid */
        int8_t *row = scores + t * tokens;
        (void)mcf_softmax_s8(row, exp_table, row, tokens);
        int32_t u_sum = 0;
        for (int32_t j = 0; j < tokens; j++) {
            u_sum += row[j] + 128;
        }
        v_fix[t] = -att->v_zp * u_sum;
    }

    /* Context: x16 holds u = p + 128 (p widened with zero point -128); V's column c is weight row c. */
    mcf_dsp_widen4(scores, tokens, count, tokens, -128, s->x16);
    const int8_t *v_col = v_head;
    for (int32_t c = 0; c < head_dim; c++, v_col += tokens) {
        int32_t acc[MCF_DSP_BLOCK] = {v_fix[0], v_fix[1], v_fix[2], v_fix[3]};
        mcf_dsp_dot4_row(s->x16, tokens, v_col, acc);
        for (int32_t t = 0; t < count; t++) {
            q_rows[t * channels + c] = mcf_dsp_requant_apply(&out_q, acc[t]);
        }
    }
}

mcf_status mcf_attention_block_heads_s8(const mcf_attention_block_dims *dims,
                                        const mcf_attention_block_params *params, int8_t *x, int8_t *k_head,
                                        int8_t *v_head, int8_t *context, void *scratch) {
    if (dims == NULL || params == NULL || x == NULL || k_head == NULL || v_head == NULL || context == NULL ||
        scratch == NULL) {
        return MCF_ERR_ARG;
    }
    if (mcf_attention_block_heads_s8_get_buffer_size(dims) == 0 /* invalid dims */ ||
        !attention_ranks_match(dims, params)) {
        return MCF_ERR_ARG;
    }
    const int32_t tokens = dims->tokens;
    if (tokens < MCF_FUSED_BLOCK_MIN_TOKENS) { /* the scratch holds the one-token layout only */
        return attention_block_heads_per_token(dims, params, x, k_head, v_head, context, scratch);
    }
    if (!mcf_dsp_valid_attention_block(dims, params)) {
        return MCF_ERR_ARG;
    }
    const int32_t channels = dims->channels;
    const int32_t qkv_rank = dims->qkv_rank;
    const int32_t proj_rank = dims->proj_rank;
    const int32_t head_dim = channels / dims->heads;
    int32_t width = channels;
    width = qkv_rank > width ? qkv_rank : width;
    width = proj_rank > width ? proj_rank : width;
    const mcf_dsp_scratch s = mcf_dsp_scratch_layout(scratch, width > tokens ? width : tokens);
    int8_t *scores = s.area + MCF_DSP_BLOCK * width;

    for (int32_t head = 0; head < dims->heads; head++) {
        const int32_t first = head * head_dim;
        for (int32_t t0 = 0; t0 < tokens; t0 += MCF_DSP_BLOCK) { /* pass 1 */
            const int32_t count = tokens - t0 < MCF_DSP_BLOCK ? tokens - t0 : MCF_DSP_BLOCK;
            head_projections(params, tokens, channels, qkv_rank, first, head_dim, t0, count, x, k_head,
                             v_head, context, &s);
        }
        for (int32_t t0 = 0; t0 < tokens; t0 += MCF_DSP_BLOCK) { /* pass 2 */
            const int32_t count = tokens - t0 < MCF_DSP_BLOCK ? tokens - t0 : MCF_DSP_BLOCK;
            head_attention(&params->attention, params->exp_table, tokens, channels, head_dim, k_head, v_head,
                           context + t0 * channels + first, count, &s, scores);
        }
    }

    /* Pass 3: proj and the residual add over x (written only now, after every head has read it). */
    const mcf_factored_linear *proj = &params->proj;
    for (int32_t t0 = 0; t0 < tokens; t0 += MCF_DSP_BLOCK) {
        const int32_t count = tokens - t0 < MCF_DSP_BLOCK ? tokens - t0 : MCF_DSP_BLOCK;
        int8_t *xb = x + t0 * channels;
        const int8_t *in = context + t0 * channels;
        int32_t in_ch = channels;
        if (proj->v != NULL) {
            mcf_dsp_layer4(proj->v, channels, proj_rank, in, count, s.x16, s.area, proj_rank);
            in = s.area;
            in_ch = proj_rank;
        }
        mcf_dsp_layer4(&proj->u, in_ch, channels, in, count, s.x16, s.area, channels);
        for (int32_t t = 0; t < count; t++) {
            int8_t *x_row = xb + t * channels;
            (void)mcf_add_s8(&params->residual, x_row, s.area + t * channels, x_row, channels);
        }
    }
    return MCF_OK;
}
