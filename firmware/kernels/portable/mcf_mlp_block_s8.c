/* The MLP half of a transformer block, token by token in place: see mcf_fused.h. */
#include "mcf_fused_internal.h"

mcf_status mcf_mlp_block_s8(const mcf_mlp_block_dims *dims, const mcf_mlp_block_params *params, int8_t *x,
                            void *scratch) {
    if (dims == NULL || params == NULL || x == NULL || scratch == NULL) {
        return MCF_ERR_ARG;
    }
    const int32_t size = mcf_mlp_block_s8_get_buffer_size(dims); /* 0: invalid dims */
    const int32_t fc1_rank = dims->fc1_rank;
    const int32_t fc2_rank = dims->fc2_rank;
    if (size == 0 || (fc1_rank > 0) != (params->fc1.v != NULL) || (fc2_rank > 0) != (params->fc2.v != NULL)) {
        return MCF_ERR_ARG;
    }
    const int32_t tokens = dims->tokens;
    const int32_t channels = dims->channels;
    const int32_t hidden = dims->hidden;

    /* The chain of mcf_mlp_block_s8_get_buffer_size: norm2 -> [fc1 mid] -> hidden -> [fc2 mid] -> fc2. */
    int8_t *base = (int8_t *)scratch;
    int32_t index = 0;
    int8_t *normed = chain_buffer(base, size, index++, channels);
    int8_t *fc1_mid = fc1_rank > 0 ? chain_buffer(base, size, index++, fc1_rank) : NULL;
    int8_t *act = chain_buffer(base, size, index++, hidden);
    int8_t *fc2_mid = fc2_rank > 0 ? chain_buffer(base, size, index++, fc2_rank) : NULL;
    int8_t *out = chain_buffer(base, size, index, channels);

    const mcf_dims row = {1, channels};
    const mcf_layernorm_layer *norm = &params->norm;
    /* Every check of the kernels below is data independent: an error shows on token 0, before the residual
     * add (which checks its parameters before writing) first writes x. */
    for (int32_t t = 0; t < tokens; t++) {
        int8_t *x_row = x + t * channels;
        mcf_status status = mcf_layernorm_s8(&row, &norm->params, x_row, norm->gamma, norm->beta, normed);
        if (status == MCF_OK) {
            status = factored_row(&params->fc1, channels, fc1_rank, hidden, normed, fc1_mid, act);
        }
        if (status == MCF_OK) {
            status = mcf_lut_s8(act, params->gelu_table, act, hidden);
        }
        if (status == MCF_OK) {
            status = factored_row(&params->fc2, hidden, fc2_rank, channels, act, fc2_mid, out);
        }
        if (status == MCF_OK) {
            status = mcf_add_s8(&params->residual, x_row, out, x_row, channels);
        }
        if (status != MCF_OK) {
            return status;
        }
    }
    return MCF_OK;
}
