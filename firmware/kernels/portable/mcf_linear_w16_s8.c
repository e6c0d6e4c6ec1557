/* ops.linear with widened weights: see mcf_kernels.h. */
#include "mcf_checks.h"
#include "mcf_kernels.h"
#include "mcf_math.h"

mcf_status mcf_linear_w16_s8(const mcf_linear_dims *dims, const mcf_linear_params *params,
                             const mcf_channel_quant *quant, const int8_t *input, const int16_t *weight16,
                             const int32_t *bias, int8_t *output) {
    if (!mcf_linear_args_ok(dims, params, quant, input, (const int8_t *)weight16, bias, output)) {
        return MCF_ERR_ARG;
    }
    const int32_t in_ch = dims->in_ch;
    for (int32_t t = 0; t < dims->tokens; t++) {
        const int8_t *x = input + t * in_ch;
        int8_t *y = output + t * dims->out_ch;
        const int16_t *w = weight16;
        for (int32_t n = 0; n < dims->out_ch; n++, w += in_ch) {
            /* Group by group in the stored order (w0, w2, w1, w3), then the leftovers in theirs. */
            const int32_t zp = params->in_zp;
            int32_t acc = 0;
            int32_t k = 0;
            for (; k + 4 <= in_ch; k += 4) {
                acc += (x[k] - zp) * w[k] + (x[k + 2] - zp) * w[k + 1] + (x[k + 1] - zp) * w[k + 2] +
                       (x[k + 3] - zp) * w[k + 3];
            }
            for (; k < in_ch; k++) {
                acc += (x[k] - zp) * w[k];
            }
            y[n] = mcf_requantize_s8((int64_t)acc + bias[n], quant->mult[n], quant->shift[n], params->out_zp);
        }
    }
    return MCF_OK;
}
