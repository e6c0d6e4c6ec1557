/* mcf_patch_embed_rows_s8 with the DSP extension: see mcf_fused.h (same contract and results as the portable
 * kernel). A patch is a token of the linear layer [patch * patch * channels] -> [out_ch], so when
 * mcf_patch_rows_in_blocks (asked for, small patches, four or more a row) they run four at a time through
 * the fused kernels' token blocks (mcf_dsp_block.h): each patch widened into x16, which lives in the scratch
 * after the row of tokens, then the assembly channel loop (13 instructions per 16 MACs, plus a fixed cost per
 * channel and block). Otherwise mcf_patch_embed_s8 (pairs of patches and channels), in a scratch of one row
 * of tokens. */
#include <string.h>

#include "mcf_checks.h"
#include "mcf_dsp_block.h"
#include "mcf_fused.h"
#include "mcf_kernels.h"

/* The patch whose first pixel is at `origin` as one contiguous row: its `patch` rows of row_len values,
 * image_stride apart, copied a word at a time (a row's last word may overlap the one before it). */
static void patch_gather(const int8_t *origin, int32_t patch, int32_t row_len, int32_t image_stride,
                         int8_t *row) {
    for (int32_t py = 0; py < patch; py++, origin += image_stride, row += row_len) {
        if (row_len < 4) {
            for (int32_t i = 0; i < row_len; i++) {
                row[i] = origin[i];
            }
            continue;
        }
        for (int32_t i = 0; i < row_len; i += 4) {
            const int32_t at = i + 4 <= row_len ? i : row_len - 4;
            uint32_t word;
            memcpy(&word, origin + at, 4);
            memcpy(row + at, &word, 4);
        }
    }
}

/* Lane t of x16 (`length` values a token, mcf_dsp_block.h's layout) from the patch whose first pixel is at
 * `origin`, minus the zero point: straight from the image when a patch row is whole words, else from the
 * patch gathered into one row (the length % 4 leftovers after the groups, token t's at 16 * groups + 4r + t
 * as int16). */
static void patch_widen(const int8_t *origin, int32_t patch, int32_t row_len, int32_t image_stride,
                        int32_t zp, int32_t length, uint32_t *x16, int32_t t) {
    const uint32_t offset = mcf_pack_pair(-zp);
    if ((row_len & 3) == 0) {
        for (int32_t py = 0; py < patch; py++) {
            mcf_dsp_widen_lane(origin + py * image_stride, row_len >> 2, offset,
                               x16 + 8 * py * (row_len >> 2) + 2 * t);
        }
        return;
    }
    int8_t row[MCF_PATCH_BLOCK_INPUTS];
    patch_gather(origin, patch, row_len, image_stride, row);
    const int32_t groups = length >> 2;
    mcf_dsp_widen_lane(row, groups, offset, x16 + 2 * t);
    int16_t *rest = (int16_t *)(x16 + 8 * groups) + t;
    for (int32_t r = 0; r < (length & 3); r++) {
        rest[4 * r] = (int16_t)(row[4 * groups + r] - zp);
    }
}

/* The grid_w (>= 4) patches of one patch row through the token blocks: blocks of four consecutive patches,
 * the last one overlapping the one before it (the same outputs again: output is the scratch row, not the
 * image). */
static void patch_row_blocks(const mcf_patch_embed_dims *dims, const mcf_linear_layer *layer,
                             const int8_t *band, int8_t *output, uint32_t *x16, int fast) {
    const int32_t patch = dims->patch;
    const int32_t out_ch = dims->out_ch;
    const int32_t grid_w = dims->width / patch;
    const int32_t row_len = patch * dims->channels;
    const int32_t length = patch * row_len;
    const int32_t image_stride = dims->width * dims->channels;
    for (int32_t t0 = 0; t0 < grid_w; t0 += MCF_DSP_BLOCK) {
        const int32_t start = mcf_dsp_full_block_start(t0, grid_w);
        for (int32_t t = 0; t < MCF_DSP_BLOCK; t++) {
            patch_widen(band + (start + t) * row_len, patch, row_len, image_stride, layer->params.in_zp,
                        length, x16, t);
        }
        mcf_dsp_linear4(x16, length, layer, out_ch, output + start * out_ch, out_ch, MCF_DSP_BLOCK, fast);
    }
}

mcf_status mcf_patch_embed_rows_s8(const mcf_patch_embed_dims *dims, const mcf_linear_params *params,
                                   const mcf_channel_quant *quant, const int8_t *image, const int8_t *weight,
                                   const int32_t *bias, int8_t *output, int8_t *scratch) {
    if (!mcf_patch_embed_args_ok(dims, params, quant, image, weight, bias, output) || scratch == NULL ||
        (dims->blocks != 0 && dims->blocks != MCF_PATCH_BLOCKS)) {
        return MCF_ERR_ARG;
    }
    const int32_t row_tokens_bytes = (dims->width / dims->patch) * dims->out_ch;
    const int32_t row_image_bytes = dims->patch * dims->width * dims->channels;
    const int32_t length = dims->patch * dims->patch * dims->channels;
    const int blocks = mcf_patch_rows_in_blocks(dims);
    const mcf_linear_layer layer = {*params, *quant, weight, NULL, bias};
    const int fast = blocks && mcf_dsp_channels_fast(bias, quant, length, dims->out_ch);
    /* x16 after the row of tokens, word aligned (mcf_patch_embed_rows_s8_get_buffer_size) */
    uint32_t *x16 = (uint32_t *)(((uintptr_t)scratch + (uintptr_t)row_tokens_bytes + 3u) & ~(uintptr_t)3u);
    mcf_patch_embed_dims row = *dims;
    row.height = dims->patch;
    for (int32_t r = 0; r < dims->height / dims->patch; r++) {
        /* The whole patch row is computed before any of its tokens is stored: the store may then overwrite
         * image rows up to the end of this patch row, which nothing reads again. */
        const int8_t *band = image + (int64_t)r * row_image_bytes;
        if (blocks) {
            patch_row_blocks(dims, &layer, band, scratch, x16, fast);
        } else {
            const mcf_status status = mcf_patch_embed_s8(&row, params, quant, band, weight, bias, scratch);
            if (status != MCF_OK) {
                return status;
            }
        }
        memcpy(output + (int64_t)r * row_tokens_bytes, scratch, (size_t)row_tokens_bytes);
    }
    return MCF_OK;
}
