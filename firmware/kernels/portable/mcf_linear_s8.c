/* ops.linear: see mcf_kernels.h. */
#include "mcf_checks.h"
#include "mcf_kernels.h"
#include "mcf_math.h"

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

    for (int32_t t = 0; t < tokens; t++) {
        const int8_t *x = input + t * in_ch;
        int8_t *y = output + t * out_ch;
        const int8_t *w = weight;
        for (int32_t n = 0; n < out_ch; n++) {
            int32_t acc = 0;
            for (int32_t k = 0; k < in_ch; k++) {
                acc += (x[k] - in_zp) * w[k];
            }
            y[n] = mcf_requantize_s8((int64_t)acc + bias[n], mult[n], shift[n], out_zp);
            w += in_ch;
        }
    }
    return MCF_OK;
}
