/* Scratch size of mcf_attention_block_heads_s8: see mcf_fused.h. */
#include "mcf_fused.h"

int32_t mcf_attention_block_heads_s8_get_buffer_size(const mcf_attention_block_dims *dims) {
    if (dims == NULL || dims->tokens <= 0 || dims->channels <= 0 || dims->heads <= 0 ||
        dims->channels % dims->heads != 0 || dims->qkv_rank < 0 || dims->proj_rank < 0) {
        return 0;
    }
    /* Passes 1-2: d + qkv_rank + head_dim + tokens; pass 3: proj_rank + d. In 64 bits: no overflow. */
    const int64_t d = dims->channels;
    const int64_t heads_part = d + dims->qkv_rank + d / dims->heads + dims->tokens;
    const int64_t proj_part = dims->proj_rank + d;
    const int64_t need = heads_part > proj_part ? heads_part : proj_part;
    return need > INT32_MAX - 3 ? 0 : (int32_t)((need + 3) / 4 * 4);
}
