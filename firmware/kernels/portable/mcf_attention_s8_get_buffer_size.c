/* Scratch size of mcf_attention_s8: see mcf_kernels.h. */
#include "mcf_kernels.h"

int32_t mcf_attention_s8_get_buffer_size(const mcf_attention_dims *dims) {
    if (dims == NULL || dims->tokens <= 0 || dims->channels <= 0 || dims->heads <= 0 ||
        dims->channels % dims->heads != 0 || dims->tokens > INT32_MAX - 3) {
        return 0;
    }
    /* One int8 score (then probability) row of the current query row and head. */
    return (dims->tokens + 3) / 4 * 4;
}
