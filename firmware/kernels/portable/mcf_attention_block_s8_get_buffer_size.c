/* Scratch size of mcf_attention_block_s8: see mcf_fused.h. */
#include "mcf_fused.h"

int32_t mcf_attention_block_s8_get_buffer_size(const mcf_attention_block_dims *dims) {
    if (dims == NULL || dims->tokens <= 0 || dims->channels <= 0 || dims->heads <= 0 ||
        dims->channels % dims->heads != 0 || dims->qkv_rank < 0 || dims->proj_rank < 0 ||
        !mcf_fused_valid_block(dims->block_tokens)) {
        return 0;
    }
    /* Chain d, [qkv_rank], d, [proj_rank], d: every consecutive pair is d + (a rank, or d); the score row
     * sits beside the d-byte q/context row. With a block of tokens (see MCF_FUSED_BLOCK_MIN_TOKENS): the DSP
     * kernel's word-aligned widened input, int8 rows and the score row (mcf_dsp_fused.h),
     * 3 + 12 * max(d, ranks) + tokens, which holds the chain. In 64 bits: no overflow. */
    const int64_t d = dims->channels;
    const int64_t qkv = dims->qkv_rank > 0 ? dims->qkv_rank : d;
    const int64_t proj = dims->proj_rank > 0 ? dims->proj_rank : d;
    int64_t need;
    if (mcf_fused_uses_blocks(dims->tokens, dims->block_tokens)) {
        int64_t widest = qkv > d ? qkv : d;
        widest = proj > widest ? proj : widest;
        need = 3 + MCF_FUSED_BLOCK_ROW_BYTES * widest + dims->tokens;
    } else {
        int64_t widest = dims->tokens;
        widest = qkv > widest ? qkv : widest;
        widest = proj > widest ? proj : widest;
        need = d + widest;
    }
    return need > INT32_MAX - 3 ? 0 : (int32_t)((need + 3) / 4 * 4);
}
