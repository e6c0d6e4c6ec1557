/* ops.patch_embed with the DSP extension: see mcf_kernels.h (same contract and results as the portable
 * kernel). Two horizontally adjacent patches share every weight word and two output channels share every
 * pixel word (mcf_dot_2x2 over each of the patch's rows, which are contiguous in the image and in the
 * weight). The patch-row kernel (dsp/mcf_patch_embed_rows_s8.c), which a compiled model calls, runs patches
 * through the token blocks instead where mcf_patch_rows_in_blocks, and the others through this kernel. */
#include "mcf_checks.h"
#include "mcf_dsp.h"
#include "mcf_kernels.h"
#include "mcf_math.h"

/* 1 (the default: the library stays complete). 0: the kernel is compiled out and every call returns
 * MCF_ERR_ARG; a generated build sets 0 when its only patch embeddings are patch-row ones in token blocks
 * (MCF_DSP_PATCH_PAIRS, 3.6 KB). */
#ifndef MCF_DSP_PATCH_PAIRS
#define MCF_DSP_PATCH_PAIRS 1
#endif

#if MCF_DSP_PATCH_PAIRS
/* Patches two at a time, output channels two at a time. */
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
#if MCF_DSP_PATCH_PAIRS
    patch_embed_pairs(dims, params, quant, image, weight, bias, output);
    return MCF_OK;
#else
    return MCF_ERR_ARG; /* compiled out: the build calls the patch-row kernel only, on small patches */
#endif
}
