/* Scratch size of mcf_attention_block_heads_s8: see mcf_fused.h. */
#include "mcf_fused.h"

int32_t mcf_attention_block_heads_s8_get_buffer_size(const mcf_attention_block_dims *dims) {
    if (dims == NULL || dims->tokens <= 0 || dims->channels <= 0 || dims->heads <= 0 ||
        dims->channels % dims->heads != 0 || dims->qkv_rank < 0 || dims->proj_rank < 0 ||
        !mcf_fused_valid_block(dims->block_tokens)) {
        return 0;
    }
    /* In 64 bits: no overflow. */
    const int64_t d = dims->channels;
    const int64_t tokens = dims->tokens;
    int64_t need;
    if (mcf_fused_uses_blocks(dims->tokens, dims->block_tokens)) {
        /* Blocks of 4 tokens (mcf_dsp_fused.h): word alignment, the widened input of a linear or of the
         * attention products (8 bytes per value of the widest row or of a score row), 4 int8 rows, 4 score
         * rows. */
        int64_t width = dims->qkv_rank > d ? dims->qkv_rank : d;
        width = dims->proj_rank > width ? dims->proj_rank : width;
        const int64_t widened = width > tokens ? width : tokens;
        need = 3 + 8 * widened + MCF_FUSED_BLOCK_TOKENS * (width + tokens);
    } else {
        /* One token at a time: d + qkv_rank + head_dim + tokens (heads), proj_rank + d (proj). */
        const int32_t head_dim = dims->channels / dims->heads; /* in 32 bits: no libgcc 64-bit division */
        const int64_t heads_part = d + dims->qkv_rank + head_dim + tokens;
        const int64_t proj_part = dims->proj_rank + d;
        need = heads_part > proj_part ? heads_part : proj_part;
    }
    return need > INT32_MAX - 3 ? 0 : (int32_t)((need + 3) / 4 * 4);
}
