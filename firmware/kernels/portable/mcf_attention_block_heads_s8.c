/* The attention half of a transformer block with K and V one head at a time: see mcf_fused.h. */
#include "mcf_fused_internal.h"

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
    return attention_block_heads_per_token(dims, params, x, k_head, v_head, context, scratch);
}
