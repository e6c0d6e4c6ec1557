/* The MLP half of a transformer block, token by token in place: see mcf_fused.h. */
#include "mcf_fused_internal.h"

mcf_status mcf_mlp_block_s8(const mcf_mlp_block_dims *dims, const mcf_mlp_block_params *params, int8_t *x,
                            void *scratch) {
    const int32_t size = mlp_block_checked_size(dims, params, x, scratch);
    if (size == 0) {
        return MCF_ERR_ARG;
    }
    return mlp_block_per_token(dims, params, x, scratch, size);
}
