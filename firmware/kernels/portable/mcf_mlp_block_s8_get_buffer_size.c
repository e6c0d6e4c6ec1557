/* Scratch size of mcf_mlp_block_s8: see mcf_fused.h. */
#include "mcf_fused.h"

int32_t mcf_mlp_block_s8_get_buffer_size(const mcf_mlp_block_dims *dims) {
    if (dims == NULL || dims->tokens <= 0 || dims->channels <= 0 || dims->hidden <= 0 || dims->fc1_rank < 0 ||
        dims->fc2_rank < 0 || !mcf_fused_valid_block(dims->block_tokens)) {
        return 0;
    }
    /* Chain d, [fc1_rank], hidden, [fc2_rank], d: a rank r next to d and hidden needs r + max(d, hidden),
     * no rank d + hidden. With a block of tokens (see MCF_FUSED_BLOCK_MIN_TOKENS): the DSP kernel's
     * word-aligned widened input and int8 rows (mcf_dsp_fused.h), 3 + 12 * max(d, hidden, ranks), which holds
     * the chain. In 64 bits: no overflow. */
    const int64_t d = dims->channels;
    const int64_t hidden = dims->hidden;
    const int64_t wide = d > hidden ? d : hidden;
    int64_t need;
    if (mcf_fused_uses_blocks(dims->tokens, dims->block_tokens)) {
        int64_t widest = dims->fc1_rank > wide ? dims->fc1_rank : wide;
        widest = dims->fc2_rank > widest ? dims->fc2_rank : widest;
        need = 3 + MCF_FUSED_BLOCK_ROW_BYTES * widest;
    } else {
        const int64_t fc1 = dims->fc1_rank > 0 ? dims->fc1_rank + wide : d + hidden;
        const int64_t fc2 = dims->fc2_rank > 0 ? dims->fc2_rank + wide : d + hidden;
        need = fc1 > fc2 ? fc1 : fc2;
    }
    return need > INT32_MAX - 3 ? 0 : (int32_t)((need + 3) / 4 * 4);
}
