/* The attention half of a transformer block, token by token in place: see mcf_fused.h. */
#include "mcf_fused_internal.h"

/* The input of q, k and v for one token: norm1(x_row) into normed, then the qkv V factor into reduced
 * when there is one. *qkv_in is set to whichever holds the result. */
static mcf_status qkv_input(const mcf_attention_block_params *params, int32_t channels, int32_t qkv_rank,
                            const int8_t *x_row, int8_t *normed, int8_t *reduced, const int8_t **qkv_in) {
    const mcf_dims row = {1, channels};
    const mcf_layernorm_layer *norm = &params->norm;
    mcf_status status = mcf_layernorm_s8(&row, &norm->params, x_row, norm->gamma, norm->beta, normed);
    *qkv_in = normed;
    if (status == MCF_OK && params->qkv_v != NULL) {
        status = linear_row(params->qkv_v, channels, qkv_rank, normed, reduced);
        *qkv_in = reduced;
    }
    return status;
}

mcf_status mcf_attention_block_s8(const mcf_attention_block_dims *dims,
                                  const mcf_attention_block_params *params, int8_t *x, int8_t *k_buf,
                                  int8_t *v_buf, void *scratch) {
    if (dims == NULL || params == NULL || x == NULL || k_buf == NULL || v_buf == NULL || scratch == NULL) {
        return MCF_ERR_ARG;
    }
    const int32_t size = mcf_attention_block_s8_get_buffer_size(dims); /* 0: invalid dims */
    const int32_t qkv_rank = dims->qkv_rank;
    const int32_t proj_rank = dims->proj_rank;
    if (size == 0 || (qkv_rank > 0) != (params->qkv_v != NULL) ||
        (proj_rank > 0) != (params->proj.v != NULL)) {
        return MCF_ERR_ARG;
    }
    const int32_t tokens = dims->tokens;
    const int32_t channels = dims->channels;
    const int32_t in_ch = qkv_rank > 0 ? qkv_rank : channels; /* input width of q, k, v */

    /* The chain of mcf_attention_block_s8_get_buffer_size: norm1 -> [qkv mid] -> q/context -> [proj mid]
     * -> proj; the score row sits at the end opposite the q/context row. */
    int8_t *base = (int8_t *)scratch;
    int32_t index = 0;
    int8_t *normed = chain_buffer(base, size, index++, channels);
    int8_t *reduced = qkv_rank > 0 ? chain_buffer(base, size, index++, qkv_rank) : NULL;
    const int32_t context_index = index++;
    int8_t *context = chain_buffer(base, size, context_index, channels);
    int8_t *scores = chain_buffer(base, size, context_index + 1, tokens);
    int8_t *proj_mid = proj_rank > 0 ? chain_buffer(base, size, index++, proj_rank) : NULL;
    int8_t *proj_out = chain_buffer(base, size, index, channels);

    /* Pass 1: K and V of every token. */
    for (int32_t t = 0; t < tokens; t++) {
        const int8_t *qkv_in = NULL;
        mcf_status status = qkv_input(params, channels, qkv_rank, x + t * channels, normed, reduced, &qkv_in);
        if (status == MCF_OK) {
            status = linear_row(&params->k, in_ch, channels, qkv_in, k_buf + t * channels);
        }
        if (status == MCF_OK) {
            status = linear_row(&params->v, in_ch, channels, qkv_in, v_buf + t * channels);
        }
        if (status != MCF_OK) {
            return status;
        }
    }

    /* Pass 2: per query token, q (norm1 and the V factor recomputed: the same values), its context row,
     * proj and the residual add over x[t] (x[t] is read by nothing else: K and V are done). Every check is
     * data independent: an error shows on token 0, before the add (which checks first) writes x. */
    const mcf_attention_dims attention_dims = {tokens, channels, dims->heads};
    for (int32_t t = 0; t < tokens; t++) {
        int8_t *x_row = x + t * channels;
        const int8_t *qkv_in = NULL;
        mcf_status status = qkv_input(params, channels, qkv_rank, x_row, normed, reduced, &qkv_in);
        if (status == MCF_OK) {
            status = linear_row(&params->q, in_ch, channels, qkv_in, context);
        }
        if (status == MCF_OK) { /* the context row over the q row, in place */
            status = mcf_attention_row_s8(&attention_dims, &params->attention, context, k_buf, v_buf,
                                          params->exp_table, context, scores);
        }
        if (status == MCF_OK) {
            status = factored_row(&params->proj, channels, proj_rank, channels, context, proj_mid, proj_out);
        }
        if (status == MCF_OK) {
            status = mcf_add_s8(&params->residual, x_row, proj_out, x_row, channels);
        }
        if (status != MCF_OK) {
            return status;
        }
    }
    return MCF_OK;
}
