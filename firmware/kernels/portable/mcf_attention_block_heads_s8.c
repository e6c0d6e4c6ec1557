/* The attention half of a transformer block with K and V one head at a time: see mcf_fused.h. */
#include "mcf_fused_internal.h"

/* Rows [first, first + count) of a linear layer: the same per-channel arithmetic on fewer outputs. */
static mcf_linear_layer layer_rows(const mcf_linear_layer *layer, int32_t in_ch, int32_t first) {
    mcf_linear_layer rows = *layer;
    rows.quant.mult = layer->quant.mult + first;
    rows.quant.shift = layer->quant.shift + first;
    rows.weight = layer->weight + (size_t)first * (size_t)in_ch;
    rows.bias = layer->bias + first;
    return rows;
}

mcf_status mcf_attention_block_heads_s8(const mcf_attention_block_dims *dims,
                                        const mcf_attention_block_params *params, int8_t *x, int8_t *k_head,
                                        int8_t *v_head, int8_t *context, void *scratch) {
    if (dims == NULL || params == NULL || x == NULL || k_head == NULL || v_head == NULL || context == NULL ||
        scratch == NULL) {
        return MCF_ERR_ARG;
    }
    const int32_t size = mcf_attention_block_heads_s8_get_buffer_size(dims); /* 0: invalid dims */
    const int32_t qkv_rank = dims->qkv_rank;
    const int32_t proj_rank = dims->proj_rank;
    if (size == 0 || !attention_ranks_match(dims, params)) {
        return MCF_ERR_ARG;
    }
    const int32_t tokens = dims->tokens;
    const int32_t channels = dims->channels;
    const int32_t head_dim = channels / dims->heads;
    const int32_t in_ch = qkv_rank > 0 ? qkv_rank : channels; /* input width of q, k, v */

    /* Scratch, passes 1-2: normed [d], reduced [qkv_rank], q row [head_dim], score row [tokens];
     * pass 3 reuses it: proj_mid [proj_rank], proj_out [d]. */
    int8_t *normed = (int8_t *)scratch;
    int8_t *reduced = normed + channels;
    int8_t *q_row = reduced + qkv_rank;
    int8_t *scores = q_row + head_dim;
    int8_t *proj_mid = (int8_t *)scratch;
    int8_t *proj_out = proj_mid + proj_rank;

    const mcf_attention_dims head_dims = {tokens, head_dim, 1};
    for (int32_t head = 0; head < dims->heads; head++) {
        const int32_t first = head * head_dim;
        const mcf_linear_layer q = layer_rows(&params->q, in_ch, first);
        const mcf_linear_layer k = layer_rows(&params->k, in_ch, first);
        const mcf_linear_layer v = layer_rows(&params->v, in_ch, first);
        /* Pass 1: this head's K and V for every token (norm1 and the V factor recomputed: the same values).
         */
        for (int32_t t = 0; t < tokens; t++) {
            const int8_t *qkv_in = NULL;
            mcf_status status =
                qkv_input(params, channels, qkv_rank, x + t * channels, normed, reduced, &qkv_in);
            if (status == MCF_OK) {
                status = linear_row(&k, in_ch, head_dim, qkv_in, k_head + t * head_dim);
            }
            if (status == MCF_OK) {
                status = linear_row(&v, in_ch, head_dim, qkv_in, v_head + t * head_dim);
            }
            if (status != MCF_OK) {
                return status;
            }
        }
        /* Pass 2: per query token, this head's q and its slice of the context row. */
        for (int32_t t = 0; t < tokens; t++) {
            const int8_t *qkv_in = NULL;
            mcf_status status =
                qkv_input(params, channels, qkv_rank, x + t * channels, normed, reduced, &qkv_in);
            if (status == MCF_OK) {
                status = linear_row(&q, in_ch, head_dim, qkv_in, q_row);
            }
            if (status == MCF_OK) {
                status = mcf_attention_row_s8(&head_dims, &params->attention, q_row, k_head, v_head,
                                              params->exp_table, context + t * channels + first, scores);
            }
            if (status != MCF_OK) {
                return status;
            }
        }
    }
    /* Pass 3: proj and the residual add over x[t] (x is written only now: every error shows before). */
    for (int32_t t = 0; t < tokens; t++) {
        int8_t *x_row = x + t * channels;
        mcf_status status = factored_row(&params->proj, channels, proj_rank, channels, context + t * channels,
                                         proj_mid, proj_out);
        if (status == MCF_OK) {
            status = mcf_add_s8(&params->residual, x_row, proj_out, x_row, channels);
        }
        if (status != MCF_OK) {
            return status;
        }
    }
    return MCF_OK;
}
