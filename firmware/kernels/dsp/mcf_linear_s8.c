/* ops.linear with the DSP extension: see mcf_kernels.h (same contract and results as the portable kernel).
 * Register-blocked over 2 tokens x 2 output channels (mcf_dot_2x2): every weight word is loaded and split
 * once for two tokens, every input word once for two channels; odd token or channel counts use the 1x2 / 1x1
 * cores (MCF_DSP_LINEAR_PAIRS). */
#include "mcf_checks.h"
#include "mcf_dsp.h"
#include "mcf_kernels.h"
#include "mcf_math.h"

/* 1 (the default: the library stays complete): pairs of tokens through the 2x2 core, and rows wider than
 * MCF_DSP_ROW_MAX through the 1x2 one. 0: every token through the one-token path and those rows one channel
 * at a time, the same results, 2.5 KB less code; a generated build sets 0 when its only linear calls are on
 * one token (the classifier head after pooling: a few hundred MACs). */
#ifndef MCF_DSP_LINEAR_PAIRS
#define MCF_DSP_LINEAR_PAIRS 1
#endif

/* Rows up to this many inputs are widened once on the stack (2 bytes per input) for the one-token case, which
 * the fused kernels' per-token paths call. */
#define MCF_DSP_ROW_MAX 256

mcf_status mcf_linear_s8(const mcf_linear_dims *dims, const mcf_linear_params *params,
                         const mcf_channel_quant *quant, const int8_t *input, const int8_t *weight,
                         const int32_t *bias, int8_t *output) {
    if (!mcf_linear_args_ok(dims, params, quant, input, weight, bias, output)) {
        return MCF_ERR_ARG;
    }
    const int32_t tokens = dims->tokens;
    const int32_t in_ch = dims->in_ch;
    const int32_t out_ch = dims->out_ch;
    const int32_t in_zp = params->in_zp;
    const int32_t out_zp = params->out_zp;
    const int32_t *mult = quant->mult;
    const int8_t *shift = quant->shift;
    const uint32_t offset = mcf_pack_pair(-in_zp);

    int32_t t = 0;
#if MCF_DSP_LINEAR_PAIRS
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
    if (t < tokens) { /* the last (or only) token: one input row against pairs of weight rows */
#else
    for (; t < tokens; t++) { /* every token: one input row against pairs of weight rows */
#endif
        const int8_t *x = input + t * in_ch;
        int8_t *y = output + t * out_ch;
        int32_t n = 0;
        if (in_ch <= MCF_DSP_ROW_MAX) {
            /* The row widened once (minus its zero point) on the stack: per 4 inputs and 2 channels one LDRD,
             * two weight loads, four SXTB16 and four SMLADs. */
            uint32_t x16[MCF_DSP_ROW_MAX / 2];
            const int32_t groups = in_ch >> 2;
            for (int32_t g = 0; g < groups; g++) {
                const uint32_t w = mcf_read4(x + 4 * g);
                x16[2 * g] = mcf_sxtab16(offset, w);
                x16[2 * g + 1] = mcf_sxtab16_ror8(offset, w);
            }
            for (; n + 2 <= out_ch; n += 2) {
                const int8_t *w0 = weight + n * in_ch;
                const int8_t *w1 = w0 + in_ch;
                int32_t a0 = 0, a1 = 0;
                for (int32_t g = 0; g < groups; g++) {
                    const uint32_t xe = x16[2 * g], xo = x16[2 * g + 1];
                    const uint32_t wa = mcf_read4(w0 + 4 * g), wb = mcf_read4(w1 + 4 * g);
                    a0 = mcf_smlad(xo, mcf_sxtb16_ror8(wa), mcf_smlad(xe, mcf_sxtb16(wa), a0));
                    a1 = mcf_smlad(xo, mcf_sxtb16_ror8(wb), mcf_smlad(xe, mcf_sxtb16(wb), a1));
                }
                for (int32_t k = 4 * groups; k < in_ch; k++) {
                    const int32_t xv = x[k] - in_zp;
                    a0 += xv * w0[k];
                    a1 += xv * w1[k];
                }
                y[n] = mcf_dsp_requantize_s8(a0, bias[n], mult[n], shift[n], out_zp);
                y[n + 1] = mcf_dsp_requantize_s8(a1, bias[n + 1], mult[n + 1], shift[n + 1], out_zp);
            }
        }
#if MCF_DSP_LINEAR_PAIRS
        for (; n + 2 <= out_ch; n += 2) {
            const int8_t *w0 = weight + n * in_ch;
            int32_t acc[2] = {0, 0};
            mcf_dot_1x2(x, w0, w0 + in_ch, in_ch, offset, acc);
            y[n] = mcf_dsp_requantize_s8(acc[0], bias[n], mult[n], shift[n], out_zp);
            y[n + 1] = mcf_dsp_requantize_s8(acc[1], bias[n + 1], mult[n + 1], shift[n + 1], out_zp);
        }
        if (n < out_ch) {
#else
        for (; n < out_ch; n++) { /* rows wider than the stack row, and the last channel of an odd count */
#endif
            const int32_t acc = mcf_dot_1x1(x, weight + n * in_ch, in_ch, offset, 0);
            y[n] = mcf_dsp_requantize_s8(acc, bias[n], mult[n], shift[n], out_zp);
        }
    }
    return MCF_OK;
}
