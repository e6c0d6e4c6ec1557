/* ops.mean_pool: see mcf_kernels.h. */
#include "mcf_kernels.h"
#include "mcf_math.h"

mcf_status mcf_mean_pool_s8(const mcf_dims *dims, const mcf_pool_params *params, const int8_t *input,
                            int8_t *output) {
    if (dims == NULL || params == NULL || input == NULL || output == NULL) {
        return MCF_ERR_ARG;
    }
    const int32_t tokens = dims->tokens;
    const int32_t channels = dims->channels;
    const int32_t in_zp = params->in_zp;
    const int32_t out_zp = params->out_zp;
    if (tokens <= 0 || channels <= 0 || !mcf_valid_zp(in_zp) || !mcf_valid_zp(out_zp) ||
        !mcf_valid_requant(params->mult, params->shift)) {
        return MCF_ERR_ARG;
    }
    for (int32_t c = 0; c < channels; c++) {
        const int8_t *x = input + c;
        int32_t acc = 0;
        for (int32_t t = 0; t < tokens; t++) {
            acc += x[0] - in_zp;
            x += channels;
        }
        output[c] = mcf_requantize_s8(acc, params->mult, params->shift, out_zp);
    }
    return MCF_OK;
}
