/* Scratch size of mcf_patch_embed_rows_s8: one patch row of tokens, then (blocks == MCF_PATCH_BLOCKS and
 * patches of up to MCF_PATCH_BLOCK_INPUTS values) the DSP kernel's widened block of four patches, word
 * aligned. The same for every kernel variant. */
#include "mcf_fused.h"

int32_t mcf_patch_embed_rows_s8_get_buffer_size(const mcf_patch_embed_dims *dims) {
    if (dims == NULL || dims->patch <= 0 || dims->width <= 0 || dims->out_ch <= 0 || dims->channels <= 0 ||
        dims->width % dims->patch || (dims->blocks != 0 && dims->blocks != MCF_PATCH_BLOCKS)) {
        return 0;
    }
    int64_t bytes = (int64_t)(dims->width / dims->patch) * dims->out_ch;
    const int64_t length = (int64_t)dims->patch * dims->patch * dims->channels;
    if (dims->blocks == MCF_PATCH_BLOCKS && length <= MCF_PATCH_BLOCK_INPUTS) {
        bytes += 3 + 8 * length; /* alignment, then x16 (mcf_dsp_block.h) */
    }
    return bytes > INT32_MAX - 3 ? 0 : (int32_t)((bytes + 3) / 4 * 4);
}
