/* ops.attention: see mcf_kernels.h. Query row by query row through mcf_attention_row_s8 (one score row of
 * `tokens` values in scratch, never a tokens x tokens matrix). */
#include "mcf_fused.h"
#include "mcf_kernels.h"

mcf_status mcf_attention_s8(const mcf_attention_dims *dims, const mcf_attention_params *params,
                            const int8_t *q, const int8_t *k, const int8_t *v, const int32_t *exp_table,
                            int8_t *output, void *scratch) {
    if (dims == NULL || q == NULL || output == NULL || dims->tokens <= 0 || dims->channels <= 0) {
        return MCF_ERR_ARG;
    }
    for (int32_t t = 0; t < dims->tokens; t++) {
        /* Row t of output is written only after row t of q is consumed: output may alias q. */
        const mcf_status status =
            mcf_attention_row_s8(dims, params, q + (int64_t)t * dims->channels, k, v, exp_table,
                                 output + (int64_t)t * dims->channels, scratch);
        if (status != MCF_OK) {
            return status;
        }
    }
    return MCF_OK;
}
