/* Scratch size of mcf_attention_block_heads_once_s8: see mcf_fused.h. */
#include "mcf_fused.h"

int32_t mcf_attention_block_heads_once_s8_get_buffer_size(const mcf_attention_block_dims *dims) {
    const int32_t heads = mcf_attention_block_heads_s8_get_buffer_size(dims);
    if (heads == 0 || !mcf_fused_uses_blocks(dims->tokens, dims->block_tokens)) {
        return heads;
    }
    /* In 64 bits: no overflow. */
    const int64_t width = dims->qkv_rank > 0 ? dims->qkv_rank : dims->channels;
    const int64_t need = (int64_t)heads + (int64_t)dims->tokens * width;
    return need > INT32_MAX - 3 ? 0 : (int32_t)((need + 3) / 4 * 4);
}
