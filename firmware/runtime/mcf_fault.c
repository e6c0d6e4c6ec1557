/* Fault handler: reports the fault status registers and the stacked registers over serial as an MCF_MSG_FAULT
 * frame, then stops the device (QEMU: exits with status 64 + exception number). */
#include <stdint.h>

#include "mcf_bsp.h"
#include "mcf_cortexm.h"
#include "mcf_protocol.h"
#include "mcf_runtime.h"

#define MCF_FAULT_EXIT_BASE 64u
#define MCF_FAULT_REPORT_BYTES 60u

void mcf_fault_report(const uint32_t *frame, uint32_t exc_return) __attribute__((noreturn, used));

/* Entry of every fault: passes the exception stack frame (MSP or PSP, from EXC_RETURN bit 2) and EXC_RETURN.
 */
__attribute__((naked)) void mcf_fault_entry(void) {
    __asm volatile(
        "tst lr, #4\n"
        "ite eq\n"
        "mrseq r0, msp\n"
        "mrsne r0, psp\n"
        "mov r1, lr\n"
        "b mcf_fault_report\n");
}

void mcf_fault_report(const uint32_t *frame, uint32_t exc_return) {
    mcf_irq_disable();
    const uint32_t exception = mcf_get_ipsr() & 0x1FFu;
    uint8_t report[MCF_FAULT_REPORT_BYTES];
    uint8_t *p = report;
    p = mcf_put_u32(p, exception);
    p = mcf_put_u32(p, MCF_SCB_CFSR);
    p = mcf_put_u32(p, MCF_SCB_HFSR);
    p = mcf_put_u32(p, MCF_SCB_MMFAR);
    p = mcf_put_u32(p, MCF_SCB_BFAR);
    /* The stacked r0-r3, r12, lr, pc, xPSR, if the frame lies in RAM (a fault while stacking may leave none).
     */
    const uint32_t address = (uint32_t)(uintptr_t)frame;
    const int readable = address >= MCF_ADDR(__ram_start__) && address + 32u <= MCF_ADDR(__ram_end__);
    for (uint32_t i = 0; i < 8u; i++) {
        p = mcf_put_u32(p, readable ? frame[i] : 0u);
    }
    p = mcf_put_u32(p, address);
    p = mcf_put_u32(p, exc_return);
    mcf_proto_send(MCF_MSG_FAULT, 0, report, (uint32_t)(p - report), 0, 0);
    mcf_bsp_uart_flush();
    mcf_bsp_halt(MCF_FAULT_EXIT_BASE + exception);
}
