/* ops.patch_embed: see mcf_kernels.h. */
#include "mcf_checks.h"
#include "mcf_kernels.h"
#include "mcf_math.h"

mcf_status mcf_patch_embed_s8(const mcf_patch_embed_dims *dims, const mcf_linear_params *params,
                              const mcf_channel_quant *quant, const int8_t *image, const int8_t *weight,
                              const int32_t *bias, int8_t *output) {
    if (!mcf_patch_embed_args_ok(dims, params, quant, image, weight, bias, output)) {
        return MCF_ERR_ARG;
    }
    const int32_t height = dims->height;
    const int32_t width = dims->width;
    const int32_t channels = dims->channels;
    const int32_t patch = dims->patch;
    const int32_t out_ch = dims->out_ch;
    const int32_t in_zp = params->in_zp;
    const int32_t out_zp = params->out_zp;
    const int32_t *mult = quant->mult;
    const int8_t *shift = quant->shift;

    const int32_t grid_h = height / patch;
    const int32_t grid_w = width / patch;
    const int32_t row_len = patch * channels; /* one patch row: contiguous in the image and the weight */
    const int32_t image_stride = width * channels;
    const int32_t patch_len = patch * row_len;
    int8_t *y = output;
    for (int32_t gy = 0; gy < grid_h; gy++) {
        for (int32_t gx = 0; gx < grid_w; gx++) {
            const int8_t *origin = image + gy * patch * image_stride + gx * row_len;
            const int8_t *w = weight;
            for (int32_t n = 0; n < out_ch; n++) {
                int32_t acc = 0;
                for (int32_t py = 0; py < patch; py++) {
                    const int8_t *x = origin + py * image_stride;
                    const int8_t *wr = w + py * row_len;
                    for (int32_t k = 0; k < row_len; k++) {
                        acc += (x[k] - in_zp) * wr[k];
                    }
                }
                y[n] = mcf_requantize_s8((int64_t)acc + bias[n], mult[n], shift[n], out_zp);
                w += patch_len;
            }
            y += out_ch;
        }
    }
    return MCF_OK;
}
