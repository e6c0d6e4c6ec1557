/* Scratch size of mcf_patch_embed_rows_s8: one patch row of tokens. */
#include "mcf_fused.h"

int32_t mcf_patch_embed_rows_s8_get_buffer_size(const mcf_patch_embed_dims *dims) {
    if (dims == NULL || dims->patch <= 0 || dims->width <= 0 || dims->out_ch <= 0 ||
        dims->width % dims->patch) {
        return 0;
    }
    const int64_t bytes = (int64_t)(dims->width / dims->patch) * dims->out_ch;
    return bytes > INT32_MAX - 3 ? 0 : (int32_t)((bytes + 3) / 4 * 4);
}
