/* Inline helpers shared by the fused per-token kernels (not part of the public API). */
#ifndef MCF_FUSED_INTERNAL_H
#define MCF_FUSED_INTERNAL_H

#include "mcf_fused.h"

/* Buffer `index` of the per-token chain, `length` bytes: even indices start the scratch, odd ones end it,
 * so consecutive buffers (an op's input and output) never overlap within `size` bytes. */
static inline int8_t *chain_buffer(int8_t *scratch, int32_t size, int32_t index, int32_t length) {
    return index % 2 == 0 ? scratch : scratch + (size - length);
}

/* mcf_linear_s8 on one token. */
static inline mcf_status linear_row(const mcf_linear_layer *layer, int32_t in_ch, int32_t out_ch,
                                    const int8_t *input, int8_t *output) {
    const mcf_linear_dims dims = {1, in_ch, out_ch};
    return mcf_linear_s8(&dims, &layer->params, &layer->quant, input, layer->weight, layer->bias, output);
}

/* A factored linear on one token: input -> (mid, when low rank) -> output. */
static inline mcf_status factored_row(const mcf_factored_linear *layer, int32_t in_ch, int32_t rank,
                                      int32_t out_ch, const int8_t *input, int8_t *mid, int8_t *output) {
    if (layer->v == NULL) {
        return linear_row(&layer->u, in_ch, out_ch, input, output);
    }
    const mcf_status status = linear_row(layer->v, in_ch, rank, input, mid);
    return status != MCF_OK ? status : linear_row(&layer->u, rank, out_ch, mid, output);
}

#endif /* MCF_FUSED_INTERNAL_H */
