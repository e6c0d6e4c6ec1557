/* ops.patch_embed with the DSP extension: see mcf_kernels.h (same contract and results as the portable
 * kernel). A patch is a token of the linear layer [patch * patch * channels] -> [out_ch], so patches of up to
 * MCF_PATCH_BLOCK_INPUTS values run four at a time through the fused kernels' token blocks (mcf_dsp_block.h:
 * each patch widened into x16, then the assembly channel loop, 13 instructions per 16 MACs plus a fixed cost
 * per channel). Larger patches take pairs: two horizontally adjacent patches share every weight word and two
 * output channels share every pixel word (mcf_dot_2x2 over each of the patch's rows, which are contiguous in
 * the image and in the weight). */
#include <string.h>

#include "mcf_checks.h"
#include "mcf_dsp.h"
#include "mcf_dsp_block.h"
#include "mcf_kernels.h"
#include "mcf_math.h"

/* The largest patch (values) that takes the token blocks: its x16, 8 bytes a value, is on the stack. */
#define MCF_PATCH_BLOCK_INPUTS 64

/* 1 (the default: the library stays complete): the pair path, for patches of more than
 * MCF_PATCH_BLOCK_INPUTS values. 0: it is compiled out and such a call returns MCF_ERR_ARG; a generated build
 * sets 0 when none of its patch embeddings has a patch that large (MCF_DSP_PATCH_PAIRS, about 2.5 KB). */
#ifndef MCF_DSP_PATCH_PAIRS
#define MCF_DSP_PATCH_PAIRS 1
#endif

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

/* Every patch through the token blocks (length <= MCF_PATCH_BLOCK_INPUTS): blocks of four consecutive
 * tokens, the last one overlapping the one before it (the same outputs again: output does not overlap the
 * image); fewer than four tokens in one block whose missing lanes repeat the last patch. */
static void patch_embed_blocks(const mcf_patch_embed_dims *dims, const mcf_linear_layer *layer,
                               const int8_t *image, int8_t *output) {
    const int32_t patch = dims->patch;
    const int32_t out_ch = dims->out_ch;
    const int32_t grid_w = dims->width / patch;
    const int32_t tokens = (dims->height / patch) * grid_w;
    const int32_t row_len = patch * dims->channels;
    const int32_t length = patch * row_len;
    const int32_t image_stride = dims->width * dims->channels;
    const int32_t count = tokens < MCF_DSP_BLOCK ? tokens : MCF_DSP_BLOCK;
    const int fast = mcf_dsp_channels_fast(layer->bias, &layer->quant, length, out_ch);
    uint32_t x16[2 * MCF_PATCH_BLOCK_INPUTS];
    for (int32_t t0 = 0; t0 < tokens; t0 += MCF_DSP_BLOCK) {
        const int32_t start = count < MCF_DSP_BLOCK ? 0 : mcf_dsp_full_block_start(t0, tokens);
        for (int32_t t = 0; t < MCF_DSP_BLOCK; t++) {
            const int32_t token = start + (t < count ? t : count - 1);
            const int8_t *origin =
                image + (token / grid_w) * patch * image_stride + (token % grid_w) * row_len;
            patch_widen(origin, patch, row_len, image_stride, layer->params.in_zp, length, x16, t);
        }
        mcf_dsp_linear4(x16, length, layer, out_ch, output + start * out_ch, out_ch, count, fast);
    }
}

