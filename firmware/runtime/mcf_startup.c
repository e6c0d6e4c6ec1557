/* Reset handler and the first 16 entries of the vector table (the board's interrupt vectors follow them, from
 * the BSP's section .isr_vector_irq). No vendor startup code: the linker script provides the symbols. */
#include <stdint.h>

#include "mcf_bsp.h"
#include "mcf_cortexm.h"
#include "mcf_runtime.h"

typedef union {
    void (*handler)(void);
    const void *stack_top;
} mcf_vector;

void Reset_Handler(void) __attribute__((noreturn));
void mcf_fault_entry(void); /* mcf_fault.c: every fault and unexpected exception lands there */
void SysTick_Handler(void); /* the BSP's millisecond tick */

__attribute__((section(".isr_vector"), used)) const mcf_vector mcf_core_vectors[16] = {
    {.stack_top = &__stack_top__},
    {.handler = Reset_Handler},
    {.handler = mcf_fault_entry}, /* NMI */
    {.handler = mcf_fault_entry}, /* HardFault */
    {.handler = mcf_fault_entry}, /* MemManage */
    {.handler = mcf_fault_entry}, /* BusFault */
    {.handler = mcf_fault_entry}, /* UsageFault */
    {.handler = 0},
    {.handler = 0},
    {.handler = 0},
    {.handler = 0},
    {.handler = mcf_fault_entry}, /* SVCall */
    {.handler = mcf_fault_entry}, /* DebugMonitor */
    {.handler = 0},
    {.handler = mcf_fault_entry}, /* PendSV */
    {.handler = SysTick_Handler},
};

void Reset_Handler(void) {
#if defined(__ARM_FP)
    MCF_SCB_CPACR |= 0xFu << 20; /* CP10 and CP11 (the FPU): full access, before any floating-point code */
    mcf_dsb();
    mcf_isb();
#endif
    const uint32_t *src = &__data_load__;
    for (uint32_t *dst = &__data_start__; dst < &__data_end__;) {
        *dst++ = *src++;
    }
    for (uint32_t *dst = &__arena_start__; dst < &__arena_end__;) {
        *dst++ = 0;
    }
    for (uint32_t *dst = &__bss_start__; dst < &__bss_end__;) {
        *dst++ = 0;
    }
    mcf_stack_paint();
    /* Every configurable fault gets its own exception (reported with its number) instead of a HardFault. */
    MCF_SCB_SHCSR |= MCF_SHCSR_MEMFAULTENA | MCF_SHCSR_BUSFAULTENA | MCF_SHCSR_USGFAULTENA;
    mcf_bsp_init();
    (void)main();
    mcf_bsp_exit(0);
}
