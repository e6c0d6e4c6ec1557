/* The attention half of a transformer block, token by token in place: see mcf_fused.h. */
#include "mcf_fused_internal.h"

mcf_status mcf_attention_block_s8(const mcf_attention_block_dims *dims,
                                  const mcf_attention_block_params *params, int8_t *x, int8_t *k_buf,
                                  int8_t *v_buf, void *scratch) {
    const int32_t size = attention_block_checked_size(dims, params, x, k_buf, v_buf, scratch);
    if (size == 0) {
        return MCF_ERR_ARG;
    }
    return attention_block_per_token(dims, params, x, k_buf, v_buf, scratch, size);
}
