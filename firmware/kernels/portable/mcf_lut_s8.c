/* ops.lut: see mcf_kernels.h. */
#include "mcf_kernels.h"

mcf_status mcf_lut_s8(const int8_t *input, const int8_t *table, int8_t *output, int32_t size) {
    if (input == NULL || table == NULL || output == NULL || size <= 0) {
        return MCF_ERR_ARG;
    }
    for (int32_t i = 0; i < size; i++) {
        output[i] = table[input[i] + 128];
    }
    return MCF_OK;
}
