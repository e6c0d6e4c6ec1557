/* The attention half of a transformer block, token by token in place: see mcf_fused.h. */
#include "mcf_fused_internal.h"

mcf_status mcf_attention_block_s8(const mcf_attention_block_dims *dims,
                                  const mcf_attention_block_params *params, int8_t *x, int8_t *k_buf,
                                  int8_t *v_buf, void *scratch) {
    if (dims == NULL || params == NULL || x == NULL || k_buf == NULL || v_buf == NULL || scratch == NULL) {
        return MCF_ERR_ARG;
    }
    const int32_t size = mcf_attention_block_s8_get_buffer_size(dims); /* 0: invalid dims */
    if (size == 0 || !attention_ranks_match(dims, params)) {
        return MCF_ERR_ARG;
    }
    return attention_block_per_token(dims, params, x, k_buf, v_buf, scratch, size);
}