#if MCF_DSP_PATCH_PAIRS
/* Patches two at a time, output channels two at a time, any size. */
static void patch_embed_pairs(const mcf_patch_embed_dims *dims, const mcf_linear_params *params,
                              const mcf_channel_quant *quant, const int8_t *image, const int8_t *weight,
                              const int32_t *bias, int8_t *output) {
    const int32_t height = dims->height;
    const int32_t width = dims->width;
    const int32_t channels = dims->channels;
    const int32_t patch = dims->patch;
    const int32_t out_ch = dims->out_ch;
    const int32_t in_zp = params->in_zp;
    const int32_t out_zp = params->out_zp;
    const int32_t *mult = quant->mult;
    const int8_t *shift = quant->shift;
    const uint32_t offset = mcf_pack_pair(-in_zp);
    const int32_t grid_h = height / patch;
    const int32_t grid_w = width / patch;
    const int32_t row_len = patch * channels; /* one patch row: contiguous in the image and the weight */
    const int32_t image_stride = width * channels;
    const int32_t patch_len = patch * row_len;

    for (int32_t gy = 0; gy < grid_h; gy++) {
        const int8_t *band = image + gy * patch * image_stride;
        int8_t *y = output + gy * grid_w * out_ch;
        int32_t gx = 0;
        for (; gx + 2 <= grid_w; gx += 2, y += 2 * out_ch) {
            const int8_t *origin = band + gx * row_len;
            int32_t n = 0;
            for (; n + 2 <= out_ch; n += 2) {
                const int8_t *w = weight + n * patch_len;
                int32_t acc[4] = {0, 0, 0, 0}; /* {patch 0 . w0, patch 0 . w1, patch 1 . w0, patch 1 . w1} */
                for (int32_t py = 0; py < patch; py++) {
                    const int8_t *x = origin + py * image_stride;
                    const int8_t *wr = w + py * row_len;
                    mcf_dot_2x2(x, x + row_len, wr, wr + patch_len, row_len, offset, acc);
                }
                y[n] = mcf_dsp_requantize_s8(acc[0], bias[n], mult[n], shift[n], out_zp);
                y[n + 1] = mcf_dsp_requantize_s8(acc[1], bias[n + 1], mult[n + 1], shift[n + 1], out_zp);
                y[out_ch + n] = mcf_dsp_requantize_s8(acc[2], bias[n], mult[n], shift[n], out_zp);
                y[out_ch + n + 1] =
                    mcf_dsp_requantize_s8(acc[3], bias[n + 1], mult[n + 1], shift[n + 1], out_zp);
            }
            if (n < out_ch) { /* odd out_ch: the last channel for both patches */
                const int8_t *w = weight + n * patch_len;
                int32_t a0 = 0, a1 = 0;
                for (int32_t py = 0; py < patch; py++) {
                    const int8_t *x = origin + py * image_stride;
                    a0 = mcf_dot_1x1(x, w + py * row_len, row_len, offset, a0);
                    a1 = mcf_dot_1x1(x + row_len, w + py * row_len, row_len, offset, a1);
                }
                y[n] = mcf_dsp_requantize_s8(a0, bias[n], mult[n], shift[n], out_zp);
                y[out_ch + n] = mcf_dsp_requantize_s8(a1, bias[n], mult[n], shift[n], out_zp);
            }
        }
        if (gx < grid_w) { /* odd grid width: the last patch of the band, channel pairs */
            const int8_t *origin = band + gx * row_len;
            int32_t n = 0;
            for (; n + 2 <= out_ch; n += 2) {
                const int8_t *w = weight + n * patch_len;
                int32_t acc[2] = {0, 0};
                for (int32_t py = 0; py < patch; py++) {
                    const int8_t *wr = w + py * row_len;
                    mcf_dot_1x2(origin + py * image_stride, wr, wr + patch_len, row_len, offset, acc);
                }
                y[n] = mcf_dsp_requantize_s8(acc[0], bias[n], mult[n], shift[n], out_zp);
                y[n + 1] = mcf_dsp_requantize_s8(acc[1], bias[n + 1], mult[n + 1], shift[n + 1], out_zp);
            }
            if (n < out_ch) {
                const int8_t *w = weight + n * patch_len;
                int32_t a = 0;
                for (int32_t py = 0; py < patch; py++) {
                    a = mcf_dot_1x1(origin + py * image_stride, w + py * row_len, row_len, offset, a);
                }
                y[n] = mcf_dsp_requantize_s8(a, bias[n], mult[n], shift[n], out_zp);
            }
        }
    }
}
#endif

mcf_status mcf_patch_embed_s8(const mcf_patch_embed_dims *dims, const mcf_linear_params *params,
                              const mcf_channel_quant *quant, const int8_t *image, const int8_t *weight,
                              const int32_t *bias, int8_t *output) {
    if (!mcf_patch_embed_args_ok(dims, params, quant, image, weight, bias, output)) {
        return MCF_ERR_ARG;
    }
    if (dims->patch * dims->patch * dims->channels <= MCF_PATCH_BLOCK_INPUTS) {
        const mcf_linear_layer layer = {*params, *quant, weight, NULL, bias};
        patch_embed_blocks(dims, &layer, image, output);
        return MCF_OK;
    }
#if MCF_DSP_PATCH_PAIRS
    patch_embed_pairs(dims, params, quant, image, weight, bias, output);
    return MCF_OK;
#else
    return MCF_ERR_ARG; /* the pair path this build left out */
#endif
}
