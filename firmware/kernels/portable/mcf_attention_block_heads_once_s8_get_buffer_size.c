/* Scratch size of mcf_attention_block_heads_once_s8: see mcf_fused.h. */
#include "mcf_fused.h"

int32_t mcf_attention_block_heads_once_s8_get_buffer_size(const mcf_attention_block_dims *dims) {
    const int32_t heads = mcf_attention_block_heads_s8_get_buffer_size(dims);
    if (heads == 0 || !mcf_fused_uses_blocks(dims->tokens, dims->block_tokens)) {
        return heads;
    }
    /* In 64 bits: no overflow. heads is a multiple of 4, and so are the areas after it. */
    const int64_t tokens = dims->tokens;
    const int64_t width = dims->qkv_rank > 0 ? dims->qkv_rank : dims->channels;
    const int64_t head_dim = dims->channels / dims->heads;
    const int64_t kept = (tokens + 3) / 4 * 8 * width; /* every block's x16 (or the int8 rows: fewer bytes) */
    const int64_t wide_kv = 2 * tokens * ((head_dim + 1) & ~1) + 2 * head_dim * ((tokens + 1) & ~1);
    const int64_t need = (int64_t)heads + kept + wide_kv;
    return need > INT32_MAX - 3 ? 0 : (int32_t)need;
}
