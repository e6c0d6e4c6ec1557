/* The per-head attention block that normalises once: see mcf_fused.h. On a core without the DSP extension the
 * one-token kernel has no per-head LayerNorm to save in blocks, so it computes as
 * mcf_attention_block_heads_s8 (same results); its scratch is the larger size all the same, so one plan
 * serves every variant. */
#include "mcf_fused_internal.h"

mcf_status mcf_attention_block_heads_once_s8(const mcf_attention_block_dims *dims,
                                             const mcf_attention_block_params *params, int8_t *x,
                                             int8_t *k_head, int8_t *v_head, int8_t *context, void *scratch) {
    if (!attention_block_heads_args_ok(dims, params, x, k_head, v_head, context, scratch)) {
        return MCF_ERR_ARG;
    }
    return attention_block_heads_per_token(dims, params, x, k_head, v_head, context, scratch);
}
