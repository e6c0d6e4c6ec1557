/* Scratch size of mcf_attention_block_s8: see mcf_fused.h. */
#include "mcf_fused.h"

int32_t mcf_attention_block_s8_get_buffer_size(const mcf_attention_block_dims *dims) {
    if (dims == NULL || dims->tokens <= 0 || dims->channels <= 0 || dims->heads <= 0 ||
        dims->channels % dims->heads != 0 || dims->qkv_rank < 0 || dims->proj_rank < 0) {
        return 0;
    }
    /* Chain d, [qkv_rank], d, [proj_rank], d: every consecutive pair is d + (a rank, or d); the score row
     * sits beside the d-byte q/context row. In 64 bits: no overflow. */
    const int64_t d = dims->channels;
    int64_t widest = dims->tokens;
    const int64_t qkv = dims->qkv_rank > 0 ? dims->qkv_rank : d;
    const int64_t proj = dims->proj_rank > 0 ? dims->proj_rank : d;
    widest = qkv > widest ? qkv : widest;
    widest = proj > widest ? proj : widest;
    const int64_t need = d + widest;
    return need > INT32_MAX - 3 ? 0 : (int32_t)((need + 3) / 4 * 4);
}
