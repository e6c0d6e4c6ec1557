/* ops.layernorm with the DSP extension: see mcf_kernels.h (same contract and results as the portable kernel).
 * The rows are computed by dsp/mcf_dsp_layernorm.c. */
#include "mcf_checks.h"
#include "mcf_dsp_fused.h"
#include "mcf_kernels.h"

mcf_status mcf_layernorm_s8(const mcf_dims *dims, const mcf_layernorm_params *params, const int8_t *input,
                            const int16_t *gamma, const int32_t *beta, int8_t *output) {
    if (!mcf_layernorm_args_ok(dims, params, input, gamma, beta, output)) {
        return MCF_ERR_ARG;
    }
    const mcf_layernorm_layer norm = {*params, gamma, beta};
    const int lean = mcf_dsp_layernorm_lean(params, beta, dims->channels);
    mcf_dsp_layernorm_rows(&norm, dims->channels, lean, input, output, dims->tokens);
    return MCF_OK;
}
