/* Scratch size of mcf_patch_embed_rows_s8: one patch row of tokens, then (mcf_patch_rows_in_blocks) the DSP
 * kernel's widened block of four patches, word aligned. The same for every kernel variant. */
#include "mcf_fused.h"

int32_t mcf_patch_embed_rows_s8_get_buffer_size(const mcf_patch_embed_dims *dims) {
    if (dims == NULL || dims->patch <= 0 || dims->width <= 0 || dims->out_ch <= 0 || dims->channels <= 0 ||
        dims->width % dims->patch || (dims->blocks != 0 && dims->blocks != MCF_PATCH_BLOCKS)) {
        return 0;
    }
    int64_t bytes = (int64_t)(dims->width / dims->patch) * dims->out_ch;
    if (mcf_patch_rows_in_blocks(dims)) {
        bytes += 3 + 8 * (int64_t)dims->patch * dims->patch * dims->channels; /* alignment, then x16 */
    }
    return bytes > INT32_MAX - 3 ? 0 : (int32_t)((bytes + 3) / 4 * 4);
}
