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
    return mlp_block_per_token(dims, params, x, scratch, size);
}
