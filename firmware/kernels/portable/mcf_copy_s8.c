/* Tensor copy: see mcf_kernels.h. */
#include <string.h>

#include "mcf_kernels.h"

mcf_status mcf_copy_s8(const int8_t *input, int8_t *output, int32_t size) {
    if (input == NULL || output == NULL || size <= 0) {
        return MCF_ERR_ARG;
    }
    memmove(output, input, (size_t)size);
    return MCF_OK;
}
