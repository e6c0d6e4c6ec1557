/* ops.linear with the DSP extension: see mcf_kernels.h (same contract and results as the portable kernel).
 * Register-blocked over 2 tokens x 2 output channels (mcf_dot_2x2): every weight word is loaded and split
 * once for two tokens, every input word once for two channels; odd token or channel counts use the 1x2 / 1x1
 * cores. */
#include "mcf_dsp.h"
#include "mcf_kernels.h"
#include "mcf_math.h"

mcf_status mcf_linear_s8(const mcf_linear_dims *dims, const mcf_linear_params *params,
                         const mcf_channel_quant *quant, const int8_t *input, const int8_t *weight,
                         const int32_t *bias, int8_t *output) {
    if (dims == NULL || params == NULL || quant == NULL || quant->mult == NULL || quant->shift == NULL ||
        input == NULL || weight == NULL || bias == NULL || output == NULL) {
        return MCF_ERR_ARG;
    }
    const int32_t tokens = dims->tokens;
    const int32_t in_ch = dims->in_ch;
    const int32_t out_ch = dims->out_ch;
    const int32_t in_zp = params->in_zp;
    const int32_t out_zp = params->out_zp;
    if (tokens <= 0 || in_ch <= 0 || out_ch <= 0 || !mcf_valid_zp(in_zp) || !mcf_valid_zp(out_zp)) {
        return MCF_ERR_ARG;
    }
    const int32_t *mult = quant->mult;
    const int32_t *shift = quant->shift;
    for (int32_t n = 0; n < out_ch; n++) {
        if (!mcf_valid_requant(mult[n], shift[n])) {
            return MCF_ERR_ARG;
        }
    }
    const uint32_t offset = mcf_pack_pair(-in_zp);

    int32_t t = 0;
    for (; t + 2 <= tokens; t += 2) {
        const int8_t *x0 = input + t * in_ch;
        const int8_t *x1 = x0 + in_ch;
        int8_t *y0 = output + t * out_ch;
        int8_t *y1 = y0 + out_ch;
        int32_t n = 0;
        for (; n + 2 <= out_ch; n += 2) {
            const int8_t *w0 = weight + n * in_ch;
            int32_t acc[4] = {0, 0, 0, 0};
            mcf_dot_2x2(x0, x1, w0, w0 + in_ch, in_ch, offset, acc);
            y0[n] = mcf_dsp_requantize_s8(acc[0], bias[n], mult[n], shift[n], out_zp);
            y0[n + 1] = mcf_dsp_requantize_s8(acc[1], bias[n + 1], mult[n + 1], shift[n + 1], out_zp);
            y1[n] = mcf_dsp_requantize_s8(acc[2], bias[n], mult[n], shift[n], out_zp);
            y1[n + 1] = mcf_dsp_requantize_s8(acc[3], bias[n + 1], mult[n + 1], shift[n + 1], out_zp);
        }
        if (n < out_ch) { /* the last channel (odd out_ch) */
            const int8_t *w = weight + n * in_ch;
            const int32_t a0 = mcf_dot_1x1(x0, w, in_ch, offset, 0);
            const int32_t a1 = mcf_dot_1x1(x1, w, in_ch, offset, 0);
            y0[n] = mcf_dsp_requantize_s8(a0, bias[n], mult[n], shift[n], out_zp);
            y1[n] = mcf_dsp_requantize_s8(a1, bias[n], mult[n], shift[n], out_zp);
        }
    }
    if (t < tokens) { /* the last token: one input row against pairs of weight rows */
        const int8_t *x = input + t * in_ch;
        int8_t *y = output + t * out_ch;
        int32_t n = 0;
        for (; n + 2 <= out_ch; n += 2) {
            const int8_t *w0 = weight + n * in_ch;
            int32_t acc[2] = {0, 0};
            mcf_dot_1x2(x, w0, w0 + in_ch, in_ch, offset, acc);
            y[n] = mcf_dsp_requantize_s8(acc[0], bias[n], mult[n], shift[n], out_zp);
            y[n + 1] = mcf_dsp_requantize_s8(acc[1], bias[n + 1], mult[n + 1], shift[n + 1], out_zp);
        }
        if (n < out_ch) {
            const int32_t acc = mcf_dot_1x1(x, weight + n * in_ch, in_ch, offset, 0);
            y[n] = mcf_dsp_requantize_s8(acc, bias[n], mult[n], shift[n], out_zp);
        }
    }
    return MCF_OK;
}
