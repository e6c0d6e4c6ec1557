/* ops.lut, a word at a time: see mcf_kernels.h (same contract and results as the portable kernel). The four
 * table indices of a word are its bytes XOR 0x80 (x + 128 for int8 x); the four results are stored as one
 * word. */
#include <string.h>

#include "mcf_dsp.h"
#include "mcf_kernels.h"

mcf_status mcf_lut_s8(const int8_t *input, const int8_t *table, int8_t *output, int32_t size) {
    if (input == NULL || table == NULL || output == NULL || size <= 0) {
        return MCF_ERR_ARG;
    }
    const uint8_t *t = (const uint8_t *)table;
    int32_t i = 0;
    /* The word is read before it is written: output may alias input. */
    for (; i + 4 <= size; i += 4) {
        const uint32_t v = mcf_read4(input + i) ^ 0x80808080u;
        const uint32_t r = (uint32_t)t[v & 0xFFu] | ((uint32_t)t[(v >> 8) & 0xFFu] << 8) |
                           ((uint32_t)t[(v >> 16) & 0xFFu] << 16) | ((uint32_t)t[v >> 24] << 24);
        memcpy(output + i, &r, sizeof r);
    }
    for (; i < size; i++) {
        output[i] = table[input[i] + 128];
    }
    return MCF_OK;
}
