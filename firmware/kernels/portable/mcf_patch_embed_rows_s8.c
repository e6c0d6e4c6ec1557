/* Patch embedding one patch row at a time, so that tokens may overwrite image rows already consumed. */
#include "mcf_fused.h"
#include "mcf_kernels.h"

mcf_status mcf_patch_embed_rows_s8(const mcf_patch_embed_dims *dims, const mcf_linear_params *params,
                                   const mcf_channel_quant *quant, const int8_t *image, const int8_t *weight,
                                   const int32_t *bias, int8_t *output, int8_t *scratch) {
    if (dims == NULL || image == NULL || output == NULL || scratch == NULL || dims->patch <= 0 ||
        dims->height <= 0 || dims->height % dims->patch ||
        (dims->blocks != 0 && dims->blocks != MCF_PATCH_BLOCKS)) {
        return MCF_ERR_ARG;
    }
    const int32_t row_tokens_bytes = (dims->width / dims->patch) * dims->out_ch;
    const int32_t row_image_bytes = dims->patch * dims->width * dims->channels;
    mcf_patch_embed_dims row = *dims;
    row.height = dims->patch;
    for (int32_t r = 0; r < dims->height / dims->patch; r++) {
        /* The whole patch row is computed before any of its tokens is stored: the store may then overwrite
         * image rows up to the end of this patch row, which nothing reads again. */
        const mcf_status status = mcf_patch_embed_s8(
            &row, params, quant, image + (int64_t)r * row_image_bytes, weight, bias, scratch);
        if (status != MCF_OK) {
            return status;
        }
        mcf_copy_s8(scratch, output + (int64_t)r * row_tokens_bytes, row_tokens_bytes);
    }
    return MCF_OK;
}
