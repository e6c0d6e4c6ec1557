/* Board support for QEMU's mps2-an500 (Cortex-M7) and mps2-an386 (Cortex-M4) machines: CMSDK UART0 (receive
 * by interrupt), SysTick millisecond tick, CMSDK TIMER0 as the instruction counter (-icount shift=0), an MPU
 * that makes the flash read-only and everything outside the linked RAM budget no-access, semihosting exit.
 * Both machines have these peripherals at the same addresses and interrupts, and nothing here is specific to
 * the Cortex-M7 (no caches, no DWT lock; the PMSAv7 MPU with 8 regions is on both cores), so one file serves
 * both. */
#include <stdint.h>

#include "mcf_bsp.h"
#include "mcf_cortexm.h"
#include "mcf_runtime.h"

/* CMSDK APB UART0 (Arm DDI 0479, CMSDK technical reference). */
#define UART0_BASE 0x40004000u
#define UART_DATA MCF_REG32(UART0_BASE + 0x00u)
#define UART_STATE MCF_REG32(UART0_BASE + 0x04u)
#define UART_CTRL MCF_REG32(UART0_BASE + 0x08u)
#define UART_INTCLEAR MCF_REG32(UART0_BASE + 0x0Cu)
#define UART_BAUDDIV MCF_REG32(UART0_BASE + 0x10u)
#define UART_STATE_TXFULL (1u << 0)
#define UART_STATE_RXFULL (1u << 1)
#define UART_CTRL_TXEN (1u << 0)
#define UART_CTRL_RXEN (1u << 1)
#define UART_CTRL_RXINTEN (1u << 3)
#define UART_INT_RX (1u << 1)
#define UART0_RX_IRQ 0u
#define UART0_TX_IRQ 1u

/* CMSDK APB TIMER0: a 32-bit down counter at SYSCLK. */
#define TIMER0_BASE 0x40000000u
#define TIMER_CTRL MCF_REG32(TIMER0_BASE + 0x00u)
#define TIMER_VALUE MCF_REG32(TIMER0_BASE + 0x04u)
#define TIMER_RELOAD MCF_REG32(TIMER0_BASE + 0x08u)
#define TIMER_CTRL_ENABLE (1u << 0)

#define NUM_IRQS 64u /* the AN500 image wires interrupts 0..47 */

/* Semihosting (Arm IHI 0038): SYS_EXIT_EXTENDED takes {reason, exit code}. */
#define SEMIHOSTING_SYS_EXIT_EXTENDED 0x20u
#define ADP_STOPPED_APPLICATION_EXIT 0x20026u

void SysTick_Handler(void);
void mcf_fault_entry(void);
static void uart0_rx_handler(void);

static volatile uint32_t milliseconds;

#define F mcf_fault_entry
#define F8 F, F, F, F, F, F, F, F
__attribute__((section(".isr_vector_irq"), used)) static void (*const irq_vectors[NUM_IRQS])(void) = {
    uart0_rx_handler, F, F, F, F, F, F, F, F8, F8, F8, F8, F8, F8, F8,
};
#undef F8
#undef F

void SysTick_Handler(void) {
    milliseconds++;
}

static void uart0_rx_handler(void) {
    UART_INTCLEAR = UART_INT_RX; /* clear first: a byte arriving after the loop raises the interrupt again */
    while (UART_STATE & UART_STATE_RXFULL) {
        mcf_rx_push((uint8_t)UART_DATA);
    }
}

void mcf_bsp_init(void) {
    MCF_SCB_VTOR = MCF_ADDR(__flash_start__);
    mcf_mpu_guard();
    TIMER_CTRL = 0;
    TIMER_RELOAD = 0xFFFFFFFFu;
    TIMER_VALUE = 0xFFFFFFFFu;
    TIMER_CTRL = TIMER_CTRL_ENABLE;
    MCF_SYST_RVR = MCF_BOARD_CLOCK_HZ / 1000u - 1u;
    MCF_SYST_CVR = 0;
    MCF_SYST_CSR = MCF_SYST_CSR_ENABLE | MCF_SYST_CSR_TICKINT | MCF_SYST_CSR_CLKSOURCE;
    UART_BAUDDIV = MCF_BOARD_CLOCK_HZ / 115200u; /* ignored by QEMU, but it must be at least 16 */
    UART_CTRL = UART_CTRL_TXEN | UART_CTRL_RXEN | UART_CTRL_RXINTEN;
    mcf_nvic_enable(UART0_RX_IRQ, 0x40u);
    mcf_irq_enable();
}

uint32_t mcf_bsp_millis(void) {
    return milliseconds;
}

void mcf_bsp_uart_write(const uint8_t *data, uint32_t length) {
    for (uint32_t i = 0; i < length; i++) {
        while (UART_STATE & UART_STATE_TXFULL) {
        }
        UART_DATA = data[i];
    }
}

void mcf_bsp_uart_flush(void) {
    while (UART_STATE & UART_STATE_TXFULL) {
    }
}

uint32_t mcf_bsp_counter_ticks(void) {
    return ~TIMER_VALUE;
}

uint32_t mcf_bsp_counter_start(void) {
    TIMER_VALUE = 0xFFFFFFFFu; /* a write restarts the tick phase: the next tick is 40 instructions away */
    return ~TIMER_VALUE;
}

void mcf_bsp_exit(uint32_t code) {
    const uint32_t block[2] = {ADP_STOPPED_APPLICATION_EXIT, code};
    register uint32_t r0 __asm("r0") = SEMIHOSTING_SYS_EXIT_EXTENDED;
    register const uint32_t *r1 __asm("r1") = block;
    __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    for (;;) { /* only without semihosting: stay here */
        mcf_wfi();
    }
}

void mcf_bsp_halt(uint32_t code) {
    mcf_bsp_exit(code);
}
