/* Stack painting at boot and the high-water mark: the deepest stack use since reset, in bytes. */
#include <stdint.h>

#include "mcf_cortexm.h"
#include "mcf_runtime.h"

/* Fills the stack below the caller's frame (minus a margin for this function) with MCF_STACK_PAINT. */
void mcf_stack_paint(void) {
    volatile uint32_t *word = &__stack_limit__;
    const uint32_t stop = (mcf_get_sp() - 64u) & ~3u;
    while ((uint32_t)(uintptr_t)word < stop) {
        *word++ = MCF_STACK_PAINT;
    }
}

uint32_t mcf_stack_high_water(void) {
    const volatile uint32_t *word = &__stack_limit__;
    const uint32_t top = MCF_ADDR(__stack_top__);
    while ((uint32_t)(uintptr_t)word < top && *word == MCF_STACK_PAINT) {
        word++;
    }
    return top - (uint32_t)(uintptr_t)word;
}
